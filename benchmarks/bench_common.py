"""Shared pieces of the benchmarks: the real blocks they run on, timing, machine description, result lines."""

from __future__ import annotations

import datetime as dt
import gc
import os
import platform
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from fundtrail.chains.bitcoin.blockfile import read_block_file
from fundtrail.chains.bitcoin.network import MAINNET

# The shared mainnet block files (testnet files are left out: the reference would decode them the same,
# but the store would keep them under another chain).
BITCOINJ_DIR = "bitcoin/bitcoinj-blocks"
BITCOIN_S_DIR = "bitcoin/bitcoin-s-blocks"
BITCOIN_S_BLOCKS = (
    "000000000000000000050f70113ab1932c195442cb49bcc4ee4d7f426c8a3295.txt",  # block 514485
    "00000000000000000008513c860373da0484f065983aeb063ebf81c172e81d48.txt",  # block 514492
)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class BlockSet:
    """The benchmark blocks: the files they come from and every block's raw bytes, in file order."""

    paths: list[Path]
    blocks: list[bytes]

    @property
    def n_bytes(self) -> int:
        return sum(len(b) for b in self.blocks)


def mainnet_block_paths(data_dir: Path) -> list[Path]:
    bj = data_dir / BITCOINJ_DIR
    paths = sorted(p for p in bj.glob("*.dat") if "testnet" not in p.name)
    paths += [data_dir / BITCOIN_S_DIR / name for name in BITCOIN_S_BLOCKS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise SystemExit(f"benchmark data missing under {data_dir}: {missing or 'no block files'}")
    return paths


def load_blocks(data_dir: Path) -> BlockSet:
    """Read every mainnet block once (blk framing and hex text handled by fundtrail's reader)."""
    paths = mainnet_block_paths(data_dir)
    blocks: list[bytes] = []
    for p in paths:
        bf = read_block_file(p, MAINNET)
        raw = bf.buf.tobytes()
        blocks.extend(raw[s:e] for s, e in zip(bf.starts.tolist(), bf.ends.tolist()))
    return BlockSet(paths, blocks)


@dataclass
class Timing:
    times: list[float]

    @property
    def best(self) -> float:
        return min(self.times)

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def timed(fn: Callable[[], object], gc_off: bool = True) -> float:
    """Seconds for one call of fn. ``gc_off``: with the cyclic garbage collector off, as timeit does;
    otherwise with it on, as an application runs."""
    gc.collect()
    was_on = gc.isenabled()
    if gc_off:
        gc.disable()
    try:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    finally:
        if was_on:
            gc.enable()


def _lscpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor() or "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu": _lscpu_model(),
        "ram_gib": _ram_gib(),
        "python": platform.python_version(),
        "numba": _version("numba"),
        "duckdb": _version("duckdb"),
        "python-bitcoinlib": _version("python-bitcoinlib"),
        "openssl": ssl.OPENSSL_VERSION,
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def result_line(
    name: str,
    ours: float,
    reference: float,
    unit: str,
    reference_name: str,
    target: float,
    higher_is_better: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """One benchmark result: ``ratio`` is how many times better ours is than the reference."""
    ratio = ours / reference if higher_is_better else reference / ours
    return {
        "name": name,
        "ours": round(ours, 3),
        "reference": round(reference, 3),
        "ratio": round(ratio, 2),
        "unit": unit,
        "reference_name": reference_name,
        "target": target,
        "met": ratio >= target,
        **extra,
    }
