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
from fundtrail.chains.evm.logs import TRANSFER_TOPIC_HEX, decode_transfer
from fundtrail.errors import CorruptData, InvalidInput
from fundtrail.ingest.etl_files import read_export
from fundtrail.store.account_write import BEACON, TRANSFER_SCHEMA, AccountWriteResult, write_staged
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
        _stage_blocks(con)
        _stage_transactions(con, "receipts" in tables)
        summary.token_transfers_from, summary.logs_skipped = _stage_token_transfers(con, tables, paths)
        withdrawals = _withdrawals(tables["blocks"], paths["blocks"])
        summary.withdrawals = withdrawals.num_rows
        if withdrawals.num_rows:
            con.register("etl_withdrawals", withdrawals)
            con.execute("INSERT INTO acc_transfers_in SELECT * FROM etl_withdrawals")
            con.unregister("etl_withdrawals")
        summary.written = write_staged(con, chain, f"ethereum-etl:{blocks.name}", allow_missing_transactions)
    finally:
        for kind in tables:
            con.unregister(f"raw_{kind}")
        for name in ("acc_blocks_in", "acc_txs_in", "acc_transfers_in"):
            con.execute(f"DROP TABLE IF EXISTS {name}")
    return summary


def _complete(table: pa.Table, kind: str) -> pa.Table:
    """Absent optional columns become all-null, so one SQL text serves every variant of the export."""
    for col in RULES[kind]:
        if col not in table.column_names:
            table = table.append_column(col, pa.nulls(table.num_rows, pa.string()))
    return table


def _validate(con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table], paths: dict[str, Path]) -> None:
    """Every column against its pattern, one scan per file; the first bad value (by line) is reported."""
    for kind in tables:
        rules = list(RULES[kind].items())
        checks = ", ".join(
            f"""min(_line) FILTER (WHERE {"" if nullable else f'"{col}" IS NULL OR '}"""
            f"""NOT regexp_full_match("{col}", '{pattern}'))"""
            for col, (pattern, nullable) in rules
        )
        lines = first(con, f"SELECT {checks} FROM raw_{kind}")
        assert lines is not None
        failing = [(line, i) for i, line in enumerate(lines) if line is not None]
        if failing:
            line, i = min(failing)
            col, (pattern, _) = rules[i]
            value = first(con, f'SELECT "{col}" FROM raw_{kind} WHERE _line = ?', [line])
            shown = "empty" if value is None or value[0] is None else repr(str(value[0])[:80])
            raise CorruptData(
                f"{paths[kind]} line {line}: column {col} is {shown}, expected {pattern}",
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


def _stage_blocks(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """CREATE OR REPLACE TEMP TABLE acc_blocks_in AS
           SELECT number::BIGINT AS number, unhex(substr(hash, 3)) AS hash,
                  unhex(substr(parent_hash, 3)) AS parent_hash, timestamp::BIGINT AS time,
                  transaction_count::INTEGER AS tx_count, unhex(substr(miner, 3)) AS miner,
                  gas_used::BIGINT AS gas_used, base_fee_per_gas AS base_fee, size::INTEGER AS size
           FROM raw_blocks"""
    )


def _stage_transactions(con: duckdb.DuckDBPyConnection, with_receipts: bool) -> None:
    receipts = (
        "LEFT JOIN raw_receipts r ON lower(r.transaction_hash) = lower(t.hash)"
        if with_receipts
        else "LEFT JOIN (SELECT NULL AS gas_used, NULL AS status, NULL AS effective_gas_price, "
        "NULL AS contract_address) r ON FALSE"
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE acc_txs_in AS
            SELECT t.block_number::BIGINT AS block_number, t.transaction_index::INTEGER AS position,
                   unhex(substr(t.hash, 3)) AS hash, unhex(substr(t.from_address, 3)) AS "from",
                   unhex(substr(t.to_address, 3)) AS "to",
                   CASE WHEN t.to_address IS NULL
                        THEN unhex(substr(coalesce(t.receipt_contract_address, r.contract_address), 3)) END
                        AS created,
                   t.value AS value, t.nonce::BIGINT AS nonce, t.gas::BIGINT AS gas, t.gas_price AS gas_price,
                   coalesce(t.receipt_gas_used, r.gas_used)::BIGINT AS gas_used,
                   (coalesce(t.receipt_gas_used, r.gas_used)::HUGEINT
                    * coalesce(t.receipt_effective_gas_price, r.effective_gas_price, t.gas_price)::HUGEINT
                   )::BIGNUM AS fee,
                   CASE coalesce(t.receipt_status, r.status) WHEN '1' THEN TRUE WHEN '0' THEN FALSE END
                        AS status,
                   t.transaction_type::INTEGER AS tx_type,
                   CASE WHEN length(t.input) >= 10 THEN unhex(substr(t.input, 3, 8)) END AS method
            FROM raw_transactions t {receipts}"""
    )


def _stage_token_transfers(
    con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table], paths: dict[str, Path]
) -> tuple[str, int]:
    """Stage ``acc_transfers_in`` with the token transfers; returns where they came from and how many
    Transfer-signature logs were not of the 3-topic form."""
    if "logs" in tables:
        decoded, skipped = _decode_logs(tables["logs"], paths["logs"])
        con.register("etl_decoded_logs", decoded)
        con.execute("CREATE OR REPLACE TEMP TABLE acc_transfers_in AS SELECT * FROM etl_decoded_logs")
        con.unregister("etl_decoded_logs")
        return "logs", skipped
    if "token_transfers" in tables:
        source = "raw_token_transfers"
        origin = "token_transfers"
    else:
        source = "(SELECT * FROM raw_blocks WHERE FALSE)"
        origin = "none"
    columns = (
        """unhex(substr(transaction_hash, 3)) AS tx_hash, block_number::BIGINT AS block_number,
           'token' AS kind, log_index::INTEGER AS log_index, NULL::VARCHAR AS trace_position,
           unhex(substr(token_address, 3)) AS contract, unhex(substr(from_address, 3)) AS "from",
           unhex(substr(to_address, 3)) AS "to", value AS amount"""
        if origin != "none"
        else """NULL::BLOB AS tx_hash, NULL::BIGINT AS block_number, NULL::VARCHAR AS kind,
                NULL::INTEGER AS log_index, NULL::VARCHAR AS trace_position, NULL::BLOB AS contract,
                NULL::BLOB AS "from", NULL::BLOB AS "to", NULL::VARCHAR AS amount"""
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE acc_transfers_in AS SELECT {columns} FROM {source}")
    return origin, 0


def _decode_logs(logs_table: pa.Table, path: Path) -> tuple[pa.Table, int]:
    rows: dict[str, list[object]] = {name: [] for name in TRANSFER_SCHEMA.names}
    skipped = 0
    logs = logs_table.to_pydict()
    for i, line in enumerate(logs["_line"]):
        topics = str(logs["topics"][i]).split(",") if logs["topics"][i] else []
        contract = bytes.fromhex(str(logs["address"][i])[2:])
        try:
            t = decode_transfer(contract, topics, str(logs["data"][i]))
        except ValueError as exc:
            raise CorruptData(f"{path} line {line}: {exc}", "the log data is malformed") from None
        if t is None:
            skipped += bool(topics) and topics[0].lower() == TRANSFER_TOPIC_HEX
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
    return pa.table(rows, schema=TRANSFER_SCHEMA), skipped


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
