"""JSON out: the library's answers (dicts of str, int, float, bool, None, lists) serialised once with the
standard library, without FastAPI's per-value encoder walk (which costs more than a screen). Amounts are
Python ints and leave as JSON integers, exact at any size."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.responses import Response

from fundtrail.platform.common import canonical_json

MEDIA_TYPE = "application/json"


def dumps(data: Any) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


class JSONBytes(Response):
    """A JSON response whose body is serialised here (or given already serialised)."""

    media_type = MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return dumps(content)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONBytes(data, status_code=status, headers=headers)


def canonical(data: Any) -> tuple[bytes, str]:
    """``data`` as canonical JSON bytes (:func:`fundtrail.platform.common.canonical_json`: sorted keys, no
    spaces) and their SHA-256: the body sent is the one :func:`fundtrail.platform.audit.digest` hashes, so
    an audit entry's ``result_digest`` is the SHA-256 of the answer's bytes, serialised once. A value
    canonical JSON refuses (a NaN share) falls back to plain JSON; the digest is of the bytes sent."""
    try:
        body = canonical_json(data).encode()
    except ValueError:
        body = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return body, hashlib.sha256(body).hexdigest()
