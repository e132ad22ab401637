"""One log line per request (``fundtrail.api.access``): request id, method, path, status, milliseconds,
and who asked (the API key's id and the user: never the secret). Every answer carries ``X-Request-ID``,
the id a 500's message names. An ASGI middleware: no per-request object beyond a counter and a clock."""

from __future__ import annotations

import itertools
import logging
import os
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fundtrail.api.logs import redact

access = logging.getLogger("fundtrail.api.access")
WHO = "fundtrail.who"  # scope key the auth dependency fills: "key_id/user_name"
REQUEST_ID = "fundtrail.request_id"


class RequestLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._ids = itertools.count(1)
        self._prefix = f"{os.getpid():x}-"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = self._prefix + str(next(self._ids))
        scope[REQUEST_ID] = rid
        start = time.perf_counter()
        status = 500
        header = (b"x-request-id", rid.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if access.isEnabledFor(logging.INFO):
                ms = (time.perf_counter() - start) * 1e3
                access.info(
                    "%s %s %s %d %.1fms %s",
                    rid,
                    scope["method"],
                    redact(scope["path"]),
                    status,
                    ms,
                    scope.get(WHO, "-"),
                )
