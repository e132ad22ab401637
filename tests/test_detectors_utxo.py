"""The UTXO typology detectors (peeling_chain, fan_out_fan_in, mixing, dusting, exposure_jump): each fires
on a minimal case built as real regtest blocks and ingested into a real store, and stays silent on its nearest
innocent look-alike, built beside it in the same store (each test says which look-alike and why it is the
nearest: the one that differs from the laundering pattern in the single feature the rule rests on)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from fundtrail.chains.bitcoin import script as script_kinds
from fundtrail.chains.bitcoin.address import key_to_address
from fundtrail.chains.bitcoin.builder import ChainBuilder, Key, OutPoint, Tx, TxOut
from fundtrail.chains.bitcoin.decoder import decode_blocks
from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.detection.base import Alert
from fundtrail.detection.context import StoreContext
from fundtrail.detection.detectors import dusting, exposure_jump, fan_out_fan_in, mixing, peeling_chain
from fundtrail.labels.store import add_label
from fundtrail.store.bitcoin_write import write_blocks
from fundtrail.store.db import connect

CHAIN = "bitcoin-regtest"
BTC = 100_000_000
FEE = 1_000


def addr(k: Key) -> str:
    return key_to_address(bytes([script_kinds.P2PKH]) + k.pubkey_hash, REGTEST)


def out(k: Key, value: int) -> TxOut:
    return TxOut(value, k.p2pkh())


class World:
    """A chain under construction: one coinbase (50 BTC) per funded key, then blocks of transactions."""

    def __init__(self) -> None:
        self.b = ChainBuilder()

    def coin(self, k: Key) -> OutPoint:
        return self.b.add_block(miner=k).txs[0].outpoint(0)

    def spend(self, spends: Sequence[tuple[OutPoint, Key]], outputs: Sequence[TxOut]) -> Tx:
        return self.b.spend(spends, outputs)

    def block(self, *txs: Tx) -> None:
        self.b.add_block(list(txs))

    def store(self, path: Path, labels: Sequence[tuple[Key, str]] = ()) -> duckdb.DuckDBPyConnection:
        con = connect(path)
        raws = self.b.raw_blocks()
        buf = np.frombuffer(b"".join(raws), dtype=np.uint8)
        ends = np.cumsum([len(r) for r in raws]).astype(np.int64)
        write_blocks(con, decode_blocks(buf, np.r_[0, ends[:-1]].astype(np.int64), ends, REGTEST), "test")
        for k, category in labels:
            add_label(con, CHAIN, addr(k), f"{k.label} ({category})", category)
        return con


def run(module: Any, con: duckdb.DuckDBPyConnection, **overrides: Any) -> list[Alert]:
    d = module.DETECTOR
    params = {p.name: p.default for p in d.params} | overrides
    return list(d.run(StoreContext(con, CHAIN, since_height=0, params=params)))


def hexid(t: Tx) -> str:
    return t.txid.hex()


@pytest.fixture
def con_of(tmp_path: Path) -> Iterator[Any]:
    opened: list[duckdb.DuckDBPyConnection] = []

    def make(w: World, labels: Sequence[tuple[Key, str]] = ()) -> duckdb.DuckDBPyConnection:
        c = w.store(tmp_path / f"s{len(opened)}.duckdb", labels)
        opened.append(c)
        return c

    yield make
    for c in opened:
        c.close()


def _peels(w: World, start: OutPoint, owner: Key, hops: int, deposits: list[Key], fresh: bool) -> list[Tx]:
    """``hops`` one-input two-output transactions, each peeling 2 BTC to a deposit address; the rest goes
    to a fresh address (``fresh``) or back to the spender's own, reused address."""
    txs, coin, key, value = [], start, owner, 50 * BTC
    for i in range(hops):
        nxt = Key(f"{owner.label}-next{i}") if fresh else owner
        value -= 2 * BTC + FEE
        t = w.spend([(coin, key)], [out(deposits[i], 2 * BTC), out(nxt, value)])
        w.block(t)
        txs.append(t)
        coin, key = t.outpoint(1), nxt
    return txs


