"""Writing decoded Bitcoin blocks into the store: idempotent, atomic, with input resolution.

A call to :func:`write_blocks` is one transaction: every block in it is stored whole, or (on any error,
Ctrl-C included) nothing is. Blocks already in the store (same chain and hash) are skipped, so the same
input twice leaves the store unchanged. Inputs are resolved against every output in the store, this
batch included; those whose funding output is not stored yet are kept unresolved (address and value
null) in ``unresolved_inputs`` and resolved when a later batch brings the funding transaction.

Loose transactions (:mod:`fundtrail.store.bitcoin_loose`: single raw transactions, outside any block) are
stored by the same code with ``block_id`` and ``position`` null. When a block later brings a stored loose
txid, the loose
row keeps its ``tx_id`` and gets the block's ``block_id`` and ``position`` (and the block's wtxid, size,
weight and witness counts, which a malleated witness could change); its inputs and outputs are not
inserted again. Every row that refers to the loose tx (inputs resolved against its outputs, cluster
evidence) so stays valid, and ids stay dense and stable.

Views registered for a write are dropped once its transaction is over (after COMMIT or ROLLBACK): inside a
transaction that a failed statement aborted, DuckDB refuses even ``unregister``, and that error would hide
the one that aborted it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fundtrail.chains.bitcoin.decoder import Decoded
from fundtrail.store.bitcoin_tables import BitcoinTables, build_tables
from fundtrail.store.db import scalar, transaction
from fundtrail.store.ids import next_ids

Bools = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]


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
    loose_confirmed: int = 0  # stored loose transactions this batch's blocks hold (now confirmed)


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[object]) -> int:
    """Run an INSERT/DELETE and return how many rows it touched."""
    return int(scalar(con, sql, params) or 0)


def _column(result: dict[str, Any], name: str) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    """A fetchnumpy column as (values, null mask)."""
    col = result[name]
    return np.ma.getdata(col), np.ma.getmaskarray(col)


def _nullable(values: npt.NDArray[Any], null: npt.NDArray[np.bool_], type_: pa.DataType) -> pa.Array:
    return pa.array(values, type_, mask=null)


# every view a write registers; dropped after its transaction (see the module's docstring)
_VIEWS = ("new_blocks", "new_txs", "new_outputs", "new_inputs", "new_addresses", "batch_hashes",
          "batch_keys", "batch_lookup", "late_resolution", "linked_heights", "confirmed_txs",
          "confirmed_inputs", "batch_txids")  # fmt: skip


@contextmanager
def write_transaction(con: duckdb.DuckDBPyConnection) -> Iterator[Threads]:
    """One write transaction (all or nothing), yielding the thread setting its INSERTs use; the views it
    registered are dropped once it is over, and the thread setting restored."""
    threads = Threads(con)
    try:
        try:
            with transaction(con):
                yield threads
        finally:
            for name in _VIEWS:
                con.unregister(name)
    finally:
        threads.restore()  # after a rollback, if the INSERTs failed


def write_blocks(con: duckdb.DuckDBPyConnection, d: Decoded, source: str) -> WriteResult:
    chain = d.network.chain
    result = WriteResult()
    with write_transaction(con) as threads:
        _write(con, d, source, chain, result, threads)
    return result


def _write(con: duckdb.DuckDBPyConnection, d: Decoded, source: str, chain: str, result: WriteResult,
           threads: Threads) -> None:  # fmt: skip
    block_id0, tx_id0, address_id0 = next_ids(con)
    # block_id0 == 0: the store holds no block at all, so nothing to skip or link to
    stored = _StoredBlocks(con, chain, d) if block_id0 else _StoredBlocks.empty()
    seen: set[bytes] = set()
    keep = []
    for k, b in enumerate(d.blocks):
        if b.header.hash in stored.hashes or b.header.hash in seen:
            result.skipped += 1
        else:
            keep.append(k)
            seen.add(b.header.hash)
    if not keep:
        return
    heights, height_sources, stored_linked = _link_heights(d, keep, stored)
    t = build_tables(d, keep, block_id0, tx_id0, chain, source, heights, height_sources)
    # stored loose transactions that these blocks hold keep their tx_id (tx_id0 == 0: none stored)
    confirmed = _loose_in_batch(con, chain, t, tx_id0) if tx_id0 else None
    if confirmed is not None:
        t = confirmed.tables
    store_tables(con, chain, t, tx_id0, address_id0, result, threads, confirmed)
    if stored_linked:
        _update_linked(con, chain, stored_linked)
    result.blocks = t.blocks.num_rows


def store_tables(con: duckdb.DuckDBPyConnection, chain: str, t: BitcoinTables, tx_id0: int,
                 address_id0: int, result: WriteResult, threads: Threads,
                 confirmed: _Confirmed | None = None) -> None:  # fmt: skip
    """Resolve and append the transactions of ``t`` (of blocks, or loose: then ``t.blocks`` is empty);
    ``confirmed`` marks those stored loose already, which are not appended again but updated."""
    # Address ids and input resolution are computed here, over the batch's columns; SQL only looks
    # up what the store already holds and appends finished rows.
    address_id, result.new_addresses, new_addresses = _address_ids(con, chain, t.outputs, address_id0)
    batch = _BatchOutputs(t, address_id)
    res = _resolve(con, chain, batch, t.inputs, tx_id0)
    txs = _with_fees(t.txs, res)
    new_outputs = pa.table(
        {"tx_id": t.outputs["tx_id"], "n": t.outputs["n"], "value": t.outputs["value"],
         "script_type": t.outputs["script_type"], "address_id": address_id,
         "script": t.outputs["script"]}
    )  # fmt: skip
    new_inputs = t.inputs.append_column("prev_tx_id", res.prev_tx_id)
    new_inputs = new_inputs.append_column("address_id", res.address_id)
    new_inputs = new_inputs.append_column("value", res.value)
    new_inputs = new_inputs.append_column("resolved", res.resolved)
    n_unresolved = res.n_unresolved
    if confirmed is not None:
        txs, new_outputs, new_inputs = confirmed.register_and_drop(con, t, txs, new_outputs, new_inputs)
        unresolved = pc.and_kleene(pc.invert(new_inputs["is_coinbase"]), pc.invert(new_inputs["resolved"]))
        n_unresolved = int(pc.sum(unresolved).as_py() or 0)
        result.loose_confirmed = confirmed.count
    tables = {"new_blocks": t.blocks, "new_txs": txs, "new_outputs": new_outputs,
              "new_inputs": new_inputs}  # fmt: skip
    if new_addresses is not None:
        tables["new_addresses"] = new_addresses
    for name, table in tables.items():
        con.register(name, table)
    result.late_resolved = _resolve_late(con, chain, batch, tx_id0)
    rows = max(t.outputs.num_rows, t.inputs.num_rows)
    threads.one(rows < _ROW_GROUP_ROWS)
    _insert(con, chain, n_unresolved, new_addresses is not None, t.blocks.num_rows > 0)
    threads.restore()
    if confirmed is not None:
        _update_confirmed(con, chain)
    result.unresolved = n_unresolved
    result.txs = t.txs.num_rows
    result.inputs = t.inputs.num_rows
    result.outputs = t.outputs.num_rows


_ROW_GROUP_ROWS = 122_880  # DuckDB's row group: smaller appends stay in memory and go to the WAL


class Threads:
    """Run the INSERTs of a small batch on one thread, and restore the setting after.

    With more than one thread, DuckDB plans an INSERT from an Arrow scan as a Batch Insert, which
    collects each scan batch apart and merges them. For appends below a row group (kept in memory and
    written to the WAL at COMMIT) that costs about 40 % more than the plain Insert it plans on one
    thread. Large batches keep the threads: there DuckDB compresses and writes full row groups while
    inserting, in parallel. ``restore`` is called after the INSERTs and again once the transaction is
    over: a failed statement aborts the transaction, and DuckDB refuses even a SET until the rollback."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.saved: int | None = None

    def one(self, on: bool) -> None:
        if not on:
            return
        threads = int(scalar(self.con, "SELECT current_setting('threads')"))
        if threads != 1:
            self.con.execute("SET threads = 1")
            self.saved = threads

    def restore(self) -> None:
        if self.saved is not None:
            self.con.execute(f"SET threads = {self.saved}")
            self.saved = None


