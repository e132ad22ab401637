"""The simulator: a tiny world through the real ingest, its truth checked against the stored chain,
determinism, scenario validation, the training cases and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from bip_utils import Base58Encoder, SegwitBech32Encoder

from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.chains.registry import chain
from fundtrail.clustering.config import ClusterConfig
from fundtrail.clustering.engine import cluster
from fundtrail.errors import InvalidInput
from fundtrail.evaluation.run import evaluate
from fundtrail.ingest.bitcoin_files import ingest_block_files
from fundtrail.ingest.ethereum_etl import ingest_ethereum_etl
from fundtrail.labels.tagpack import import_tagpacks
from fundtrail.simulate.address_text import p2pkh_texts, p2wpkh_texts
from fundtrail.simulate.cases import CASES
from fundtrail.simulate.run import simulate
from fundtrail.simulate.scenario import TYPOLOGIES, load_scenario
from fundtrail.simulate.truth import read_truth
from fundtrail.store.db import connect

TINY = """\
base: small
name: tiny
blocks: 70
population:
  retail_users: 300
  exchanges: 3
  merchants: 8
  payroll_employers: 2
  employees_per_employer: 5
bitcoin:
  tx_per_block: 25
ethereum:
  tx_per_block: 15
laundering:
  peeling_chain: 1
  ransomware: 1
  structuring: 1
  fan_out_fan_in: 1
  mixing: 2
  chain_hopping: 1
  round_tripping: 1
  trade_disguise: 1
  fast_cashout: 1
  sanctions_evasion: 1
