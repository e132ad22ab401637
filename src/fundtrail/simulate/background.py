"""Background activity: the honest economy that laundering hides in.

Money enters through coinbases (mining pools), beacon withdrawals and the USDT issuer's mints, reaches the
exchanges, and circulates: users withdraw from and deposit to exchanges (one deposit address per user
and exchange, swept into the hot wallet in multi-input transactions), pay merchants (directly or through a
payment processor's invoice addresses, settled in batches), pay each other, get paid by pools and
employers, swap on a DEX, cross the bridge, use mixers and CoinJoins. Sizes are lognormal, activity is
Pareto-distributed across users, fee rates and gas prices vary by block. A spend a wallet cannot afford
becomes a purchase (a withdrawal from an exchange) instead.
"""

from __future__ import annotations

import contextlib
import math
from bisect import bisect_left

import numpy as np

from fundtrail.simulate.account import ETH, GWEI, USDT_UNIT
from fundtrail.simulate.actors import Actor, Exchange
from fundtrail.simulate.utxo import Address, Insufficient, Payment, Wallet
from fundtrail.simulate.world import ETH_USD, World, sat_to_usdt, usd_to_sat, usdt_to_sat

SWEEP_MAX_INPUTS = 200
CONSOLIDATE_ABOVE = 100  # coins a service wallet holds before it consolidates (a sweep per block at most)
WITHDRAWAL_BATCH = 250  # outputs of one batched exchange withdrawal
WITHDRAWAL_BATCHES = 4  # batches an exchange sends per block at most