def _insert(con: duckdb.DuckDBPyConnection, chain: str, n_unresolved: int, addresses: bool,
            blocks: bool) -> None:  # fmt: skip
    """Append the batch's registered tables (new_*) to the store."""
    if addresses:
        con.execute("INSERT INTO addresses SELECT ?, address_id, key FROM new_addresses", [chain])
    con.execute(
        """INSERT INTO tx_outputs
           SELECT ?, tx_id, n, value, script_type, address_id, script FROM new_outputs""",
        [chain],
    )
    con.execute(
        """INSERT INTO tx_inputs
           SELECT ?, tx_id, n, prev_txid, prev_vout, sequence, witness_items, prev_tx_id,
                  address_id, value, resolved
           FROM new_inputs""",
        [chain],
    )
    if n_unresolved:
        con.execute(
            """INSERT INTO unresolved_inputs
               SELECT ?, tx_id, n, prev_txid, prev_vout FROM new_inputs
               WHERE NOT is_coinbase AND NOT resolved""",
            [chain],
        )
    con.execute(
        """INSERT INTO transactions
           SELECT ?, tx_id, block_id, position, txid, wtxid, version, locktime, size, weight,
                  is_coinbase, input_count, output_count, input_value, output_value, fee,
                  coinbase_script
           FROM new_txs""",
        [chain],
    )
    if blocks:  # BY NAME: columns the schema has beyond these (account-chain fields) stay NULL
        con.execute("INSERT INTO blocks BY NAME SELECT *, now() AS ingested_at FROM new_blocks")


