"""The store: forward migrations, version checks, the lock, and ids unique across chains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from fundtrail.chains.bitcoin.network import MAINNET
from fundtrail.errors import NotFound, StoreError
from fundtrail.ingest.bitcoin_files import ingest_block_files
from fundtrail.ingest.ethereum_etl import ingest_ethereum_etl
from fundtrail.store.db import connect
from fundtrail.store.schema import LATEST, MIGRATIONS
from tests.conftest import DATA, MAINNET_SINGLE, table_counts

STREAM = DATA / "ethereum-etl" / "test_stream" / "blocks_17173049_17173050"


def _v1_store(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE fundtrail_schema (version INTEGER, description VARCHAR, applied_at TIMESTAMPTZ)"
    )
    for sql in MIGRATIONS[0][2]:
        con.execute(sql)
    con.execute("INSERT INTO fundtrail_schema VALUES (1, 'v1', now())")
    con.close()


def test_a_version_1_store_is_migrated_forward(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _v1_store(path)
    con = connect(path)
    versions = [r[0] for r in con.execute("SELECT version FROM fundtrail_schema ORDER BY 1").fetchall()]
    assert versions == list(range(1, LATEST + 1))
    ingest_block_files(con, [MAINNET_SINGLE[0]], MAINNET)
    assert table_counts(con)["blocks"] == 1
    con.close()
    # reopening applies nothing again
    con = connect(path)
    assert con.execute("SELECT count(*) FROM fundtrail_schema").fetchall()[0][0] == LATEST


def test_read_only_open_of_a_v1_store_migrates_it_first(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _v1_store(path)
    con = connect(path, read_only=True)
    assert con.execute("SELECT max(version) FROM fundtrail_schema").fetchall()[0][0] == LATEST


def test_newer_store_and_foreign_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    connect(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO fundtrail_schema VALUES (99, 'future', now())")
    con.close()
    with pytest.raises(StoreError, match="newer than this fundtrail"):
        connect(path)
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreError):
        connect(junk)
    with pytest.raises(NotFound, match="no store at"):
        connect(tmp_path / "missing.duckdb", read_only=True)


def test_a_store_in_use_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "busy.duckdb"
    connect(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, time; c = duckdb.connect({str(path)!r}); print('ready', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match="in use by another process"):
            connect(path)
    finally:
        holder.kill()
        holder.wait()


def test_tx_ids_are_unique_across_chains(tmp_path: Path) -> None:
    con = connect(tmp_path / "s.duckdb")
    ingest_ethereum_etl(
        con, "ethereum", STREAM / "expected_blocks.json", STREAM / "expected_transactions.json"
    )
    ingest_block_files(con, [MAINNET_SINGLE[0]], MAINNET)
    ingest_ethereum_etl(
        con,
        "ethereum",
        DATA / "ethereum-etl" / "test_export_blocks_job" / "block_with_logs" / "expected_blocks.csv",
        DATA / "ethereum-etl" / "test_export_blocks_job" / "block_with_logs" / "expected_transactions.csv",
    )
    ids = con.execute("SELECT tx_id FROM transactions UNION ALL SELECT tx_id FROM account_txs").fetchall()
    n_eth = con.execute("SELECT count(*) FROM account_txs").fetchall()[0][0]
    assert n_eth > 298  # both exports
    assert len(ids) == len(set(ids)) == n_eth + 14  # block 169482 holds 14 transactions
    blocks = con.execute("SELECT block_id FROM blocks").fetchall()
    assert len(blocks) == len(set(blocks))
