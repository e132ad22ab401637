"""Writing decoded Bitcoin blocks into the store: idempotent, atomic, with input resolution.

A call to :func:`write_blocks` is one transaction: every block in it is stored whole, or (on any error,
Ctrl-C included) nothing is. Blocks already in the store (same chain and hash) are skipped, so the same
input twice leaves the store unchanged. Inputs are resolved against every output in the store, this
batch included; those whose funding output is not stored yet are kept unresolved (address and value
null) in ``unresolved_inputs`` and resolved when a later batch brings the funding transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from fundtrail.chains.bitcoin.decoder import Decoded
from fundtrail.store.bitcoin_tables import build_tables
from fundtrail.store.db import scalar, transaction


@dataclass
class WriteResult:
    blocks: int = 0
    skipped: int = 0
    txs: int = 0
    inputs: int = 0
    outputs: int = 0
    unresolved: int = 0  # inputs of this batch left unresolved
    late_resolved: int = 0  # earlier inputs resolved by this batch
    new_addresses: int = 0


def _next_id(con: duckdb.DuckDBPyConnection, table: str, column: str) -> int:
    return int(scalar(con, f"SELECT coalesce(max({column}) + 1, 0) FROM {table}"))


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> int:
    """Run an INSERT/DELETE and return how many rows it touched."""
    return int(scalar(con, sql, params) or 0)


def write_blocks(con: duckdb.DuckDBPyConnection, d: Decoded, source: str) -> WriteResult:
    chain = d.network.chain
    result = WriteResult()
    with transaction(con):
        hashes = pa.table({"hash": pa.array([b.header.hash for b in d.blocks], pa.binary(32))})
        con.register("batch_hashes", hashes)
        stored = {
            bytes(r[0])
            for r in con.execute(
                "SELECT b.hash FROM blocks b JOIN batch_hashes h ON b.hash = h.hash WHERE b.chain = ?",
                [chain],
            ).fetchall()
        }
        con.unregister("batch_hashes")
        seen: set[bytes] = set()
        keep = []
        for k, b in enumerate(d.blocks):
            if b.header.hash in stored or b.header.hash in seen:
                result.skipped += 1
            else:
                keep.append(k)
                seen.add(b.header.hash)
        if not keep:
            return result
        t = build_tables(
            d,
            keep,
            _next_id(con, "blocks", "block_id"),
            _next_id(con, "transactions", "tx_id"),
            chain,
            source,
        )
        for name, table in (
            ("new_blocks", t.blocks),
            ("new_txs", t.txs),
            ("new_outputs", t.outputs),
            ("new_inputs", t.inputs),
        ):
            con.register(name, table)
        try:
            result.new_addresses = _insert_addresses(con, chain)
            _insert_outputs(con, chain)
            result.unresolved = _insert_inputs(con, chain)
            _insert_transactions(con, chain)
            result.late_resolved = _resolve_late(con, chain)
            con.execute("INSERT INTO blocks SELECT *, now() AS ingested_at FROM new_blocks")
            link_heights(con, chain)
        finally:
            for name in ("new_blocks", "new_txs", "new_outputs", "new_inputs"):
                con.unregister(name)
        result.blocks = t.blocks.num_rows
        result.txs = t.txs.num_rows
        result.inputs = t.inputs.num_rows
        result.outputs = t.outputs.num_rows
    return result


def _insert_addresses(con: duckdb.DuckDBPyConnection, chain: str) -> int:
    """New address keys get the next dense ids, numbered in order of first appearance."""
    base = _next_id(con, "addresses", "address_id")
    return _count(
        con,
        """INSERT INTO addresses
           SELECT ? AS chain, ? + row_number() OVER (ORDER BY first_pos) - 1 AS address_id, k.key
           FROM (SELECT key, min(pos) AS first_pos FROM new_outputs WHERE key IS NOT NULL GROUP BY key) k
           WHERE NOT EXISTS (SELECT 1 FROM addresses a WHERE a.chain = ? AND a.key = k.key)""",
        [chain, base, chain],
    )


def _insert_outputs(con: duckdb.DuckDBPyConnection, chain: str) -> None:
    con.execute(
        """INSERT INTO tx_outputs
           SELECT ?, o.tx_id, o.n, o.value, o.script_type, a.address_id, o.script
           FROM new_outputs o
           LEFT JOIN (SELECT address_id, key FROM addresses
                      WHERE chain = ? AND key IN (SELECT key FROM new_outputs)) a ON a.key = o.key""",
        [chain, chain],
    )


def _insert_inputs(con: duckdb.DuckDBPyConnection, chain: str) -> int:
    """Insert this batch's inputs, resolved against all stored outputs (this batch's included).

    A txid that occurs twice (the BIP30 duplicate coinbases) resolves to its latest occurrence, the one
    whose outputs Bitcoin Core kept."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE batch_resolution AS
           WITH prevtx AS (
               SELECT txid, max(tx_id) AS tx_id FROM (
                   SELECT txid, tx_id FROM new_txs
                   UNION ALL
                   SELECT txid, tx_id FROM transactions
                   WHERE chain = ? AND txid IN (SELECT prev_txid FROM new_inputs)
               ) GROUP BY txid)
           SELECT i.tx_id, i.n, p.tx_id AS prev_tx_id, o.address_id, o.value
           FROM new_inputs i
           JOIN prevtx p ON p.txid = i.prev_txid
           JOIN tx_outputs o ON o.chain = ? AND o.tx_id = p.tx_id AND o.n = i.prev_vout
           WHERE NOT i.is_coinbase""",
        [chain, chain],
    )
    con.execute(
        """INSERT INTO tx_inputs
           SELECT ?, i.tx_id, i.n, i.prev_txid, i.prev_vout, i.sequence, i.witness_items,
                  r.prev_tx_id, r.address_id, r.value,
                  CASE WHEN i.is_coinbase THEN NULL ELSE r.tx_id IS NOT NULL END
           FROM new_inputs i LEFT JOIN batch_resolution r ON r.tx_id = i.tx_id AND r.n = i.n""",
        [chain],
    )
    return _count(
        con,
        """INSERT INTO unresolved_inputs
           SELECT ?, i.tx_id, i.n, i.prev_txid, i.prev_vout FROM new_inputs i
           WHERE NOT i.is_coinbase
             AND NOT EXISTS (SELECT 1 FROM batch_resolution r WHERE r.tx_id = i.tx_id AND r.n = i.n)""",
        [chain],
    )


def _insert_transactions(con: duckdb.DuckDBPyConnection, chain: str) -> None:
    """Transactions with input value and fee: known only when every input is resolved."""
    con.execute(
        """INSERT INTO transactions
           SELECT ?, t.tx_id, t.block_id, t.position, t.txid, t.wtxid, t.version, t.locktime, t.size,
                  t.weight, t.is_coinbase, t.input_count, t.output_count,
                  CASE WHEN NOT t.is_coinbase AND coalesce(r.resolved, 0) = t.input_count
                       THEN r.input_value END,
                  t.output_value,
                  CASE WHEN NOT t.is_coinbase AND coalesce(r.resolved, 0) = t.input_count
                       THEN r.input_value - t.output_value END,
                  t.coinbase_script
           FROM new_txs t
           LEFT JOIN (SELECT tx_id, count(*) AS resolved, sum(value)::BIGINT AS input_value
                      FROM batch_resolution GROUP BY tx_id) r ON r.tx_id = t.tx_id""",
        [chain],
    )


def _resolve_late(con: duckdb.DuckDBPyConnection, chain: str) -> int:
    """Resolve inputs stored earlier whose funding transaction arrived in this batch."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE late_resolution AS
           SELECT u.tx_id, u.n, t.tx_id AS prev_tx_id, o.address_id, o.value
           FROM unresolved_inputs u
           JOIN (SELECT txid, max(tx_id) AS tx_id FROM new_txs GROUP BY txid) t ON t.txid = u.prev_txid
           JOIN tx_outputs o ON o.chain = ? AND o.tx_id = t.tx_id AND o.n = u.prev_vout
           WHERE u.chain = ? AND u.tx_id < (SELECT min(tx_id) FROM new_txs)""",
        [chain, chain],
    )
    n = int(scalar(con, "SELECT count(*) FROM late_resolution"))
    if n:
        con.execute(
            """UPDATE tx_inputs SET prev_tx_id = l.prev_tx_id, address_id = l.address_id, value = l.value,
                      resolved = TRUE
               FROM late_resolution l
               WHERE tx_inputs.chain = ? AND tx_inputs.tx_id = l.tx_id AND tx_inputs.n = l.n""",
            [chain],
        )
        con.execute(
            """DELETE FROM unresolved_inputs u WHERE u.chain = ? AND EXISTS
               (SELECT 1 FROM late_resolution l WHERE l.tx_id = u.tx_id AND l.n = u.n)""",
            [chain],
        )
        refresh_fees(con, chain, "SELECT DISTINCT tx_id FROM late_resolution")
    return n


def refresh_fees(con: duckdb.DuckDBPyConnection, chain: str, tx_ids_sql: str) -> None:
    """Recompute input value and fee of the given transactions from their inputs."""
    con.execute(
        f"""UPDATE transactions SET
                input_value = CASE WHEN a.all_resolved THEN a.input_value END,
                fee = CASE WHEN a.all_resolved THEN a.input_value - transactions.output_value END
            FROM (SELECT tx_id, bool_and(coalesce(resolved, FALSE)) AS all_resolved,
                         sum(value)::BIGINT AS input_value
                  FROM tx_inputs WHERE chain = ? AND tx_id IN ({tx_ids_sql}) GROUP BY tx_id) a
            WHERE transactions.chain = ? AND transactions.tx_id = a.tx_id AND NOT transactions.is_coinbase""",
        [chain, chain],
    )


def link_heights(con: duckdb.DuckDBPyConnection, chain: str) -> int:
    """Give blocks without a height the height of their parent + 1, following prev-hash links."""
    rows = con.execute(
        """SELECT b.block_id, b.hash, b.prev_hash, p.height
           FROM blocks b LEFT JOIN blocks p ON p.chain = b.chain AND p.hash = b.prev_hash
           WHERE b.chain = ? AND b.height IS NULL""",
        [chain],
    ).fetchall()
    if not rows:
        return 0
    by_parent: dict[bytes, list[tuple[int, bytes]]] = {}
    known: dict[bytes, int] = {}
    for block_id, h, prev, parent_height in rows:
        by_parent.setdefault(bytes(prev), []).append((block_id, bytes(h)))
        if parent_height is not None:
            known[bytes(prev)] = int(parent_height)
    updates: list[tuple[int, int]] = []
    stack = list(known.items())
    while stack:
        parent, height = stack.pop()
        for block_id, h in by_parent.get(parent, []):
            updates.append((block_id, height + 1))
            stack.append((h, height + 1))
    if updates:
        table = pa.table({"block_id": [u[0] for u in updates], "height": [u[1] for u in updates]})
        con.register("linked_heights", table)
        con.execute(
            """UPDATE blocks SET height = l.height, height_source = 'linked' FROM linked_heights l
               WHERE blocks.chain = ? AND blocks.block_id = l.block_id""",
            [chain],
        )
        con.unregister("linked_heights")
    return len(updates)


def rollback_above(con: duckdb.DuckDBPyConnection, chain: str, height: int) -> int:
    """Remove every block of ``chain`` above ``height`` (a reorg), with its transactions, and
    un-resolve inputs elsewhere that spent their outputs. Runs in the caller's transaction."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE gone_txs AS
           SELECT t.tx_id FROM transactions t JOIN blocks b ON b.block_id = t.block_id
           WHERE b.chain = ? AND b.height > ?""",
        [chain, height],
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE orphaned_inputs AS
           SELECT i.tx_id, i.n, i.prev_txid, i.prev_vout FROM tx_inputs i
           WHERE i.chain = ? AND i.prev_tx_id IN (SELECT tx_id FROM gone_txs)
             AND i.tx_id NOT IN (SELECT tx_id FROM gone_txs)""",
        [chain],
    )
    con.execute(
        """UPDATE tx_inputs SET prev_tx_id = NULL, address_id = NULL, value = NULL, resolved = FALSE
           WHERE chain = ? AND (tx_id, n) IN (SELECT (tx_id, n) FROM orphaned_inputs)""",
        [chain],
    )
    con.execute("INSERT INTO unresolved_inputs SELECT ?, * FROM orphaned_inputs", [chain])
    refresh_fees(con, chain, "SELECT DISTINCT tx_id FROM orphaned_inputs")
    for table in ("tx_inputs", "tx_outputs", "unresolved_inputs", "transactions"):
        con.execute(f"DELETE FROM {table} WHERE chain = ? AND tx_id IN (SELECT tx_id FROM gone_txs)", [chain])
    return _count(con, "DELETE FROM blocks WHERE chain = ? AND height > ?", [chain, height])