class _StoredBlocks:
    """What the store holds about this batch's blocks: which are stored already, the heights of their
    parents, and every stored block without a height (with its parent's height), for linking."""

    def __init__(self, con: duckdb.DuckDBPyConnection | None, chain: str, d: Decoded | None) -> None:
        self.hashes: set[bytes] = set()  # batch blocks already stored
        self.height: dict[bytes, int] = {}  # stored block hash -> height, where known
        self.unknown: list[tuple[int, bytes, bytes]] = []  # stored, no height: (block_id, hash, prev)
        if con is None or d is None:
            return
        wanted = {b.header.hash for b in d.blocks}
        asked = pa.table({"hash": pa.array(list(wanted | {b.header.prev_hash for b in d.blocks}),
                                           pa.binary(32))})  # fmt: skip
        con.register("batch_hashes", asked)
        rows = con.execute(
            """SELECT b.block_id, b.hash, b.prev_hash, b.height, p.height
               FROM blocks b LEFT JOIN blocks p ON p.chain = b.chain AND p.hash = b.prev_hash
               WHERE b.chain = ? AND (b.height IS NULL OR b.hash IN (SELECT hash FROM batch_hashes))""",
            [chain],
        ).fetchall()
        for block_id, h, prev, height, parent_height in rows:
            h = bytes(h)
            if h in wanted:
                self.hashes.add(h)
            if height is not None:
                self.height[h] = int(height)
            else:
                self.unknown.append((int(block_id), h, bytes(prev)))
                if parent_height is not None:
                    self.height[bytes(prev)] = int(parent_height)

    @classmethod
    def empty(cls) -> _StoredBlocks:
        return cls(None, "", None)


