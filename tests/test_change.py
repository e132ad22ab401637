"""Change-address heuristics and PayJoin awareness: a hand-checked real transaction (block 170), the real
mainnet fixture, the real PayJoin's shape (block 557792), per rule a constructed case beside its
nearest innocent look-alike, and constructed regtest chains for what reads the chain around a
transaction (one-time change's refinement)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pytest

from fundtrail.chains.bitcoin import coinjoin as cj
from fundtrail.chains.bitcoin import script as st
from fundtrail.chains.bitcoin.address import parse_address
from fundtrail.chains.bitcoin.builder import ChainBuilder, Key, TxOut
from fundtrail.chains.bitcoin.decoder import decode_blocks
from fundtrail.chains.bitcoin.network import MAINNET, REGTEST
from fundtrail.clustering import change as ch
from fundtrail.clustering import engine
from fundtrail.clustering.config import ClusterConfig
from fundtrail.errors import InvalidInput
from fundtrail.store.bitcoin_write import write_blocks
from fundtrail.store.db import connect
from fundtrail.store.utxo_view import TxRow, load_view, view_from_rows
from tests.conftest import DATA

W, PKH, SH = st.P2WPKH, st.P2PKH, st.P2SH
BLOCK_170_TX = "f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16"


def _names(rows: list[TxRow], enabled: tuple[str, ...] = ch.CONFIG_NAMES) -> tuple[int, dict[str, int]]:
    """(chosen output position in the first tx or -1, {heuristic: position it named})."""
    view = view_from_rows(rows)
    codes = np.zeros(len(view), np.int8)
    op = ch.change_opinions(view, codes)
    chosen = int(ch.change_outputs(view, enabled, codes)[0])
    base = int(view.out_off[0])
    named = {h: int(op[0, k]) - base for k, h in enumerate(ch.HEURISTICS) if op[0, k] >= 0}
    return (chosen - base if chosen >= 0 else -1), named


# --- real data ---------------------------------------------------------------------------------------


def test_block_170_self_change(real_con: duckdb.DuckDBPyConnection) -> None:
    """Satoshi pays Hal Finney 10 BTC and returns 40 BTC to his own input key: self-change."""
    (tid,) = real_con.execute(
        "SELECT tx_id FROM transactions WHERE lower(hex(txid)) = ?", [BLOCK_170_TX]
    ).fetchall()[0]
    view = load_view(real_con, "bitcoin", tx_ids=np.array([tid]))
    i = view.index_of(tid)
    outs = slice(int(view.out_off[i]), int(view.out_off[i + 1]))
    assert view.out_value[outs].tolist() == [1_000_000_000, 4_000_000_000]
    codes = cj.detect(view)
    op = ch.change_opinions(view, codes)[i]
    assert op.tolist() == [-1, -1, -1, -1, int(view.out_off[i]) + 1, -1]  # only reuse: output 1
    assert int(ch.change_outputs(view, ch.CONFIG_NAMES, codes)[i]) == int(view.out_off[i]) + 1
    # output 1 *is* the first input's address: the link says nothing new and is dropped
    assert all(len(links) == 0 for links in ch.change_links(view, ch.CONFIG_NAMES, codes))


def test_real_store_links_are_consistent(real_con: duckdb.DuckDBPyConnection) -> None:
    view = load_view(real_con, "bitcoin")
    codes = cj.detect(view)
    links = ch.change_links(view, ch.CONFIG_NAMES, codes)
    assert [lk.heuristic for lk in links] == list(ch.HEURISTICS)
    first_in = {int(t): int(view.in_addr[view.in_off[k]]) for k, t in enumerate(view.tx_id)}
    cj_tx = set(view.tx_id[codes != 0].tolist())
    total = 0
    for lk in links:
        total += len(lk)
        assert all(first_in[int(t)] == int(b) for t, b in zip(lk.tx_id, lk.b))
        assert not cj_tx & set(lk.tx_id.tolist())
        assert (lk.a != lk.b).all()
    assert total > 0
    # agreement: one tx never links two different change outputs
    pairs = {(int(t), int(a)) for lk in links for t, a in zip(lk.tx_id, lk.a)}
    assert len({t for t, _ in pairs}) == len(pairs)


# --- constructed cases, one per rule -----------------------------------------------------------------


def test_one_time() -> None:
    rows = [
        TxRow([(1, 5_000_000, PKH)], [(2, 3_000_000, PKH), (3, 1_990_000, PKH)], tx_id=10, first_seen=[4, 10])
    ]
    assert _names(rows, ("one_time",)) == (1, {"change_one_time": 1, "change_round_number": 1})
    fresh_both = [TxRow([(1, 5_000_000, PKH)], [(2, 3_000_000, PKH), (3, 1_990_000, PKH)], tx_id=10)]
    assert _names(fresh_both, ("one_time",))[0] == -1
    # Meiklejohn's refinement: the fresh address receives again in tx 12, so it is not one-time change
    again = [
        TxRow(
            [(1, 5_000_000, PKH)],
            [(2, 3_000_000, PKH), (3, 1_990_000, PKH)],
            tx_id=10,
            first_seen=[4, 10],
            second_seen=[7, 12],  # the payee's reuse (tx 7) does not matter
        )
    ]
    assert _names(again, ("one_time",)) == (-1, {"change_round_number": 1})


# --- one-time change on constructed regtest chains ---------------------------------------------------

REGTEST_CHAIN = "bitcoin-regtest"


def _store_blocks(con: duckdb.DuckDBPyConnection, raws: list[bytes]) -> None:
    buf = np.frombuffer(b"".join(raws), dtype=np.uint8)
    ends = np.cumsum([len(r) for r in raws]).astype(np.int64)
    write_blocks(con, decode_blocks(buf, np.r_[0, ends[:-1]].astype(np.int64), ends, REGTEST), "test")


def _payment_chain() -> ChainBuilder:
    """Alice (mined block 1) pays Bob (mined block 2, so his address is seen before) 30 BTC, change
    19.9 BTC to a fresh address of hers, in block 3."""
    b = ChainBuilder()
    alice, bob, change = Key("alice"), Key("bob"), Key("alice-change")
    b.add_block(miner=alice)
    b.add_block(miner=bob)
    coin = next(op for op, o in b.utxos.items() if o.script_pubkey == alice.p2pkh())
    pay = b.spend([(coin, alice)], [TxOut(3_000_000_000, bob.p2pkh()), TxOut(1_990_000_000, change.p2pkh())])
    b.add_block([pay])
    return b


def _one_time_links(con: duckdb.DuckDBPyConnection) -> tuple[int, list[tuple[int, int, int]]]:
    """(tx_id of the payment, its one-time links as (change address, first input address, tx_id))."""
    view = load_view(con, REGTEST_CHAIN)
    pay = int(view.tx_id[~view.is_coinbase][0])
    (links,) = ch.change_links(view, ["one_time"], cj.detect(view))
    return pay, list(zip(links.a.tolist(), links.b.tolist(), links.tx_id.tolist()))


def test_one_time_on_a_regtest_chain(tmp_path: Path) -> None:
    b = _payment_chain()
    con = connect(tmp_path / "one_time.duckdb")
    _store_blocks(con, b.raw_blocks())
    pay, links = _one_time_links(con)
    view = load_view(con, REGTEST_CHAIN, tx_ids=np.array([pay]))
    assert view.out_value.tolist() == [3_000_000_000, 1_990_000_000]
    change_addr = int(view.out_addr[1])
    assert view.first_seen_out.tolist() == [int(view.first_seen_out[0]), pay]
    assert 0 <= view.first_seen_out[0] < pay  # Bob's address was seen in block 2
    assert view.second_seen_out.tolist() == [pay, -1]  # this payment is Bob's second receipt
    assert view.height.tolist() == [3] and view.time.tolist() == [int(b.blocks[3].header.time)]
    assert [(a, t) for a, _b, t in links] == [(change_addr, pay)]


def test_one_time_change_that_receives_again_is_not_named(tmp_path: Path) -> None:
    """The fresh address of the payment receives again in a later block (here Bob pays it): it is not
    one-time, so the refinement names nothing. A run made before that block named it (it judges with
    the data stored then); a full run after it does not."""
    b = _payment_chain()
    con = connect(tmp_path / "again.duckdb")
    _store_blocks(con, b.raw_blocks())
    cfg = ClusterConfig(change=("one_time",))
    before = engine.cluster(con, cfg, [REGTEST_CHAIN])[0]
    assert before.merges.get("change_one_time") == 1
    bob, change = Key("bob"), Key("alice-change")
    coin = next(op for op, o in b.utxos.items() if o.script_pubkey == bob.p2pkh())
    b.add_block([b.spend([(coin, bob)], [TxOut(100_000_000, change.p2pkh())])])
    _store_blocks(con, [b.raw_blocks()[-1]])
    pay, links = _one_time_links(con)
    view = load_view(con, REGTEST_CHAIN, tx_ids=np.array([pay]))
    sql = "SELECT max(tx_id) FROM transactions WHERE chain = ? AND NOT is_coinbase"
    again = int(con.execute(sql, [REGTEST_CHAIN]).fetchall()[0][0])  # Bob's payment to it
    assert view.second_seen_out.tolist() == [pay, again]
    assert links == []
    assert ch.change_opinions(view, np.zeros(1, np.int8))[0, 0] == -1
    # incremental: the earlier link stays (not revisited); a full recompute drops it
    assert engine.cluster(con, cfg, [REGTEST_CHAIN])[0].mode == "incremental"
    full = engine.cluster(con, cfg, [REGTEST_CHAIN], full=True)[0]
    assert full.merges.get("change_one_time") is None


def test_round_number() -> None:
    rows = [TxRow([(1, 5_000_000, PKH)], [(2, 3_000_000, PKH), (3, 1_987_654, PKH)])]
    assert _names(rows, ("round_number",))[0] == 1
    both_round = [TxRow([(1, 5_000_000, PKH)], [(2, 3_000_000, PKH), (3, 1_900_000, PKH)])]
    assert _names(both_round, ("round_number",))[0] == -1


def test_optimal() -> None:
    rows = [TxRow([(1, 5_000_000, PKH), (2, 3_000_000, PKH)], [(3, 6_123_456, PKH), (4, 1_870_000, PKH)])]
    assert _names(rows, ("optimal",))[0] == 1
    one_input = [TxRow([(1, 8_000_000, PKH)], [(3, 6_123_456, PKH), (4, 1_870_000, PKH)])]
    assert _names(one_input, ("optimal",))[0] == -1  # both outputs are smaller than the one input


def test_address_type() -> None:
    rows = [TxRow([(1, 5_000_000, W), (2, 3_000_000, W)], [(3, 6_123_456, PKH), (4, 1_870_001, W)])]
    assert _names(rows, ("address_type",))[0] == 1
    same = [TxRow([(1, 5_000_000, W), (2, 3_000_000, W)], [(3, 6_123_456, W), (4, 1_870_001, W)])]
    assert _names(same, ("address_type",))[0] == -1


def test_address_reuse_blocks_the_others() -> None:
    # output 1 pays input 2's address; round number alone would name output 0 (the non-round one)
    rows = [TxRow([(1, 5_000_000, PKH), (2, 3_000_000, PKH)], [(3, 6_123_456, PKH), (2, 1_800_000, PKH)])]
    chosen, named = _names(rows)
    assert (chosen, named) == (1, {"change_address_reuse": 1})
    view = view_from_rows(rows)
    links = {lk.heuristic: lk for lk in ch.change_links(view, ["address_reuse"], np.zeros(1, np.int8))}
    assert links["change_address_reuse"].a.tolist() == [2] and links["change_address_reuse"].b.tolist() == [1]
    no_reuse = [TxRow([(1, 5_000_000, PKH), (2, 3_000_000, PKH)], [(3, 6_123_456, PKH), (5, 1_800_000, PKH)])]
    assert "change_address_reuse" not in _names(no_reuse)[1]


def test_fingerprint() -> None:
    tx = dict(version=2, locktime=500_000)
    rows = [
        TxRow(
            [(1, 5_000_000, W)], [(3, 3_123_456, W), (4, 1_870_001, W)], spender=[(2, 600_000), (1, 0)], **tx
        )
    ]
    assert _names(rows, ("fingerprint",))[0] == 0
    unspent = [
        TxRow(
            [(1, 5_000_000, W)],
            [(3, 3_123_456, W), (4, 1_870_001, W)],
            spender=[(2, 600_000), (-1, -1)],
            **tx,
        )
    ]
    assert _names(unspent, ("fingerprint",))[0] == -1


def test_disagreement_links_nothing() -> None:
    # optimal names output 1 (smaller than both inputs); round number names output 0 (1,900,000 is round)
    rows = [TxRow([(1, 5_000_000, PKH), (2, 3_000_000, PKH)], [(3, 6_095_432, PKH), (4, 1_900_000, PKH)])]
    chosen, named = _names(rows, ("optimal", "round_number"))
    assert named["change_optimal"] == 1 and named["change_round_number"] == 0 and chosen == -1
    assert _names(rows, ("optimal",))[0] == 1
    view = view_from_rows(rows)
    assert all(
        len(lk) == 0 for lk in ch.change_links(view, ["optimal", "round_number"], np.zeros(1, np.int8))
    )


def test_ineligible_transactions() -> None:
    base = TxRow([(1, 5_000_000, PKH)], [(2, 3_000_000, PKH), (3, 1_990_000, PKH)])
    unresolved = TxRow([(-1, -1, -1)], base.outputs)
    view = view_from_rows([base, unresolved])
    assert ch.change_outputs(view, ["round_number"], np.zeros(2, np.int8)).tolist() == [1, -1]
    assert ch.change_outputs(view, ["round_number"], np.array([5, 0], np.int8)).tolist() == [
        -1,
        -1,
    ]  # CoinJoin
    with pytest.raises(InvalidInput):
        ch.parse_enabled(["one_time", "peeling"])
    assert ch.parse_enabled(["change_optimal", "optimal"]) == {"change_optimal"}


# --- PayJoin -----------------------------------------------------------------------------------------

PAYJOIN = DATA / "graphsense-lib" / "btc_payjoin" / "payjoin_real_ids.json"
# Constructed values (the ground truth gives roles, not amounts): the receiver adds three inputs and
# receives payment + those inputs; the sender pays 0.02 BTC from two inputs, fee 5,000 sat.
PAYJOIN_IN = [400_000, 600_000, 1_000_000, 3_000_000, 2_500_000]  # in0..in2 receiver, in3, in4 sender
PAYJOIN_OUT = [3_495_000, 4_000_000]  # out0 sender change, out1 receiver payment (2,000,000 + 2,000,000)


def _payjoin_view() -> tuple[list[bytes], TxRow]:
    data = json.loads(PAYJOIN.read_text())
    addrs = {a["label"].split(" ")[0]: a["id"] for a in data["addresses"]}
    keys = [parse_address(addrs[n], MAINNET) for n in ("in0", "in1", "in2", "in3", "in4", "out0", "out1")]
    assert all(k[0] == SH for k in keys)  # P2SH(-SegWit) throughout, as on chain
    ins = [(k, v, SH) for k, v in enumerate(PAYJOIN_IN)]
    outs = [(5, PAYJOIN_OUT[0], SH), (6, PAYJOIN_OUT[1], SH)]
    return keys, TxRow(ins, outs, tx_id=7, version=2, locktime=557_791, first_seen=[7, 7], height=557_792)


def test_real_payjoin_shape() -> None:
    _, row = _payjoin_view()
    view = view_from_rows([row])
    mask = ch.payjoin_candidates(view)
    assert mask.tolist() == [True]
    codes = cj.detect(view)
    assert codes.tolist() == [0]
    # with the mask, no change heuristic links anything in it
    assert all(len(lk) == 0 for lk in ch.change_links(view, ch.CONFIG_NAMES, codes, payjoin=mask))
    # without it: nothing ever calls the receiver's payment (out1) change; round number names out0,
    # the sender's real change, but links it to in0, the *receiver's* input: a false merge the mask prevents
    op = ch.change_opinions(view, codes)[0]
    assert 1 not in op.tolist()
    named = {h for k, h in enumerate(ch.HEURISTICS) if op[k] == 0}
    assert named == {"change_round_number"}


def test_ordinary_payment_is_not_a_payjoin() -> None:
    # 2 inputs, payment + optimal change (UIH1 holds): an ordinary wallet payment
    rows = [TxRow([(1, 5_000_000, SH), (2, 3_000_000, SH)], [(3, 6_000_000, SH), (4, 1_995_000, SH)])]
    assert ch.payjoin_candidates(view_from_rows(rows)).tolist() == [False]
    # the same shape paying back to an input address: internal reuse, not a PayJoin
    rows = [TxRow([(1, 5_000_000, SH), (2, 3_000_000, SH)], [(3, 4_000_000, SH), (1, 3_995_000, SH)])]
    assert ch.payjoin_candidates(view_from_rows(rows)).tolist() == [False]


def test_payjoin_gate_keeps_the_real_payjoin() -> None:
    """The PayJoin at its real height (557792, January 2019) passes the date gate; the same shape
    before the gate (by height, or by time where the height is unknown) is not a candidate; a loose
    transaction (neither known) is."""
    _, row = _payjoin_view()
    assert ch.PAYJOIN_FIRST_HEIGHT <= 557_792
    at = {
        "real height": (557_792, -1),
        "gate height": (ch.PAYJOIN_FIRST_HEIGHT, -1),
        "2010": (60_000, 1_277_000_000),
        "just before the gate": (ch.PAYJOIN_FIRST_HEIGHT - 1, -1),
        "height unknown, time 2019": (-1, 1_547_000_000),
        "height unknown, time 2010": (-1, 1_277_000_000),
        "loose": (-1, -1),
    }
    rows = [replace(row, tx_id=k, height=h, time=t) for k, (h, t) in enumerate(at.values())]
    view = view_from_rows(rows)
    fired = dict(zip(at, ch.payjoin_candidates(view).tolist()))
    assert fired == {
        "real height": True,
        "gate height": True,
        "2010": False,
        "just before the gate": False,
        "height unknown, time 2019": True,
        "height unknown, time 2010": False,
        "loose": True,
    }
    assert ch.payjoin_candidates(view, first_height=0, first_time=0).all()  # gate off
    assert ch.payjoin_candidates(view, first_height=600_000, first_time=2_000_000_000).tolist() == [
        False, False, False, False, False, False, True,
    ]  # fmt: skip


def test_payjoin_gate_on_the_real_store(real_con: duckdb.DuckDBPyConnection) -> None:
    """Without the gate the rule marks 16 ordinary transactions in the real mainnet blocks, all mined
    2015-2017 (blocks 363703, 370661, 383616, 481829), before any PayJoin protocol existed; with the
    default gate none."""
    view = load_view(real_con, "bitcoin")
    assert (view.time > 0).all()  # every stored transaction is in a block
    codes = cj.detect(view)
    ungated = ch.payjoin_candidates(view, codes, first_height=0, first_time=0)
    assert int(ungated.sum()) == 16
    assert sorted(set(view.height[ungated].tolist())) == [363_703, 370_661, 383_616, 481_829]
    assert (view.time[ungated] < ch.PAYJOIN_FIRST_TIME).all()
    assert not ch.payjoin_candidates(view, codes).any()
    # the gate is a date, not a blanket: blocks after it (514485, 514492: March 2018) are judged
    late = view.height >= ch.PAYJOIN_FIRST_HEIGHT
    assert int(late.sum()) > 0
    assert not (ch.payjoin_candidates(view, codes) ^ ungated)[late].any()
