"""The one error shape of the API, and how every error becomes it.

Every error the service answers (a library error, a request that fails validation, malformed JSON, an
unknown route, a wrong method, an oversized body, a missing or bad key, a rate limit, a bug) has the body

``{"error": {"status": 422, "code": "invalid_input", "message": "...", "fix": "...",
"field": "body.items[3]"}}``

``message`` is the problem, ``fix`` what to do (null when there is nothing to say), ``field`` the parameter
at fault as ``path.x``, ``query.x``, ``header.x`` or ``body.a.b[3]`` (null when no single parameter is).
A 500 says only that it is a bug and gives the request id to find it in the log: nothing of the exception.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from fundtrail.api.jsonio import json_response
from fundtrail.errors import (
    CorruptData,
    FundtrailError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    SourceUnavailable,
    StoreError,
    Unauthenticated,
)

log = logging.getLogger("fundtrail.api")

# (status, code) per library error class, most specific first
_MAPPING: tuple[tuple[type[FundtrailError], int, str], ...] = (
    (Unauthenticated, 401, "unauthenticated"),
    (PermissionDenied, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (InvalidInput, 422, "invalid_input"),
    (CorruptData, 422, "corrupt_data"),
    (SourceUnavailable, 503, "source_unavailable"),
    (StoreError, 503, "store_unavailable"),
)
_HTTP_CODES = {
    400: ("bad_request", None),
    401: ("unauthenticated", "send an API key: Authorization: Bearer ft_... or X-API-Key"),
    403: ("forbidden", None),
    404: ("not_found", "see /docs for the routes under /v1"),
    405: ("method_not_allowed", "see /docs for the methods of this route"),
    413: ("payload_too_large", "send a smaller body"),
    415: ("unsupported_media_type", None),
    429: ("rate_limited", "wait for Retry-After seconds"),
}


class ApiError(Exception):
    """An error answered as the one error shape (raised by routes, dependencies and middleware)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fix: str | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fix = fix
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.code, self.message, self.fix, self.field)


def error_body(
    status: int, code: str, message: str, fix: str | None = None, field: str | None = None
) -> dict[str, Any]:
    return {"error": {"status": status, "code": code, "message": message, "fix": fix, "field": field}}


def from_library(exc: FundtrailError, field: str | None = None) -> ApiError:
    """The API error of a library error: its class gives the status, its problem and fix the text."""
    status, code = next(((s, c) for cls, s, c in _MAPPING if isinstance(exc, cls)), (400, "bad_request"))
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return ApiError(status, code, exc.problem, exc.fix, field, headers)


@contextmanager
def blame(field: str) -> Iterator[None]:
    """Attribute an InvalidInput raised inside the block to one request parameter (``path.address``)."""
    try:
        yield
    except InvalidInput as exc:
        raise from_library(exc, field) from None


def field_name(loc: Sequence[Any]) -> str:
    """A pydantic error location as one string: ``("body", "items", 3)`` -> ``body.items[3]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _validation(exc: RequestValidationError) -> ApiError:
    errors = list(exc.errors())
    if not errors:
        return ApiError(422, "invalid_input", "the request does not validate", "see /docs")
    e = errors[0]
    kind = str(e.get("type", ""))
    loc = [p for p in e.get("loc", ()) if p != "__root__"]
    if kind == "json_invalid":
        ctx = e.get("ctx") or {}
        where = f" ({ctx.get('error')})" if ctx.get("error") else ""
        return ApiError(
            400, "malformed_json", f"the body is not valid JSON{where}", "send a JSON object", "body"
        )
    field = field_name(loc)
    # body parameters of one model sit under "body"; a missing or non-object body is "body" itself
    msg = str(e.get("msg", "invalid value"))
    if kind == "missing":
        message = f"{field} is required"
    elif kind == "extra_forbidden":
        message = f"{field} is not a parameter of this route"
    else:
        message = f"{field}: {msg}"
    more = f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return ApiError(422, "invalid_input", message + more, "see /docs for this route's parameters", field)


def _http(exc: StarletteHTTPException) -> ApiError:
    code, fix = _HTTP_CODES.get(exc.status_code, ("error", None))
    detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers or {})
    return ApiError(exc.status_code, code, detail.rstrip(".").lower(), fix, None, headers)


def respond(err: ApiError) -> Response:
    return json_response(err.body(), err.status, err.headers)


def install(app: FastAPI) -> None:
    """Answer every error with the one shape."""

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        return respond(exc)

    async def library_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FundtrailError)
        return respond(from_library(exc))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return respond(_validation(exc))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return respond(_http(exc))

    async def bug(request: Request, exc: Exception) -> Response:
        rid = request.scope.get("fundtrail.request_id", "-")
        log.error("request %s failed: %s", rid, type(exc).__name__, exc_info=exc)
        return respond(
            ApiError(
                500, "internal_error", f"internal error (request {rid})", "report it with the request id"
            )
        )

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(FundtrailError, library_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, bug)