def _link_heights(d: Decoded, keep: list[int], stored: _StoredBlocks
                  ) -> tuple[list[int | None], list[str | None], list[tuple[int, int]]]:  # fmt: skip
    """Heights of the kept blocks, linked where the decoder gave none: a block without a height gets
    its parent's height + 1, following prev-hash links through this batch and the store (what
    :func:`link_heights` does after the insert, done before it). Returns the kept blocks' heights and
    height sources, and the (block_id, height) of stored blocks that this batch links."""
    heights: list[int | None] = [d.blocks[k].height for k in keep]
    sources: list[str | None] = [d.blocks[k].height_source for k in keep]
    known = dict(stored.height)
    children: dict[bytes, list[tuple[int, bytes]]] = {}  # parent hash -> (index, hash) without height
    for i, k in enumerate(keep):
        header = d.blocks[k].header
        h = heights[i]
        if h is None:
            children.setdefault(header.prev_hash, []).append((i, header.hash))
        else:
            known[header.hash] = h
    if not children and not stored.unknown:
        return heights, sources, []
    n = len(keep)
    for j, (_, h_, prev) in enumerate(stored.unknown):
        children.setdefault(prev, []).append((n + j, h_))
    stored_linked: list[tuple[int, int]] = []
    stack = [(p, known[p]) for p in children if p in known]
    while stack:
        parent, height = stack.pop()
        for i, h_ in children.get(parent, []):
            if i < n:
                heights[i] = height + 1
                sources[i] = "linked"
            else:
                stored_linked.append((stored.unknown[i - n][0], height + 1))
            stack.append((h_, height + 1))
    return heights, sources, stored_linked


def _update_linked(con: duckdb.DuckDBPyConnection, chain: str, linked: list[tuple[int, int]]) -> None:
    table = pa.table({"block_id": [u[0] for u in linked], "height": [u[1] for u in linked]})
    con.register("linked_heights", table)
    con.execute(
        """UPDATE blocks SET height = l.height, height_source = 'linked' FROM linked_heights l
           WHERE blocks.chain = ? AND blocks.block_id = l.block_id""",
        [chain],
    )


def _address_ids(con: duckdb.DuckDBPyConnection, chain: str, outputs: pa.Table,
                 base: int) -> tuple[pa.Array, int, pa.Table | None]:  # fmt: skip
    """Each output's address id (null where it has no address key). Keys the store does not hold yet
    get the next dense ids, numbered in order of first appearance. Returns (address ids, number of new
    addresses, the new addresses' rows to insert, or None)."""
    keys = outputs.column("key").combine_chunks()
    enc = pc.dictionary_encode(keys)  # dictionary: the distinct keys, in order of first appearance
    uniq = enc.dictionary
    ids = np.full(len(uniq), -1, np.int64)
    if len(uniq) and base > 0:  # base == 0: the store holds no address to look up
        con.register("batch_keys", pa.table({"i": np.arange(len(uniq), dtype=np.int64), "key": uniq}))
        found = con.execute(
            """SELECT k.i, a.address_id FROM batch_keys k
               JOIN addresses a ON a.key = k.key WHERE a.chain = ?""",
            [chain],
        ).fetchnumpy()
        ids[np.ma.getdata(found["i"]).astype(np.int64)] = np.ma.getdata(found["address_id"])
    new = ids < 0
    n_new = int(new.sum())
    rows_new = None
    if n_new:
        ids[new] = base + np.arange(n_new, dtype=np.int64)
        new_keys = uniq if n_new == len(uniq) else uniq.filter(pa.array(new))
        rows_new = pa.table({"address_id": ids[new], "key": new_keys})
    idx = enc.indices
    null = np.asarray(idx.is_null())
    rows = np.asarray(idx.fill_null(0)).astype(np.int64)
    address_id = _nullable(ids[rows] if ids.size else np.zeros(rows.size, np.int64), null, pa.int64())
    return address_id, n_new, rows_new


