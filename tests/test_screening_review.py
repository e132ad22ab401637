"""Screening review: regressions for the bugs found in review, and the consistency of the screener's
in-memory exposure (:class:`ExposureIndex`) with :func:`exposure_of` on real small stores (a regtest
world with clusters and labels, and two post-merge Ethereum blocks from ethereum-etl)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fundtrail.chains.bitcoin.address import key_to_address
from fundtrail.chains.bitcoin.builder import COIN, ChainBuilder, Key, OutPoint, TxOut
from fundtrail.chains.bitcoin.decoder import decode_blocks
from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.chains.bitcoin.script import P2PKH
from fundtrail.chains.registry import CHAINS
from fundtrail.errors import InvalidInput
from fundtrail.ingest.ethereum_etl import ingest_ethereum_etl
from fundtrail.labels.store import add_label
from fundtrail.screening.exposure import compute_exposure, exposure, exposure_of
from fundtrail.screening.policy import parse_policy
from fundtrail.screening.screen import Screener
from fundtrail.screening.snapshot import ExposureIndex
from fundtrail.store.bitcoin_write import write_blocks
from fundtrail.store.db import connect
from tests.conftest import DATA
from tests.test_screening import CHAIN, World, _build, addr

STREAM = DATA / "ethereum-etl" / "test_stream" / "blocks_17173049_17173050"
ETH_MIXER = "0xae2fc483527b8ef99eb5d9b44875f005ba1fae13"  # the sender of the first transaction below
ETH_SDN = "0x6b75d8af000000e20b7a7ddf000ba900b4009a80"  # its recipient (a contract)
ETH_TX = "0xeb107a40ba73a50c79a9f2026e902d758d1c5e5e211f7a7db1b294f88f118dd0"
REASON_KEYS = {
    "rule",
    "severity",
    "score",
    "scope",
    "category",
    "direction",
    "hops",
    "amount",
    "share",
    "txids",
    "counterparty_clusters",
}


def _write_raw(path: Path, b: ChainBuilder) -> None:
    raws = b.raw_blocks()
    con = connect(path)
    buf = np.frombuffer(b"".join(raws), dtype=np.uint8)
    ends = np.cumsum([len(r) for r in raws]).astype(np.int64)
    starts = np.r_[0, ends[:-1]].astype(np.int64)
    write_blocks(con, decode_blocks(buf, starts, ends, REGTEST), "test")
    con.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, World]:
    path = tmp_path_factory.mktemp("review") / "world.duckdb"
    return path, _build(path)


@pytest.fixture(scope="module")
def eth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("review-eth") / "eth.duckdb"
    con = connect(path)
    ingest_ethereum_etl(
        con,
        "ethereum",
        STREAM / "expected_blocks.json",
        STREAM / "expected_transactions.json",
        logs=STREAM / "expected_logs.json",
    )
    add_label(con, "ethereum", ETH_MIXER, "Mixer T", "mixer", 80)
    add_label(con, "ethereum", ETH_SDN, "SDN Z", "sanctioned", 100, source="test-sdn")
    compute_exposure(con, "ethereum")
    con.close()
    return path


# --- ExposureIndex against exposure_of ---------------------------------------------------------------


def _assert_index_matches_exposure_of(path: Path, chain: str) -> int:
    """Every cluster with stored totals of every computed asset: ExposureIndex.of == exposure_of, and what
    the Screener puts in a result's "exposure" for a member address is the same. Returns the clusters
    with exposure rows compared."""
    con = connect(path, read_only=True)
    compared = 0
    try:
        c = CHAINS[chain]
        prefix = "" if c.family == "bitcoin" else "0x"
        assets = [
            int(r[0])
            for r in con.execute("SELECT asset_id FROM exposure_state WHERE chain = ?", [chain]).fetchall()
        ]
        assert assets
        for aid in assets:
            idx = ExposureIndex.load(con, c, aid)
            cids = [
                int(r[0])
                for r in con.execute(
                    "SELECT cluster_id FROM exposure_totals WHERE chain = ? AND asset_id = ?", [chain, aid]
                ).fetchall()
            ]
            ref = exposure_of(con, chain, aid, cids)
            assert set(ref) == set(cids)
            for cid, pos in zip(cids, idx.positions(cids)):
                want = ref[cid]
                if pos < 0:
                    assert want["direct"] == want["indirect"] == {} and want["evidence"] == [], cid
                    continue
                got, evidence = idx.of(pos, prefix)
                assert got == {"direct": want["direct"], "indirect": want["indirect"]}, cid
                assert [{k: v for k, v in e.items() if k != "txids"} for e in evidence] == want["evidence"]
                for e in evidence:  # the display txids are those of the stored transactions
                    assert len(e["txids"]) == len(e["tx_ids"]) and all(
                        t.startswith(prefix) for t in e["txids"]
                    )
                compared += 1
            assert len(idx) == len({cid for cid in cids if ref[cid]["direct"] or ref[cid]["indirect"]})
        # the screener's results carry exactly the stored exposure of the address's cluster (native asset)
        native = assets[0] if c.family == "bitcoin" else min(assets)
        rows = con.execute(
            """SELECT a.key, coalesce(c.cluster_id, a.address_id) FROM addresses a
               LEFT JOIN clusters c ON c.chain = a.chain AND c.address_id = a.address_id
               WHERE a.chain = ? ORDER BY a.address_id""",
            [chain],
        ).fetchall()
        ref = exposure_of(con, chain, native, [int(r[1]) for r in rows])
        s = Screener(con)
        texts = [c.show(bytes(r[0])) for r in rows if not c.show(bytes(r[0])).startswith("(")]
        for text, r in zip(texts, s.screen_many(texts, chain)):
            cid = r["cluster_id"]
            want = ref.get(cid, {"direct": {}, "indirect": {}})
            assert r["exposure"] == {"direct": want["direct"], "indirect": want["indirect"]}, text
    finally:
        con.close()
    return compared


def test_exposure_index_matches_exposure_of_bitcoin(world: tuple[Path, World]) -> None:
    assert _assert_index_matches_exposure_of(world[0], CHAIN) >= 5


def test_exposure_index_matches_exposure_of_ethereum(eth: Path) -> None:
    assert _assert_index_matches_exposure_of(eth, "ethereum") >= 2


# --- bug: ExposureIndex ordered evidence by the amount as text --------------------------------------


def test_evidence_largest_first_across_digit_counts(tmp_path: Path) -> None:
    """Two mixers pay T 9 and 10 BTC. The evidence (counterparties, txids) is largest first: 10 before 9,
    which sorted as text ("900000000" > "1000000000") came out the other way round."""
    keys = {n: Key(f"review-{n}") for n in ("mixA", "mixB", "target")}
    b = ChainBuilder()
    funded: dict[str, OutPoint] = {}
    for n in ("mixA", "mixB"):
        funded[n] = b.add_block(miner=keys[n]).txs[0].outpoint(0)
    tx_a = b.spend(
        [(funded["mixA"], keys["mixA"])],
        [TxOut(9 * COIN, keys["target"].p2pkh()), TxOut(41 * COIN, keys["mixA"].p2pkh())],
    )
    tx_b = b.spend(
        [(funded["mixB"], keys["mixB"])],
        [TxOut(10 * COIN, keys["target"].p2pkh()), TxOut(40 * COIN, keys["mixB"].p2pkh())],
    )
    b.add_block([tx_a, tx_b])
    path = tmp_path / "digits.duckdb"
    _write_raw(path, b)
    con = connect(path)

    def a(n: str) -> str:
        return key_to_address(bytes([P2PKH]) + keys[n].pubkey_hash, REGTEST)

    add_label(con, CHAIN, a("mixA"), "Mixer A", "mixer")
    add_label(con, CHAIN, a("mixB"), "Mixer B", "mixer")
    compute_exposure(con, CHAIN)
    con.close()
    con = connect(path, read_only=True)
    try:
        r = Screener(con).screen_address(CHAIN, a("target"))
        (reason,) = [x for x in r["reasons"] if x["rule"] == "mixer-direct"]
        assert reason["amount"] == 19 * COIN
        ids = {n: Screener(con).screen_address(CHAIN, a(n))["cluster_id"] for n in ("mixA", "mixB")}
        assert reason["counterparty_clusters"] == [ids["mixB"], ids["mixA"]]
        assert reason["txids"] == [tx_b.txid.hex(), tx_a.txid.hex()]
    finally:
        con.close()
    assert _assert_index_matches_exposure_of(path, CHAIN) == 1


# --- bug: duplicate rule ids accepted when a rule expands to several ---------------------------------


@pytest.mark.parametrize(
    "rules",
    [
        "  - {id: x, category: [mixer, scam], scope: direct, severity: high}\n"
        "  - {id: x, category: darknet_market, scope: direct, severity: low}\n",
        "  - {id: x, category: [mixer, scam], scope: direct, severity: high}\n"
        "  - {id: x, category: [hack, phishing], scope: direct, severity: low}\n",
        "  - {id: x, category: mixer, scope: direct, severity: high}\n"
        "  - {id: ' x ', category: scam, scope: direct, severity: low}\n",
    ],
)
def test_duplicate_rule_ids_are_refused(rules: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_policy("version: 1\nrules:\n" + rules, "p.yaml")
    assert "p.yaml: rules[1].id: duplicate rule id 'x'" in exc.value.line()


def test_distinct_ids_and_unnamed_repeats_still_load() -> None:
    p = parse_policy(
        "version: 1\nrules:\n"
        "  - {id: x, category: [mixer, scam], scope: direct, severity: high}\n"
        "  - {id: y, category: mixer, scope: direct, severity: low}\n"
        "  - {category: mixer, scope: direct, severity: low}\n"
        "  - {category: mixer, scope: direct, severity: medium}\n",
        "p.yaml",
    )
    assert [r.id for r in p.rules] == [
        "x:mixer-direct",
        "x:scam-direct",
        "y",
        "mixer-direct-any",
        "mixer-direct-any#3",
    ]


# --- bug: `fundtrail exposure --asset` wrote the earlier chains before failing on a later one ---------


def test_unknown_asset_on_a_later_chain_writes_nothing(world: tuple[Path, World], tmp_path: Path) -> None:
    path = tmp_path / "two.duckdb"
    path.write_bytes(world[0].read_bytes())
    con = connect(path)
    try:
        ingest_ethereum_etl(
            con,
            "ethereum",
            STREAM / "expected_blocks.json",
            STREAM / "expected_transactions.json",
            logs=STREAM / "expected_logs.json",
        )
        before = con.execute("SELECT chain, asset_id FROM exposure_state ORDER BY ALL").fetchall()
        assert before == [(CHAIN, -1)]
        with pytest.raises(InvalidInput, match="'WETH' is not an asset of bitcoin-regtest"):
            exposure(con, ["ethereum", CHAIN], asset="WETH")
        assert con.execute("SELECT chain, asset_id FROM exposure_state ORDER BY ALL").fetchall() == before
        assert con.execute("SELECT count(*) FROM exposure WHERE chain = 'ethereum'").fetchone() == (0,)
        with pytest.raises(InvalidInput, match="hops must be 1 to 10"):
            exposure(con, ["ethereum"], hops=11)
        (rep,) = exposure(con, ["ethereum"], asset="WETH")  # on its own chain it computes
        assert rep.asset == "WETH" and rep.mode == "full"
    finally:
        con.close()


# --- bug: reasons and indirect entries without the keys of the JSON contract -------------------------


def _all_reasons(r: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from r["reasons"]


def test_json_contract_keys(world: tuple[Path, World]) -> None:
    """docs/screening.md: every reason has rule, severity, score, scope, category, direction, hops, amount,
    share, txids, counterparty_clusters (sanctions, self and note reasons included); indirect entries
    carry hops_received and hops_sent (null: no exposure in that direction)."""
    con = connect(world[0], read_only=True)
    try:
        s = Screener(con)
        names = ("alice", "bob", "carol", "mixer", "sanct", "frank2", "darknet")
        rs = [s.screen_address(CHAIN, addr(n)) for n in names]
        never = s.screen_address(CHAIN, key_to_address(bytes([P2PKH]) + Key("nobody").pubkey_hash, REGTEST))
        rs.append(never)
        rs.append(s.screen_tx(CHAIN, world[1].txids["sanct"]))
        rules = set()
        for r in rs:
            for x in _all_reasons(r):
                assert set(x) >= REASON_KEYS, x
                rules.add(x["rule"])
        assert {"sanctions", "self-high:mixer-self", "mixer-indirect", "unknown-address"} <= rules
        mixer_self = next(x for x in rs[3]["reasons"] if x["rule"] == "self-high:mixer-self")
        assert mixer_self["share"] == 0.0 and mixer_self["counterparty_clusters"] == []
        darknet_self = rs[6]["reasons"][0]
        assert darknet_self["share"] == 0.9 and darknet_self["score"] == 70 + int(19 * 0.9)
        bob = rs[1]["exposure"]["indirect"]["mixer"]
        assert (bob["hops_received"], bob["hops_sent"]) == (2, None)
        for r in rs[:-1]:
            for entry in r["exposure"]["indirect"].values():
                assert {"hops_received", "hops_sent"} <= set(entry)
    finally:
        con.close()


# --- transactions through their counterparties on an account chain ---------------------------------


def test_account_transaction_through_counterparties(eth: Path) -> None:
    con = connect(eth, read_only=True)
    try:
        s = Screener(con)
        r = s.screen_tx("ethereum", ETH_TX.upper().replace("0X", "0x"))
        assert (r["txid"], r["severity"], r["risk_score"]) == (ETH_TX, "severe", 100)
        parties = {p["address"].lower(): p for p in r["counterparties"]}
        assert parties[ETH_MIXER]["roles"][0] == "from" and parties[ETH_SDN]["roles"][0] == "to"
        assert parties[ETH_SDN]["risk_score"] == 100
        # the mixer sent to the sanctioned contract: severe 99 through the sanctioned-direct rule
        assert (parties[ETH_MIXER]["severity"], parties[ETH_MIXER]["risk_score"]) == ("severe", 99)
        top = r["reasons"][0]
        assert top["rule"] == "sanctions" and top["counterparty"].lower() == ETH_SDN
        sent = next(x for x in r["reasons"] if x["rule"] == "sanctioned-direct")
        assert sent["direction"] == "sent" and ETH_TX in sent["txids"]
        assert all(t.startswith("0x") and len(t) == 66 for t in sent["txids"])
        # upper and lower case input screen the same address
        up = s.screen_address("ethereum", "0x" + ETH_SDN[2:].upper())
        assert (up["severity"], up["risk_score"], up["address"].lower()) == ("severe", 100, ETH_SDN)
    finally:
        con.close()


def test_stale_exposure_is_said(tmp_path: Path) -> None:
    """Blocks stored after the last exposure run: their flows are not in the exposure, and every result
    of the chain says so (a deposit address paid by a mixer after the run must not look clean silently)."""
    keys = {n: Key(f"stale-{n}") for n in ("mix", "target")}
    b = ChainBuilder()
    funded = b.add_block(miner=keys["mix"]).txs[0].outpoint(0)
    b.add_block()
    path = tmp_path / "stale.duckdb"
    _write_raw(path, b)
    con = connect(path)
    mix = key_to_address(bytes([P2PKH]) + keys["mix"].pubkey_hash, REGTEST)
    add_label(con, CHAIN, mix, "Mixer", "mixer")
    compute_exposure(con, CHAIN)
    fresh = Screener(con).screen_address(CHAIN, mix)
    assert not any("computed before" in n for n in fresh.get("notes", []))
    con.close()
    b.add_block([b.spend([(funded, keys["mix"])], [TxOut(49 * COIN, keys["target"].p2pkh())])])
    _write_raw(path, b)  # the first blocks are already stored: only the new one is written
    con = connect(path)
    target = key_to_address(bytes([P2PKH]) + keys["target"].pubkey_hash, REGTEST)
    stale = Screener(con).screen_address(CHAIN, target)
    assert any("computed before the last 2 stored" in n for n in stale["notes"])  # coinbase + payment
    compute_exposure(con, CHAIN)
    again = Screener(con).screen_address(CHAIN, target)
    assert not any("computed before" in n for n in again.get("notes", []))
    assert "mixer" in again["exposure"]["direct"]
    con.close()
