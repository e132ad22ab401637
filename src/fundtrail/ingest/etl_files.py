"""Reading ethereum-etl exports (CSV or JSON lines) into Arrow tables of strings, exactly.

Every column is read as text: amounts are uint256 and a float would lose digits. Column names are
normalised to ethereum-etl's own; the camelCase names of GraphSense's exports of the same data
(``blockId``, ``txHash``, ``fromAddress`` ...) are accepted as aliases. Each row keeps its line number in
the file (``_line``) so an error can name it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from fundtrail.errors import CorruptData, InvalidInput

ALIASES: dict[str, dict[str, str]] = {
    "blocks": {
        "blockId": "number",
        "blockHash": "hash",
        "parentHash": "parent_hash",
        "gasUsed": "gas_used",
        "baseFeePerGas": "base_fee_per_gas",
        "transactionCount": "transaction_count",
    },
    "transactions": {
        "txHash": "hash",
        "blockId": "block_number",
        "blockHash": "block_hash",
        "transactionIndex": "transaction_index",
        "fromAddress": "from_address",
        "toAddress": "to_address",
        "gasPrice": "gas_price",
        "receiptGasUsed": "receipt_gas_used",
        "receiptStatus": "receipt_status",
        "receiptContractAddress": "receipt_contract_address",
        "transactionType": "transaction_type",
        "receiptEffectiveGasPrice": "receipt_effective_gas_price",
    },
    "receipts": {
        "txHash": "transaction_hash",
        "gasUsed": "gas_used",
        "effectiveGasPrice": "effective_gas_price",
        "contractAddress": "contract_address",
        "blockId": "block_number",
    },
    "logs": {
        "logIndex": "log_index",
        "txHash": "transaction_hash",
        "blockId": "block_number",
        "transactionIndex": "transaction_index",
    },
    "token_transfers": {
        "tokenAddress": "token_address",
        "from": "from_address",
        "to": "to_address",
        "txHash": "transaction_hash",
        "logIndex": "log_index",
        "blockId": "block_number",
    },
}

REQUIRED: dict[str, tuple[str, ...]] = {
    "blocks": ("number", "hash", "parent_hash", "timestamp"),
    "transactions": ("hash", "block_number", "transaction_index", "from_address", "to_address", "value"),
    "receipts": ("transaction_hash", "gas_used", "status"),
    "logs": ("log_index", "transaction_hash", "block_number", "address", "data", "topics"),
    "token_transfers": (
        "token_address",
        "from_address",
        "to_address",
        "value",
        "transaction_hash",
        "log_index",
        "block_number",
    ),
}


def read_export(path: Path, kind: str) -> pa.Table:
    """One ethereum-etl export file as a table of strings with canonical column names and ``_line``."""
    try:
        with path.open("rb") as fh:
            head = fh.read(1)
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", "check the path") from None
    table = _read_json_lines(path) if head == b"{" else _read_csv(path)
    aliases = ALIASES[kind]
    names = [aliases.get(n, n) for n in table.column_names]
    table = table.rename_columns(names)
    missing = [c for c in REQUIRED[kind] if c not in names]
    if missing:
        raise CorruptData(
            f"{path} lacks the column(s) {', '.join(missing)} of an ethereum-etl {kind} export",
            f"pass the {kind} file to --{kind.replace('_', '-')}",
        )
    return table


def _read_csv(path: Path) -> pa.Table:
    with path.open(newline="") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise CorruptData(f"{path} is empty", "give an ethereum-etl export with its header line")
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        strings_can_be_null=True,
        null_values=[""],
        quoted_strings_can_be_null=True,
    )
    block = 1 << 20
    while True:
        try:
            table = pacsv.read_csv(
                path, read_options=pacsv.ReadOptions(block_size=block), convert_options=convert
            )
            break
        except pa.ArrowInvalid as exc:
            # a row longer than the reader's block (a block's withdrawals, a contract's creation code):
            # read again with larger blocks, up to 1 GiB
            if "straddl" in str(exc) and block < 1 << 30:
                block *= 8
                continue
            raise CorruptData(f"{path}: {str(exc).splitlines()[0]}", "the CSV file is malformed") from None
    lines = pa.array(range(2, table.num_rows + 2), pa.int64())
    return table.append_column("_line", lines)


def _text(v: object) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, list):
        return ",".join(str(x) for x in v) if all(isinstance(x, str) for x in v) else json.dumps(v)
    if isinstance(v, dict):
        return json.dumps(v)
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        raise ValueError(f"a number with a fraction or exponent ({v!r}) where integers are exact")
    return str(v)


def _read_json_lines(path: Path) -> pa.Table:
    columns: dict[str, list[str | None]] = {}
    lines: list[int] = []
    with path.open() as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("not an object")
                values = {k: _text(v) for k, v in row.items()}
            except ValueError as exc:
                raise CorruptData(f"{path} line {n}: {exc}", "the JSON-lines file is malformed") from None
            for k in values.keys() - columns.keys():
                columns[k] = [None] * len(lines)
            for k, col in columns.items():
                col.append(values.get(k))
            lines.append(n)
    if not lines:
        raise CorruptData(f"{path} holds no rows", "give a non-empty ethereum-etl export")
    table = pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})
    return table.append_column("_line", pa.array(lines, pa.int64()))
