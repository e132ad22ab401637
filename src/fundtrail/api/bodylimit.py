"""The body size limit: an ASGI middleware that refuses a request body above the limit with 413 (the one
error shape) before anything parses it.

A declared ``Content-Length`` above the limit is refused without reading a byte; otherwise (chunked
bodies, or a client lying about the length) the body is read up to the limit and refused at the first
byte past it. A body within the limit is handed to the application whole. Package uploads get their own,
larger limit (``overrides``: exact paths).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fundtrail.api.errors import ApiError
from fundtrail.api.jsonio import dumps


def _too_large(limit: int, declared: int | None) -> ApiError:
    size = f" ({declared:,} bytes)" if declared is not None else ""
    return ApiError(
        413, "payload_too_large", f"the body{size} is above the limit of {limit:,} bytes",
        "send a smaller body (split a batch into several requests)", "body",
    )  # fmt: skip


async def _refuse(send: Send, err: ApiError) -> None:
    body = dumps(err.body())
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    def __init__(self, app: ASGIApp, limit: int, overrides: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.overrides = overrides or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.overrides.get(scope["path"], self.limit)
        declared: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = None
            elif name == b"transfer-encoding":
                chunked = True
        if declared is not None and declared > limit:
            await _refuse(send, _too_large(limit, declared))
            return
        if not declared and not chunked:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            part = message.get("body", b"")
            size += len(part)
            if size > limit:
                await _refuse(send, _too_large(limit, None))
                return
            chunks.append(part)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        given = False

        async def replay() -> Message:
            nonlocal given
            if not given:
                given = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
