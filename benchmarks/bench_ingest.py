"""End to end: ``ingest bitcoin-blocks`` (the library call behind the CLI command) into a fresh store.

Each round opens a new DuckDB store in a temporary directory and times ``ingest_block_files`` over the
block files: reading them (hex text included), framing, decoding and checking, building the Arrow tables,
resolving inputs, inserting and committing. Opening (creating the schema) and closing (DuckDB's
checkpoint) are timed apart and reported beside it, since they do not grow with the data.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_common import BlockSet, Timing, log
from fundtrail.chains.bitcoin.network import MAINNET
from fundtrail.ingest.bitcoin_files import IngestSummary, ingest_block_files
from fundtrail.store.db import connect, scalar


@dataclass
class IngestRun:
    ingest: Timing
    open: Timing
    close: Timing
    summary: IngestSummary
    duckdb_threads: int


def _one(paths: list[Path]) -> tuple[float, float, float, IngestSummary, int]:
    with tempfile.TemporaryDirectory(prefix="fundtrail-bench-") as tmp:
        t0 = time.perf_counter()
        con = connect(Path(tmp) / "bench.duckdb")
        t1 = time.perf_counter()
        summary = ingest_block_files(con, paths, MAINNET)
        t2 = time.perf_counter()
        threads = int(scalar(con, "SELECT current_setting('threads')"))
        rows = int(scalar(con, "SELECT count(*) FROM transactions"))
        t3 = time.perf_counter()
        con.close()
        t4 = time.perf_counter()
    if rows != summary.txs:
        raise SystemExit(f"ingest: the store holds {rows} transactions, the summary says {summary.txs}")
    return t1 - t0, t2 - t1, t4 - t3, summary, threads


def run(data: BlockSet, rounds: int, expect_txs: int) -> IngestRun:
    log("ingest: warm-up round")
    *_, summary, threads = _one(data.paths)
    if summary.blocks != len(data.blocks) or summary.txs != expect_txs:
        raise SystemExit(
            f"ingest stored {summary.blocks} blocks / {summary.txs} txs, "
            f"expected {len(data.blocks)} / {expect_txs}"
        )
    opens: list[float] = []
    ingests: list[float] = []
    closes: list[float] = []
    for r in range(rounds):
        o, i, c, summary, threads = _one(data.paths)
        opens.append(o)
        ingests.append(i)
        closes.append(c)
        log(f"ingest: round {r + 1}/{rounds}: {i * 1e3:.1f} ms (open {o * 1e3:.1f}, close {c * 1e3:.1f})")
    return IngestRun(Timing(ingests), Timing(opens), Timing(closes), summary, threads)
