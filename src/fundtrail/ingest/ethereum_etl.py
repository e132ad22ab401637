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
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fundtrail.chains.assets import EVM_CHAINS
from fundtrail.chains.evm.logs import TRANSFER_TOPIC_HEX, decode_transfer
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
        for kind, table in tables.items():
            con.unregister(f"raw_{kind}")
            con.register(f"raw_{kind}", _with_keys(table, kind))
        blocks_in = con.sql(_BLOCKS).to_arrow_table()
        txs_in = con.sql(_transactions_sql("receipts" in tables)).to_arrow_table()
        transfers_in, summary.token_transfers_from, summary.logs_skipped = _token_transfers(
            con, tables, paths
        )
        withdrawals = _withdrawals(tables["blocks"], paths["blocks"])
        summary.withdrawals = withdrawals.num_rows
        if withdrawals.num_rows:
            transfers_in = pa.concat_tables([transfers_in.cast(TRANSFER_SCHEMA), withdrawals])
        batch = AccountBatch(
            chain, blocks_in, txs_in, transfers_in, f"ethereum-etl:{blocks.name}", allow_missing_transactions
        )
        summary.written = write_account_batch(con, batch)
    finally:
        for kind in tables:
            con.unregister(f"raw_{kind}")
    return summary


def _complete(table: pa.Table, kind: str) -> pa.Table:
    """Absent optional columns become all-null, so one SQL text serves every variant of the export."""
    for col in RULES[kind]:
        if col not in table.column_names:
            table = table.append_column(col, pa.nulls(table.num_rows, pa.string()))
    return table


# pattern -> (prefix "0x", min length, max length, even length, byte class of the rest); TOPICS is
# checked with its regular expression (logs only)
_SHAPES: dict[str, tuple[bool, int, int, bool, str]] = {
    H32: (True, 66, 66, False, "hex"),
    ADDR: (True, 42, 42, False, "hex"),
    UINT: (False, 1, 78, False, "digit"),
    HEX: (True, 2, 2**62, True, "hex"),
    STATUS: (False, 1, 1, False, "status"),
}


def _outside(data: np.ndarray, cls: str) -> np.ndarray:
    """Per byte: not of the class (uint8 arithmetic wraps, so one comparison bounds a range)."""
    if cls == "digit":
        return (data - 48) > 9
    if cls == "status":
        return (data - 48) > 1
    return ((data - 48) > 9) & (((data | 32) - 97) > 5)


def _bad_values(chunk: pa.Array, pattern: str, nullable: bool) -> np.ndarray:
    """Per value of one chunk of a string column: does it fail ``pattern`` (or is it a forbidden null)?
    The byte checks run over the chunk's data buffer at once, not value by value."""
    n = len(chunk)
    valid = np.ones(n, bool) if chunk.null_count == 0 else chunk.is_valid().to_numpy(zero_copy_only=False)
    if pattern not in _SHAPES:
        matches = pc.match_substring_regex(chunk, f"^(?:{pattern})$").fill_null(False)
        ok = matches.to_numpy(zero_copy_only=False)
    else:
        prefix, lo, hi, even, cls = _SHAPES[pattern]
        width = 8 if pa.types.is_large_string(chunk.type) else 4
        offsets = np.frombuffer(
            chunk.buffers()[1], np.int64 if width == 8 else np.int32, count=n + 1, offset=chunk.offset * width
        ).astype(np.int64)
        buffer = chunk.buffers()[2]
        data = np.frombuffer(buffer, np.uint8) if buffer is not None else np.zeros(0, np.uint8)
        starts = offsets[:-1]
        lengths = offsets[1:] - starts
        ok = (lengths >= lo) & (lengths <= hi)
        if even:
            ok &= lengths % 2 == 0
        if len(data) and n:
            last = len(data) - 1
            if prefix:
                ok &= (data[np.minimum(starts, last)] == 48) & (data[np.minimum(starts + 1, last)] == 120)
            wrong = np.flatnonzero(_outside(data[offsets[0] : offsets[-1]], cls)) + offsets[0]
            rows = np.searchsorted(offsets, wrong, side="right") - 1
            if prefix:  # the x of a row's 0x is checked above
                rows = rows[wrong != starts[rows] + 1]
            ok[rows] = False
    return np.where(valid, ~ok, not nullable)


