"""Simulator speed: the `large` preset (about 10 million transactions) generated end to end, in a child
process (its peak memory measured alone), against the rate of the straightforward serializer
(chains/bitcoin/builder.py's dataclasses) encoding the same number of 2-input/2-output transactions
as the world's Bitcoin side — a reference for the encoding alone, measured in the same run."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import log
from fundtrail.chains.bitcoin.builder import Key, OutPoint, Tx, TxOut, spend_input

TARGET_TX_PER_S = 10_000_000 / 600  # the issue: 10 million transactions in under 10 minutes
REFERENCE = "builder.py dataclass serializer (txid + serialization of 2-in/2-out transactions)"


def _reference_rate(n: int) -> float:
    k = Key("bench")
    spent = k.p2wpkh()
    t0 = time.perf_counter()
    prev = b"\x11" * 32
    for i in range(n):
        tx = Tx(
            (spend_input(OutPoint(prev, 0), k, spent), spend_input(OutPoint(prev, 1), k, spent)),
            (TxOut(100_000 + i, spent), TxOut(50_000, spent)),
        )
        tx.serialize()
        prev = tx.txid
    return n / (time.perf_counter() - t0)


def run(quick: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        scenario = "large"
        if quick:  # a tenth of the large world's length
            path = Path(tmp) / "large-tenth.yaml"
            path.write_text("base: large\nname: large-tenth\nblocks: 432\n")
            scenario = str(path)
        out = Path(tmp) / "world"
        log(f"simulate: generating the {'large preset' if not quick else 'tenth of the large preset'} ...")
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "fundtrail", "simulate", "--scenario", scenario, "--seed", "7",
             "--out", str(out), "--json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        manifest = json.loads(proc.stdout)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    txs = int(manifest["transactions"])
    btc = int(manifest["chains"]["bitcoin-regtest"]["transactions"])
    ref = _reference_rate(min(btc, 200_000))
    ours = txs / wall
    return {
        "name": "simulate_large_world" if not quick else "simulate_large_world_tenth",
        "ours": round(ours),
        "reference": round(ref),
        "ratio": round(ours / ref, 2),
        "unit": "transactions/s",
        "reference_name": REFERENCE,
        "target": round(TARGET_TX_PER_S),
        "met": ours >= TARGET_TX_PER_S and (quick or txs >= 9_000_000),
        "transactions": txs,
        "bitcoin_transactions": btc,
        "account_transactions": int(manifest["chains"]["sim-ethereum"]["transactions"]),
        "actors": manifest["actors"],
        "operations": sum(manifest["operations"].values()),
        "seconds": round(wall, 1),
        "generation_seconds_in_process": manifest["generation_seconds"],
        "peak_rss_bytes": peak,
        "output_bytes": size,
        "timing": "one run, wall clock of the whole command (start-up, generation, truth, manifest hashes)",
    }
