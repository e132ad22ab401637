"""The world engine: actors, the two chains, the clock, and the scheduler of laundering operations.

Time advances one Bitcoin block (600 s) per tick; the account chain seals a block every
``eth_block_seconds`` within the tick. Background activity is drawn per tick (``background.py``);
laundering operations are generators (``typologies*.py``) that act and then yield how many ticks to wait,
so a peeling chain takes a hop per block or two as a real one does. Everything random comes from one
seeded generator: the same scenario and seed give the same bytes.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fundtrail.simulate.account import CHAIN as ETH_CHAIN
from fundtrail.simulate.account import AccountChain
from fundtrail.simulate.actors import Actor, Population, build_population
from fundtrail.simulate.scenario import Scenario
from fundtrail.simulate.truth import TruthWriter
from fundtrail.simulate.utxo import CHAIN as BTC_CHAIN
from fundtrail.simulate.utxo import Address, Insufficient, UtxoChain, Wallet

BLOCK_SECONDS = 600
BTC_USD = 90_000  # the world's fixed prices (USD per coin)
ETH_USD = 3_000
SAT_PER_BTC = 10**8


def usd_to_sat(usd: float) -> int:
    return int(usd * SAT_PER_BTC / BTC_USD)


def usd_to_usdt(usd: float) -> int:
    return int(usd * 10**6)


def sat_to_usdt(sat: int) -> int:
    """The USDT base units worth ``sat`` satoshi at the world's price (exact integer arithmetic)."""
    return sat * BTC_USD * 10**6 // SAT_PER_BTC


def usdt_to_sat(units: int) -> int:
    return units * SAT_PER_BTC // (BTC_USD * 10**6)


@dataclass
class Op:
    """One laundering operation as it happens: what the truth will say about it."""

    id: int
    typology: str
    actor: int
    chain: str
    asset: str
    amount: int
    description: str
    case: str | None = None
    start_time: int = 0
    end_time: int = 0
    txs: list[tuple[str, str, str]] = field(default_factory=list)
    addresses: list[tuple[str, str, str]] = field(default_factory=list)
    seeds: list[tuple[int, str, str, str, int]] = field(default_factory=list)
    cashouts: list[tuple[int, str, str, str, int, str, int]] = field(default_factory=list)
    briefing: dict[str, object] = field(default_factory=dict)

    def tx(self, chain: str, txid: str, role: str) -> None:
        self.txs.append((chain, txid, role))

    def address(self, chain: str, text: str, role: str) -> None:
        self.addresses.append((chain, text, role))


class World:
    def __init__(self, scenario: Scenario, seed: int, out: Path) -> None:
        self.scenario = scenario
        self.seed = seed
        self.rng = random.Random(seed)
        self.nprng = np.random.default_rng(seed)
        key = seed.to_bytes(8, "little", signed=False) + scenario.name.encode()
        self.truth = TruthWriter(out / "truth")
        start = int(scenario["start_time"])
        self.btc = UtxoChain(out / "bitcoin", key, self.truth, start)
        self.eth = AccountChain(out / "ethereum", key, self.truth, start, int(scenario["eth_block_seconds"]))
        self.actors: list[Actor] = []
        self.tick = 0
        self.time = start
        self._queue: list[tuple[int, int, Iterator[int]]] = []
        self._seq = 0
        self.ops: list[Op] = []
        self.cut_short = 0  # operations that stopped early (a step could not be paid)
        self.hooks: list[Callable[[], None]] = []  # run at every tick end (services' periodic work)
        self.pop: Population = build_population(self)

    # actors -------------------------------------------------------------------------------------------
    def new_actor(
        self, name: str, kind: str, role: str, btc_kind: int, fresh_change: bool, illicit: bool = False
    ) -> Actor:
        a = Actor(
            len(self.actors), name, kind, role, illicit, Wallet(len(self.actors), btc_kind, fresh_change)
        )
        self.actors.append(a)
        a.eth = self.eth.new_address(a.id, "main")
        return a

    def fresh(self, a: Actor, purpose: str = "fresh") -> Address:
        return self.btc.new_address(a.id, purpose, a.btc.kind)

    def btc_text(self, a: Address) -> str:
        return self.btc.address_text(a)

    # operations ---------------------------------------------------------------------------------------
    def new_op(
        self, typology: str, actor: Actor, chain: str, asset: str, description: str, case: str | None
    ) -> Op:
        op = Op(len(self.ops), typology, actor.id, chain, asset, 0, description, case, start_time=self.time)
        self.ops.append(op)
        return op

    def schedule(self, gen: Iterator[int], delay: int = 0) -> None:
        heapq.heappush(self._queue, (self.tick + delay, self._seq, gen))
        self._seq += 1

    def run_due(self) -> None:
        while self._queue and self._queue[0][0] <= self.tick:
            _, _, gen = heapq.heappop(self._queue)
            try:
                wait = next(gen)
            except StopIteration:
                continue
            except Insufficient:  # a step the criminal could not pay: the operation stops there
                self.cut_short += 1
                continue
            self.schedule(gen, max(1, wait))

    @property
    def pending_ops(self) -> int:
        return len(self._queue)

    def write_ops(self) -> None:
        t = self.truth
        for op in self.ops:
            t.add(
                "operations", op.id, op.typology, op.case, op.actor, op.start_time, op.end_time or self.time,
                op.amount, op.asset, op.chain, op.description,
            )  # fmt: skip
            for step, (chain, txid, role) in enumerate(op.txs):
                t.add("operation_txs", op.id, chain, txid, step, role)
            seen: set[tuple[str, str, str]] = set()
            for a in op.addresses:
                if a not in seen:
                    seen.add(a)
                    t.add("operation_addresses", op.id, *a)
            for s in op.seeds:
                t.add("seeds", op.id, *s)
            for c in op.cashouts:
                t.add("cashouts", op.id, *c)
        for actor in self.actors:
            t.add("actors", actor.id, actor.name, actor.kind, actor.role, actor.illicit)


__all__ = ["BTC_CHAIN", "ETH_CHAIN", "Op", "World"]
