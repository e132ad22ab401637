"""Laundering typologies on the UTXO chain: exchange hack then peeling chain, ransomware, fan-out/fan-in,
mixer and CoinJoin passes. Each is a generator over the world: it acts, then yields the number of blocks
to wait. Parameters, sources and red flags are documented in docs/simulator.md."""

from __future__ import annotations

from collections.abc import Iterator

from fundtrail.simulate.actors import Actor
from fundtrail.simulate.background import Economy, coinjoin
from fundtrail.simulate.ops import btc_tx, cash_out, criminal, fresh, hop, mule_deposit, proceeds
from fundtrail.simulate.utxo import Coin, Payment
from fundtrail.simulate.world import BTC_CHAIN, Op, World, usd_to_sat

MAX_WAIT = 50  # times a hacker waits 6 blocks for a hot wallet worth robbing
MIN_HOT_BALANCE = 8 * 10**8  # satoshi


def peeling_chain(w: World, econ: Economy, case: str | None = None) -> Iterator[int]:
    """An exchange's hot wallet is drained into one address, then a peeling chain: each hop sends a
    small peel (3-8 % of the loot) to a deposit address at another exchange and the rest to a fresh
    address, one hop every block or two, until little is left; the remainder is cashed out too."""
    rng = w.rng
    hacker = criminal(w, f"hacker-{len(w.ops)}", "hacker")
    victim = None
    for _ in range(MAX_WAIT):  # the hacker strikes when a hot wallet holds enough to be worth it
        victim = max(w.pop.exchanges, key=lambda e: e.hot.balance)
        if victim.hot.balance >= MIN_HOT_BALANCE:
            break
        yield 6
    if victim is None or victim.hot.balance < MIN_HOT_BALANCE:
        return
    op = w.new_op(
        "peeling_chain", hacker, BTC_CHAIN, "BTC", "hot-wallet theft laundered by a peeling chain", case
    )
    loot = min(victim.hot.balance // 4, usd_to_sat(rng.uniform(1_500_000, 4_000_000)))
    to = fresh(w, op, hacker, "theft")
    pay = w.btc.pay(victim.hot, [(hacker.btc, to, loot)], change=victim.hot.home)
    btc_tx(op, pay, "theft")
    op.amount = loot
    op.seeds.append((0, BTC_CHAIN, pay.outpoint(0), "BTC", loot))
    op.briefing.update(victim=victim.actor.name, theft_tx=pay.txid, amount=loot, time=w.time)
    coin: Coin = pay.outputs[0]
    hops = rng.randint(12, 24)
    yield rng.randint(1, 3)
    others = [e for e in w.pop.exchanges if e is not victim]
    for _ in range(hops):
        peel = loot * rng.randint(30, 80) // 1000
        if coin[0] < 3 * peel:
            break
        ex = rng.choice(others)
        nxt = fresh(w, op, hacker, "layer")
        dep = mule_deposit(w, econ, op, ex)
        outs = [(ex.deposits, dep, peel), (hacker.btc, nxt, 0)]
        pay = btc_tx(op, w.btc.pay(hacker.btc, outs, coins=[coin], sweep=True), "peel")
        op.cashouts.append((0, BTC_CHAIN, "BTC", w.btc_text(dep), ex.actor.id, pay.txid, peel))
        coin = pay.outputs[1]
        yield rng.randint(1, 2)
    cash_out(w, econ, op, hacker, coin, [(rng.choice(others), None)])
    op.end_time = w.time


def ransomware(w: World, econ: Economy, case: str | None = None) -> Iterator[int]:
    """Victims pay ransoms to one fresh address each; the operator pools them in one multi-input
    transaction, layers the pool through 2-4 hops, then splits it: part through a mixer, part to an
    OTC desk, the rest to an exchange."""
    rng = w.rng
    crook = criminal(w, f"ransomware-{len(w.ops)}", "ransomware_operator")
    op = w.new_op(
        "ransomware", crook, BTC_CHAIN, "BTC", "ransom payments pooled, layered and cashed out", case
    )
    coin = yield from proceeds(w, econ, op, crook, (4_000, 60_000), rng.randint(5, 10), "ransom")
    if coin is None:
        return
    for _ in range(rng.randint(2, 4)):
        coin = hop(w, op, crook, coin)
        yield rng.randint(1, 2)
    total = coin[0]
    otc = rng.choice(w.pop.otc)
    mix_part, otc_part = total * 4 // 10, total * 3 // 10
    mix_dep = w.btc.new_address(w.pop.mixers[0].actor.id, "deposit") if w.pop.mixers else None
    otc_addr = w.btc.new_address(otc.id, "receive")
    ex = econ.exchange()
    dep = mule_deposit(w, econ, op, ex)
    outs = [(otc.btc, otc_addr, otc_part), (ex.deposits, dep, 0)]
    if mix_dep is not None:
        outs.insert(0, (w.pop.mixers[0].actor.btc, mix_dep, mix_part))
    op.address(BTC_CHAIN, w.btc_text(otc_addr), "cashout")
    pay = btc_tx(op, w.btc.pay(crook.btc, outs, coins=[coin], sweep=True), "split")
    k = 0
    if mix_dep is not None:
        op.address(BTC_CHAIN, w.btc_text(mix_dep), "mixer-deposit")
        _mixer_exit(w, econ, op, crook, pay.outputs[0][0])
        k = 1
    op.cashouts.append((0, BTC_CHAIN, "BTC", w.btc_text(otc_addr), otc.id, pay.txid, pay.outputs[k][0]))
    op.cashouts.append((0, BTC_CHAIN, "BTC", w.btc_text(dep), ex.actor.id, pay.txid, pay.outputs[k + 1][0]))
    op.end_time = w.time


def _mixer_exit(w: World, econ: Economy, op: Op, crook: Actor, amount: int) -> None:
    """The mixer pays the criminal back (less its fee) later, from other coins, to a fresh address
    that then deposits at an exchange: value that reached the exchange, invisible to taint."""
    mixer = w.pop.mixers[0]
    out = fresh(w, op, crook, "mixer-exit")
    net = int(amount * (1 - econ.mixer_fee))

    def paid(pay: object) -> None:
        assert isinstance(pay, Payment)
        btc_tx(op, pay, "mixer-payout")

        def onward() -> Iterator[int]:
            yield 1
            ex = econ.exchange()
            dep = mule_deposit(w, econ, op, ex)
            p2 = w.btc.pay(crook.btc, [(ex.deposits, dep, 0)], coins=[pay.outputs[0]], sweep=True)
            btc_tx(op, p2, "cashout")
            op.cashouts.append((0, BTC_CHAIN, "BTC", w.btc_text(dep), ex.actor.id, p2.txid, p2.outputs[0][0]))
            op.end_time = w.time

        w.schedule(onward())

    mixer.payouts.append((w.tick + w.rng.randint(3, 8), crook.btc, out, net, paid))


def fan_out_fan_in(w: World, econ: Economy, case: str | None = None) -> Iterator[int]:
    """Darknet-market proceeds split into 10-30 fresh addresses in one transaction, each moved once or
    twice on its own, then gathered again into one address by a multi-input transaction and cashed out
    at two exchanges."""
    rng = w.rng
    crook = criminal(w, f"vendor-{len(w.ops)}", "darknet_vendor")
    op = w.new_op(
        "fan_out_fan_in", crook, BTC_CHAIN, "BTC", "proceeds smurfed through many fresh addresses", case
    )
    coin = yield from proceeds(w, econ, op, crook, (1_000, 12_000), rng.randint(8, 16), "sale")
    if coin is None:
        return
    n = rng.randint(10, 30)
    share = (coin[0] - 20_000) // n
    outs = [(crook.btc, fresh(w, op, crook, "fan-out"), share) for _ in range(n - 1)]
    outs.append((crook.btc, fresh(w, op, crook, "fan-out"), 0))
    pay = btc_tx(op, w.btc.pay(crook.btc, outs, coins=[coin], sweep=True), "fan-out")
    coins = list(pay.outputs)
    yield 1
    for _ in range(rng.randint(1, 2)):
        moved = []
        for c in coins:
            moved.append(hop(w, op, crook, c))
        coins = moved
        yield rng.randint(1, 3)
    gather = fresh(w, op, crook, "fan-in")
    pay = btc_tx(op, w.btc.pay(crook.btc, [(crook.btc, gather, 0)], coins=coins, sweep=True), "fan-in")
    yield 1
    a, b = rng.sample(w.pop.exchanges, 2)
    cash_out(w, econ, op, crook, pay.outputs[0], [(a, pay.outputs[0][0] // 2), (b, None)])
    op.end_time = w.time


def mixing(w: World, econ: Economy, case: str | None = None) -> Iterator[int]:
    """Scam proceeds passed through a custodial mixer (every other operation) or two rounds of
    equal-output CoinJoins with honest users, then deposited at an exchange."""
    rng = w.rng
    crook = criminal(w, f"scammer-{len(w.ops)}", "scammer")
    op = w.new_op("mixing", crook, BTC_CHAIN, "BTC", "scam proceeds through a mixer or CoinJoins", case)
    coin = yield from proceeds(w, econ, op, crook, (500, 5_000), rng.randint(6, 12), "scam")
    if coin is None:
        return
    if w.pop.mixers and len([o for o in w.ops if o.typology == "mixing"]) % 2 == 1:
        mixer = w.pop.mixers[0]
        dep = w.btc.new_address(mixer.actor.id, "deposit")
        op.address(BTC_CHAIN, w.btc_text(dep), "mixer-deposit")
        pay = btc_tx(op, w.btc.pay(crook.btc, [(mixer.actor.btc, dep, 0)], coins=[coin], sweep=True), "mix")
        _mixer_exit(w, econ, op, crook, pay.outputs[0][0])
        op.description = "scam proceeds through a custodial mixer"
        return
    op.description = "scam proceeds through CoinJoin rounds"
    denom = econ.denomination
    # split the proceeds into CoinJoin-sized coins, then join each with four honest users, twice
    n = min(8, coin[0] // (denom * 2))
    if n == 0:  # too little to mix: straight to an exchange
        cash_out(w, econ, op, crook, coin, [(econ.exchange(), None)])
        op.end_time = w.time
        return
    outs = [(crook.btc, fresh(w, op, crook, "premix"), denom + 20_000) for _ in range(n)]
    outs.append((crook.btc, fresh(w, op, crook, "premix-change"), 0))
    pay = btc_tx(op, w.btc.pay(crook.btc, outs, coins=[coin], sweep=True), "premix")
    rest = pay.outputs[-1]
    yield 1
    mixed: list[Coin] = []
    for c in pay.outputs[:-1]:
        parties = [econ.user() for _ in range(4)]
        out = fresh(w, op, crook, "coinjoin-output")
        crook.btc.move_first(c)
        others = [
            (p, w.btc.new_address(p.id, "coinjoin", p.btc.kind), w.btc.receive_address(p.btc, "change"))
            for p in parties
        ]
        change = fresh(w, op, crook, "coinjoin-change")
        cj = coinjoin(w, [(crook, out, change), *others], denom)
        if cj is None:  # no round this block: the coin goes on unmixed
            mixed.append(c)
            continue
        op.tx(BTC_CHAIN, cj.txid, "coinjoin")
        mixed.append(next(x for x in cj.outputs if x[3] == out[0]))
        mixed.append(next(x for x in cj.outputs if x[3] == change[0]))
    yield 1
    ex = econ.exchange()
    cash_out(w, econ, op, crook, rest, [(ex, None)])
    for c in mixed:
        cash_out(w, econ, op, crook, c, [(ex, None)])
    op.end_time = w.time
