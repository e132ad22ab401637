"""Writing account-chain data (EVM chains, TRON): blocks, transactions and transfers.

Every source (ETL files, EVM JSON-RPC, TRON HTTP) hands over an :class:`AccountBatch`: three Arrow tables
with the columns below, addresses as raw keys (20 bytes EVM, 21 bytes TRON), amounts as decimal strings
(exact uint256). :func:`write_account_batch` writes it in one transaction, skipping blocks already stored,
and derives the value-moving transfers every source shares:

- ``native``: a transaction's top-level value, from sender to recipient (or the created contract), unless
  the transaction failed (``status`` false: a failed transaction is kept and moves no value). Where no
  receipt is known, status is null and the value transfer is recorded as the transaction states it.
- ``fee``: the fee the sender paid, to the chain's fee sink (a pseudo-address, shown as ``(fees)``).

Sources add the transfers only they can see: ``token`` (ERC-20/TRC-20 Transfer logs), ``internal``
(traces), ``withdrawal`` (beacon-chain withdrawals, from the pseudo-address ``(beacon chain)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fundtrail.chains.assets import NATIVE, token
from fundtrail.errors import CorruptData
from fundtrail.store.db import first, scalar, transaction
from fundtrail.store.ids import next_ids

# Pseudo-address keys: shorter than any real address key, so they cannot collide with one.
FEE_SINK = b"fees"
BEACON = b"beacon"
PSEUDO_NAMES = {FEE_SINK: "(fees)", BEACON: "(beacon chain)"}

BLOCK_SCHEMA = pa.schema(
    [
        ("number", pa.int64()),
        ("hash", pa.binary()),
        ("parent_hash", pa.binary()),
        ("time", pa.int64()),
        ("tx_count", pa.int32()),
        ("miner", pa.binary()),
        ("gas_used", pa.int64()),
        ("base_fee", pa.string()),
        ("size", pa.int32()),
    ]
)
TX_SCHEMA = pa.schema(
    [
        ("block_number", pa.int64()),
        ("position", pa.int32()),
        ("hash", pa.binary()),
        ("from", pa.binary()),
        ("to", pa.binary()),
        ("created", pa.binary()),
        ("value", pa.string()),
        ("nonce", pa.int64()),
        ("gas", pa.int64()),
        ("gas_price", pa.string()),
        ("gas_used", pa.int64()),
        ("fee", pa.string()),
        ("status", pa.bool_()),
        ("tx_type", pa.int32()),
        ("method", pa.binary()),
    ]
)
TRANSFER_SCHEMA = pa.schema(
    [
        ("tx_hash", pa.binary()),
        ("block_number", pa.int64()),
        ("kind", pa.string()),
        ("log_index", pa.int32()),
        ("trace_position", pa.string()),
        ("contract", pa.binary()),
        ("from", pa.binary()),
        ("to", pa.binary()),
        ("amount", pa.string()),
    ]
)


@dataclass
class AccountBatch:
    chain: str
    blocks: pa.Table
    txs: pa.Table
    transfers: pa.Table  # token, internal and withdrawal transfers (native and fee are derived)
    source: str
    # a partial export (logs of transactions it does not hold): such transfers keep their tx_hash and
    # get a null tx_id instead of being refused
    allow_missing_txs: bool = False

    def __post_init__(self) -> None:
        self.blocks = self.blocks.select(BLOCK_SCHEMA.names).cast(BLOCK_SCHEMA)
        self.txs = self.txs.select(TX_SCHEMA.names).cast(TX_SCHEMA)
        self.transfers = self.transfers.select(TRANSFER_SCHEMA.names).cast(TRANSFER_SCHEMA)


@dataclass
class AccountWriteResult:
    blocks: int = 0
    skipped: int = 0
    txs: int = 0
    transfers: int = 0
    new_addresses: int = 0
    new_assets: int = 0


def write_account_batch(con: duckdb.DuckDBPyConnection, batch: AccountBatch) -> AccountWriteResult:
    """Write one batch in one transaction (the Arrow tables are read in place, not copied)."""
    if batch.chain not in NATIVE:
        raise CorruptData(f"unknown account chain {batch.chain!r}", f"use one of {', '.join(NATIVE)}")
    result = AccountWriteResult()
    with transaction(con):
        _write(con, batch, result)
    return result


def write_staged(
    con: duckdb.DuckDBPyConnection, chain: str, source: str, allow_missing_txs: bool = False
) -> AccountWriteResult:
    """Write a batch a source has staged itself as relations ``acc_blocks_in``, ``acc_txs_in`` and
    ``acc_transfers_in`` with the columns of BLOCK_SCHEMA, TX_SCHEMA and TRANSFER_SCHEMA."""
    blocks, txs, transfers = (
        con.sql(f"SELECT {', '.join(_quoted(schema))} FROM {name}").to_arrow_table()
        for name, schema in (
            ("acc_blocks_in", BLOCK_SCHEMA),
            ("acc_txs_in", TX_SCHEMA),
            ("acc_transfers_in", TRANSFER_SCHEMA),
        )
    )
    return write_account_batch(con, AccountBatch(chain, blocks, txs, transfers, source, allow_missing_txs))


def _quoted(schema: pa.Schema) -> list[str]:
    """The schema's columns, amounts as text whatever type the source staged them as."""
    return [f'"{f.name}"::VARCHAR AS "{f.name}"' if f.type == pa.string() else f'"{f.name}"' for f in schema]