class Economy:
    def __init__(self, w: World) -> None:
        self.w = w
        self.p = w.pop
        s = w.scenario
        self.btc_mix = list(s["bitcoin"]["mix"].items())
        self.eth_mix = list(s["ethereum"]["mix"].items())
        self.btc_cum = _cum([v for _, v in self.btc_mix])
        self.eth_cum = _cum([v for _, v in self.eth_mix])
        self.amount = s["bitcoin"]["amount_btc"]
        self.amount_usdt = s["ethereum"]["amount_usdt"]
        self.sweep_every = int(s["bitcoin"]["sweep_every"])
        self.eth_sweep_every = int(s["ethereum"]["sweep_every"])
        self.payroll_every = int(s["bitcoin"]["payroll_every"])
        self.payout_every = int(s["bitcoin"]["pool_payout_every"])
        self.denomination = int(s["bitcoin"]["coinjoin_denomination"])
        self.mixer_fee = float(s["bitcoin"]["mixer_fee"])
        self.bridge_orders: list[tuple[int, Actor, int]] = []  # due tick, user, USDT units
        self._cum = np.array(self.p.user_cum)
        self._drawn: list[int] = []
        self._normals: list[float] = []

    # sampling ------------------------------------------------------------------------------------------
    def user(self) -> Actor:
        """A user drawn by activity weight (drawn in bulk: one searchsorted per 64k draws)."""
        if not self._drawn:
            p = self.p
            idx = np.searchsorted(self._cum, self.w.nprng.random(1 << 16) * self._cum[-1])
            self._drawn = np.minimum(idx, len(p.users) - 1).tolist()
        return self.p.users[self._drawn.pop()]

    def normal(self) -> float:
        """A standard normal draw (drawn in bulk, 64k at a time)."""
        if not self._normals:
            self._normals = self.w.nprng.standard_normal(1 << 16).tolist()
        return self._normals.pop()

    def sats(self) -> int:
        a = self.amount
        return max(10_000, int(a["median"] * 1e8 * math.exp(a["sigma"] * self.normal())))

    def usdt(self) -> int:
        a = self.amount_usdt
        return max(USDT_UNIT, int(a["median"] * USDT_UNIT * math.exp(a["sigma"] * self.normal())))

    def exchange(self) -> Exchange:
        return self.w.rng.choice(self.p.exchanges)

    # bootstrap -----------------------------------------------------------------------------------------
    def bootstrap(self) -> None:
        """The first active block: pools sell most of their mined coins to the exchanges; the issuer
        mints USDT to the services; validators' withdrawals bring ETH."""
        w, btc, eth = self.w, self.w.btc, self.w.eth
        for i, pool in enumerate(self.p.pools):
            bal = pool.btc.balance
            ex = self.p.exchanges[i % len(self.p.exchanges)]
            if bal > 2 * 10**8:
                btc.pay(pool.btc, [(ex.deposits, self.deposit_address(ex, pool), bal * 9 // 10)])
        issuer = self.p.issuer.eth
        assert issuer is not None
        services = [(svc.eth, 5_000 * ETH) for svc in (self.p.bridge, self.p.dex, *self.p.otc)]
        funded = [(issuer, 100 * ETH), *((ex.eth_hot, 20_000 * ETH) for ex in self.p.exchanges), *services]
        funded += [(e.eth, 10 * ETH) for e, _ in self.p.employers]
        for to, wei in funded:  # validators' withdrawals fund the services first (16 per block)
            assert to is not None
            eth.withdrawal(to, wei)
        eth.flush_withdrawals()
        for ex in self.p.exchanges:
            eth.mint_usdt(issuer, ex.eth_hot, 50_000_000 * USDT_UNIT)
        for svc in (self.p.bridge, self.p.dex, *self.p.otc):
            assert svc.eth is not None
            eth.mint_usdt(issuer, svc.eth, 20_000_000 * USDT_UNIT)
        for e, _ in self.p.employers:
            assert e.eth is not None
            eth.mint_usdt(issuer, e.eth, 2_000_000 * USDT_UNIT)
        for _ in range(len(self.p.users) // 4):  # active users arrive holding coins: batched withdrawals
            self.buy(self.user(), self.sats() * 2)
        for u in self.p.users:
            if self.w.rng.random() < 0.3:
                assert u.eth is not None
                eth.withdrawal(u.eth, self.w.rng.randint(10**7, 10**9) * GWEI)  # staking rewards: ETH
        _ = w

    # Bitcoin --------------------------------------------------------------------------------------------
    def deposit_address(self, ex: Exchange, who: Actor) -> tuple[int, int, bytes]:
        a = ex.deposit_addr.get(who.id)
        if a is None:
            a = ex.deposit_addr[who.id] = self.w.btc.new_address(ex.actor.id, "deposit")
        return a

    def eth_deposit_address(self, ex: Exchange, who: Actor) -> bytes:
        a = ex.eth_deposit.get(who.id)
        if a is None:
            a = ex.eth_deposit[who.id] = self.w.eth.new_address(ex.actor.id, "deposit")
        return a

    def buy(self, u: Actor, sats: int) -> None:
        """The user buys on an exchange and withdraws (queued into the exchange's next batch)."""
        ex = self.exchange()
        fresh = u.btc.fresh_change or u.btc.home is None
        ex.withdrawals.append((u.btc, self.w.btc.receive_address(u.btc, "receive", fresh), sats))

    def btc_event(self) -> None:
        r = self.w.rng.random() * self.btc_cum[-1]
        kind = self.btc_mix[bisect_left(self.btc_cum, r)][0]
        u = self.user()
        try:
            getattr(self, f"btc_{kind}")(u)
        except Insufficient:
            self.buy(u, self.sats() * 3)

    def btc_p2p(self, u: Actor) -> None:
        v = self.user()
        if v is u:
            return
        amount = self.sats()
        if not self.w.btc.can_pay(u.btc, amount):
            raise Insufficient
        fresh = v.btc.fresh_change or v.btc.home is None
        self.w.btc.pay(u.btc, [(v.btc, self.w.btc.receive_address(v.btc, "receive", fresh), amount)])

    def btc_merchant(self, u: Actor) -> None:
        m = self.w.rng.choice(self.p.merchants)
        amount = self.sats()
        if not self.w.btc.can_pay(u.btc, amount):
            raise Insufficient
        proc = self.p.merchant_processor.get(m.id)
        if proc is not None:  # an invoice address of the processor, settled later
            inv = self.w.btc.new_address(proc.actor.id, "invoice")
            self.w.btc.pay(u.btc, [(proc.actor.btc, inv, amount)])
            proc.owed[m.id] = proc.owed.get(m.id, 0) + amount
        else:
            assert m.btc.home is not None
            to = self.w.btc.receive_address(m.btc, "receive", m.btc.fresh_change)
            self.w.btc.pay(u.btc, [(m.btc, to, amount)])

    def btc_deposit(self, u: Actor) -> None:
        bal = u.btc.balance
        if bal < 50_000:
            raise Insufficient
        ex = self.exchange()
        amount = max(bal // 2, min(bal * 9 // 10, self.sats() * 2))  # sells at least half of what it holds
        self.w.btc.pay(u.btc, [(ex.deposits, self.deposit_address(ex, u), amount)])

    def btc_withdrawal(self, u: Actor) -> None:
        self.buy(u, self.sats())

    def btc_consolidate(self, u: Actor) -> None:
        if len(u.btc.coins) < 3:
            raise Insufficient
        coins = u.btc.coins[: min(20, len(u.btc.coins))]
        to = self.w.btc.receive_address(u.btc, "receive", u.btc.fresh_change)
        self.w.btc.pay(u.btc, [(u.btc, to, 0)], coins=coins, sweep=True)

    def btc_mixer(self, u: Actor) -> None:
        if not self.p.mixers:
            return
        m = self.w.rng.choice(self.p.mixers)
        amount = self.sats()
        if not self.w.btc.can_pay(u.btc, amount):
            raise Insufficient
        dep = self.w.btc.new_address(m.actor.id, "deposit")
        self.w.btc.pay(u.btc, [(m.actor.btc, dep, amount)])
        out = self.w.btc.new_address(u.id, "receive", u.btc.kind)
        m.payouts.append(
            (self.w.tick + self.w.rng.randint(2, 10), u.btc, out, int(amount * (1 - self.mixer_fee)), None)
        )

    def btc_coinjoin(self, u: Actor) -> None:
        parties = [u, *(self.user() for _ in range(4))]
        if len({p.id for p in parties}) < 5:
            return
        btc = self.w.btc
        coinjoin(
            self.w,
            [
                (
                    p,
                    btc.new_address(p.id, "coinjoin", p.btc.kind),
                    btc.receive_address(p.btc, "change", p.btc.fresh_change),
                )
                for p in parties
            ],
            self.denomination,
        )

    def btc_bridge(self, u: Actor) -> None:
        amount = self.sats()
        if not self.w.btc.can_pay(u.btc, amount):
            raise Insufficient
        br = self.p.bridge
        dep = self.w.btc.new_address(br.id, "deposit")
        self.w.btc.pay(u.btc, [(br.btc, dep, amount)])
        self.bridge_orders.append(
            (self.w.tick + self.w.rng.randint(1, 3), u, sat_to_usdt(amount) * 997 // 1000)
        )

    # periodic services (Bitcoin) ---------------------------------------------------------------------
    def btc_services(self) -> None:
        w, btc, tick = self.w, self.w.btc, self.w.tick
        for i, ex in enumerate(self.p.exchanges):
            if (tick + i) % self.sweep_every == 0:
                assert ex.hot.home is not None
                while ex.deposits.coins:  # consolidation sweeps of at most SWEEP_MAX_INPUTS inputs
                    coins = ex.deposits.coins[:SWEEP_MAX_INPUTS]
                    btc.pay(ex.deposits, [(ex.hot, ex.hot.home, 0)], coins=coins, sweep=True)
            for _ in range(WITHDRAWAL_BATCHES):
                if not ex.withdrawals:
                    break
                batch, ex.withdrawals = ex.withdrawals[:WITHDRAWAL_BATCH], ex.withdrawals[WITHDRAWAL_BATCH:]
                try:
                    btc.pay(ex.hot, batch, change=ex.hot.home)
                except Insufficient:
                    ex.withdrawals = []  # the exchange is short: the requests are refused
                    break
            if tick % 50 == i and ex.hot.balance > 3_000 * 10**8:
                assert ex.cold.home is not None
                btc.pay(ex.hot, [(ex.cold, ex.cold.home, ex.hot.balance // 2)], change=ex.hot.home)
            if tick % 10 == i and ex.hot.balance < 200 * 10**8 and ex.cold.balance > 400 * 10**8:
                assert ex.hot.home is not None
                btc.pay(ex.cold, [(ex.hot, ex.hot.home, ex.cold.balance // 2)], change=ex.cold.home)
        for i, proc in enumerate(self.p.processors):
            if (tick + i) % self.sweep_every == 0 and proc.owed and proc.actor.btc.coins:
                outs = []
                for mid, owed in sorted(proc.owed.items()):
                    m = w.actors[mid]
                    outs.append(
                        (m.btc, btc.receive_address(m.btc, "receive", m.btc.fresh_change), owed * 99 // 100)
                    )
                try:
                    btc.pay(proc.actor.btc, outs)
                    proc.owed.clear()
                except Insufficient:
                    pass
        for i, pool in enumerate(self.p.pools):
            if (tick + i) % self.payout_every == 0 and pool.btc.balance > 10**8:
                members = [self.user() for _ in range(w.rng.randint(5, 25))]
                share = pool.btc.balance // (2 * len(members))
                outs = [
                    (m.btc, btc.receive_address(m.btc, "receive", m.btc.fresh_change), share) for m in members
                ]
                btc.pay(pool.btc, outs, change=pool.btc.home)
        if tick % self.payroll_every == 1:
            for e, staff in self.p.employers:
                outs = [
                    (s.btc, btc.receive_address(s.btc, "receive", s.btc.fresh_change), usd_to_sat(usd))
                    for s, usd in staff
                ]
                try:
                    btc.pay(e.btc, outs)
                except Insufficient:
                    self.buy(e, sum(v for _, _, v in outs) * 3)
        for m in self.p.merchants:
            if w.rng.random() < 0.05 and m.btc.balance > 5 * 10**8:
                ex = self.exchange()
                btc.pay(m.btc, [(ex.deposits, self.deposit_address(ex, m), m.btc.balance * 8 // 10)])
        services = [self.p.bridge, *self.p.otc, *(m.actor for m in self.p.mixers)]
        for i, svc in enumerate(services):  # services consolidate the coins their deposit addresses got
            wal = svc.btc
            if (tick + i) % self.sweep_every == 0 and len(wal.coins) > CONSOLIDATE_ABOVE:
                assert wal.home is not None
                btc.pay(wal, [(wal, wal.home, 0)], coins=wal.coins[:SWEEP_MAX_INPUTS], sweep=True)
        for mixer in self.p.mixers:
            due = [p for p in mixer.payouts if p[0] <= tick]
            if not due:
                continue
            mixer.payouts = [p for p in mixer.payouts if p[0] > tick]
            for _, wallet, addr, amount, callback in due:
                try:
                    pay = btc.pay(mixer.actor.btc, [(wallet, addr, amount)], change=mixer.actor.btc.home)
                except Insufficient:
                    mixer.payouts.append((tick + 1, wallet, addr, amount, callback))
                    continue
                if callback is not None:
                    callback(pay)  # type: ignore[operator]

    # account chain ---------------------------------------------------------------------------------------
    def eth_event(self) -> None:
        r = self.w.rng.random() * self.eth_cum[-1]
        kind = self.eth_mix[bisect_left(self.eth_cum, r)][0]
        u = self.user()
        try:
            getattr(self, f"eth_{kind}")(u)
        except Insufficient:
            self.eth_buy(u, self.usdt() * 3)

    def eth_buy(self, u: Actor, units: int) -> None:
        """The user buys USDT (and a little ETH for gas) on an exchange and withdraws them."""
        ex = self.exchange()
        eth = self.w.eth
        assert u.eth is not None
        try:
            if eth.eth.get(u.eth, 0) < 2 * eth.token_fee():
                eth.send_eth(ex.eth_hot, u.eth, (ETH // 50) + self.w.rng.randint(0, 10**6) * GWEI)
            eth.send_usdt(ex.eth_hot, u.eth, units)
        except Insufficient:
            pass

    def _usdt_to(self, u: Actor, to: bytes, units: int | None = None) -> str:
        assert u.eth is not None
        return self.w.eth.send_usdt(u.eth, to, units or self.usdt())

    def eth_usdt_p2p(self, u: Actor) -> None:
        v = self.user()
        if v is not u and v.eth is not None:
            self._usdt_to(u, v.eth)

    def eth_usdt_merchant(self, u: Actor) -> None:
        m = self.w.rng.choice(self.p.merchants)
        assert m.eth is not None
        self._usdt_to(u, m.eth)

    def eth_usdt_deposit(self, u: Actor) -> None:
        assert u.eth is not None
        have = self.w.eth.usdt.get(u.eth, 0)
        if have < USDT_UNIT:
            raise Insufficient
        ex = self.exchange()
        dep = self.eth_deposit_address(ex, u)
        self._usdt_to(u, dep, min(have, self.usdt() * 2))
        ex.eth_pending[dep] = u.id

    def eth_usdt_withdrawal(self, u: Actor) -> None:
        self.eth_buy(u, self.usdt())

    def eth_eth_p2p(self, u: Actor) -> None:
        v = self.user()
        assert u.eth is not None and v.eth is not None
        if v is not u:
            usd = self.usdt() // USDT_UNIT
            self.w.eth.send_eth(u.eth, v.eth, usd * ETH // ETH_USD)

    def eth_swap(self, u: Actor) -> None:
        assert u.eth is not None and self.p.dex.eth is not None
        have = self.w.eth.eth.get(u.eth, 0)
        eth_in = have // 3
        if eth_in < ETH // 1000:
            raise Insufficient
        self.w.eth.swap_eth_for_usdt(
            u.eth, self.p.dex.eth, eth_in, eth_in * ETH_USD * USDT_UNIT // ETH * 997 // 1000
        )

    def eth_payroll(self, u: Actor) -> None:
        e, staff = self.w.rng.choice(self.p.employers)
        s, usd = self.w.rng.choice(staff)
        assert e.eth is not None and s.eth is not None
        self.w.eth.send_usdt(e.eth, s.eth, usd * USDT_UNIT)

    def eth_bridge(self, u: Actor) -> None:
        """USDT to the bridge, BTC back from its custody wallet."""
        assert u.eth is not None and self.p.bridge.eth is not None
        units = self.usdt()
        self.w.eth.send_usdt(u.eth, self.p.bridge.eth, units)
        br = self.p.bridge.btc
        to = self.w.btc.receive_address(u.btc, "receive", u.btc.fresh_change)
        with contextlib.suppress(Insufficient):
            self.w.btc.pay(br, [(u.btc, to, usdt_to_sat(units) * 997 // 1000)], change=br.home)

    def eth_services(self) -> None:
        w, eth, tick = self.w, self.w.eth, self.w.tick
        for i, ex in enumerate(self.p.exchanges):
            if (tick + i) % self.eth_sweep_every == 0 and ex.eth_pending:
                for dep in sorted(ex.eth_pending)[:SWEEP_MAX_INPUTS]:
                    del ex.eth_pending[dep]
                    units = eth.usdt.get(dep, 0)
                    if units <= 0:
                        continue
                    try:
                        if eth.eth.get(dep, 0) < eth.token_fee():  # the gas station funds the sweep
                            eth.send_eth(ex.eth_hot, dep, eth.token_fee())
                        eth.send_usdt(dep, ex.eth_hot, units)
                    except Insufficient:
                        continue
        due = [o for o in self.bridge_orders if o[0] <= tick]
        if due:
            self.bridge_orders = [o for o in self.bridge_orders if o[0] > tick]
            br = self.p.bridge.eth
            assert br is not None
            for _, u, units in due:
                assert u.eth is not None
                with contextlib.suppress(Insufficient):
                    eth.send_usdt(br, u.eth, units)
        if tick % 24 == 0:  # validators' rewards reach some users
            for _ in range(3):
                u = self.user()
                assert u.eth is not None
                eth.withdrawal(u.eth, w.rng.randint(10**6, 10**8) * GWEI)


def coinjoin(w: World, parties: list[tuple[Actor, Address, Address]], denomination: int) -> Payment | None:
    """An equal-output CoinJoin (JoinMarket-like): each party (actor, output address, change address)
    gives a coin covering the denomination and its fee share, and gets one output of the denomination
    plus its change. None when a party has no such coin."""
    btc = w.btc
    fee_each = btc.fee_for(1, 2, parties[0][0].btc.kind)
    inputs, outs = [], []
    for actor, out_addr, _ in parties:
        coin = next((c for c in actor.btc.coins if c[0] >= denomination + fee_each + 1_000), None)
        if coin is None:
            return None
        inputs.append((actor.btc, coin))
        outs.append((denomination, out_addr, actor.btc))
    for (actor, _, change), (_, coin) in zip(parties, inputs):
        outs.append((coin[0] - denomination - fee_each, change, actor.btc))
    w.rng.shuffle(outs)
    return btc.emit(inputs, outs, fee_each * len(parties))


def _cum(weights: list[float]) -> list[float]:
    out, acc = [], 0.0
    for x in weights:
        acc += x
        out.append(acc)
    return out


__all__ = ["Economy", "Wallet", "coinjoin"]
