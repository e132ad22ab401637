"""Shared fixtures: paths to the real data in ../shared/data and a store holding the real mainnet blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from fundtrail.chains.bitcoin.network import MAINNET
from fundtrail.ingest.bitcoin_files import ingest_block_files
from fundtrail.store.db import connect

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()
BTC = DATA / "bitcoin"
BITCOINJ = BTC / "bitcoinj-blocks"
BITCOIN_S = BTC / "bitcoin-s-blocks"
FIRST_BLOCKS = BITCOINJ / "first-100k-blocks.dat"
BLOCK_514485 = BITCOIN_S / "000000000000000000050f70113ab1932c195442cb49bcc4ee4d7f426c8a3295.txt"
BLOCK_514492 = BITCOIN_S / "00000000000000000008513c860373da0484f065983aeb063ebf81c172e81d48.txt"
MAINNET_SINGLE = sorted(p for p in BITCOINJ.glob("block[0-9]*.dat"))
TESTNET_SINGLE = sorted(BITCOINJ.glob("block_testnet*.dat"))
ALL_MAINNET = [FIRST_BLOCKS, *MAINNET_SINGLE, BLOCK_514485, BLOCK_514492]


@pytest.fixture(scope="session")
def real_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A store holding every real mainnet block of ../shared/data (blocks 0..438 and 11 later ones)."""
    path = tmp_path_factory.mktemp("store") / "real.duckdb"
    con = connect(path)
    ingest_block_files(con, ALL_MAINNET, MAINNET)
    con.close()
    yield path


@pytest.fixture
def real_con(real_store: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = connect(real_store, read_only=True)
    yield con
    con.close()


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {
        t: int(con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0])
        for t in ("blocks", "transactions", "tx_inputs", "tx_outputs", "addresses", "unresolved_inputs")
    }