_IN = ("acc_blocks_b", "acc_txs_b", "acc_transfers_b")
_OUT = ("acc_blocks_w", "acc_txs_w", "acc_transfers_w", "acc_keys_w")


def _write(con: duckdb.DuckDBPyConnection, batch: AccountBatch, result: AccountWriteResult) -> None:
    """The batch's tables are registered for the consistency checks; ids (blocks, transactions,
    addresses, assets) are assigned in Arrow, so the inserts read ready rows and join nothing."""
    for name, table in zip(_IN, (batch.blocks, batch.txs, batch.transfers)):
        con.register(name, table)
    try:
        _check_batch(con, batch.allow_missing_txs)
        _write_new(con, batch, result)
    finally:
        for name in _IN + _OUT:
            con.unregister(name)


def _index(values: pa.ChunkedArray | pa.Array, keys: pa.Array, ids: pa.Array) -> pa.ChunkedArray | pa.Array:
    """``ids`` of ``values`` looked up in ``keys`` (null where absent or null)."""
    return pc.take(ids, pc.index_in(values, value_set=keys))


def _write_new(con: duckdb.DuckDBPyConnection, batch: AccountBatch, result: AccountWriteResult) -> None:
    chain = batch.chain
    blocks, txs, transfers = batch.blocks, batch.txs, batch.transfers
    stored = con.execute(
        """SELECT b.hash FROM acc_blocks_b b
           WHERE EXISTS (SELECT 1 FROM blocks s WHERE s.chain = ? AND s.hash = b.hash)""",
        [chain],
    ).fetchall()
    if stored:
        known = pa.array([bytes(r[0]) for r in stored], pa.binary())
        blocks = blocks.filter(pc.invert(pc.is_in(blocks["hash"], value_set=known)))
    n_new = blocks.num_rows
    result.skipped = batch.blocks.num_rows - n_new
    if n_new == 0:
        return
    block0, tx0, addr0 = next_ids(con)
    blocks = blocks.take(pc.sort_indices(blocks["number"]))
    numbers = blocks["number"].combine_chunks()
    block_ids = pa.array(np.arange(block0, block0 + n_new, dtype=np.int64))
    txs = txs.filter(pc.is_in(txs["block_number"], value_set=numbers))
    txs = txs.take(pc.sort_indices(txs, [("block_number", "ascending"), ("position", "ascending")]))
    tx_ids = pa.array(np.arange(tx0, tx0 + txs.num_rows, dtype=np.int64))
    txs = txs.append_column("block_id", _index(txs["block_number"], numbers, block_ids))
    txs = txs.append_column("tx_id", tx_ids)
    new_transfers = transfers.filter(pc.is_in(transfers["block_number"], value_set=numbers))
    new_transfers = new_transfers.append_column(
        "block_id", _index(new_transfers["block_number"], numbers, block_ids)
    )
    new_transfers = new_transfers.append_column(
        "tx_id", _index(new_transfers["tx_hash"], txs["hash"].combine_chunks(), tx_ids)
    )

    # addresses: every key of the batch (the transfers of skipped blocks included), new ones numbered
    # in key order
    keys = pc.unique(
        pa.chunked_array(
            [
                *txs["from"].chunks,
                *txs["to"].chunks,
                *txs["created"].chunks,
                *blocks["miner"].chunks,
                *transfers["from"].chunks,
                *transfers["to"].chunks,
                pa.array([FEE_SINK, BEACON], pa.binary()),
            ],
            pa.binary(),
        )
    ).drop_null()
    con.register("acc_keys_w", pa.table({"key": keys}))
    old = con.sql(
        "SELECT k.key, a.address_id FROM acc_keys_w k JOIN addresses a ON a.chain = $1 AND a.key = k.key",
        params=[chain],
    ).to_arrow_table()
    fresh = keys.filter(pc.invert(pc.is_in(keys, value_set=old["key"].combine_chunks().cast(pa.binary()))))
    fresh = fresh.take(pc.sort_indices(fresh))
    fresh_ids = pa.array(np.arange(addr0, addr0 + len(fresh), dtype=np.int64))
    if len(fresh):
        con.register("acc_keys_w", pa.table({"address_id": fresh_ids, "key": fresh}))
        con.execute("INSERT INTO addresses SELECT ?, address_id, key FROM acc_keys_w", [chain])
    result.new_addresses = len(fresh)
    all_keys = pa.concat_arrays([old["key"].combine_chunks().cast(pa.binary()), fresh])
    all_ids = pa.concat_arrays([old["address_id"].combine_chunks().cast(pa.int64()), fresh_ids])

    result.new_assets = _ensure_assets(con, chain, transfers)
    assets = con.execute(
        "SELECT contract, asset_id FROM assets WHERE chain = ? AND contract IS NOT NULL", [chain]
    ).fetchall()
    native = scalar(con, "SELECT asset_id FROM assets WHERE chain = ? AND contract IS NULL", [chain])
    asset_ids = _index(
        new_transfers["contract"],
        pa.array([bytes(r[0]) for r in assets], pa.binary()),
        pa.array([int(r[1]) for r in assets], pa.int64()),
    )
    new_transfers = new_transfers.append_column("asset_id", pc.fill_null(asset_ids, int(native)))

    blocks = blocks.append_column("block_id", block_ids).append_column(
        "miner_id", _index(blocks["miner"], all_keys, all_ids)
    )
    for name, col in (("from_id", "from"), ("to_id", "to"), ("created_id", "created")):
        txs = txs.append_column(name, _index(txs[col], all_keys, all_ids))
    for name, col in (("from_id", "from"), ("to_id", "to")):
        new_transfers = new_transfers.append_column(name, _index(new_transfers[col], all_keys, all_ids))
    sink = _index(pa.array([FEE_SINK], pa.binary()), all_keys, all_ids)[0].as_py()

    con.register("acc_blocks_w", blocks)
    con.register("acc_txs_w", txs)
    con.register("acc_transfers_w", new_transfers)
    _insert_blocks(con, chain, batch.source)
    _insert_txs(con, chain)
    result.transfers = _insert_transfers(con, chain, int(native), sink)
    result.blocks = n_new
    result.txs = txs.num_rows


