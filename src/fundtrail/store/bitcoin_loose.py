"""Writing loose Bitcoin transactions: single raw transactions (``fundtrail ingest bitcoin-tx``), stored
outside any block.

:func:`write_loose_txs` stores them the way :mod:`fundtrail.store.bitcoin_write` stores a block's
transactions (one transaction, all or nothing; inputs resolved against every stored output, the others
kept in ``unresolved_inputs``; earlier unresolved inputs spending their outputs resolved), with
``block_id`` and ``position`` null, and reports each given transaction with its status, fee and the
stored transactions that double-spend its inputs. A block that later brings a loose txid confirms it in
place (see :mod:`fundtrail.store.bitcoin_write`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import duckdb
import numpy as np
import pyarrow as pa

from fundtrail.chains.bitcoin.decoder import BlockHeader, BlockInfo, Decoded
from fundtrail.errors import CorruptData
from fundtrail.store.bitcoin_read import Conflict, double_spends
from fundtrail.store.bitcoin_tables import BitcoinTables, build_tables
from fundtrail.store.bitcoin_write import Threads, WriteResult, store_tables, write_transaction
from fundtrail.store.ids import next_ids


@dataclass
class LooseTx:
    """What happened to one raw transaction given to :func:`write_loose_txs`."""

    txid: str
    stored: bool  # stored by this call (False: it was in the store already)
    confirmed: bool  # in a stored block
    block_hash: str | None
    height: int | None
    inputs: int
    unresolved: int  # inputs whose funding output is not stored
    fee: int | None  # None unless every input is resolved
    conflicts: list[Conflict] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.stored:
            return "stored (unconfirmed)"
        if self.confirmed:
            at = f"height {self.height}" if self.height is not None else f"block {self.block_hash}"
            return f"already stored, confirmed at {at}"
        return "already stored (unconfirmed)"


@dataclass
class LooseWriteResult(WriteResult):
    loose: list[LooseTx] = field(default_factory=list)  # one per distinct txid given, in input order


_NO_BLOCK = BlockInfo(
    BlockHeader(bytes(32), 0, bytes(32), bytes(32), 0, 0, 0), None, None, 0, 0, 0, True, None
)


def write_loose_txs(con: duckdb.DuckDBPyConnection, d: Decoded) -> LooseWriteResult:
    """Store bare transactions (``decode_transactions``: segment k is transaction k) outside any block,
    in one transaction: ``block_id`` and ``position`` null, inputs resolved against every stored output
    (the others' listed in ``unresolved_inputs``, like a block's), earlier unresolved inputs spending
    their outputs resolved. A txid stored already (loose or in a block) is skipped. Every given
    transaction is reported with its status, fee, and the stored transactions that double-spend its
    inputs. Coinbase transactions exist only in their block and are refused."""
    if d.blocks:
        raise ValueError("write_loose_txs takes bare transactions (decode_transactions), not blocks")
    chain = d.network.chain
    result = LooseWriteResult()
    with write_transaction(con) as threads:
        _write_loose(con, d, chain, result, threads)
    return result


def coinbase_rows(d: Decoded) -> list[int]:
    """The bare transactions of ``d`` that are coinbases (one input, spending no output)."""
    first_in = d.seg_in[:-1]
    cb = (d.tx_n_in == 1) & (d.in_vout[first_in] == 0xFFFFFFFF) & ~d.in_prev[first_in].any(axis=1)
    return [int(k) for k in np.flatnonzero(cb)]


def _write_loose(con: duckdb.DuckDBPyConnection, d: Decoded, chain: str, result: LooseWriteResult,
                 threads: Threads) -> None:  # fmt: skip
    if coinbases := coinbase_rows(d):
        raise CorruptData(
            f"transaction {d.txid_hex(coinbases[0])} is a coinbase",
            "a coinbase exists only in its block: ingest the block (ingest bitcoin-blocks|bitcoin-rpc)",
        )
    _, tx_id0, address_id0 = next_ids(con)
    txids = [bytes(d.txid[k]) for k in range(d.n_tx)]
    con.register("batch_txids", pa.table({"txid": pa.array(txids, pa.binary())}))
    stored: set[bytes] = set()
    if tx_id0:
        rows = con.execute(
            "SELECT DISTINCT txid FROM transactions WHERE chain = ? AND txid IN (FROM batch_txids)",
            [chain],
        ).fetchall()
        stored = {bytes(r[0]) for r in rows}
    keep: list[int] = []
    seen = set(stored)
    for k, h in enumerate(txids):
        if h not in seen:
            keep.append(k)
            seen.add(h)
    if keep:
        store_tables(con, chain, _loose_tables(d, keep, tx_id0, chain), tx_id0, address_id0, result, threads)
    result.skipped = len(set(txids) & stored)
    result.loose = _loose_report(con, chain, txids, {txids[k] for k in keep})


def _loose_tables(d: Decoded, keep: list[int], tx_id0: int, chain: str) -> BitcoinTables:
    """The rows of bare transactions ``keep``, built by the code that builds block transactions' rows:
    each transaction is given a placeholder block (its rows dropped), then what only a block gives is
    nulled: block_id, position, coinbase script; and no transaction outside a block is a coinbase."""
    t = build_tables(replace(d, blocks=[_NO_BLOCK] * (len(d.seg_tx) - 1)), keep, 0, tx_id0, chain, "raw")
    n = t.txs.num_rows
    txs = t.txs
    for name, type_ in (("block_id", pa.int64()), ("position", pa.int32()),
                        ("coinbase_script", txs.schema.field("coinbase_script").type)):  # fmt: skip
        txs = txs.set_column(txs.schema.get_field_index(name), name, pa.nulls(n, type_))
    txs = txs.set_column(
        txs.schema.get_field_index("is_coinbase"), "is_coinbase", pa.array(np.zeros(n, np.bool_))
    )
    inputs = t.inputs.set_column(
        t.inputs.schema.get_field_index("is_coinbase"),
        "is_coinbase",
        pa.array(np.zeros(t.inputs.num_rows, np.bool_)),
    )
    return BitcoinTables(t.blocks.slice(0, 0), txs, t.outputs, inputs)


def _loose_report(con: duckdb.DuckDBPyConnection, chain: str, txids: list[bytes],
                  new: set[bytes]) -> list[LooseTx]:  # fmt: skip
    """Each distinct given txid as the store now holds it (the latest stored copy), with conflicts."""
    rows = con.execute(
        """SELECT t.txid, t.tx_id, b.hash, b.height, t.block_id IS NOT NULL, t.input_count, t.fee,
                  (SELECT count(*) FROM unresolved_inputs u WHERE u.chain = t.chain AND u.tx_id = t.tx_id)
           FROM transactions t LEFT JOIN blocks b ON b.block_id = t.block_id
           WHERE t.chain = ? AND t.txid IN (SELECT txid FROM batch_txids) ORDER BY t.tx_id""",
        [chain],
    ).fetchall()
    by_txid = {bytes(r[0]): r for r in rows}  # the latest copy wins
    tx_ids = [int(r[1]) for r in by_txid.values()]
    conflicts = double_spends(con, chain, tx_ids)
    out: list[LooseTx] = []
    for h in dict.fromkeys(txids):
        _, tx_id, block_hash, height, confirmed, n_in, fee, unresolved = by_txid[h]
        block = None if block_hash is None else bytes(block_hash).hex()
        spent_too = conflicts.get(int(tx_id), [])
        out.append(
            LooseTx(
                h.hex(), h in new, bool(confirmed), block, height, int(n_in), int(unresolved), fee, spent_too
            )
        )
    return out