class _BatchOutputs:
    """This batch's transactions and outputs as arrays, to resolve inputs against without SQL."""

    def __init__(self, t: BitcoinTables, address_id: pa.Array) -> None:
        self.txid = t.txs.column("txid").combine_chunks()
        self.n_tx = len(self.txid)
        self.tx_id = np.asarray(t.txs.column("tx_id"))
        self.n_out = np.asarray(t.txs.column("output_count")).astype(np.int64)
        self.first_out = np.cumsum(self.n_out) - self.n_out
        self.value = np.asarray(t.outputs.column("value"))
        self.address_null = np.asarray(address_id.is_null())
        self.address_id = np.asarray(address_id.fill_null(0))
        # lookups find the first match in the value set: search the txids backwards, so that a txid
        # occurring twice (the BIP30 duplicate coinbases) resolves to its latest occurrence
        self._reversed = self.txid[::-1]

    def find(self, prev_txid: pa.Array, prev_vout: I64) -> tuple[Bools, Bools, I64, I64]:
        """For each (prev_txid, prev_vout): (txid in batch, output exists, batch tx row, output row)."""
        pos = pc.index_in(prev_txid, value_set=self._reversed)
        in_batch: Bools = np.asarray(pos.is_valid())
        row: I64 = self.n_tx - 1 - np.asarray(pos.fill_null(self.n_tx - 1)).astype(np.int64)
        if not self.n_tx:  # nothing to find (and no row to index)
            return in_batch, in_batch, row, row
        has_out: Bools = in_batch & (prev_vout < self.n_out[row])
        out_row: I64 = np.where(has_out, self.first_out[row] + prev_vout, 0)
        return in_batch, has_out, row, out_row


class _Resolution:
    def __init__(self, n: int) -> None:
        self.prev_tx_id_v = np.zeros(n, np.int64)
        self.address_id_v = np.zeros(n, np.int64)
        self.address_null = np.ones(n, np.bool_)
        self.value_v = np.zeros(n, np.int64)
        self.ok = np.zeros(n, np.bool_)
        self.prev_tx_id: pa.Array
        self.address_id: pa.Array
        self.value: pa.Array
        self.resolved: pa.Array
        self.n_unresolved = 0


def _resolve(con: duckdb.DuckDBPyConnection, chain: str, batch: _BatchOutputs, inputs: pa.Table,
             tx_id0: int) -> _Resolution:  # fmt: skip
    """Resolve this batch's inputs against all stored outputs (this batch's included): a txid found in
    the batch resolves there (its ids are above every stored one, so it is the latest occurrence);
    the others are looked up in the store."""
    is_cb = np.asarray(inputs.column("is_coinbase"))
    prev_txid = inputs.column("prev_txid").combine_chunks()
    prev_vout = np.asarray(inputs.column("prev_vout")).astype(np.int64)
    n = len(prev_txid)
    r = _Resolution(n)
    in_batch, has_out, row, out_row = batch.find(prev_txid, prev_vout)
    ok = has_out & ~is_cb
    r.ok[ok] = True
    r.prev_tx_id_v[ok] = batch.tx_id[row[ok]]
    r.value_v[ok] = batch.value[out_row[ok]]
    r.address_id_v[ok] = batch.address_id[out_row[ok]]
    r.address_null[ok] = batch.address_null[out_row[ok]]
    ask = np.flatnonzero(~in_batch & ~is_cb)
    if ask.size and tx_id0 > 0:  # tx_id0 == 0: the store holds no transaction to look up
        con.register(
            "batch_lookup",
            pa.table({"i": ask, "prev_txid": prev_txid.take(pa.array(ask)), "prev_vout": prev_vout[ask]}),
        )
        found = con.execute(
            """SELECT q.i, p.tx_id, o.address_id, o.value
               FROM batch_lookup q
               JOIN (SELECT txid, max(tx_id) AS tx_id FROM transactions
                     WHERE chain = ? AND txid IN (SELECT prev_txid FROM batch_lookup)
                     GROUP BY txid) p ON p.txid = q.prev_txid
               JOIN tx_outputs o ON o.chain = ? AND o.tx_id = p.tx_id AND o.n = q.prev_vout""",
            [chain, chain],
        ).fetchnumpy()
        i = np.ma.getdata(found["i"]).astype(np.int64)
        if i.size:
            r.ok[i] = True
            r.prev_tx_id_v[i] = np.ma.getdata(found["tx_id"])
            r.value_v[i] = np.ma.getdata(found["value"])
            addr, addr_null = _column(found, "address_id")
            r.address_id_v[i] = addr
            r.address_null[i] = addr_null
    miss = ~r.ok
    r.prev_tx_id = _nullable(r.prev_tx_id_v, miss, pa.int64())
    r.address_id = _nullable(r.address_id_v, miss | r.address_null, pa.int64())
    r.value = _nullable(r.value_v, miss, pa.int64())
    r.resolved = _nullable(r.ok, is_cb, pa.bool_())
    r.n_unresolved = int((miss & ~is_cb).sum())
    return r


