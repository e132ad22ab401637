"""The actors of a simulated world and the services' state (exchanges, processors, pools, mixers, bridge,
DEX, OTC desks), created from the scenario's population."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fundtrail.simulate.btc_blocks import P2PKH, P2WPKH
from fundtrail.simulate.utxo import Address, Wallet

if TYPE_CHECKING:
    from fundtrail.simulate.world import World


@dataclass
class Actor:
    id: int
    name: str
    kind: str
    role: str  # service, user, criminal, victim
    illicit: bool
    btc: Wallet
    eth: bytes | None = None  # main account-chain address
    weight: float = 1.0


@dataclass
class Exchange:
    actor: Actor
    hot: Wallet
    deposits: Wallet  # coins sitting at per-user deposit addresses, until swept
    cold: Wallet
    deposit_addr: dict[int, Address] = field(default_factory=dict)
    withdrawals: list[tuple[Wallet, Address, int]] = field(default_factory=list)
    eth_hot: bytes = b""
    eth_deposit: dict[int, bytes] = field(default_factory=dict)
    eth_pending: dict[bytes, int] = field(default_factory=dict)  # deposit address -> actor, to sweep


@dataclass
class Processor:
    actor: Actor
    owed: dict[int, int] = field(default_factory=dict)  # merchant actor id -> satoshi owed


@dataclass
class Mixer:
    actor: Actor
    payouts: list[tuple[int, Wallet, Address, int, object]] = field(default_factory=list)


@dataclass
class Population:
    users: list[Actor]
    user_cum: list[float]
    exchanges: list[Exchange]
    merchants: list[Actor]
    merchant_processor: dict[int, Processor]
    processors: list[Processor]
    pools: list[Actor]
    employers: list[tuple[Actor, list[tuple[Actor, int]]]]
    mixers: list[Mixer]
    otc: list[Actor]
    bridge: Actor
    dex: Actor
    issuer: Actor


def build_population(w: World) -> Population:
    p = w.scenario["population"]
    rng = w.rng

    def wallet_kind() -> int:
        return P2PKH if rng.random() < p["p2pkh_share"] else P2WPKH

    def user(name: str, kind: str = "retail", role: str = "user") -> Actor:
        a = w.new_actor(
            name, kind, role, wallet_kind(), fresh_change=rng.random() >= p["address_reuse_share"]
        )
        a.weight = rng.paretovariate(p["activity_alpha"])
        return a

    users = [user(f"user-{i}") for i in range(p["retail_users"])]
    cum, acc = [], 0.0
    for u in users:
        acc += u.weight
        cum.append(acc)

    exchanges = []
    for i in range(p["exchanges"]):
        a = w.new_actor(f"Exchange {chr(65 + i % 26)}{i // 26 or ''}", "exchange", "service", P2WPKH, False)
        hot = a.btc
        hot.home = w.btc.new_address(a.id, "hot")
        cold = Wallet(a.id, P2WPKH, False)
        cold.home = w.btc.new_address(a.id, "cold")
        ex = Exchange(a, hot, Wallet(a.id, P2WPKH, False), cold)
        ex.eth_hot = a.eth or b""
        exchanges.append(ex)

    processors = [
        Processor(w.new_actor(f"PayProc {i}", "payment_processor", "service", P2WPKH, True))
        for i in range(p["payment_processors"])
    ]
    merchants, merchant_processor = [], {}
    for i in range(p["merchants"]):
        m = w.new_actor(f"Merchant {i}", "merchant", "user", wallet_kind(), rng.random() >= 0.5)
        m.btc.home = w.btc.new_address(m.id, "receive", m.btc.kind)
        merchants.append(m)
        if processors and rng.random() < 0.6:
            merchant_processor[m.id] = processors[i % len(processors)]
    pools = []
    for i in range(p["mining_pools"]):
        pool = w.new_actor(f"Pool {i}", "mining_pool", "service", P2WPKH, False)
        pool.btc.home = w.btc.new_address(pool.id, "coinbase")
        pools.append(pool)
    employers = []
    for i in range(p["payroll_employers"]):
        e = w.new_actor(f"Employer {i}", "payroll_employer", "user", P2WPKH, True)
        staff = [
            (rng.choice(users), int(rng.uniform(2_000, 9_000)))  # monthly salary, USD
            for _ in range(p["employees_per_employer"])
        ]
        employers.append((e, staff))
    mixers = [Mixer(w.new_actor(f"Mixer {i}", "mixer", "service", P2WPKH, True)) for i in range(p["mixers"])]
    for mx in mixers:
        mx.actor.btc.home = w.btc.new_address(mx.actor.id, "pool")
    otc = [w.new_actor(f"OTC desk {i}", "otc_desk", "service", P2WPKH, False) for i in range(p["otc_desks"])]
    for o in otc:
        o.btc.home = w.btc.new_address(o.id, "receive")
    bridge = w.new_actor("Bridge", "bridge", "service", P2WPKH, True)
    bridge.btc.home = w.btc.new_address(bridge.id, "custody")
    dex = w.new_actor("DEX pool", "dex", "service", P2WPKH, True)
    issuer = w.new_actor("USDT issuer", "token_issuer", "service", P2WPKH, True)
    return Population(
        users, cum, exchanges, merchants, merchant_processor, processors, pools, employers, mixers, otc,
        bridge, dex, issuer,
    )  # fmt: skip
