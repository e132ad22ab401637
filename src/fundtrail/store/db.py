"""Opening the store: one DuckDB file, migrated forward on open, one writer at a time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from fundtrail.errors import NotFound, StoreError
from fundtrail.store.schema import LATEST, MIGRATIONS


def connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open (and for writers create and migrate) the store at ``path``."""
    if read_only and not path.exists():
        raise NotFound(f"no store at {path}", "ingest some blocks first, or pass --db / FUNDTRAIL_DB")
    try:
        con = duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreError(
                f"the store {path} is in use by another process",
                "wait for it (an ingest?) to finish, or use another --db",
            ) from None
        raise StoreError(f"cannot open the store {path}: {exc}", "check the path and permissions") from None
    except duckdb.Error as exc:
        raise StoreError(
            f"{path} is not a DuckDB store ({exc})", "pass --db with a fundtrail store"
        ) from None
    version = _version(con)
    if version > LATEST:
        con.close()
        raise StoreError(
            f"the store {path} has schema version {version}, newer than this fundtrail ({LATEST})",
            "upgrade fundtrail",
        )
    if version < LATEST:
        if read_only:
            con.close()
            if version == 0:
                raise NotFound(f"{path} holds no fundtrail data", "ingest some blocks first")
            con = duckdb.connect(str(path))
            _migrate(con, version)
            con.close()
            return connect(path, read_only=True)
        _migrate(con, version)
    return con


def first(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> tuple[Any, ...] | None:
    """The first row of a query, reading the result to its end (DuckDB wants results finished)."""
    rows = con.execute(sql, params if params is not None else []).fetchall()
    return rows[0] if rows else None


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> Any:
    row = first(con, sql, params)
    return row[0] if row else None


def _version(con: duckdb.DuckDBPyConnection) -> int:
    exists = scalar(
        con, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'fundtrail_schema'"
    )
    if not exists:
        return 0
    return int(scalar(con, "SELECT coalesce(max(version), 0) FROM fundtrail_schema"))


def _migrate(con: duckdb.DuckDBPyConnection, current: int) -> None:
    with transaction(con):
        con.execute(
            "CREATE TABLE IF NOT EXISTS fundtrail_schema "
            "(version INTEGER NOT NULL, description VARCHAR NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        for version, description, statements in MIGRATIONS:
            if version <= current:
                continue
            for sql in statements:
                con.execute(sql)
            con.execute("INSERT INTO fundtrail_schema VALUES (?, ?, now())", [version, description])


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """All or nothing: commit on success, roll back on any exception (Ctrl-C included)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


@contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, table: Any) -> Iterator[str]:
    """Expose an Arrow table to SQL as ``name`` for the duration of the block. An error inside the block
    is never hidden by the unregistering (DuckDB refuses it in an aborted transaction)."""
    con.register(name, table)
    ok = False
    try:
        yield name
        ok = True
    finally:
        try:
            con.unregister(name)
        except duckdb.Error:
            if ok:
                raise


def arrow(con: duckdb.DuckDBPyConnection, sql: str, params: Any = None) -> pa.Table:
    """A query's whole result as an Arrow table."""
    return con.sql(sql, params=params).to_arrow_table()