def _with_fees(txs: pa.Table, r: _Resolution) -> pa.Table:
    """Transactions with input value and fee: known only when every input is resolved."""
    n_in = np.asarray(txs.column("input_count")).astype(np.int64)
    end = np.cumsum(n_in)
    start = end - n_in
    resolved = np.concatenate([[0], np.cumsum(r.ok)])
    values = np.concatenate([[0], np.cumsum(np.where(r.ok, r.value_v, 0))])
    input_value = values[end] - values[start]
    complete = ~np.asarray(txs.column("is_coinbase")) & ((resolved[end] - resolved[start]) == n_in)
    output_value = np.asarray(txs.column("output_value"))
    txs = txs.append_column("input_value", _nullable(input_value, ~complete, pa.int64()))
    return txs.append_column("fee", _nullable(input_value - output_value, ~complete, pa.int64()))


def _resolve_late(con: duckdb.DuckDBPyConnection, chain: str, batch: _BatchOutputs, tx_id0: int) -> int:
    """Resolve inputs stored earlier whose funding transaction arrived in this batch."""
    if tx_id0 == 0:
        return 0  # the store held no transaction before this batch, so no earlier input either
    found = con.execute(
        """SELECT u.tx_id, u.n, u.prev_txid, u.prev_vout FROM unresolved_inputs u
           WHERE u.chain = ? AND u.tx_id < ? AND u.prev_txid IN (SELECT txid FROM new_txs)""",
        [chain, tx_id0],
    ).fetchnumpy()
    if not len(found["tx_id"]):
        return 0
    prev_txid = pa.array([bytes(h) for h in found["prev_txid"]], pa.binary(32))
    prev_vout = np.ma.getdata(found["prev_vout"]).astype(np.int64)
    _, has_out, row, out_row = batch.find(prev_txid, prev_vout)
    if not has_out.any():
        return 0
    late = pa.table({
        "tx_id": np.ma.getdata(found["tx_id"])[has_out],
        "n": np.ma.getdata(found["n"])[has_out],
        "prev_tx_id": batch.tx_id[row[has_out]],
        "address_id": _nullable(batch.address_id[out_row[has_out]], batch.address_null[out_row[has_out]],
                                pa.int64()),
        "value": batch.value[out_row[has_out]],
    })  # fmt: skip
    con.register("late_resolution", late)
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
    return int(late.num_rows)


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


# --- loose transactions (stored by bitcoin_loose) that a block of the batch confirms -----------------


