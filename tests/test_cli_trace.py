"""`fundtrail trace` through the CLI on real data: the JSON contract, its totals, CSV, GraphML, the table,
an account-chain trace, and one-line errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from fundtrail.ingest.ethereum_etl import ingest_ethereum_etl
from fundtrail.store.db import connect
from tests.conftest import DATA
from tests.test_cli import run

BLOCK9_COINBASE = "0437cd7f8525ceed2324359c2d0ba26006d92d856a9c20fa0241106ee5a597c9"
SPEND_170 = "f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16"
HAL = "1Q2TWHE3GMdB6BZKafqwxXtWAWgFt5Jvm3"
TOTALS = ("at_endpoints", "unspent", "fees", "below_threshold", "beyond_limits")


def _trace(store: Path, *args: str) -> dict:  # type: ignore[type-arg]
    r = run("trace", *args, "--json", db=store)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("policy", ["haircut", "poison", "fifo", "lifo", "tiho"])
def test_json_contract_and_totals(real_store: Path, policy: str) -> None:
    t = _trace(real_store, "--from", f"{BLOCK9_COINBASE}:0", "--policy", policy, "--hops", "3")
    assert {"seed", "asset", "policy", "direction", "as_of", "endpoints", "edges", "totals"} <= t.keys()
    assert (t["asset"], t["policy"], t["direction"]) == ("BTC", policy, "forward")
    assert t["as_of"]["height"] == 514492 and len(t["as_of"]["block_hash"]) == 64
    tot = t["totals"]
    assert tot["seed_amount"] == 50 * 10**8
    assert sum(tot[k] for k in TOTALS) == tot["seed_amount"] + tot.get("created", 0)
    first = t["edges"][0]
    assert {"txid", "from", "to", "time", "amount", "tainted_amount"} <= first.keys()
    assert first["txid"] == SPEND_170 and first["time"] == "2009-01-12T03:30:25Z"
    hal = next(e for e in t["edges"] if e["to"] == HAL)
    # block 170 pays 10 of the 50 tainted BTC to Hal Finney: every policy taints all of it (one input)
    assert (hal["amount"], hal["tainted_amount"]) == (10 * 10**8, 10 * 10**8)
    for p in t["endpoints"]:
        assert {"address", "cluster_id", "labels", "category", "tainted_amount", "hops", "path"} <= p.keys()
        assert p["path"][:2] == [BLOCK9_COINBASE, SPEND_170]  # from the seed's transaction on
    assert sum(p["tainted_amount"] for p in t["endpoints"]) == sum(tot[k] for k in TOTALS) - tot["fees"]


def test_csv_graphml_and_table(real_store: Path) -> None:
    seed = f"{BLOCK9_COINBASE}:0"
    r = run("trace", "--from", seed, "--hops", "2", "--csv", db=real_store)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert rows[0]["txid"] == SPEND_170 and set(rows[0]) >= {"from", "to", "amount", "tainted_amount"}
    g = run("trace", "--from", seed, "--hops", "2", "--graphml", db=real_store)
    root = ET.fromstring(g.stdout.split("\n", 1)[1])
    ns = {"g": "http://graphml.graphdrawing.org/xmlns"}
    assert len(root.findall(".//g:edge", ns)) == len(rows)
    assert any(n.get("id") == HAL for n in root.findall(".//g:node", ns))
    table = run("trace", "--from", seed, "--hops", "2", db=real_store)
    assert table.returncode == 0 and "End points" in table.stdout and "50.00000000 BTC" in table.stdout
    back = _trace(real_store, "--from", f"{SPEND_170}:0", "--direction", "backward")
    assert back["totals"]["seed_amount"] == 10 * 10**8
    assert any(p["kind"] == "origin" for p in back["endpoints"])  # the block-9 coinbase minted it


def test_errors_are_one_line(real_store: Path) -> None:
    bad = run("trace", "--from", "not-a-seed", db=real_store)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
    assert "TXID:VOUT" in bad.stderr
    missing = run("trace", "--from", "ab" * 32, db=real_store)
    assert missing.returncode == 3
    policy = run("trace", "--from", f"{BLOCK9_COINBASE}:0", "--policy", "magic", db=real_store)
    assert policy.returncode == 2 and "haircut" in policy.stderr
    both = run("trace", "--from", f"{BLOCK9_COINBASE}:0", "--json", "--csv", db=real_store)
    assert both.returncode == 2
    since = run("trace", "--from", f"{BLOCK9_COINBASE}:0", "--since", "2009-01-01", db=real_store)
    assert since.returncode == 2 and "--until" in since.stderr  # --since bounds backward traces only


def test_account_chain_trace(tmp_path: Path) -> None:
    stream = DATA / "ethereum-etl" / "test_stream" / "blocks_17173049_17173050"
    db = tmp_path / "eth.duckdb"
    con = connect(db)
    ingest_ethereum_etl(
        con,
        "ethereum",
        stream / "expected_blocks.json",
        stream / "expected_transactions.json",
        logs=stream / "expected_logs.json",
    )
    con.close()
    tx = "0xeb107a40ba73a50c79a9f2026e902d758d1c5e5e211f7a7db1b294f88f118dd0"
    t = _trace(db, "--chain", "ethereum", "--from", tx, "--asset", "WETH")
    tot = t["totals"]
    assert t["asset"] == "WETH" and t["decimals"] == 18
    assert tot["seed_amount"] > 0 and sum(tot[k] for k in TOTALS) == tot["seed_amount"]
    assert all(e["txid"].startswith("0x") for e in t["edges"])