def _validate(con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table], paths: dict[str, Path]) -> None:
    """Every value of every column against its pattern; the first bad value (by line) is reported."""
    for kind, table in tables.items():
        failing: list[tuple[int, int, int]] = []
        lines = table["_line"].to_numpy()
        for i, (col, (pattern, nullable)) in enumerate(RULES[kind].items()):
            bad = np.concatenate(
                [_bad_values(c, pattern, nullable) for c in table[col].chunks] or [np.zeros(0, bool)]
            )
            if bad.any():
                row = int(np.argmax(bad))
                failing.append((int(lines[row]), i, row))
        if failing:
            line, i, row = min(failing)
            col, (pattern, _) = list(RULES[kind].items())[i]
            value = table[col][row].as_py()
            shown = "empty" if value is None else repr(str(value)[:80])
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
    hashes = tables["transactions"]["hash"]
    dup = len(pc.unique(pc.ascii_lower(hashes))) != len(hashes) and first(
        con,
        """SELECT min(_line), min(hash) FROM raw_transactions
           GROUP BY lower(hash) HAVING count(*) > 1 LIMIT 1""",
    )
    if dup:
        raise CorruptData(
            f"{paths['transactions']} line {dup[0]}: transaction {dup[1]} appears twice",
            "remove the duplicate rows",
        )


# hex columns decoded once, in Arrow, into ``<column>_bin`` (the number of leading bytes kept, or all)
_KEYS: dict[str, dict[str, int | None]] = {
    "blocks": {"hash": None, "parent_hash": None, "miner": None},
    "transactions": {
        "hash": None,
        "from_address": None,
        "to_address": None,
        "receipt_contract_address": None,
        "input": 4,
    },
    "receipts": {"transaction_hash": None, "contract_address": None},
    "token_transfers": {
        "transaction_hash": None,
        "token_address": None,
        "from_address": None,
        "to_address": None,
    },
}


