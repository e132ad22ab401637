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
import pyarrow as pa

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
    con.register("acc_blocks_in", batch.blocks)
    con.register("acc_txs_in", batch.txs)
    con.register("acc_transfers_in", batch.transfers)
    try:
        return write_staged(con, batch.chain, batch.source, batch.allow_missing_txs)
    finally:
        for name in ("acc_blocks_in", "acc_txs_in", "acc_transfers_in"):
            con.unregister(name)


def write_staged(
    con: duckdb.DuckDBPyConnection, chain: str, source: str, allow_missing_txs: bool = False
) -> AccountWriteResult:
    """Write a batch a source has staged itself as relations ``acc_blocks_in``, ``acc_txs_in`` and
    ``acc_transfers_in`` with the columns of BLOCK_SCHEMA, TX_SCHEMA and TRANSFER_SCHEMA (a source that
    transforms in SQL, like the ethereum-etl reader, skips the round trip through Arrow)."""
    if chain not in NATIVE:
        raise CorruptData(f"unknown account chain {chain!r}", f"use one of {', '.join(NATIVE)}")
    result = AccountWriteResult()
    with transaction(con):
        _write(con, chain, source, allow_missing_txs, result)
    return result


def _write(
    con: duckdb.DuckDBPyConnection,
    chain: str,
    source: str,
    allow_missing_txs: bool,
    result: AccountWriteResult,
) -> None:
    _check_batch(con, allow_missing_txs)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE acc_blocks AS
           SELECT b.* FROM acc_blocks_in b
           WHERE NOT EXISTS (SELECT 1 FROM blocks s WHERE s.chain = ? AND s.hash = b.hash)""",
        [chain],
    )
    n_new = int(scalar(con, "SELECT count(*) FROM acc_blocks"))
    result.skipped = int(scalar(con, "SELECT count(*) FROM acc_blocks_in")) - n_new
    if n_new == 0:
        return
    block0, tx0, addr0 = next_ids(con)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE acc_block_ids AS
           SELECT number, hash, ? + row_number() OVER (ORDER BY number) - 1 AS block_id
           FROM acc_blocks""",
        [block0],
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE acc_txs AS
           SELECT t.*, i.block_id, ? + row_number() OVER (ORDER BY t.block_number, t.position) - 1
                  AS tx_id
           FROM acc_txs_in t JOIN acc_block_ids i ON i.number = t.block_number""",
        [tx0],
    )
    result.new_addresses = _insert_addresses(con, chain, addr0)
    result.new_assets = _ensure_assets(con, chain)
    _insert_blocks(con, chain, source)
    _insert_txs(con, chain)
    result.transfers = _insert_transfers(con, chain)
    result.blocks = n_new
    result.txs = int(scalar(con, "SELECT count(*) FROM acc_txs"))


def _check_batch(con: duckdb.DuckDBPyConnection, allow_missing_txs: bool) -> None:
    """Consistency a source must give: every tx and transfer belongs to a block of the batch, and
    block numbers are unique."""
    dup = first(con, "SELECT number FROM acc_blocks_in GROUP BY number HAVING count(*) > 1 LIMIT 1")
    if dup:
        raise CorruptData(f"block {dup[0]} appears twice in one batch", "the source data is inconsistent")
    orphan = first(
        con,
        """SELECT block_number FROM (SELECT block_number FROM acc_txs_in UNION ALL
                                     SELECT block_number FROM acc_transfers_in) x
           WHERE block_number NOT IN (SELECT number FROM acc_blocks_in) LIMIT 1""",
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
            """SELECT hex(tx_hash) FROM acc_transfers_in
           WHERE tx_hash IS NOT NULL AND tx_hash NOT IN (SELECT hash FROM acc_txs_in) LIMIT 1""",
        )
    )
    if missing:
        raise CorruptData(
            f"a transfer refers to transaction 0x{str(missing[0]).lower()}, which is not in the batch",
            "give the transactions file that covers every log and trace",
        )


def _insert_addresses(con: duckdb.DuckDBPyConnection, chain: str, addr0: int) -> int:
    return int(
        scalar(
            con,
            """INSERT INTO addresses
               SELECT ?, ? + row_number() OVER (ORDER BY k.key) - 1, k.key FROM (
                   SELECT DISTINCT key FROM (
                       SELECT "from" AS key FROM acc_txs UNION ALL SELECT "to" FROM acc_txs
                       UNION ALL SELECT created FROM acc_txs UNION ALL SELECT miner FROM acc_blocks
                       UNION ALL SELECT "from" FROM acc_transfers_in
                       UNION ALL SELECT "to" FROM acc_transfers_in
                       UNION ALL SELECT ?::BLOB UNION ALL SELECT ?::BLOB) WHERE key IS NOT NULL) k
               WHERE NOT EXISTS (SELECT 1 FROM addresses a WHERE a.chain = ? AND a.key = k.key)""",
            [chain, addr0, FEE_SINK, BEACON, chain],
        )
        or 0
    )


def _ensure_assets(con: duckdb.DuckDBPyConnection, chain: str) -> int:
    """The chain's native coin and every token contract of the batch get an asset row; metadata from the
    bundled registry where known, else null (unknown)."""
    known = {
        None if r[0] is None else bytes(r[0])
        for r in con.execute("SELECT contract FROM assets WHERE chain = ?", [chain]).fetchall()
    }
    contracts = [
        bytes(r[0])
        for r in con.execute(
            "SELECT DISTINCT contract FROM acc_transfers_in WHERE contract IS NOT NULL"
        ).fetchall()
    ]
    rows: list[tuple[bytes | None, str | None, int | None, str | None, str]] = []
    if None not in known:
        n = NATIVE[chain]
        rows.append((None, n.symbol, n.decimals, n.name, "native"))
    for c in contracts:
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
            "contract": pa.array([r[0] for r in rows], pa.binary()),
            "symbol": pa.array([r[1] for r in rows], pa.string()),
            "decimals": pa.array([r[2] for r in rows], pa.int32()),
            "name": pa.array([r[3] for r in rows], pa.string()),
            "metadata_source": pa.array([r[4] for r in rows], pa.string()),
        }
    )
    con.register("new_assets", table)
    con.execute(
        """INSERT INTO assets SELECT ?, ? + row_number() OVER () - 1, contract, symbol, decimals, name,
                  metadata_source FROM new_assets""",
        [chain, base],
    )
    con.unregister("new_assets")
    return len(rows)


def _insert_blocks(con: duckdb.DuckDBPyConnection, chain: str, source: str) -> None:
    con.execute(
        """INSERT INTO blocks (chain, block_id, hash, height, height_source, prev_hash, time, tx_count, size,
                               merkle_ok, source, ingested_at, miner_id, gas_used, base_fee)
           SELECT ?, i.block_id, b.hash, b.number, 'source', b.parent_hash, b.time, b.tx_count, b.size,
                  NULL, ?, now(), a.address_id, b.gas_used, b.base_fee::BIGNUM
           FROM acc_blocks b JOIN acc_block_ids i ON i.hash = b.hash
           LEFT JOIN addresses a ON a.chain = ? AND a.key = b.miner""",
        [chain, source, chain],
    )


def _insert_txs(con: duckdb.DuckDBPyConnection, chain: str) -> None:
    con.execute(
        """INSERT INTO account_txs
           SELECT ?, t.tx_id, t.block_id, t.position, t.hash, f.address_id, r.address_id, c.address_id,
                  t.value::BIGNUM, t.nonce, t.gas, t.gas_price::BIGNUM, t.gas_used, t.fee::BIGNUM, t.status,
                  t.tx_type, t.method
           FROM acc_txs t
           JOIN addresses f ON f.chain = ? AND f.key = t."from"
           LEFT JOIN addresses r ON r.chain = ? AND r.key = t."to"
           LEFT JOIN addresses c ON c.chain = ? AND c.key = t.created""",
        [chain, chain, chain, chain],
    )


def _insert_transfers(con: duckdb.DuckDBPyConnection, chain: str) -> int:
    """Derived native and fee transfers, then the source's token, internal and withdrawal transfers."""
    return int(
        scalar(
            con,
            """INSERT INTO transfers
               WITH native AS (SELECT asset_id FROM assets WHERE chain = $chain AND contract IS NULL),
               sink AS (SELECT address_id FROM addresses WHERE chain = $chain AND key = $sink),
               derived AS (
                   SELECT t.tx_id, t.hash AS tx_hash, t.block_id, 'native' AS kind,
                          NULL::INTEGER AS log_index,
                          NULL AS trace_position, NULL::BLOB AS contract, t."from",
                          coalesce(t."to", t.created) AS "to", t.value::BIGNUM AS amount
                   FROM acc_txs t
                   WHERE t.value::BIGNUM > 0 AND t.status IS DISTINCT FROM FALSE
                     AND coalesce(t."to", t.created) IS NOT NULL
                   UNION ALL
                   SELECT t.tx_id, t.hash, t.block_id, 'fee', NULL, NULL, NULL, t."from", $sink, t.fee::BIGNUM
                   FROM acc_txs t WHERE t.fee IS NOT NULL AND t.fee::BIGNUM > 0
                   UNION ALL
                   SELECT t.tx_id, s.tx_hash, i.block_id, s.kind, s.log_index, s.trace_position,
                          s.contract, s."from", s."to", s.amount::BIGNUM
                   FROM acc_transfers_in s JOIN acc_block_ids i ON i.number = s.block_number
                   LEFT JOIN acc_txs t ON t.hash = s.tx_hash)
               SELECT $chain, d.tx_id, d.tx_hash, d.block_id, d.kind, d.log_index, d.trace_position,
                      coalesce(a.asset_id, (SELECT asset_id FROM native)), f.address_id, r.address_id,
                      d.amount
               FROM derived d
               JOIN addresses f ON f.chain = $chain AND f.key = d."from"
               JOIN addresses r ON r.chain = $chain AND r.key = d."to"
               LEFT JOIN assets a ON a.chain = $chain AND a.contract = d.contract""",
            {"chain": chain, "sink": FEE_SINK},
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
