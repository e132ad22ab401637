"""ethereum-etl ingest throughput against pyarrow's bare CSV read of the same files.

The files are the real export of mainnet blocks 17,173,049-50 (298 transactions, 282 ERC-20 transfers),
replicated COPIES times under new block numbers and hashes (a deterministic hash of the original and the
copy number) so the store sees distinct blocks; addresses, values, gas and fees stay the real ones.
"""

from __future__ import annotations

import csv
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from fundtrail.ingest.ethereum_etl import ingest_ethereum_etl
from fundtrail.store.db import connect

STREAM = "ethereum-etl/test_stream/blocks_17173049_17173050"
REFERENCE = "pyarrow.csv.read_csv of the same CSV files (blocks, transactions, token transfers)"
TX_COLS = [
    "hash",
    "nonce",
    "block_hash",
    "block_number",
    "transaction_index",
    "from_address",
    "to_address",
    "value",
    "gas",
    "gas_price",
    "input",
    "block_timestamp",
    "transaction_type",
    "receipt_gas_used",
    "receipt_status",
    "receipt_effective_gas_price",
]
TT_COLS = [
    "token_address",
    "from_address",
    "to_address",
    "value",
    "transaction_hash",
    "log_index",
    "block_number",
]
BLOCK_COLS = [
    "number",
    "hash",
    "parent_hash",
    "timestamp",
    "miner",
    "gas_used",
    "base_fee_per_gas",
    "transaction_count",
]


@dataclass
class EtlResult:
    rows: int  # transactions + token transfers
    ours_s: float
    reference_s: float


def _h(text: str, copy: int) -> str:
    return "0x" + hashlib.sha256(f"{text}/{copy}".encode()).hexdigest()


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def write_files(data_dir: Path, out: Path, copies: int) -> tuple[Path, Path, Path, int]:
    src = data_dir / STREAM
    blocks, txs = _lines(src / "expected_blocks.json"), _lines(src / "expected_transactions.json")
    logs = {(x["transaction_hash"], x["log_index"]): x for x in _lines(src / "expected_logs.json")}
    tts = [
        t
        for t in _lines(src / "expected_token_transfers.json")
        if len(logs[(t["transaction_hash"], t["log_index"])]["topics"]) == 3  # type: ignore[arg-type]
    ]
    paths = (out / "blocks.csv", out / "transactions.csv", out / "token_transfers.csv")
    rows = 0
    with (
        paths[0].open("w", newline="") as fb,
        paths[1].open("w", newline="") as ft,
        paths[2].open("w", newline="") as fx,
    ):
        wb, wt, wx = csv.writer(fb), csv.writer(ft), csv.writer(fx)
        wb.writerow(BLOCK_COLS)
        wt.writerow(TX_COLS)
        wx.writerow(TT_COLS)
        for c in range(copies):
            for i, b in enumerate(blocks):
                number = 10_000_000 + 2 * c + i
                parent = _h(str(blocks[i - 1]["hash"]), c) if i else _h(str(b["parent_hash"]), c)
                wb.writerow(
                    [
                        number,
                        _h(str(b["hash"]), c),
                        parent,
                        b["timestamp"],
                        b["miner"],
                        b["gas_used"],
                        b["base_fee_per_gas"],
                        b["transaction_count"],
                    ]
                )
            for t in txs:
                number = 10_000_000 + 2 * c + (int(str(t["block_number"])) - 17173049)
                wt.writerow(
                    [
                        _h(str(t["hash"]), c),
                        t["nonce"],
                        "",
                        number,
                        t["transaction_index"],
                        t["from_address"],
                        t["to_address"] or "",
                        t["value"],
                        t["gas"],
                        t["gas_price"],
                        t["input"],
                        t["block_timestamp"],
                        t["transaction_type"],
                        t["receipt_gas_used"],
                        t["receipt_status"],
                        t["receipt_effective_gas_price"],
                    ]
                )
                rows += 1
            for x in tts:
                number = 10_000_000 + 2 * c + (int(str(x["block_number"])) - 17173049)
                wx.writerow(
                    [
                        x["token_address"],
                        x["from_address"],
                        x["to_address"],
                        x["value"],
                        _h(str(x["transaction_hash"]), c),
                        x["log_index"],
                        number,
                    ]
                )
                rows += 1
    return (*paths, rows)


def _read_reference(paths: tuple[Path, ...]) -> list[pa.Table]:
    return [pacsv.read_csv(p) for p in paths]


def run(data_dir: Path, copies: int = 200, rounds: int = 3) -> EtlResult:
    with tempfile.TemporaryDirectory(prefix="fundtrail-bench-etl-") as tmp:
        out = Path(tmp)
        b, t, x, rows = write_files(data_dir, out, copies)
        ours, ref = [], []
        for r in range(rounds):
            t0 = time.perf_counter()
            _read_reference((b, t, x))
            ref.append(time.perf_counter() - t0)
            con = connect(out / f"s{r}.duckdb")
            t0 = time.perf_counter()
            ingest_ethereum_etl(con, "ethereum", b, t, token_transfers=x)
            ours.append(time.perf_counter() - t0)
            con.close()
        return EtlResult(rows, min(ours), min(ref))