class _Confirmed:
    """The batch's transactions that are stored loose already (``mask``, per batch tx row), with the
    batch renumbered so that they carry their stored tx_id and the others dense ids from tx_id0."""

    def __init__(self, tables: BitcoinTables, mask: Bools) -> None:
        self.tables = tables
        self.mask = mask
        self.count = int(mask.sum())

    def register_and_drop(
        self,
        con: duckdb.DuckDBPyConnection,
        t: BitcoinTables,
        txs: pa.Table,
        outputs: pa.Table,
        inputs: pa.Table,
    ) -> tuple[pa.Table, pa.Table, pa.Table]:
        """Register what the block says of the confirmed transactions (``confirmed_txs``,
        ``confirmed_inputs``) and return the rows to append without them."""
        keep_tx = ~self.mask
        keep_out = np.repeat(keep_tx, np.asarray(t.txs["output_count"]).astype(np.int64))
        keep_in = np.repeat(keep_tx, np.asarray(t.txs["input_count"]).astype(np.int64))
        txs_cols = ["tx_id", "block_id", "position", "wtxid", "size", "weight"]
        con.register("confirmed_txs", t.txs.filter(pa.array(self.mask)).select(txs_cols))
        con.register(
            "confirmed_inputs", t.inputs.filter(pa.array(~keep_in)).select(["tx_id", "n", "witness_items"])
        )
        return (
            txs.filter(pa.array(keep_tx)),
            outputs.filter(pa.array(keep_out)),
            inputs.filter(pa.array(keep_in)),
        )


def _loose_in_batch(con: duckdb.DuckDBPyConnection, chain: str, t: BitcoinTables,
                    tx_id0: int) -> _Confirmed | None:  # fmt: skip
    """The batch's transactions stored loose already (the first occurrence of each txid in the
    batch), or None when there is none."""
    loose = con.sql(
        "SELECT txid, tx_id FROM transactions WHERE chain = $1 AND block_id IS NULL", params=[chain]
    ).to_arrow_table()
    if not loose.num_rows:
        return None
    txid = t.txs.column("txid").combine_chunks().cast(pa.binary())
    row = pc.index_in(loose.column("txid").combine_chunks().cast(pa.binary()), value_set=txid)
    hit = row.is_valid()
    if not pc.any(hit).as_py():
        return None
    rows = np.asarray(row.filter(hit)).astype(np.int64)
    mask = np.zeros(t.txs.num_rows, np.bool_)
    mask[rows] = True
    ids = np.empty(t.txs.num_rows, np.int64)
    ids[~mask] = tx_id0 + np.arange(t.txs.num_rows - rows.size, dtype=np.int64)
    ids[rows] = np.asarray(loose.column("tx_id").combine_chunks().filter(hit)).astype(np.int64)
    n_in = np.asarray(t.txs["input_count"]).astype(np.int64)
    n_out = np.asarray(t.txs["output_count"]).astype(np.int64)

    def renumbered(table: pa.Table, tx_ids: I64) -> pa.Table:
        return table.set_column(table.schema.get_field_index("tx_id"), "tx_id", pa.array(tx_ids))

    tables = BitcoinTables(
        t.blocks,
        renumbered(t.txs, ids),
        renumbered(t.outputs, np.repeat(ids, n_out)),
        renumbered(t.inputs, np.repeat(ids, n_in)),
    )
    return _Confirmed(tables, mask)


def _update_confirmed(con: duckdb.DuckDBPyConnection, chain: str) -> None:
    """Give confirmed loose transactions their block and position, and what a (malleated) witness
    may have changed: wtxid, size, weight, witness item counts."""
    con.execute(
        """UPDATE transactions SET block_id = c.block_id, position = c.position, wtxid = c.wtxid,
                  size = c.size, weight = c.weight
           FROM confirmed_txs c WHERE transactions.chain = ? AND transactions.tx_id = c.tx_id""",
        [chain],
    )
    con.execute(
        """UPDATE tx_inputs SET witness_items = c.witness_items FROM confirmed_inputs c
           WHERE tx_inputs.chain = ? AND tx_inputs.tx_id = c.tx_id AND tx_inputs.n = c.n
             AND tx_inputs.witness_items <> c.witness_items""",
        [chain],
    )
