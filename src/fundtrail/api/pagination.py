"""Pagination: ``?limit=N&cursor=C`` in, ``{"items", "next", "truncated", "total"}`` out.

``next`` is the cursor of the following page (null on the last), ``truncated`` says whether items beyond
this page exist (so a client never mistakes a page for the whole list), ``total`` is the number of items
matching (null where counting would cost as much as listing). A cursor is opaque to clients: today the
base64url of ``o<offset>``; a malformed one is a 422 naming ``query.cursor``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fundtrail.api.errors import ApiError


@dataclass(frozen=True)
class PageRequest:
    offset: int
    limit: int


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if cursor is None or cursor == "":
        return 0
    bad = ApiError(
        422,
        "invalid_input",
        "query.cursor is not a cursor of this list",
        "pass `next` of a page",
        "query.cursor",
    )
    if len(cursor) > 32:
        raise bad
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad from None
    if not text.startswith("o") or not text[1:].isdigit() or len(text) > 13:
        raise bad
    return int(text[1:])


def page_request(limit: int | None, cursor: str | None, default: int, maximum: int) -> PageRequest:
    n = default if limit is None else limit
    if n < 1 or n > maximum:
        raise ApiError(
            422, "invalid_input", f"query.limit {n} is out of range", f"give 1..{maximum}", "query.limit"
        )
    return PageRequest(decode_cursor(cursor), n)


def page(
    items: Sequence[Any], req: PageRequest, total: int | None, more: bool | None = None
) -> dict[str, Any]:
    """The page of ``items`` (already the slice at ``req.offset``, at most ``req.limit`` of them).

    ``more`` says whether items follow; by default it is derived from ``total``."""
    if more is None:
        more = total is not None and req.offset + len(items) < total
    return {
        "items": list(items),
        "next": encode_cursor(req.offset + len(items)) if more else None,
        "truncated": bool(more),
        "total": total,
    }