def _check_batch(con: duckdb.DuckDBPyConnection, allow_missing_txs: bool) -> None:
    """Consistency a source must give: every tx and transfer belongs to a block of the batch, and
    block numbers are unique."""
    dup = first(con, "SELECT number FROM acc_blocks_b GROUP BY number HAVING count(*) > 1 LIMIT 1")
    if dup:
        raise CorruptData(f"block {dup[0]} appears twice in one batch", "the source data is inconsistent")
    orphan = first(
        con,
        """SELECT block_number FROM (SELECT block_number FROM acc_txs_b UNION ALL
                                     SELECT block_number FROM acc_transfers_b) x
           WHERE block_number NOT IN (SELECT number FROM acc_blocks_b) LIMIT 1""",
    )
    if orphan:
        raise CorruptData(
            f"transactions or transfers of block {orphan[0]} come without the block",
            "give the blocks file that covers every transaction",
        )
    missing = (
        None
        if allow_missing_txs
        else first(
            con,
            """SELECT hex(tx_hash) FROM acc_transfers_b
           WHERE tx_hash IS NOT NULL AND tx_hash NOT IN (SELECT hash FROM acc_txs_b) LIMIT 1""",
        )
    )
    if missing:
        raise CorruptData(
            f"a transfer refers to transaction 0x{str(missing[0]).lower()}, which is not in the batch",
            "give the transactions file that covers every log and trace",
        )