"""
BTC, ETH = "bitcoin-regtest", "sim-ethereum"


@dataclass
class World:
    out: Path
    con: duckdb.DuckDBPyConnection
    db: Path
    manifest: dict[str, Any]


def _tiny(tmp: Path) -> Path:
    p = tmp / "tiny.yaml"
    p.write_text(TINY)
    return p


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("sim")
    s = simulate(load_scenario(str(_tiny(tmp))), 5, tmp / "world")
    db = tmp / "w.duckdb"
    con = connect(db)
    ingest_block_files(con, sorted((s.out / "bitcoin").glob("blk*.dat")), REGTEST)
    e = s.out / "ethereum"
    ingest_ethereum_etl(
        con, ETH, e / "blocks.csv", e / "transactions.csv", token_transfers=e / "token_transfers.csv"
    )
    import_tagpacks(con, s.out / "truth" / "labels.yaml")
    cluster(con, ClusterConfig())
    yield World(s.out, con, db, s.manifest)
    con.close()


def test_every_block_decodes_checks_and_links(world: World) -> None:
    """The store's decoder checked every merkle root, witness commitment, proof of work and BIP34 height
    (ingest refuses a block otherwise); here: every block is stored, heights link, inputs resolve."""
    con, m = world.con, world.manifest
    n_blocks, lo, hi, merkle, witness = con.execute(
        "SELECT count(*), min(height), max(height), bool_and(merkle_ok), "
        "bool_and(coalesce(witness_ok, true)) "
        "FROM blocks WHERE chain = ?",
        [BTC],
    ).fetchone()  # type: ignore[misc]
    assert (n_blocks, lo, hi) == (m["chains"][BTC]["blocks"] + 1, 0, m["chains"][BTC]["blocks"])
    assert merkle and witness
    n_tx = con.execute(
        "SELECT count(*) FROM transactions t JOIN blocks b USING (block_id) WHERE b.chain = ?", [BTC]
    ).fetchone()[0]  # type: ignore[index]
    assert n_tx == m["chains"][BTC]["transactions"] + 1  # + the genesis coinbase
    assert con.execute("SELECT count(*) FROM unresolved_inputs").fetchone()[0] == 0  # type: ignore[index]
    tip = con.execute(
        "SELECT hash FROM blocks WHERE chain = ? ORDER BY height DESC LIMIT 1", [BTC]
    ).fetchone()
    assert tip is not None and bytes(tip[0]).hex() == m["chains"][BTC]["tip"]
    eth_blocks = con.execute("SELECT count(*) FROM blocks WHERE chain = ?", [ETH]).fetchone()[0]  # type: ignore[index]
    assert eth_blocks == m["chains"][ETH]["blocks"]


def _btc_output(con: duckdb.DuckDBPyConnection, txid: str, address: str) -> list[int]:
    rows = con.execute(
        "SELECT o.value FROM transactions t JOIN tx_outputs o USING (tx_id) JOIN addresses a "
        "ON a.address_id = o.address_id WHERE t.txid = ? AND a.key = ?",
        [bytes.fromhex(txid), chain(BTC).parse(address)],
    ).fetchall()
    return [int(r[0]) for r in rows]


def _usdt_transfer(con: duckdb.DuckDBPyConnection, txid: str, address: str) -> list[int]:
    rows = con.execute(
        "SELECT f.amount::VARCHAR FROM transfers f JOIN account_txs t USING (tx_id) JOIN assets s "
        "ON s.asset_id = f.asset_id JOIN addresses a ON a.address_id = f.to_id "
        "WHERE t.hash = ? AND s.symbol = 'USDT' AND a.key = ?",
        [bytes.fromhex(txid[2:]), chain(ETH).parse(address)],
    ).fetchall()
    return [int(r[0]) for r in rows]


def test_every_cash_out_amount_is_on_chain(world: World) -> None:
    truth = read_truth(world.out)
    cashouts = truth.rows("cashouts")
    assert {r["chain"] for r in cashouts} == {BTC, ETH}
    for r in cashouts:
        found = (
            _btc_output(world.con, r["txid"], r["address"])
            if r["chain"] == BTC
            else (_usdt_transfer(world.con, r["txid"], r["address"]))
        )
        assert int(r["amount"]) in found, r


def test_every_seed_is_on_chain_with_its_amount(world: World) -> None:
    for s in read_truth(world.out).rows("seeds"):
        if s["chain"] == BTC:
            txid, vout = s["seed"].split(":")
            v = world.con.execute(
                "SELECT o.value FROM transactions t JOIN tx_outputs o USING (tx_id) "
                "WHERE t.txid = ? AND o.n = ?",
                [bytes.fromhex(txid), int(vout)],
            ).fetchone()
            assert v is not None and int(v[0]) == int(s["amount"])
        elif s["seed"].startswith("0x") and len(s["seed"]) == 66:  # a transaction: what it paid in USDT
            got = world.con.execute(
                "SELECT sum(f.amount)::VARCHAR FROM transfers f JOIN account_txs t USING (tx_id) "
                "JOIN assets a "
                "ON a.asset_id = f.asset_id WHERE t.hash = ? AND a.symbol = 'USDT'",
                [bytes.fromhex(s["seed"][2:])],
            ).fetchone()
            assert got is not None and int(got[0]) == int(s["amount"])
        else:  # an address: everything it received in USDT
            got = world.con.execute(
                "SELECT sum(f.amount)::VARCHAR FROM transfers f JOIN addresses a ON a.address_id = f.to_id "
                "JOIN assets s ON s.asset_id = f.asset_id WHERE a.key = ? AND s.symbol = 'USDT'",
                [chain(ETH).parse(s["seed"])],
            ).fetchone()
            assert got is not None and int(got[0]) == int(s["amount"])


def test_value_is_conserved_per_operation(world: World) -> None:
    """Peeling chains and fan-out/fan-in hold only the seed's coins: the seed's value equals the cash-outs
    plus the fees of the operation's transactions after it, to the satoshi. On the account chain the
    criminals pay gas in ETH, so USDT is conserved exactly: a leg's cash-outs add up to its seed."""
    truth = read_truth(world.out)
    ops = {o["operation_id"]: o for o in truth.rows("operations")}
    seeds = defaultdict(list)
    for s in truth.rows("seeds"):
        seeds[s["operation_id"], s["leg"]].append(s)
    cash = defaultdict(int)
    for c in truth.rows("cashouts"):
        cash[c["operation_id"], c["leg"]] += int(c["amount"])
    txs = defaultdict(list)
    for t in truth.rows("operation_txs"):
        txs[t["operation_id"]].append(t)
    checked = set()
    for (op, leg), ss in seeds.items():
        typology = ops[op]["typology"]
        seed = int(ss[0]["amount"])
        if typology in ("peeling_chain", "fan_out_fan_in"):
            first = next(i for i, t in enumerate(txs[op]) if t["role"] in ("theft", "consolidate"))
            after = [bytes.fromhex(t["txid"]) for t in txs[op][first + 1 :]]
            fees = world.con.execute(
                "SELECT sum(fee) FROM transactions WHERE txid IN (SELECT unnest(?))", [after]
            ).fetchone()[0]  # type: ignore[index]
            assert cash[op, leg] + int(fees) == seed, (typology, op)
            checked.add(typology)
        elif ss[0]["chain"] == ETH and typology in (
            "structuring",
            "fast_cashout",
            "chain_hopping",
            "sanctions_evasion",
        ):
            assert cash[op, leg] == seed, (typology, op, leg)
            checked.add(typology)
    assert checked == {"peeling_chain", "fan_out_fan_in", "structuring", "fast_cashout", "chain_hopping",
                       "sanctions_evasion"}  # fmt: skip


