"""Screening: direct and indirect exposure hand-computed on a small regtest world (real blocks, real
clustering, real exposure computation), every shared OFAC address severe on its chain, sanctions through
a cluster, unknown and malformed addresses, transactions through their counterparties, policy validation
and the CLI (single items and --file batches)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest

from fundtrail.chains.bitcoin.address import key_to_address
from fundtrail.chains.bitcoin.builder import COIN, ChainBuilder, Key, OutPoint, Tx, TxOut
from fundtrail.chains.bitcoin.decoder import decode_blocks
from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.chains.bitcoin.script import P2PKH
from fundtrail.clustering import engine
from fundtrail.clustering.config import ClusterConfig
from fundtrail.errors import InvalidInput, NotFound
from fundtrail.labels.addresses import CURRENCY_CHAIN
from fundtrail.labels.ofac import import_ofac_lists
from fundtrail.labels.store import add_label
from fundtrail.screening.exposure import compute_exposure
from fundtrail.screening.policy import (
    SCORE_BANDS,
    band_of,
    default_policy,
    load_policy,
    parse_policy,
    score_of,
)
from fundtrail.screening.screen import Screener
from fundtrail.screening.snapshot import AddressIndex
from fundtrail.store.bitcoin_write import write_blocks
from fundtrail.store.db import connect
from tests.conftest import DATA
from tests.test_cli import run

CHAIN = "bitcoin-regtest"
OFAC_LISTS = DATA / "labels" / "ofac-sanctioned"
ENTITIES = DATA / "labels" / "ofac-sanctioned-entities" / "sanctioned-addresses.json"
NAMES = ("mixer", "clean", "sanct", "darknet", "alice", "bob", "carol", "dave", "eve", "frank1", "frank2")
K = {n: Key(n) for n in NAMES}


def addr(name: str) -> str:
    return key_to_address(bytes([P2PKH]) + K[name].pubkey_hash, REGTEST)


class World:
    """The regtest world: which tx did what, by name."""

    def __init__(self) -> None:
        self.txids: dict[str, str] = {}


def _build(path: Path) -> World:
    """Coinbases fund mixer, clean, sanct, darknet, frank1 and frank2 (50 BTC each, coinbases are no
    flow); then, with no fees:
    tx_mix: mixer -> alice 10, mixer 40 | tx_clean: clean -> alice 30, eve 5, clean 15
    tx_bob: alice (the 30 from clean) -> bob 20, alice 10 | tx_sanct: sanct -> carol 5, sanct 45
    tx_dark: darknet -> dave 1, darknet 49 | tx_frank: frank1 + frank2 -> clean 100 (one cluster)."""
    w = World()
    b = ChainBuilder()
    funded: dict[str, OutPoint] = {}
    for name in ("mixer", "clean", "sanct", "darknet", "frank1", "frank2"):
        block = b.add_block(miner=K[name])
        funded[name] = block.txs[0].outpoint(0)

    def pay(name: str, spend: list[tuple[OutPoint, Key]], outs: list[tuple[str, int]]) -> Tx:
        tx = b.spend(spend, [TxOut(v * COIN, K[n].p2pkh()) for n, v in outs])
        w.txids[name] = tx.txid.hex()
        return tx

    tx_mix = pay("mix", [(funded["mixer"], K["mixer"])], [("alice", 10), ("mixer", 40)])
    tx_clean = pay("clean", [(funded["clean"], K["clean"])], [("alice", 30), ("eve", 5), ("clean", 15)])
    b.add_block([tx_mix, tx_clean])
    tx_bob = pay("bob", [(tx_clean.outpoint(0), K["alice"])], [("bob", 20), ("alice", 10)])
    tx_sanct = pay("sanct", [(funded["sanct"], K["sanct"])], [("carol", 5), ("sanct", 45)])
    tx_dark = pay("dark", [(funded["darknet"], K["darknet"])], [("dave", 1), ("darknet", 49)])
    tx_frank = pay(
        "frank", [(funded["frank1"], K["frank1"]), (funded["frank2"], K["frank2"])], [("clean", 100)]
    )
    b.add_block([tx_bob, tx_sanct, tx_dark, tx_frank])
    raws = b.raw_blocks()
    con = connect(path)
    buf = np.frombuffer(b"".join(raws), dtype=np.uint8)
    ends = np.cumsum([len(r) for r in raws]).astype(np.int64)
    starts = np.r_[0, ends[:-1]].astype(np.int64)
    write_blocks(con, decode_blocks(buf, starts, ends, REGTEST), "test")
    engine.cluster(con, ClusterConfig(), [CHAIN])
    add_label(con, CHAIN, addr("mixer"), "Mixer X", "mixer", is_cluster_definer=True)
    add_label(con, CHAIN, addr("sanct"), "Sanctioned Y", "sanctioned", 100, source="test-sdn")
    add_label(con, CHAIN, addr("darknet"), "Market Z", "darknet_market", 90)
    add_label(con, CHAIN, addr("frank1"), "Frank (SDN)", "sanctioned", 100, source="test-sdn")
    add_label(con, CHAIN, addr("clean"), "Exchange E", "exchange", 100, is_cluster_definer=True)
    compute_exposure(con, CHAIN)
    con.close()
    return w


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, World]]:
    path = tmp_path_factory.mktemp("screen") / "world.duckdb"
    w = _build(path)
    yield path, w


@pytest.fixture(scope="module")
def screener(world: tuple[Path, World]) -> Iterator[Screener]:
    con = connect(world[0], read_only=True)
    yield Screener(con)
    con.close()


def _reason(r: dict[str, object], rule: str) -> dict[str, object]:
    reasons = r["reasons"]
    assert isinstance(reasons, list)
    (hit,) = [x for x in reasons if x["rule"] == rule]
    return dict(hit)


# --- exposure screening, hand-computed ---------------------------------------------------------------


def test_direct_exposure(screener: Screener, world: tuple[Path, World]) -> None:
    # alice received 10 BTC from the mixer and 30 from the exchange: direct mixer 25% of received
    r = screener.screen_address(CHAIN, addr("alice"))
    mix = r["exposure"]["direct"]["mixer"]
    assert (mix["received"], mix["share_received"], mix["sent"]) == (10 * COIN, 0.25, 0)
    assert r["exposure"]["direct"]["exchange"]["share_received"] == 0.75
    assert r["severity"] == "high" and r["risk_score"] == 70 + 19 * 25 // 100 == score_of("high", 0.25)
    reason = _reason(r, "mixer-direct")
    assert (reason["category"], reason["direction"], reason["hops"], reason["amount"]) == (
        "mixer",
        "received",
        1,
        10 * COIN,
    )
    assert reason["txids"] == [world[1].txids["mix"]]
    assert set(r) >= {"chain", "address", "cluster_id", "labels", "exposure", "reasons", "as_of"}
    assert r["as_of"]["height"] == 8 and len(r["as_of"]["block_hash"]) == 64
    # carol: everything she received came from a sanctioned address, in one hop -> severe 99 (not 100)
    c = screener.screen_address(CHAIN, addr("carol"))
    assert c["exposure"]["direct"]["sanctioned"]["share_received"] == 1.0
    assert (c["severity"], c["risk_score"]) == ("severe", 99)
    assert _reason(c, "sanctioned-direct")["txids"] == [world[1].txids["sanct"]]
    # dave: 1 BTC, all from a darknet market -> high 89
    d = screener.screen_address(CHAIN, addr("dave"))
    assert (d["severity"], d["risk_score"]) == ("high", 89)
    # eve: 5 BTC from the exchange only -> none, score 0 (services carry no risk)
    e = screener.screen_address(CHAIN, addr("eve"))
    assert (e["severity"], e["risk_score"], e["reasons"]) == ("none", 0, [])
    assert e["exposure"]["direct"]["exchange"]["share_received"] == 1.0


def test_indirect_exposure(screener: Screener, world: tuple[Path, World]) -> None:
    # bob got 20 BTC from alice, whose receipts are 25% mixer: 5 BTC indirect mixer, 25% -> high 74
    r = screener.screen_address(CHAIN, addr("bob"))
    assert r["exposure"]["direct"] == {}
    ind = r["exposure"]["indirect"]["mixer"]
    assert (ind["received"], ind["share_received"]) == (5 * COIN, 0.25)
    assert (r["severity"], r["risk_score"]) == ("high", 74)
    reason = _reason(r, "mixer-indirect")
    assert reason["scope"] == "indirect" and reason["amount"] == 5 * COIN and reason["hops"] == 2
    assert world[1].txids["bob"] in reason["txids"]


def test_policy_thresholds_change_the_answer(world: tuple[Path, World], tmp_path: Path) -> None:
    f = tmp_path / "strict.yaml"
    f.write_text(
        "version: 1\nname: mixers-above-half\nrules:\n"
        "  - {category: mixer, scope: [direct, indirect], direction: received, min_share: 0.5,\n"
        "     severity: high}\n"
        "  - {category: mixer, scope: indirect, direction: received, min_amount: 400000000, severity: low}\n"
    )
    con = connect(world[0], read_only=True)
    try:
        s = Screener(con, load_policy(f))
        alice = s.screen_address(CHAIN, addr("alice"))
        assert (alice["severity"], alice["risk_score"]) == ("none", 0)  # 25% < 50%
        bob = s.screen_address(CHAIN, addr("bob"))  # 5 BTC >= 4 BTC: low, 10 + floor(29 * 0.25)
        assert (bob["severity"], bob["risk_score"]) == ("low", 17)
        assert bob["policy"]["name"] == "mixers-above-half" and len(bob["policy"]["sha256"]) == 64
    finally:
        con.close()


# --- sanctions, labels, unknown and malformed -------------------------------------------------------


def test_sanctions_exact_and_through_the_cluster(screener: Screener) -> None:
    own = screener.screen_address(CHAIN, addr("sanct"))
    assert (own["severity"], own["risk_score"]) == ("severe", 100)
    assert own["reasons"][0]["rule"] == "sanctions" and own["reasons"][0]["list"] == "test-sdn"
    # frank2 is unlabelled, but spent together with frank1 (on the list): same cluster -> severe 100
    f2 = screener.screen_address(CHAIN, addr("frank2"))
    assert (f2["severity"], f2["risk_score"]) == ("severe", 100)
    s = f2["reasons"][0]
    assert s["scope"] == "cluster" and s["labelled_address"] == addr("frank1") and s["source"] == "test-sdn"
    f1 = screener.screen_address(CHAIN, addr("frank1"))
    assert f1["cluster_id"] == f2["cluster_id"]
    # a labelled mixer screens high on its own label (self rule), with its direct flows
    m = screener.screen_address(CHAIN, addr("mixer"))
    assert m["severity"] == "high" and _reason(m, "self-high:mixer-self")["label"] == "Mixer X"


def test_unknown_and_malformed(screener: Screener) -> None:
    never = key_to_address(bytes([P2PKH]) + Key("nobody").pubkey_hash, REGTEST)
    r = screener.screen_address(CHAIN, never)
    assert (r["severity"], r["risk_score"], r["cluster_id"]) == ("unknown", None, None)
    assert r["reasons"][0]["rule"] == "unknown-address" and "never seen" in r["reasons"][0]["detail"]
    with pytest.raises(InvalidInput) as exc:
        screener.screen_address(CHAIN, "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2")  # mainnet, not regtest
    assert "base58check or bech32/bech32m" in exc.value.line()
    with pytest.raises(InvalidInput) as exc:
        screener.screen_address("bitcoin", "0x8589427373d6d84e98730d7795d8f6f8731fda16")
    assert "expected base58check" in exc.value.line() and "--chain ethereum" in exc.value.line()
    with pytest.raises(InvalidInput, match="unknown chain"):
        screener.screen_address("bitcon", "x")
    out = list(screener.screen_many([addr("alice"), "not-an-address", never, addr("carol")], CHAIN))
    assert [x.get("severity") for x in out] == ["high", None, "unknown", "severe"]
    assert out[1]["input"] == "not-an-address" and "expected" in out[1]["error"] and out[1]["exit_code"] == 2


def test_transaction_through_its_counterparties(screener: Screener, world: tuple[Path, World]) -> None:
    r = screener.screen_tx(CHAIN, world[1].txids["sanct"])
    assert (r["severity"], r["risk_score"], r["txid"]) == ("severe", 100, world[1].txids["sanct"])
    parties = {p["address"]: p for p in r["counterparties"]}
    assert parties[addr("sanct")]["roles"] == ["input", "output"]
    assert parties[addr("carol")]["severity"] == "severe"
    assert r["reasons"][0]["counterparty"] == addr("sanct") and r["reasons"][0]["rule"] == "sanctions"
    # mixer -> alice: the mixer is high on its label (70, confidence unknown), alice 74 on her exposure
    mix = screener.screen_tx(CHAIN, world[1].txids["mix"])
    assert (mix["severity"], mix["risk_score"]) == ("high", 74)
    assert mix["reasons"][0]["counterparty"] == addr("alice") and mix["reasons"][0]["roles"] == ["output"]
    assert {p["address"]: p["risk_score"] for p in mix["counterparties"]} == {
        addr("mixer"): 70,
        addr("alice"): 74,
    }
    # the exchange received 100 BTC from the sanctioned cluster: its deposit to alice is severe through it
    clean = screener.screen_tx(CHAIN, world[1].txids["clean"])
    assert clean["severity"] == "severe" and clean["reasons"][0]["counterparty"] == addr("clean")
    with pytest.raises(NotFound):
        screener.screen_tx(CHAIN, "00" * 32)
    batch = list(screener.screen_many([world[1].txids["dark"], "ff" * 32], CHAIN))
    assert batch[0]["severity"] == "high" and batch[1]["exit_code"] == 3


def test_every_ofac_address_is_severe_on_its_chain(tmp_path: Path) -> None:
    con = connect(tmp_path / "ofac.duckdb")
    try:
        import_ofac_lists(con, OFAC_LISTS, ENTITIES)
        s = Screener(con)
        fixed = {"XBT": "bitcoin", "ETH": "ethereum", "TRX": "tron", "BSC": "bsc", "ARB": "arbitrum"}
        by_chain: dict[str, list[str]] = {}
        total = 0
        for f in sorted(OFAC_LISTS.glob("sanctioned_addresses_*.txt")):
            asset = f.stem.removeprefix("sanctioned_addresses_")
            for a in (x.strip() for x in f.read_text().splitlines() if x.strip()):
                if a == "TUCsTq7TofTCJRRoHk6RvhMoS2mJLm5Yzq":
                    chain = "tron"  # filed by OFAC as XBT
                elif asset in ("USDT", "USDC"):
                    chain = "ethereum" if a.startswith("0x") else "tron" if a[0] == "T" else "bitcoin"
                else:
                    chain = fixed.get(asset) or CURRENCY_CHAIN[asset]
                by_chain.setdefault(chain, []).append(a)
                total += 1
        assert total == 654 and len(by_chain) >= 12
        for chain, addrs in by_chain.items():
            for a, r in zip(addrs, s.screen_many(addrs, chain)):
                assert "error" not in r, r
                assert (r["severity"], r["risk_score"]) == ("severe", 100), (chain, a)
                assert r["reasons"][0]["list"].startswith("ofac-list:"), (chain, a)
        # Ethereum compares case-insensitively: lower case and EIP-55 both hit
        eth = by_chain["ethereum"][0]
        for text in (eth.lower(), s.screen_address("ethereum", eth)["address"]):
            assert s.screen_address("ethereum", text)["severity"] == "severe"
        # the TRON address OFAC filed under XBT is not a Bitcoin address
        with pytest.raises(InvalidInput, match="--chain tron"):
            s.screen_address("bitcoin", "TUCsTq7TofTCJRRoHk6RvhMoS2mJLm5Yzq")
        unlisted = s.screen_address("ethereum", "0x" + "11" * 20)
        assert unlisted["severity"] == "unknown"
    finally:
        con.close()


# --- the policy file -------------------------------------------------------------------------------


def test_default_policy_and_score_bands() -> None:
    p = default_policy()
    assert p.version == 1 and p.name == "fundtrail-default" and p.source == "default"
    (r,) = p.rules_for("indirect", "mixer", "received")
    assert (r.severity, r.min_share) == ("high", 0.10)
    assert p.rules_for("direct", "exchange", "received")[0].severity == "none"
    for sev, (base, span) in SCORE_BANDS.items():
        assert band_of(score_of(sev, 0.0)) == sev == band_of(score_of(sev, 1.0))
        assert score_of(sev, 1.0) == base + span
    assert score_of("severe", 1.0) == 99  # 100 is reserved for sanctions


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: []", "missing field 'version'"),
        ("version: 2\nrules: []", "unsupported policy version 2"),
        ("version: 1\nrule: []", "unknown field 'rule'"),
        (
            "version: 1\nrules:\n  - {category: mixr, scope: direct, severity: high}",
            "rules[0].category: unknown",
        ),
        ("version: 1\nrules:\n  - {category: mixer, scope: near, severity: high}", "rules[0].scope: unknown"),
        ("version: 1\nrules:\n  - {category: mixer, scope: direct, severity: dire}", "rules[0].severity"),
        (
            "version: 1\nrules:\n  - {category: mixer, scope: direct, severity: low}\n"
            "  - {category: mixer, scope: direct, severity: low, min_share: 10}",
            "rules[1].min_share: 10 is outside 0..1",
        ),
        (
            "version: 1\nrules:\n  - {category: mixer, scope: direct, severity: low, min_share: x}",
            "not a number",
        ),
        (
            "version: 1\nrules:\n  - {category: mixer, scope: direct, severity: low, min_amount: 1.5}",
            "integer",
        ),
        ("version: 1\nrules:\n  - {category: mixer, scope: self, direction: sent, severity: low}", "self"),
        ("version: 1\nrules:\n  - {category: mixer, severity: low}", "missing field 'scope'"),
        ("version: 1\nrules: {a: 1}", "not a list"),
        ("version: 1\nrules: [\n", "not valid YAML"),
        ("- 1", "a policy is a YAML mapping"),
        ("version: 1\nrules:\n  - {category: mixer, scope: direct, severity: low, colour: red}", "'colour'"),
    ],
)
def test_policy_validation_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_policy(text, "p.yaml")
    line = exc.value.line()
    assert message in line and line.startswith("p.yaml") and "\n" not in line


def test_policy_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist"):
        load_policy(tmp_path / "missing.yaml")
    f = tmp_path / "bad.yaml"
    f.write_text("version: 1\nrules:\n  - {category: mixer, scope: direct, severity: low, min_share: -0.1}\n")
    with pytest.raises(InvalidInput, match=r"bad.yaml: rules\[0\]\.min_share: -0.1 is outside 0..1"):
        load_policy(f)


def test_address_index_lookup_with_trailing_zero_bytes(tmp_path: Path) -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE addresses (chain VARCHAR, address_id BIGINT, key BLOB)")
    con.execute("CREATE TABLE clusters (chain VARCHAR, address_id BIGINT, cluster_id BIGINT)")
    keys = [b"\x01ab", b"\x01ab\x00", b"\x01ab\x00\x00", b"\xff" * 33, b"\x00"]
    for i, k in enumerate(keys):
        con.execute("INSERT INTO addresses VALUES ('x', ?, ?)", [i + 10, k])
    con.execute("INSERT INTO clusters VALUES ('x', 11, 10), ('x', 10, 10)")
    idx = AddressIndex.load(con, "x")
    ids, cids = idx.lookup([*keys, b"\x01a", b"\x01ab\x00\x00\x00", b"\xff" * 40])
    assert ids.tolist() == [10, 11, 12, 13, 14, -1, -1, -1]
    assert cids.tolist() == [10, 10, 12, 13, 14, -1, -1, -1]


# --- the CLI -----------------------------------------------------------------------------------------


def test_cli_single_and_errors(world: tuple[Path, World]) -> None:
    db, w = world
    r = run("screen", addr("carol"), "--chain", CHAIN, "--json", db=db)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert (data["severity"], data["risk_score"]) == ("severe", 99)
    t = run("screen", w.txids["sanct"], "--chain", CHAIN, db=db)
    assert t.returncode == 0 and "severe" in t.stdout and addr("sanct") in t.stdout
    bad = run("screen", "nope", "--chain", CHAIN, db=db)
    assert bad.returncode == 2 and bad.stderr.startswith("error: not a bitcoin-regtest address")
    assert bad.stderr.count("\n") == 1
    pol = run("screen", addr("carol"), "--chain", CHAIN, "--policy", str(db.parent / "none.yaml"), db=db)
    assert pol.returncode == 2 and "does not exist" in pol.stderr


def test_cli_file_batch(world: tuple[Path, World], tmp_path: Path) -> None:
    db, w = world
    lines = tmp_path / "items.txt"
    lines.write_text(f"# deposits\n{addr('alice')}\n\nbogus\n{w.txids['dark']}\n{addr('eve')}\n")
    r = run("screen", "--file", str(lines), "--chain", CHAIN, "--json", db=db)
    assert r.returncode == 2, r.stderr  # a malformed item: reported in place, exit 2 at the end
    out = [json.loads(x) for x in r.stdout.splitlines()]
    assert [x.get("severity") for x in out] == ["high", None, "high", "none"]
    assert out[1]["input"] == "bogus"
    csv_file = tmp_path / "items.csv"
    csv_file.write_text(f"customer,address\n1,{addr('bob')}\n2,{addr('frank2')}\n")
    c = run("screen", "--file", str(csv_file), "--chain", CHAIN, "--json", db=db)
    assert c.returncode == 0, c.stderr
    assert [json.loads(x)["severity"] for x in c.stdout.splitlines()] == ["high", "severe"]
    table = run("screen", addr("bob"), addr("eve"), "--chain", CHAIN, db=db)
    assert table.returncode == 0 and table.stdout.count("severity") == 2
    no_col = tmp_path / "nocol.csv"
    no_col.write_text("a,b\n1,2\n")
    n = run("screen", "--file", str(no_col), "--chain", CHAIN, db=db)
    assert n.returncode == 2 and "no address column" in n.stderr