def _ensure_assets(con: duckdb.DuckDBPyConnection, chain: str, transfers: pa.Table) -> int:
    """The chain's native coin and every token contract of the batch get an asset row; metadata from the
    bundled registry where known, else null (unknown). New contracts are numbered in contract order."""
    known = {
        None if r[0] is None else bytes(r[0])
        for r in con.execute("SELECT contract FROM assets WHERE chain = ?", [chain]).fetchall()
    }
    contracts = pc.unique(transfers["contract"]).drop_null()
    contracts = contracts.take(pc.sort_indices(contracts))
    rows: list[tuple[bytes | None, str | None, int | None, str | None, str]] = []
    if None not in known:
        n = NATIVE[chain]
        rows.append((None, n.symbol, n.decimals, n.name, "native"))
    for c in contracts.to_pylist():
        if c in known:
            continue
        meta = token(chain, c)
        rows.append(
            (c, meta.symbol, meta.decimals, meta.name, "registry")
            if meta
            else (c, None, None, None, "unknown")
        )
    if not rows:
        return 0
    base = int(scalar(con, "SELECT coalesce(max(asset_id) + 1, 0) FROM assets"))
    table = pa.table(
        {
            "asset_id": pa.array(range(base, base + len(rows)), pa.int64()),
            "contract": pa.array([r[0] for r in rows], pa.binary()),
            "symbol": pa.array([r[1] for r in rows], pa.string()),
            "decimals": pa.array([r[2] for r in rows], pa.int32()),
            "name": pa.array([r[3] for r in rows], pa.string()),
            "metadata_source": pa.array([r[4] for r in rows], pa.string()),
        }
    )
    con.register("new_assets", table)
    con.execute(
        """INSERT INTO assets SELECT ?, asset_id, contract, symbol, decimals, name, metadata_source
           FROM new_assets""",
        [chain],
    )
    con.unregister("new_assets")
    return len(rows)


def _insert_blocks(con: duckdb.DuckDBPyConnection, chain: str, source: str) -> None:
    con.execute(
        """INSERT INTO blocks (chain, block_id, hash, height, height_source, prev_hash, time, tx_count, size,
                               merkle_ok, source, ingested_at, miner_id, gas_used, base_fee)
           SELECT ?, block_id, hash, number, 'source', parent_hash, time, tx_count, size,
                  NULL, ?, now(), miner_id, gas_used, base_fee::BIGNUM
           FROM acc_blocks_w""",
        [chain, source],
    )


def _insert_txs(con: duckdb.DuckDBPyConnection, chain: str) -> None:
    con.execute(
        """INSERT INTO account_txs
           SELECT ?, tx_id, block_id, position, hash, from_id, to_id, created_id,
                  value::BIGNUM, nonce, gas, gas_price::BIGNUM, gas_used, fee::BIGNUM, status, tx_type, method
           FROM acc_txs_w WHERE from_id IS NOT NULL""",
        [chain],
    )


def _insert_transfers(con: duckdb.DuckDBPyConnection, chain: str, native: int, sink: int) -> int:
    """Derived native and fee transfers, then the source's token, internal and withdrawal transfers
    (a transfer without a sender or recipient is not stored)."""
    return int(
        scalar(
            con,
            """INSERT INTO transfers
               SELECT $chain, tx_id, hash, block_id, 'native', NULL, NULL, $native, from_id,
                      coalesce(to_id, created_id), value::BIGNUM
               FROM acc_txs_w
               WHERE value::BIGNUM > 0 AND status IS DISTINCT FROM FALSE
                 AND coalesce(to_id, created_id) IS NOT NULL AND from_id IS NOT NULL
               UNION ALL
               SELECT $chain, tx_id, hash, block_id, 'fee', NULL, NULL, $native, from_id, $sink, fee::BIGNUM
               FROM acc_txs_w WHERE fee IS NOT NULL AND fee::BIGNUM > 0 AND from_id IS NOT NULL
               UNION ALL
               SELECT $chain, tx_id, tx_hash, block_id, kind, log_index, trace_position, asset_id, from_id,
                      to_id, amount::BIGNUM
               FROM acc_transfers_w WHERE from_id IS NOT NULL AND to_id IS NOT NULL""",
            {"chain": chain, "native": native, "sink": sink},
        )
        or 0
    )


def rollback_account_above(con: duckdb.DuckDBPyConnection, chain: str, height: int) -> int:
    """Remove every block of an account chain above ``height`` with its transactions and transfers
    (a reorg). Runs in the caller's transaction."""
    con.execute(
        """DELETE FROM transfers WHERE chain = ? AND block_id IN
           (SELECT block_id FROM blocks WHERE chain = ? AND height > ?)""",
        [chain, chain, height],
    )
    con.execute(
        """DELETE FROM account_txs WHERE chain = ? AND block_id IN
           (SELECT block_id FROM blocks WHERE chain = ? AND height > ?)""",
        [chain, chain, height],
    )
    return int(scalar(con, "DELETE FROM blocks WHERE chain = ? AND height > ?", [chain, height]) or 0)
