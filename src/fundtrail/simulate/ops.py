"""Steps that laundering operations share: criminal actors, illicit proceeds, hops, cash-outs, and the
truth each step records (every transaction, address, seed and cash-out with its exact amount)."""

from __future__ import annotations

from collections.abc import Generator

from fundtrail.simulate.account import ETH, USDT_UNIT
from fundtrail.simulate.actors import Actor, Exchange
from fundtrail.simulate.background import Economy
from fundtrail.simulate.btc_blocks import P2WPKH
from fundtrail.simulate.utxo import Address, Coin, Insufficient, Payment
from fundtrail.simulate.world import BTC_CHAIN, ETH_CHAIN, Op, World, usd_to_sat


def criminal(w: World, name: str, kind: str) -> Actor:
    return w.new_actor(name, kind, "criminal", P2WPKH, True, illicit=True)


def fresh(w: World, op: Op, a: Actor, role: str) -> Address:
    addr = w.btc.new_address(a.id, "fresh", a.btc.kind)
    op.address(BTC_CHAIN, w.btc_text(addr), role)
    return addr


def btc_tx(op: Op, pay: Payment, role: str) -> Payment:
    op.tx(BTC_CHAIN, pay.txid, role)
    return pay


def proceeds(
    w: World, econ: Economy, op: Op, crook: Actor, usd_each: tuple[float, float], payers: int, role: str
) -> Generator[int, None, Coin | None]:
    """Victims (or buyers) buy bitcoin and pay the criminal's fresh addresses; then the criminal
    consolidates the payments into one coin, the operation's seed, which the generator returns (None
    when no victim could pay)."""
    victims = [econ.user() for _ in range(payers)]
    asks = []
    for v in victims:
        sats = usd_to_sat(w.rng.uniform(*usd_each))
        econ.buy(v, sats + 50_000)
        asks.append((v, sats))
    yield 2
    paid: list[Coin] = []
    victim_payments: list[str] = []
    op.briefing["victim_payments"] = victim_payments
    for v, sats in asks:
        to = fresh(w, op, crook, "payment-address")
        try:
            pay = w.btc.pay(v.btc, [(crook.btc, to, sats)])
        except Insufficient:
            continue
        btc_tx(op, pay, role)
        paid.append(pay.outputs[0])
        victim_payments.append(pay.outpoint(0))
    yield 1
    if not paid:
        return None
    pool = fresh(w, op, crook, "pool")
    pay = w.btc.pay(crook.btc, [(crook.btc, pool, 0)], coins=paid, sweep=True)
    btc_tx(op, pay, "consolidate")
    op.amount = pay.outputs[0][0]
    op.seeds.append((0, BTC_CHAIN, pay.outpoint(0), "BTC", op.amount))
    yield 1
    return pay.outputs[0]


def hop(w: World, op: Op, crook: Actor, coin: Coin, role: str = "layer") -> Coin:
    """Move a coin whole to a fresh address of the criminal."""
    to = fresh(w, op, crook, role)
    pay = btc_tx(op, w.btc.pay(crook.btc, [(crook.btc, to, 0)], coins=[coin], sweep=True), "hop")
    return pay.outputs[0]


def mule_deposit(w: World, econ: Economy, op: Op, ex: Exchange, role: str = "cashout") -> Address:
    """A deposit address at ``ex`` of an account the criminal controls (a money mule's)."""
    mule = w.new_actor(f"mule-{op.id}-{len(op.addresses)}", "money_mule", "criminal", P2WPKH, True, True)
    addr = econ.deposit_address(ex, mule)
    op.address(BTC_CHAIN, w.btc_text(addr), role)
    return addr


def cash_out(
    w: World,
    econ: Economy,
    op: Op,
    crook: Actor,
    coin: Coin,
    parts: list[tuple[Exchange, int | None]],
    leg: int = 0,
) -> None:
    """Pay a coin to exchange deposit addresses: each part an amount (None: the rest). Records cash-outs."""
    outs = [(ex.deposits, mule_deposit(w, econ, op, ex), v or 0) for ex, v in parts]
    pay = btc_tx(op, w.btc.pay(crook.btc, outs, coins=[coin], sweep=parts[-1][1] is None), "cashout")
    for (ex, _), out, (value, *_rest) in zip(parts, outs, pay.outputs):
        op.cashouts.append((leg, BTC_CHAIN, "BTC", w.btc_text(out[1]), ex.actor.id, pay.txid, value))


def eth_fresh(w: World, op: Op, a: Actor, role: str) -> bytes:
    addr = w.eth.new_address(a.id, "fresh")
    op.address(ETH_CHAIN, w.eth.text(addr), role)
    return addr


def eth_gas(w: World, op: Op, funder: bytes, to: bytes, transfers: int = 1) -> None:
    """The criminal's gas station tops up ``to`` for ``transfers`` token transfers."""
    need = w.eth.token_fee() * transfers * 2
    if w.eth.eth.get(to, 0) < need:
        op.tx(ETH_CHAIN, w.eth.send_eth(funder, to, need), "gas")


def gas_station(w: World, econ: Economy, op: Op, crook: Actor) -> bytes:
    """A fresh address of the criminal funded with ETH from an exchange withdrawal (pays all gas)."""
    g = eth_fresh(w, op, crook, "gas-station")
    ex = econ.exchange()
    op.tx(ETH_CHAIN, w.eth.send_eth(ex.eth_hot, g, ETH), "gas-funding")
    return g


def eth_cash_out(
    w: World,
    econ: Economy,
    op: Op,
    crook: Actor,
    src: bytes,
    funder: bytes,
    ex: Exchange,
    units: int,
    leg: int,
) -> None:
    mule = w.new_actor(f"mule-{op.id}-{len(op.addresses)}", "money_mule", "criminal", P2WPKH, True, True)
    dep = econ.eth_deposit_address(ex, mule)
    op.address(ETH_CHAIN, w.eth.text(dep), "cashout")
    eth_gas(w, op, funder, src)
    h = w.eth.send_usdt(src, dep, units)
    op.tx(ETH_CHAIN, h, "cashout")
    ex.eth_pending[dep] = mule.id
    op.cashouts.append((leg, ETH_CHAIN, "USDT", w.eth.text(dep), ex.actor.id, h, units))


def usdt_funding(w: World, econ: Economy, op: Op, crook: Actor, usd: float) -> tuple[bytes, bytes, int]:
    """Illicit USDT arriving at a fresh address of the criminal from an OTC desk (cash bought off-book):
    returns (address, gas station, units) and records the seed."""
    src = eth_fresh(w, op, crook, "source")
    gas = gas_station(w, econ, op, crook)
    otc = w.rng.choice(w.pop.otc)
    assert otc.eth is not None
    units = int(usd) * USDT_UNIT
    h = w.eth.send_usdt(otc.eth, src, units)
    op.tx(ETH_CHAIN, h, "funding")
    op.amount = units
    op.seeds.append((0, ETH_CHAIN, h, "USDT", units))
    return src, gas, units


__all__ = ["ETH", "criminal", "fresh", "hop", "proceeds"]