def _layout(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string chunk's offsets (int64) and data bytes, as arrays over its buffers."""
    wide = pa.types.is_large_string(chunk.type)
    offsets = np.frombuffer(
        chunk.buffers()[1],
        np.int64 if wide else np.int32,
        count=len(chunk) + 1,
        offset=chunk.offset * (8 if wide else 4),
    ).astype(np.int64)
    buffer = chunk.buffers()[2]
    return offsets, np.frombuffer(buffer, np.uint8) if buffer is not None else np.zeros(0, np.uint8)


def _unhex(chunk: pa.Array, nbytes: int | None) -> pa.Array:
    """Validated ``0x`` hex values as bytes: all of them, or the first ``nbytes`` (null where shorter)."""
    n = len(chunk)
    offsets, data = _layout(chunk)
    starts = offsets[:-1]
    lengths = offsets[1:] - starts
    valid = np.ones(n, bool) if chunk.null_count == 0 else chunk.is_valid().to_numpy(zero_copy_only=False)
    keep = valid & (lengths >= 2 + 2 * (nbytes or 0))
    widths = np.where(keep, (lengths - 2) // 2 if nbytes is None else nbytes, 0)
    out = np.zeros(n + 1, np.int64)
    np.cumsum(widths, out=out[1:])
    width = int(widths[keep][0]) if keep.any() else 0
    if nbytes is None and int(lengths[~keep].sum()) == 0 and bool((widths[keep] == width).all()):
        chars = data[offsets[0] : offsets[-1]].reshape(-1, 2 + 2 * width)[:, 2:].reshape(-1)
    else:  # gather each kept value's hex digits
        rows = np.repeat(np.flatnonzero(keep), widths[keep])
        at = np.arange(int(out[-1]), dtype=np.int64) - out[rows]
        pairs = (starts[rows] + 2 + 2 * at)[:, None] + np.array([0, 1])
        chars = data[pairs.reshape(-1)]
    nibbles = (chars & 15) + 9 * (chars >> 6)
    raw = (nibbles[0::2] << 4) | nibbles[1::2]
    validity = None if keep.all() else pa.py_buffer(np.packbits(keep, bitorder="little"))
    return pa.Array.from_buffers(
        pa.binary(), n, [validity, pa.py_buffer(out.astype(np.int32)), pa.py_buffer(raw.astype(np.uint8))]
    )


def _with_keys(table: pa.Table, kind: str) -> pa.Table:
    for col, nbytes in _KEYS.get(kind, {}).items():
        chunks = [_unhex(c, nbytes) for c in table[col].chunks]
        table = table.append_column(f"{col}_bin", pa.chunked_array(chunks, pa.binary()))
    return table


_BLOCKS = """SELECT number::BIGINT AS number, hash_bin AS hash, parent_hash_bin AS parent_hash,
                    timestamp::BIGINT AS time, transaction_count::INTEGER AS tx_count, miner_bin AS miner,
                    gas_used::BIGINT AS gas_used, base_fee_per_gas AS base_fee, size::INTEGER AS size
             FROM raw_blocks"""


def _transactions_sql(with_receipts: bool) -> str:
    receipts = (
        "LEFT JOIN raw_receipts r ON r.transaction_hash_bin = t.hash_bin"
        if with_receipts
        else "LEFT JOIN (SELECT NULL AS gas_used, NULL AS status, NULL AS effective_gas_price, "
        "NULL::BLOB AS contract_address_bin) r ON FALSE"
    )
    return f"""SELECT t.block_number::BIGINT AS block_number, t.transaction_index::INTEGER AS position,
                   t.hash_bin AS hash, t.from_address_bin AS "from", t.to_address_bin AS "to",
                   CASE WHEN t.to_address IS NULL
                        THEN coalesce(t.receipt_contract_address_bin, r.contract_address_bin) END AS created,
                   t.value AS value, t.nonce::BIGINT AS nonce, t.gas::BIGINT AS gas, t.gas_price AS gas_price,
                   coalesce(t.receipt_gas_used, r.gas_used)::BIGINT AS gas_used,
                   (coalesce(t.receipt_gas_used, r.gas_used)::HUGEINT
                    * coalesce(t.receipt_effective_gas_price, r.effective_gas_price, t.gas_price)::HUGEINT
                   )::VARCHAR AS fee,
                   CASE coalesce(t.receipt_status, r.status) WHEN '1' THEN TRUE WHEN '0' THEN FALSE END
                        AS status,
                   t.transaction_type::INTEGER AS tx_type, t.input_bin AS method
            FROM raw_transactions t {receipts}"""


def _token_transfers(
    con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table], paths: dict[str, Path]
) -> tuple[pa.Table, str, int]:
    """The token transfers, where they came from and how many Transfer-signature logs were not of the
    3-topic form."""
    if "logs" in tables:
        decoded, skipped = _decode_logs(tables["logs"], paths["logs"])
        return decoded, "logs", skipped
    if "token_transfers" not in tables:
        return TRANSFER_SCHEMA.empty_table(), "none", 0
    table = con.sql(
        """SELECT transaction_hash_bin AS tx_hash, block_number::BIGINT AS block_number, 'token' AS kind,
                  log_index::INTEGER AS log_index, NULL::VARCHAR AS trace_position,
                  token_address_bin AS contract, from_address_bin AS "from", to_address_bin AS "to",
                  value AS amount
           FROM raw_token_transfers"""
    ).to_arrow_table()
    return table, "token_transfers", 0


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
