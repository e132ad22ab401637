"""What the platform modules share: canonical JSON, times, dense ids, strict text checks, and a
transaction that joins the caller's when there is one."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import duckdb

from fundtrail.errors import InvalidInput
from fundtrail.store.db import scalar, transaction

JSON = dict[str, Any]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_DIGITS = re.compile(r"[0-9]{1,18}")  # ids; a name is never only digits
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def canonical_json(obj: Any) -> str:
    """The one text of a JSON value: keys sorted, no spaces, UTF-8 kept, NaN refused. Integers stay exact;
    anything that is not JSON (bytes, datetimes) is a TypeError (a bug of the caller)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(us: int | None) -> str | None:
    """Epoch microseconds (``epoch_us(col)`` in SQL) as ISO 8601 UTC, whole seconds; None stays None."""
    if us is None:
        return None
    return dt.datetime.fromtimestamp(us // 1_000_000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_of(t: dt.datetime) -> str:
    """A datetime as ISO 8601 UTC, whole seconds (as :func:`iso` shows stored times)."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> dt.datetime:
    """ISO 8601 UTC as :func:`iso` writes it (``2024-05-01T12:00:00Z``); ValueError otherwise."""
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def in_transaction(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``con`` is inside an explicit transaction: outside one every statement is its own
    transaction, so two reads of the transaction id differ (a failed BEGIN would abort the caller's)."""
    a = scalar(con, "SELECT txid_current()")
    b = scalar(con, "SELECT txid_current()")
    return bool(a == b)


@contextmanager
def atomic(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """All or nothing: a transaction of its own, or the caller's when ``con`` is already in one (then the
    caller commits or rolls back everything together)."""
    if in_transaction(con):
        yield
        return
    with transaction(con):
        yield


def next_id(con: duckdb.DuckDBPyConnection, table: str, column: str) -> int:
    """The next dense id of ``table.column`` (1 for an empty table). Call inside the writing transaction."""
    return int(scalar(con, f"SELECT coalesce(max({column}), 0) + 1 FROM {table}"))


def check_name(value: str, what: str) -> str:
    """A name of an organisation, user or trusted key: 1-64 letters, digits, ``. _ @ -``."""
    s = value.strip()
    if not _NAME.fullmatch(s) or s.isdigit():
        raise InvalidInput(
            f"{what} {value!r} is not a valid name",
            "use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit, not only "
            "digits (those are ids)",
        )
    return s


def check_text(value: str, what: str, max_len: int, allow_empty: bool = False) -> str:
    """Free text from a user (a title, a note): stripped, at most ``max_len`` characters, no control
    characters other than tab and newlines."""
    s = value.strip()
    if not s and not allow_empty:
        raise InvalidInput(f"empty {what}", f"give a {what}")
    if len(s) > max_len:
        raise InvalidInput(f"{what} is {len(s):,} characters long", f"keep it to {max_len:,} characters")
    if _CONTROL.search(s):
        raise InvalidInput(f"{what} holds control characters", "remove them")
    return s


def parse_id(value: int | str, what: str) -> int:
    """A positive integer id given as an int or as decimal text."""
    if isinstance(value, bool):
        raise InvalidInput(f"{what} {value!r} is not an id", f"give the {what} as a positive integer")
    if isinstance(value, int):
        n = value
    else:
        s = value.strip()
        if not _DIGITS.fullmatch(s):
            raise InvalidInput(f"{what} {value!r} is not an id", f"give the {what} as a positive integer")
        n = int(s)
    if n <= 0:
        raise InvalidInput(f"{what} {value!r} is not an id", f"give the {what} as a positive integer")
    return n
