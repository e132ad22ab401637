"""Finding a stored address from what a user typed, on any chain."""

from __future__ import annotations

import duckdb

from fundtrail.chains.registry import Chain
from fundtrail.errors import NotFound
from fundtrail.store.db import first


def address_id(con: duckdb.DuckDBPyConnection, c: Chain, text: str) -> int:
    """The id of a stored address (strict parsing: InvalidInput when malformed, NotFound when unseen)."""
    key = c.parse(text)
    row = first(con, "SELECT address_id FROM addresses WHERE chain = ? AND key = ?", [c.name, key])
    if row is None:
        raise NotFound(
            f"address {text.strip()} never appears in the stored {c.name} data",
            "ingest the blocks where it is used, or check the address",
        )
    return int(row[0])