def test_peeling_chain_fires_and_an_exchange_paying_withdrawals_does_not(con_of: Any) -> None:
    # Look-alike: an exchange hot wallet paying one withdrawal per transaction, one input and two outputs,
    # the same 2 BTC amounts to the same kind of (exchange deposit) addresses; only its change goes back
    # to its reused hot-wallet address instead of a fresh one. That is the one feature that separates a
    # launderer walking a coin through new addresses from a service's wallet: the nearest look-alike.
    w = World()
    thief, hot, ex = Key("thief"), Key("hot"), Key("exchange")
    dep = [Key(f"dep{i}") for i in range(10)]
    chain = _peels(w, w.coin(thief), thief, 5, dep[:5], fresh=True)
    _peels(w, w.coin(hot), hot, 5, dep[5:], fresh=False)
    # the exchange sweeps its deposit addresses into its labelled wallet: they become its deposit addresses
    sweep = w.spend([(t.outpoint(0), d) for t, d in zip(chain, dep[:5])], [out(ex, 10 * BTC - FEE)])
    w.block(sweep)
    con = con_of(w, [(ex, "exchange")])
    alerts = run(peeling_chain, con)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.typology == "peeling_chain"
    assert a.txids == tuple(hexid(t) for t in chain)
    assert a.amount == 5 * 2 * BTC
    assert a.addresses[1:] == tuple(addr(d) for d in dep[:5])
    assert [p["category"] for p in a.evidence["peels"]] == ["exchange"] * 5
    assert a.window_end - a.window_start == 4 * 600
    # a shorter chain than min_hops is not reported
    assert run(peeling_chain, con, min_hops=6) == []


def test_fan_out_fan_in_fires_and_a_payroll_that_never_recombines_does_not(con_of: Any) -> None:
    # Look-alike: a payroll batch paying ten fresh addresses whose owners each move their coin on once:
    # the same split into fresh addresses and the same single-coin hops; only nobody gathers the coins
    # again, which is the fan-in the rule requires: the nearest innocent shape.
    w = World()
    vendor, boss = Key("vendor"), Key("employer")
    fan = [Key(f"fan{i}") for i in range(10)]
    hop = [Key(f"hop{i}") for i in range(10)]
    staff = [Key(f"staff{i}") for i in range(10)]
    own = [Key(f"own{i}") for i in range(10)]
    each = 4 * BTC
    split = w.spend([(w.coin(vendor), vendor)], [out(k, each) for k in fan])
    pay = w.spend([(w.coin(boss), boss)], [out(k, each) for k in staff])
    w.block(split, pay)
    hops = [w.spend([(split.outpoint(i), fan[i])], [out(hop[i], each - FEE)]) for i in range(10)]
    moves = [w.spend([(pay.outpoint(i), staff[i])], [out(own[i], each - FEE)]) for i in range(10)]
    w.block(*hops, *moves)
    gather = w.spend(
        [(h.outpoint(0), hop[i]) for i, h in enumerate(hops)], [out(Key("pool"), 10 * (each - FEE) - FEE)]
    )
    w.block(gather)
    con = con_of(w)
    alerts = run(fan_out_fan_in, con)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.typology == "fan_out_fan_in"
    assert a.txids[0] == hexid(split) and a.txids[-1] == hexid(gather)
    assert set(a.txids) == {hexid(split), hexid(gather), *(hexid(h) for h in hops)}
    assert a.amount == 10 * each
    assert a.evidence["width"] == 10 and a.evidence["gathered"] == 10
    # wider than this fan-out: nothing
    assert run(fan_out_fan_in, con, min_width=11) == []


def test_mixing_fires_and_a_small_one_off_coinjoin_does_not(con_of: Any) -> None:
    # Positive: a custodial mixer (labelled) pays 0.98 BTC to a fresh address, deposited whole at an
    # exchange in the next block. Look-alike: a user with an ordinary history (earlier payments) joins one
    # small CoinJoin (five parties, 0.005 BTC = USD 450 each at the reference price) and deposits its
    # mixed output whole at the same exchange in the next block: the same shape, below the amount
    # threshold (min_usd, USD 500). It is the nearest look-alike: lowering the threshold reports it.
    w = World()
    mixer, ex, crook, user = Key("mixer"), Key("exchange"), Key("crook"), Key("user")
    d1, d2 = Key("dep-crook"), Key("dep-user")
    mix_coin = w.coin(mixer)
    parties = [user, *(Key(f"p{i}") for i in range(4))]
    coins = [w.coin(p) for p in parties]
    history = w.spend([(coins[0], user)], [out(Key("shop"), BTC), out(user, 49 * BTC - FEE)])
    w.block(history)
    coins[0] = history.outpoint(1)
    values = [49 * BTC - FEE, *[50 * BTC] * 4]
    cj_outs = [out(Key(f"cj{i}"), 500_000) for i in range(5)]
    cj_outs += [out(p, v - 500_000 - FEE) for p, v in zip(parties, values)]
    cj = w.spend(list(zip(coins, parties)), cj_outs)
    payout = w.spend([(mix_coin, mixer)], [out(crook, 98_000_000), out(mixer, 50 * BTC - 98_000_000 - FEE)])
    w.block(cj, payout)
    dep_crook = w.spend([(payout.outpoint(0), crook)], [out(d1, 98_000_000 - FEE)])
    dep_user = w.spend([(cj.outpoint(0), Key("cj0"))], [out(d2, 500_000 - FEE)])
    w.block(dep_crook, dep_user)
    sweep = w.spend(
        [(dep_crook.outpoint(0), d1), (dep_user.outpoint(0), d2)], [out(ex, 98_500_000 - 3 * FEE)]
    )
    w.block(sweep)
    con = con_of(w, [(mixer, "mixer"), (ex, "exchange")])
    alerts = run(mixing, con)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.typology == "mixing"
    assert a.txids == (hexid(payout), hexid(dep_crook))
    assert a.amount == 98_000_000
    assert a.evidence["via"] == ["a mixer"]
    lowered = run(mixing, con, min_usd=400.0)
    assert {x.txids for x in lowered} == {a.txids, (hexid(cj), hexid(dep_user))}


