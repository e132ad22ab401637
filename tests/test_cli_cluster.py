"""The clustering CLI on real blocks: `cluster`, `show cluster`, `explain-cluster`, `show address`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.test_cli import run

SATOSHI = "12cbQLTFMXRnSzktFkuoG3eHoMeFtpTu3S"  # block 9's coinbase address, spends in block 170


@pytest.fixture(scope="module")
def store(real_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clcli") / "real.duckdb"
    shutil.copy(real_store, path)
    return path


def test_cluster_then_show_and_explain(store: Path) -> None:
    before = run("show", "cluster", SATOSHI, db=store)
    assert before.returncode == 3 and "run `fundtrail cluster` first" in before.stderr
    r = run("cluster", "--chain", "bitcoin", "--json", db=store)
    assert r.returncode == 0, r.stderr
    (report,) = json.loads(r.stdout)
    assert report["chain"] == "bitcoin" and report["mode"] == "full"
    assert report["merges"]["multi_input"] == report["clustered_addresses"] - report["clusters"]
    again = json.loads(run("cluster", "--chain", "bitcoin", "--json", db=store).stdout)[0]
    assert again["mode"] == "incremental" and again["txs_processed"] == 0 and again["merges"] == {}

    # the largest cluster, through the CLI
    largest = json.loads(run("show", "cluster", SATOSHI, "--json", db=store).stdout)
    assert {"cluster_id", "size", "addresses_sample", "labels", "categories", "heuristics", "conflicts"} <= (
        largest.keys()
    )
    assert largest["size"] == 1 and largest["heuristics"] == {}  # Satoshi's block-9 address never co-spends
    a = json.loads(run("show", "address", SATOSHI, "--json", db=store).stdout)
    assert a["cluster"]["cluster_id"] == a["address_id"] and a["cluster"]["size"] == 1
    assert a["labels"] == []

    t = run("cluster", "--json", "--change", "psychic", db=store)
    assert t.returncode == 2 and "unknown change heuristic 'psychic'" in t.stderr
    assert t.stderr.count("\n") == 1


def test_explain_cluster_cli(store: Path) -> None:
    assert run("cluster", db=store).returncode == 0
    import duckdb

    con = duckdb.connect(str(store), read_only=True)
    cid, size = con.execute(
        "SELECT cluster_id, count(*) FROM clusters GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
    ).fetchall()[0]
    con.close()
    shown = json.loads(run("show", "cluster", str(cid), "--json", db=store).stdout)
    assert shown["size"] == size and shown["heuristics"]["multi_input"] == size - 1
    a, b = shown["addresses_sample"][0], shown["addresses_sample"][-1]
    ex = json.loads(run("explain-cluster", a, b, "--json", db=store).stdout)
    assert ex["linked"] and len(ex["steps"]) >= 1
    table = run("explain-cluster", a, b, db=store)
    assert table.returncode == 0 and "multi_input" in table.stdout
    no = run("explain-cluster", a, SATOSHI, db=store)
    assert no.returncode == 0 and "not linked" in no.stdout
    bad = run("explain-cluster", a, "1NotAnAddress", db=store)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ")
    text = run("show", "cluster", a, db=store)
    assert text.returncode == 0 and f"Cluster {cid}" in text.stdout
