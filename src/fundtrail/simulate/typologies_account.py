"""Laundering typologies on the account chain (USDT) and across chains: structuring, round-tripping,
trade disguise, fast cash-out (romance scam), chain hopping through the bridge, and sanctions evasion
through an OTC desk. Generators over the world, as in ``typologies_utxo``."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from fundtrail.simulate.account import USDT_UNIT
from fundtrail.simulate.background import Economy
from fundtrail.simulate.ops import (
    btc_tx,
    criminal,
    eth_cash_out,
    eth_fresh,
    eth_gas,
    fresh,
    gas_station,
    hop,
    proceeds,
    usdt_funding,
)
from fundtrail.simulate.utxo import Insufficient
from fundtrail.simulate.world import BTC_CHAIN, ETH_CHAIN, World, sat_to_usdt

# reporting thresholds a structurer stays under, in USD (USDT): Hong Kong's travel-rule threshold for
# virtual-asset transfers (HKD 8,000 at 7.8 HKD/USD), the EU's EUR 1,000 (at 1.08 USD/EUR), and the US
# USD 3,000 (funds-transfer recordkeeping) and USD 10,000 (currency transaction reports)
THRESHOLDS_USD = {"HKD 8,000": 1_025, "EUR 1,000": 1_080, "USD 3,000": 3_000, "USD 10,000": 10_000}


def structuring(w: World, econ: Economy, case: str | None = None) -> Iterator[int]:
    """Illicit USDT split into many transfers each just under a reporting threshold (85-99.9 % of it),
    to deposit addresses of money mules at several exchanges, a few per block."""
    rng = w.rng
    crook = criminal(w, f"structurer-{len(w.ops)}", "structurer")
    name = rng.choice(sorted(THRESHOLDS_USD))
    limit = THRESHOLDS_USD[name] * USDT_UNIT
    op = w.new_op("structuring", crook, ETH_CHAIN, "USDT", f"transfers kept under the {name} threshold", case)
    n = rng.randint(15, 40)
    src, gas, units = usdt_funding(w, econ, op, crook, n * THRESHOLDS_USD[name] * 0.93)
    op.briefing.update(threshold=name, source=w.eth.text(src))
    yield 1
    left = units
    while left > 0:
        for _ in range(rng.randint(2, 5)):
            amount = min(left, limit * rng.randint(850, 999) // 1000)
            if amount <= 0:
                break
            eth_cash_out(w, econ, op, crook, src, gas, rng.choice(w.pop.exchanges), amount, 0)
            left -= amount
        yield 1
    op.end_time = w.time


def round_tripping(w: World, econ: Economy, case: str | None = None) -> Iterator[int]:
    """A company sends USDT through three to five shell addresses that return it to the company less
    small commissions: a cycle that dresses the money up as income."""
    rng = w.rng
    origin = criminal(w, f"company-{len(w.ops)}", "front_company")
    op = w.new_op(
        "round_tripping", origin, ETH_CHAIN, "USDT", "funds cycled through shells back to the origin", case
    )
    src, gas, units = usdt_funding(w, econ, op, origin, rng.uniform(50_000, 400_000))
    yield 1
    current, amount = src, units
    shells = [
        eth_fresh(w, op, criminal(w, f"shell-{op.id}-{i}", "shell_company"), "layer")
        for i in range(rng.randint(3, 5))
    ]
    for nxt in [*shells, src]:
        eth_gas(w, op, gas, current)
        h = w.eth.send_usdt(current, nxt, amount)
        op.tx(ETH_CHAIN, h, "cycle")
        if nxt == src:
            op.cashouts.append((0, ETH_CHAIN, "USDT", w.eth.text(src), origin.id, h, amount))
        current, amount = nxt, amount * rng.randint(990, 998) // 1000
        yield rng.randint(1, 2)
    op.end_time = w.time


def trade_disguise(w: World, econ: Economy, case: str | None = None) -> Iterator[int]:
    """Two or three young front companies pay each other regular, invoice-like amounts (rounded to
    10 USDT, every few blocks), the last one cashing out at an exchange: laundering dressed as trade."""
    rng = w.rng
    boss = criminal(w, f"trader-{len(w.ops)}", "launderer")
    op = w.new_op(
        "trade_disguise", boss, ETH_CHAIN, "USDT", "illicit funds moved as invoices between fronts", case
    )
    src, gas, units = usdt_funding(w, econ, op, boss, rng.uniform(100_000, 600_000))
    fronts = [
        criminal(w, f"front-{op.id}-{i} Trading Ltd", "front_company") for i in range(rng.randint(2, 3))
    ]
    addrs = [eth_fresh(w, op, f, "front") for f in fronts]
    op.briefing.update(fronts=[w.eth.text(a) for a in addrs])
    eth_gas(w, op, gas, src)
    op.tx(ETH_CHAIN, w.eth.send_usdt(src, addrs[0], units), "placement")
    yield 1
    cadence = rng.randint(3, 8)
    for i, (payer, payee) in enumerate(itertools.pairwise(addrs)):
        invoice = max(1_000, int(units / rng.randint(6, 12)) // (10 * USDT_UNIT) * 10) * USDT_UNIT
        while w.eth.usdt.get(payer, 0) >= invoice:
            eth_gas(w, op, gas, payer)
            op.tx(ETH_CHAIN, w.eth.send_usdt(payer, payee, invoice), "invoice")
            invoice = max(USDT_UNIT, invoice + rng.choice((-1, 0, 1)) * 10 * USDT_UNIT)
            yield cadence
        rest = w.eth.usdt.get(payer, 0)
        if rest and i < len(addrs) - 2:
            eth_gas(w, op, gas, payer)
            op.tx(ETH_CHAIN, w.eth.send_usdt(payer, payee, rest), "invoice")
    last = addrs[-1]
    total = w.eth.usdt.get(last, 0)
    for ex in rng.sample(w.pop.exchanges, 2):
        part = total // 2 if ex is not None and total > 1 else total
        eth_cash_out(w, econ, op, fronts[-1], last, gas, ex, part, 0)
        total -= part
        yield cadence
    if total:
        eth_cash_out(w, econ, op, fronts[-1], last, gas, rng.choice(w.pop.exchanges), total, 0)
    op.end_time = w.time


def fast_cashout(w: World, econ: Economy, case: str | None = None) -> Iterator[int]:
    """A romance ("pig-butchering") scam: victims buy USDT and send it to the scammer's "investment
    platform" address over several blocks; the scammer cashes out at exchanges within one block of
    the last payment."""
    rng = w.rng
    crook = criminal(w, f"romance-scammer-{len(w.ops)}", "scammer")
    op = w.new_op("fast_cashout", crook, ETH_CHAIN, "USDT", "scam proceeds cashed out within minutes", case)
    collect = eth_fresh(w, op, crook, "collection")
    gas = gas_station(w, econ, op, crook)
    victims = [econ.user() for _ in range(rng.randint(3, 6))]
    paid: list[str] = []
    for v in victims:
        assert v.eth is not None
        units = int(rng.uniform(2_000, 40_000)) * USDT_UNIT
        econ.eth_buy(v, units)
        try:
            h = w.eth.send_usdt(v.eth, collect, units)
        except Insufficient:
            continue
        op.tx(ETH_CHAIN, h, "victim-payment")
        op.address(ETH_CHAIN, w.eth.text(v.eth), "victim")
        op.amount += units
        paid.append(h)
        yield rng.randint(1, 4)
    op.seeds.append((0, ETH_CHAIN, w.eth.text(collect), "USDT", op.amount))
    op.briefing.update(collection=w.eth.text(collect), victim_payments=paid)
    total = op.amount
    for ex in rng.sample(w.pop.exchanges, min(3, len(w.pop.exchanges))):
        part = total // 2
        eth_cash_out(w, econ, op, crook, collect, gas, ex, part, 0)
        total -= part
    if total:
        eth_cash_out(w, econ, op, crook, collect, gas, rng.choice(w.pop.exchanges), total, 0)
    op.end_time = w.time


def chain_hopping(w: World, econ: Economy, case: str | None = None) -> Iterator[int]:
    """Bitcoin proceeds moved through the bridge to USDT on the account chain (leg 1), hopped through
    fresh addresses there and cashed out at exchanges."""
    rng = w.rng
    crook = criminal(w, f"hopper-{len(w.ops)}", "launderer")
    op = w.new_op(
        "chain_hopping", crook, BTC_CHAIN, "BTC", "bitcoin bridged to USDT and cashed out there", case
    )
    coin = yield from proceeds(w, econ, op, crook, (2_000, 20_000), rng.randint(5, 10), "proceeds")
    if coin is None:
        return
    coin = hop(w, op, crook, coin)
    yield 1
    br = w.pop.bridge
    dep = w.btc.new_address(br.id, "deposit")
    pay = btc_tx(op, w.btc.pay(crook.btc, [(br.btc, dep, 0)], coins=[coin], sweep=True), "bridge-in")
    sent = pay.outputs[0][0]
    op.cashouts.append((0, BTC_CHAIN, "BTC", w.btc_text(dep), br.id, pay.txid, sent))
    op.address(BTC_CHAIN, w.btc_text(dep), "bridge-deposit")
    yield rng.randint(1, 3)
    units = sat_to_usdt(sent) * 997 // 1000
    landing = eth_fresh(w, op, crook, "bridge-out")
    assert br.eth is not None
    h = w.eth.send_usdt(br.eth, landing, units)
    op.tx(ETH_CHAIN, h, "bridge-out")
    op.seeds.append((1, ETH_CHAIN, h, "USDT", units))
    gas = gas_station(w, econ, op, crook)
    current = landing
    for _ in range(rng.randint(2, 3)):
        nxt = eth_fresh(w, op, crook, "layer")
        eth_gas(w, op, gas, current)
        op.tx(ETH_CHAIN, w.eth.send_usdt(current, nxt, w.eth.usdt[current]), "hop")
        current = nxt
        yield 1
    total = w.eth.usdt[current]
    exs = rng.sample(w.pop.exchanges, 2)
    eth_cash_out(w, econ, op, crook, current, gas, exs[0], total // 2, 1)
    eth_cash_out(w, econ, op, crook, current, gas, exs[1], total - total // 2, 1)
    op.end_time = w.time


def sanctions_evasion(w: World, econ: Economy, case: str | None = None) -> Iterator[int]:
    """A sanctioned entity (its known address is on the world's sanctions list) moves bitcoin through
    fresh addresses to an OTC desk, which pays it USDT on the account chain; the entity pays that on to
    exchange accounts of intermediaries."""
    rng = w.rng
    entity = criminal(w, f"Sanctioned Group {len(w.ops)}", "sanctioned_entity")
    op = w.new_op(
        "sanctions_evasion", entity, BTC_CHAIN, "BTC", "a sanctioned entity trading through an OTC desk", case
    )
    coin = yield from proceeds(w, econ, op, entity, (5_000, 40_000), rng.randint(5, 9), "income")
    if coin is None:
        return
    known = [a for a in op.addresses if a[2] == "pool"]
    op.briefing["listed_address"] = known[-1][1] if known else None
    for _ in range(rng.randint(1, 2)):
        coin = hop(w, op, entity, coin)
        yield 1
    otc = rng.choice(w.pop.otc)
    otc_addr = w.btc.new_address(otc.id, "receive")
    op.address(BTC_CHAIN, w.btc_text(otc_addr), "otc-deposit")
    pay = btc_tx(op, w.btc.pay(entity.btc, [(otc.btc, otc_addr, 0)], coins=[coin], sweep=True), "otc-sale")
    sent = pay.outputs[0][0]
    op.cashouts.append((0, BTC_CHAIN, "BTC", w.btc_text(otc_addr), otc.id, pay.txid, sent))
    yield rng.randint(1, 3)
    units = sat_to_usdt(sent) * 98 // 100
    landing = eth_fresh(w, op, entity, "otc-payout")
    assert otc.eth is not None
    h = w.eth.send_usdt(otc.eth, landing, units)
    op.tx(ETH_CHAIN, h, "otc-payout")
    op.seeds.append((1, ETH_CHAIN, h, "USDT", units))
    gas = gas_station(w, econ, op, entity)
    left = units
    for ex in rng.sample(w.pop.exchanges, min(3, len(w.pop.exchanges))):
        part = left // 2
        eth_cash_out(w, econ, op, entity, landing, gas, ex, part, 1)
        left -= part
        yield 1
    eth_cash_out(w, econ, op, entity, landing, gas, rng.choice(w.pop.exchanges), left, 1)
    op.end_time = w.time


__all__ = ["fresh"]
