"""Job: ingest ethereum-etl exports (blocks, transactions, receipts, logs, token transfers) of an EVM chain.

The files are read whole (as text, exactly), validated column by column (the first bad value is named
with its file and line), turned into one :class:`AccountBatch` and written in one transaction: the whole
export is stored or nothing is. Token transfers come from the raw logs when ``--logs`` is given (the
3-topic ERC-20 ``Transfer`` form; other forms are counted and skipped) and otherwise from the
``--token-transfers`` export. Fees are ``gas_used x effective gas price`` (the receipt's effective price,
else the transaction's gas price, which mined EIP-1559 transactions report as the effective one); where
no gas used is known the fee is null. Status comes from the receipt; without one it is null.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from fundtrail.chains.assets import EVM_CHAINS
from fundtrail.chains.evm.logs import decode_transfer
from fundtrail.errors import CorruptData, InvalidInput
from fundtrail.ingest.etl_files import read_export
from fundtrail.store.account_write import (
    BEACON,
    TRANSFER_SCHEMA,
    AccountBatch,
    AccountWriteResult,
    write_account_batch,
)
from fundtrail.store.db import first

H32 = "0x[0-9a-fA-F]{64}"
ADDR = "0x[0-9a-fA-F]{40}"
UINT = "[0-9]{1,78}"
HEX = "0x([0-9a-fA-F]{2})*"
STATUS = "[01]"
TOPICS = f"({H32}(,{H32})*)?"

# kind -> column -> (pattern, may be null)
RULES: dict[str, dict[str, tuple[str, bool]]] = {
    "blocks": {
        "number": (UINT, False),
        "hash": (H32, False),
        "parent_hash": (H32, False),
        "timestamp": (UINT, False),
        "miner": (ADDR, True),
        "gas_used": (UINT, True),
        "base_fee_per_gas": (UINT, True),
        "size": (UINT, True),
        "transaction_count": (UINT, True),
    },
    "transactions": {
        "hash": (H32, False),
        "block_number": (UINT, False),
        "transaction_index": (UINT, False),
        "from_address": (ADDR, False),
        "to_address": (ADDR, True),
        "value": (UINT, False),
        "nonce": (UINT, True),
        "gas": (UINT, True),
        "gas_price": (UINT, True),
        "input": (HEX, True),
        "transaction_type": (UINT, True),
        "receipt_gas_used": (UINT, True),
        "receipt_status": (STATUS, True),
        "receipt_effective_gas_price": (UINT, True),
        "receipt_contract_address": (ADDR, True),
    },
    "receipts": {
        "transaction_hash": (H32, False),
        "gas_used": (UINT, False),
        "status": (STATUS, True),
        "effective_gas_price": (UINT, True),
        "contract_address": (ADDR, True),
    },
    "logs": {
        "log_index": (UINT, False),
        "transaction_hash": (H32, False),
        "block_number": (UINT, False),
        "address": (ADDR, False),
        "data": (HEX, False),
        "topics": (TOPICS, True),
    },
    "token_transfers": {
        "token_address": (ADDR, False),
        "from_address": (ADDR, False),
        "to_address": (ADDR, False),
        "value": (UINT, False),
        "transaction_hash": (H32, False),
        "log_index": (UINT, False),
        "block_number": (UINT, False),
    },
}


@dataclass
class EtlSummary:
    chain: str
    files: dict[str, str] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    token_transfers_from: str = "none"
    logs_skipped: int = 0  # Transfer-signature logs not of the 3-topic ERC-20 form
    withdrawals: int = 0
    written: AccountWriteResult = field(default_factory=AccountWriteResult)


def ingest_ethereum_etl(
    con: duckdb.DuckDBPyConnection,
    chain: str,
    blocks: Path,
    transactions: Path,
    receipts: Path | None = None,
    logs: Path | None = None,
    token_transfers: Path | None = None,
    allow_missing_transactions: bool = False,
) -> EtlSummary:
    if chain not in EVM_CHAINS:
        raise InvalidInput(f"unknown EVM chain {chain!r}", f"use one of {', '.join(EVM_CHAINS)}")
    given = {
        "blocks": blocks,
        "transactions": transactions,
        "receipts": receipts,
        "logs": logs,
        "token_transfers": token_transfers,
    }
    paths = {k: p for k, p in given.items() if p is not None}
    summary = EtlSummary(chain, {k: str(p) for k, p in paths.items()})
    tables = {k: _complete(read_export(p, k), k) for k, p in paths.items()}
    summary.rows = {k: t.num_rows for k, t in tables.items()}
    for kind, table in tables.items():
        con.register(f"raw_{kind}", table)
    try:
        _validate(con, tables, paths)
        batch_blocks = _blocks(con)
        batch_txs = _transactions(con, "receipts" in tables)
        transfers, summary.token_transfers_from, summary.logs_skipped = _token_transfers(con, tables, paths)
        withdrawals = _withdrawals(tables["blocks"], paths["blocks"])
        summary.withdrawals = withdrawals.num_rows
        batch = AccountBatch(
            chain,
            batch_blocks,
            batch_txs,
            pa.concat_tables([transfers, withdrawals]),
            f"ethereum-etl:{blocks.name}",
            allow_missing_transactions,
        )
    finally:
        for kind in tables:
            con.unregister(f"raw_{kind}")
    summary.written = write_account_batch(con, batch)
    return summary


def _complete(table: pa.Table, kind: str) -> pa.Table:
    """Absent optional columns become all-null, so one SQL text serves every variant of the export."""
    for col in RULES[kind]:
        if col not in table.column_names:
            table = table.append_column(col, pa.nulls(table.num_rows, pa.string()))
    return table


def _validate(con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table], paths: dict[str, Path]) -> None:
    for kind in tables:
        for col, (pattern, nullable) in RULES[kind].items():
            bad = first(
                con,
                f"""SELECT _line, "{col}" FROM raw_{kind}
                    WHERE {"" if nullable else f'"{col}" IS NULL OR '}NOT regexp_full_match("{col}", ?)
                    ORDER BY _line LIMIT 1""",
                [pattern],
            )
            if bad:
                shown = "empty" if bad[1] is None else repr(bad[1][:80])
                raise CorruptData(
                    f"{paths[kind]} line {bad[0]}: column {col} is {shown}, expected {pattern}",
                    "fix or re-export the file; nothing was stored",
                )
    prev = first(
        con,
        """SELECT _line, number, p FROM (SELECT _line, number::HUGEINT AS number,
                  lag(number::HUGEINT) OVER (ORDER BY _line) AS p FROM raw_blocks) WHERE number <= p
           ORDER BY _line LIMIT 1""",
    )
    if prev:
        raise CorruptData(
            f"{paths['blocks']} line {prev[0]}: block {prev[1]} after block {prev[2]} (numbers out of order "
            "or repeated)",
            "sort the blocks file by number and remove duplicates",
        )
    dup = first(
        con,
        """SELECT min(_line), min(hash) FROM raw_transactions
           GROUP BY lower(hash) HAVING count(*) > 1 LIMIT 1""",
    )
    if dup:
        raise CorruptData(
            f"{paths['transactions']} line {dup[0]}: transaction {dup[1]} appears twice",
            "remove the duplicate rows",
        )


def _blocks(con: duckdb.DuckDBPyConnection) -> pa.Table:
    return con.sql(
        """SELECT number::BIGINT AS number, unhex(substr(hash, 3)) AS hash,
                  unhex(substr(parent_hash, 3)) AS parent_hash, timestamp::BIGINT AS time,
                  transaction_count::INTEGER AS tx_count, unhex(substr(miner, 3)) AS miner,
                  gas_used::BIGINT AS gas_used, base_fee_per_gas AS base_fee, size::INTEGER AS size
           FROM raw_blocks"""
    ).to_arrow_table()


def _transactions(con: duckdb.DuckDBPyConnection, with_receipts: bool) -> pa.Table:
    receipts = (
        "LEFT JOIN raw_receipts r ON lower(r.transaction_hash) = lower(t.hash)"
        if with_receipts
        else "LEFT JOIN (SELECT NULL AS gas_used, NULL AS status, NULL AS effective_gas_price, "
        "NULL AS contract_address) r ON FALSE"
    )
    return con.sql(
        f"""SELECT t.block_number::BIGINT AS block_number, t.transaction_index::INTEGER AS position,
                   unhex(substr(t.hash, 3)) AS hash, unhex(substr(t.from_address, 3)) AS "from",
                   unhex(substr(t.to_address, 3)) AS "to",
                   CASE WHEN t.to_address IS NULL
                        THEN unhex(substr(coalesce(t.receipt_contract_address, r.contract_address), 3)) END
                        AS created,
                   t.value AS value, t.nonce::BIGINT AS nonce, t.gas::BIGINT AS gas, t.gas_price AS gas_price,
                   coalesce(t.receipt_gas_used, r.gas_used)::BIGINT AS gas_used,
                   (coalesce(t.receipt_gas_used, r.gas_used)::UHUGEINT
                    * coalesce(t.receipt_effective_gas_price, r.effective_gas_price, t.gas_price)::UHUGEINT
                   )::VARCHAR AS fee,
                   CASE coalesce(t.receipt_status, r.status) WHEN '1' THEN TRUE WHEN '0' THEN FALSE END
                        AS status,
                   t.transaction_type::INTEGER AS tx_type,
                   CASE WHEN length(t.input) >= 10 THEN unhex(substr(t.input, 3, 8)) END AS method
            FROM raw_transactions t {receipts}"""
    ).to_arrow_table()


def _token_transfers(
    con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table], paths: dict[str, Path]
) -> tuple[pa.Table, str, int]:
    if "logs" in tables:
        rows: dict[str, list[object]] = {name: [] for name in TRANSFER_SCHEMA.names}
        skipped = 0
        logs = tables["logs"].to_pydict()
        for i, line in enumerate(logs["_line"]):
            topics = (logs["topics"][i] or "").split(",") if logs["topics"][i] else []
            contract = bytes.fromhex(str(logs["address"][i])[2:])
            try:
                t = decode_transfer(contract, topics, str(logs["data"][i]))
            except ValueError as exc:
                raise CorruptData(
                    f"{paths['logs']} line {line}: {exc}", "the log data is malformed"
                ) from None
            if t is None:
                if (
                    topics
                    and topics[0].lower()
                    == "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
                ):
                    skipped += 1
                continue
            for name, value in (
                ("tx_hash", bytes.fromhex(str(logs["transaction_hash"][i])[2:])),
                ("block_number", int(str(logs["block_number"][i]))),
                ("kind", "token"),
                ("log_index", int(str(logs["log_index"][i]))),
                ("trace_position", None),
                ("contract", t.contract),
                ("from", t.sender),
                ("to", t.recipient),
                ("amount", str(t.amount)),
            ):
                rows[name].append(value)
        return pa.table(rows, schema=TRANSFER_SCHEMA), "logs", skipped
    if "token_transfers" in tables:
        table = con.sql(
            """SELECT unhex(substr(transaction_hash, 3)) AS tx_hash, block_number::BIGINT AS block_number,
                      'token' AS kind, log_index::INTEGER AS log_index, NULL AS trace_position,
                      unhex(substr(token_address, 3)) AS contract, unhex(substr(from_address, 3)) AS "from",
                      unhex(substr(to_address, 3)) AS "to", value AS amount
               FROM raw_token_transfers"""
        ).to_arrow_table()
        return table.cast(TRANSFER_SCHEMA), "token_transfers", 0
    return TRANSFER_SCHEMA.empty_table(), "none", 0


def _withdrawals(blocks: pa.Table, path: Path) -> pa.Table:
    """Beacon-chain withdrawals (EIP-4895) of the blocks export: amounts in gwei, stored in wei."""
    rows: dict[str, list[object]] = {name: [] for name in TRANSFER_SCHEMA.names}
    if "withdrawals" not in blocks.column_names:
        return TRANSFER_SCHEMA.empty_table()
    data = blocks.select(["number", "withdrawals", "_line"]).to_pydict()
    for number, text, line in zip(data["number"], data["withdrawals"], data["_line"]):
        if not text:
            continue
        try:
            items = json.loads(text if text.lstrip().startswith("[") else f"[{text}]")
            parsed = [(bytes.fromhex(w["address"][2:]), int(w["amount"]), int(w["index"])) for w in items]
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptData(f"{path} line {line}: withdrawals do not parse ({exc})", "re-export") from None
        for address, gwei, index in parsed:
            if len(address) != 20 or gwei < 0:
                raise CorruptData(
                    f"{path} line {line}: withdrawal {index} is malformed", "re-export the file"
                )
            for name, value in (
                ("tx_hash", None),
                ("block_number", int(str(number))),
                ("kind", "withdrawal"),
                ("log_index", None),
                ("trace_position", str(index)),
                ("contract", None),
                ("from", BEACON),
                ("to", address),
                ("amount", str(gwei * 10**9)),
            ):
                rows[name].append(value)
    return pa.table(rows, schema=TRANSFER_SCHEMA)
