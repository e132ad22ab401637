"""Dense integer ids, assigned by the single writer in order of first appearance.

Ids are numbered across all chains, and a tx_id is unique across both transaction tables (Bitcoin's
``transactions`` and the account chains' ``account_txs``), so one integer names one transaction, one
block or one address in the whole store: what the graph and analytics layers run on.
"""

from __future__ import annotations

import duckdb

from fundtrail.store.db import first


def next_ids(con: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    """The next block_id, tx_id and address_id."""
    row = first(
        con,
        """SELECT (SELECT coalesce(max(block_id) + 1, 0) FROM blocks),
                  greatest((SELECT coalesce(max(tx_id) + 1, 0) FROM transactions),
                           (SELECT coalesce(max(tx_id) + 1, 0) FROM account_txs)),
                  (SELECT coalesce(max(address_id) + 1, 0) FROM addresses)""",
    )
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])
