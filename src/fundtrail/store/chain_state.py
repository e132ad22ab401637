"""Where a chain stands in the store: its highest stored height and the block hashes stored per height.

The node-following ingest jobs (:mod:`fundtrail.ingest.follow`) ask these to resume and to find a reorg's
fork point. A height may hold more than one hash while a reorg is being written, hence sets.
"""

from __future__ import annotations

from typing import Any

import duckdb

from fundtrail.store.db import scalar


def stored_tip(con: duckdb.DuckDBPyConnection, chain: str) -> int | None:
    """The highest stored height of ``chain`` (None: nothing stored)."""
    tip = scalar(con, "SELECT max(height) FROM blocks WHERE chain = ?", [chain])
    return None if tip is None else int(tip)


def stored_hashes(con: duckdb.DuckDBPyConnection, chain: str, lo: int, hi: int) -> dict[int, set[bytes]]:
    """The stored block hashes of ``chain`` at each stored height in ``lo..hi``."""
    rows = con.execute(
        "SELECT height, hash FROM blocks WHERE chain = ? AND height BETWEEN ? AND ?", [chain, lo, hi]
    ).fetchall()
    return _by_height(rows)


def top_stored_hashes(
    con: duckdb.DuckDBPyConnection, chain: str, at_most: int, heights: int
) -> dict[int, set[bytes]]:
    """The stored hashes at the ``heights`` highest stored heights of ``chain`` that are <= ``at_most``."""
    rows = con.execute(
        """SELECT height, hash FROM blocks WHERE chain = ? AND height <= ?
           AND height IN (SELECT DISTINCT height FROM blocks WHERE chain = ? AND height <= ?
                          ORDER BY height DESC LIMIT ?)""",
        [chain, at_most, chain, at_most, heights],
    ).fetchall()
    return _by_height(rows)


def _by_height(rows: list[Any]) -> dict[int, set[bytes]]:
    out: dict[int, set[bytes]] = {}
    for height, h in rows:
        out.setdefault(int(height), set()).add(bytes(h))
    return out