def test_dusting_fires_and_a_pool_payout_does_not(con_of: Any) -> None:
    # Look-alike: a mining pool paying its twelve members, who all had coins before, in one transaction:
    # many outputs to addresses with a history, like the dusting; but normal small amounts (50,000 sat),
    # not dust (546 < value <= 1,000 sat). It differs in the amounts only: the nearest look-alike.
    w = World()
    funder, duster, pool = Key("funder"), Key("duster"), Key("pool")
    targets = [Key(f"t{i}") for i in range(12)]
    first = w.spend([(w.coin(funder), funder)], [out(t, 10_000_000) for t in targets])
    w.block(first)
    dust = w.spend([(w.coin(duster), duster)], [*(out(t, 800) for t in targets), out(duster, 49 * BTC)])
    payout = w.spend([(w.coin(pool), pool)], [*(out(t, 50_000) for t in targets), out(pool, 49 * BTC)])
    w.block(dust, payout)
    # two targets spend the dust together with their other coin: the tracking worked
    merged = [
        w.spend(
            [(first.outpoint(i), targets[i]), (dust.outpoint(i), targets[i])],
            [out(Key(f"m{i}"), 10_000_800 - FEE)],
        )
        for i in (0, 1)
    ]
    w.block(*merged)
    con = con_of(w)
    alerts = run(dusting, con)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.typology == "dusting"
    assert a.txids == (hexid(dust), hexid(merged[0]), hexid(merged[1]))  # the merges in chain order
    assert a.amount == 12 * 800
    assert a.evidence["targets"] == 12 and a.evidence["merged_spends"] == 2
    assert a.addresses[0] == addr(duster)


def test_exposure_jump_fires_and_an_entity_always_paid_by_that_source_does_not(con_of: Any) -> None:
    # Positive: V received ten ordinary payments, then one of 30 % of its week's receipts from a
    # ransomware-labelled address. Look-alikes: W, paid by the same ransomware address from its first
    # receipt on (no clean history: the source is not new to it, the nearest look-alike), and the
    # exchange, labelled, paid by it too (a service: excluded).
    w = World()
    payer, bad, ex = Key("payer"), Key("ransom"), Key("exchange")
    v, w_key = Key("V"), Key("W")
    coin, rest = w.coin(payer), 50 * BTC
    clean = []
    for _ in range(10):
        rest -= BTC + FEE
        t = w.spend([(coin, payer)], [out(v, BTC), out(payer, rest)])
        w.block(t)
        clean.append(t)
        coin = t.outpoint(1)
    bcoin, brest = w.coin(bad), 50 * BTC
    dirty = []
    for to, value in ((v, 3 * BTC), (w_key, BTC), (w_key, BTC), (ex, BTC)):
        brest -= value + FEE
        t = w.spend([(bcoin, bad)], [out(to, value), out(bad, brest)])
        w.block(t)
        dirty.append(t)
        bcoin = t.outpoint(1)
    rest -= 7 * BTC + FEE
    later = w.spend([(coin, payer)], [out(v, 7 * BTC), out(payer, rest)])
    w.block(later)
    con = con_of(w, [(bad, "ransomware"), (ex, "exchange")])
    alerts = run(exposure_jump, con)
    assert len(alerts) == 1
    a = alerts[0]
    assert a.typology == "exposure_jump"
    assert a.addresses[0] == addr(v) and addr(bad) in a.addresses
    assert a.txids == (hexid(dirty[0]), hexid(later))
    assert a.amount == 3 * BTC
    assert a.evidence == {"clean_receipts_before": 10, "risky_share": 0.3, "categories": ["ransomware"]}
    # a shorter history than min_history: no clean entity to jump from
    assert run(exposure_jump, con, min_history=11) == []
