"""Global CLI options, set by the top-level callback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb

from fundtrail.settings import db_path
from fundtrail.store.db import connect


@dataclass
class State:
    db: Path | None = None
    debug: bool = False


state = State()


@contextmanager
def store(read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(db_path(state.db), read_only=read_only)
    try:
        yield con
    finally:
        con.close()