def test_truth_tables_are_consistent(world: World) -> None:
    truth = read_truth(world.out)
    actors = {a["actor_id"]: a for a in truth.rows("actors")}
    ops = truth.rows("operations")
    assert {o["typology"] for o in ops} == set(TYPOLOGIES)
    for o in ops:
        assert actors[o["actor_id"]]["illicit"]
        assert o["start_time"] <= o["end_time"]
        assert int(o["amount"]) > 0
    addresses = truth.table("addresses")
    assert addresses.num_rows == len(
        set(zip(addresses["chain"].to_pylist(), addresses["address"].to_pylist()))
    )
    owners = dict(zip(zip(addresses["chain"].to_pylist(), addresses["address"].to_pylist()),
                      addresses["actor_id"].to_pylist()))  # fmt: skip
    for c in truth.rows("cashouts"):
        assert actors[owners[c["chain"], c["address"]]]["kind"] in (
            "exchange",
            "otc_desk",
            "bridge",
            "front_company",
        )
    for a in truth.rows("operation_addresses"):
        assert (a["chain"], a["address"]) in owners
    # every truth address that appears on chain is stored under that text
    stored = {
        chain(BTC).show(bytes(k))
        for (k,) in world.con.execute("SELECT key FROM addresses WHERE chain = ?", [BTC]).fetchall()
    }
    genesis = world.con.execute(
        "SELECT a.key FROM blocks b JOIN transactions t USING (block_id) JOIN tx_outputs o USING (tx_id) "
        "JOIN addresses a ON a.address_id = o.address_id WHERE b.chain = ? AND b.height = 0",
        [BTC],
    ).fetchall()
    btc_truth = {a for c, a in owners if c == BTC}
    # every stored address belongs to an actor of the world, but the genesis block's (Satoshi's key)
    assert stored - btc_truth == {chain(BTC).show(bytes(k)) for (k,) in genesis}
    assert world.manifest["operations_cut_short"] == 0


def test_labels_are_imported_on_the_simulated_chains(world: World) -> None:
    rows = world.con.execute(
        "SELECT chain, category, count(*) FROM labels GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    got = {(c, cat): n for c, cat, n in rows}
    assert got[BTC, "exchange"] == 3 * 2 + 1  # hot and cold of each exchange, the OTC desk
    assert got[ETH, "exchange"] == 3 + 1
    assert got[BTC, "mixer"] == 1 and got[BTC, "sanctioned"] == 1 and got[ETH, "defi"] == 1


def test_the_exchange_hack_is_traced_to_its_cash_out_exchanges(world: World) -> None:
    """The real tracer and evaluation on the world: the peeling chain's cash-outs are recovered."""
    truth = read_truth(world.out)
    report = evaluate(world.con, truth, db_path=world.db)
    peel = report["tracing"]["typologies"]["peeling_chain"]
    assert peel["share"] == pytest.approx(1.0)
    scores = {c["chain"]: c["score"] for c in report["clustering"]["chains"]}
    print({c: (s["precision"], s["recall"]) for c, s in scores.items()})
    # multi-input merges only one owner's coins (CoinJoins are excluded); recall is what sweeps reveal
    assert scores[BTC]["precision"] > 0.95 and scores[BTC]["recall"] > 0.01
    assert scores[ETH]["precision"] > 0.95


def test_same_seed_same_bytes_other_seed_other_world(tmp_path: Path) -> None:
    sc = load_scenario(str(_tiny(tmp_path)))
    a = simulate(sc, 11, tmp_path / "a").manifest["files"]
    b = simulate(sc, 11, tmp_path / "b").manifest["files"]
    c = simulate(sc, 12, tmp_path / "c").manifest["files"]
    assert a == b  # SHA-256 of every file: blocks, exports, truth tables, labels, cases
    assert any(f.startswith("bitcoin/blk") for f in a) and "truth/addresses.parquet" in a
    assert a["bitcoin/blk00000.dat"] != c["bitcoin/blk00000.dat"]


def test_training_cases_have_briefings_and_answer_keys(world: World) -> None:
    truth = read_truth(world.out)
    cashouts = truth.rows("cashouts")
    for case in CASES:
        d = world.out / "cases" / case.name
        brief = (d / "briefing.md").read_text()
        assert "{" not in brief and "(not recorded)" not in brief, case.name
        key = json.loads((d / "answer_key.json").read_text())
        assert key["typology"] == case.typology
        mine = [c for c in cashouts if c["operation_id"] == key["operation_id"]]
        assert sorted(int(c["amount"]) for c in key["cashouts"]) == sorted(int(c["amount"]) for c in mine)
        if case.name == "exchange-hack":  # the briefing gives the theft transaction, the seed's txid
            assert key["seeds"][0]["seed"].split(":")[0] in brief


def test_scenario_files_are_checked_strictly(tmp_path: Path) -> None:
    def bad(text: str) -> str:
        p = tmp_path / "s.yaml"
        p.write_text(text)
        with pytest.raises(InvalidInput) as e:
            load_scenario(str(p))
        return e.value.line()

    assert "bitcoin.mix.p2pp" in bad("bitcoin:\n  mix:\n    p2pp: 1\n")
    assert "population.exchanges" in bad("population:\n  exchanges: many\n")
    assert "blocks" in bad("blocks: -5\n")
    assert "not a preset" in bad("base: huge\n")
    assert "mapping" in bad("- 1\n- 2\n")
    with pytest.raises(InvalidInput, match="neither a preset nor a file"):
        load_scenario("no-such-preset")
    assert load_scenario("large")["population"]["retail_users"] == 300_000


def test_address_texts_match_bip_utils() -> None:
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 256, (500, 20), dtype=np.uint8)
    texts = p2wpkh_texts("bcrt", hashes).to_pylist()
    assert texts == [SegwitBech32Encoder.Encode("bcrt", 0, bytes(h)) for h in hashes]
    legacy = p2pkh_texts(bytes([REGTEST.p2pkh_prefix]), [bytes(h) for h in hashes[:100]]).to_pylist()
    assert legacy == [
        Base58Encoder.CheckEncode(bytes([REGTEST.p2pkh_prefix]) + bytes(h)) for h in hashes[:100]
    ]


def test_cli_simulate_refuses_a_non_empty_out_and_leaves_nothing_half_written(tmp_path: Path) -> None:
    out = tmp_path / "w"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    cmd = [
        sys.executable,
        "-m",
        "fundtrail",
        "simulate",
        "--scenario",
        str(_tiny(tmp_path)),
        "--out",
        str(out),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not empty" in r.stderr
    assert (out / "keep.txt").read_text() == "mine"
    r = subprocess.run([*cmd, "--force", "--json"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    m = json.loads(r.stdout)
    assert m["scenario"] == "tiny" and not (out / "keep.txt").exists()
    assert not (tmp_path / "w.partial").exists()
    assert pq.read_table(out / "truth" / "operations.parquet").num_rows == sum(m["operations"].values())
    r = subprocess.run(
        [*cmd[:-2], "--out", str(tmp_path / "x"), "--seed", "-1"], capture_output=True, text=True, env=env
    )
    assert r.returncode == 2 and "seed" in r.stderr
