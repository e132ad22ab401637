"""Fund tracing on account chains (EVM, TRON): taint over address balances, per asset, in time order.

An account chain has no coins to follow, only balances. Every address holds a balance of the asset
(the native coin or one token contract) that the stored ``transfers`` change in a total order (below);
a policy says which part of a holder's balance an outgoing transfer takes, and so how much of it is
tainted. The policies follow Möser, Böhme and Breuker, "Towards Risk Scoring of Bitcoin Transactions"
(FC 2014: poison, haircut), Anderson et al.'s FIFO rule after Clayton's case (1816, "Bitcoin redux",
WEIS 2018) and its LIFO mirror, and "taint in, highest out", moved from outputs to balances:

- ``haircut``: the balance is a pool with a tainted share; an outgoing transfer of ``a`` from a pool
  holding ``b`` with ``t`` tainted carries ``round(t * a / b)`` (half up), taken from the pool. The pool
  keeps what it did not give, so rounding is carried forward in the holder's pool and nothing is created
  or lost; a transfer of the whole balance carries all the taint.
- ``poison``: once an address holds any taint its whole balance is tainted, and stays so: every later
  outgoing transfer is fully tainted. The clean value marked so (the balance held when taint arrived,
  clean value received later) is counted in ``created``.
- ``fifo`` / ``lifo``: the balance is a queue of received lots in time order; an outgoing transfer
  takes from the oldest (fifo) or newest (lifo) lots. A received transfer keeps the order its parts had
  at the sender.
- ``tiho``: an outgoing transfer takes taint first, ``min(a, t)``: the account analogue of "taint in,
  highest out" (a transaction's largest outputs carry the taint first): the taint leaves with the first
  transfers large enough to carry it.

**Time order.** Transfers of an asset are ordered by block height, the transaction's position in the
block, then within a transaction: the fee (an EVM transaction buys its gas before it runs), the
transaction's own value, internal transfers by trace address (``0.1`` before ``0.1.0`` before ``0.2``),
token transfers by log index; beacon-chain withdrawals come after every transaction of their block.
Transfers from an address to itself change no balance and are skipped.

**Forward.** The seed holders start tainted (see :func:`trace_account`); each transfer an address sends
after it became tainted carries taint by the policy to its recipient, which becomes a tainted holder
(its balance before that moment, summed from the stored transfers, is clean). The loop only touches the
transfers of tainted addresses: when an address becomes tainted, its balance at that moment is summed in
SQL over ``BIGNUM`` (exact) and its later transfers are fetched and merged into one time-ordered queue.

**Backward** is the same walk on the reversed history with reversed edges: a holder's balance, seen
from a moment back in time, shrinks by each transfer it received (that transfer's sender "takes" part of
the balance of interest, by the policy) and grows by each transfer it sent (clean, as seen backward).
So backward haircut gives each incoming transfer its share of the balance of interest; backward fifo
attributes the balance to the most recent incoming transfers first (under FIFO a balance consists of the
newest lots), backward lifo to the oldest, backward tiho to the most recent incoming transfers up to the
amount of interest, and backward poison marks everything received before as of interest. Reaching a mint
(a token transfer from the zero address, a beacon-chain withdrawal) or the start of the stored history
with value of interest left is an ``origin`` end point.

**End points.** A tainted transfer to an address with ``stops.service`` / ``stops.super_cluster`` ends
there; a fee paid from a tainted native balance ends as ``fees`` (forward); a burn (to the zero address)
ends as ``unspent`` at the zero address; taint moved after ``limits.hops`` transactions or outside
``limits.until`` / ``limits.since`` ends as ``beyond_limits`` at the recipient, a tainted part below
``limits.min_amount`` as ``below_threshold`` at the recipient; taint left at a holder at the end of the
stored history is ``unspent`` (forward) or ``origin`` (backward: start of the stored history). Edges keep
the real direction of the money (sender to recipient) in both directions.

**Swaps.** A forward tainted transfer that ends at a service (DEX and bridge labels included) is checked
for other assets leaving in the same transaction: every address other than a service, the zero address
and the fee sink that gains another asset in that transaction (net of what it sent) is reported as a
swap (``tx_id``, ``endpoint_address_id``, ``asset_out_id``, ``amount_out``, ``recipient_id``).

**Exactness.** Amounts are uint256: they are read as text from ``BIGNUM`` and kept as Python ints; the
loop is pure Python. Numba would need int64, which overflows at 9.2 ether, and the loop is driven by a
heap of events and per-address SQL fetches, not by array arithmetic; its cost is the number of transfers
of tainted addresses.

**Stored history.** Balances are sums of the stored transfers. Where the store starts after an address's
first funds its computed balance can go negative; a balance is never taken below zero, and value sent
beyond the computed balance counts as clean (it came from funds the store does not show).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Any

import duckdb

from fundtrail.errors import InvalidInput, NotFound
from fundtrail.store.account_write import BEACON, FEE_SINK
from fundtrail.tracing.model import (
    DIRECTIONS,
    FEE_ADDRESS,
    POLICIES,
    Bools,
    Limits,
    RawEdge,
    RawEndpoint,
    RawFlow,
    Stops,
)

NO_TX = -1  # the tx id of edges and rows without a transaction (beacon-chain withdrawals)
_END = 2**62  # a height (or tx position) past every stored one
_WITHDRAWAL_POSITION = 2**31 - 1  # withdrawals come after every transaction of their block
_AFTER_TX = 99  # within-transaction rank after every transfer of the transaction
_BEFORE_TX = -1  # ... before every one
_RANK = {"fee": 0, "native": 1, "internal": 2, "token": 3, "withdrawal": 4}
# the zero address: the sender of token mints and recipient of burns (EVM; TRON's 0x41-prefixed form)
ZERO_KEYS = (bytes(20), b"\x41" + bytes(20))

Key = tuple[Any, ...]


@dataclass(slots=True)
class _Row:
    rowid: int
    key: Key  # (height, tx position, rank, log index, trace address, rowid): the total order
    height: int
    time: int
    tx_id: int
    kind: str
    src: int  # the real sender
    dst: int  # the real recipient
    amount: int


class _Desc:
    """A key compared backwards: the backward walk's heap order."""

    __slots__ = ("key",)

    def __init__(self, key: Key) -> None:
        self.key = key

    def __lt__(self, other: _Desc) -> bool:
        return other.key < self.key

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


# --- balances: one pool per tainted holder ------------------------------------------------------------


Parts = list[tuple[int, bool]]  # a transfer's parts in time order: (amount, tainted)


class _SharePool:
    """haircut, poison and tiho: a balance with a tainted amount."""

    def __init__(self, policy: str, balance: int, taint: int) -> None:
        self.policy = policy
        self.balance = balance
        self.taint = taint
        self.created = 0
        self.poisoned = False
        self._poison()

    def _poison(self) -> None:
        if self.policy == "poison" and (self.poisoned or self.taint > 0):
            self.poisoned = True
            if self.taint < self.balance:
                self.created += self.balance - self.taint
                self.taint = self.balance

    def take(self, amount: int) -> tuple[int, Parts | None]:
        b, t = self.balance, self.taint
        if t == 0 and not self.poisoned:
            tainted = 0
        elif self.policy == "haircut":
            tainted = t if amount >= b else (2 * t * amount + b) // (2 * b)  # nearest, half up
        elif self.policy == "tiho":
            tainted = min(amount, t)
        else:  # poison: fully tainted; beyond the computed balance it marks clean value
            tainted = amount
            self.created += max(0, amount - t)
        self.balance = max(b - amount, 0)
        self.taint = max(t - tainted, 0)
        return tainted, None

    def give(self, amount: int, tainted: int, parts: Parts | None) -> None:
        self.balance += amount
        self.taint += tainted
        self._poison()


class _QueuePool:
    """fifo and lifo: the balance as lots in time order, each part tainted or clean."""

    def __init__(self, policy: str, parts: Parts) -> None:
        self.lifo = policy == "lifo"
        self.lots: deque[list[Any]] = deque()
        self.balance = 0
        self.taint = 0
        self.created = 0
        self.give(sum(a for a, _ in parts), sum(a for a, x in parts if x), parts)

    def take(self, amount: int) -> tuple[int, Parts | None]:
        taken: Parts = []
        left = amount
        lots = self.lots
        while left > 0 and lots:
            lot = lots[-1] if self.lifo else lots[0]
            n = min(left, lot[0])
            taken.append((n, lot[1]))
            lot[0] -= n
            left -= n
            if lot[0] == 0:
                if self.lifo:
                    lots.pop()
                else:
                    lots.popleft()
        if self.lifo:
            taken.reverse()  # back to time order
        if left > 0:  # beyond the computed balance: funds the store does not show, clean
            taken.insert(0, (left, False))
        tainted = sum(n for n, x in taken if x)
        self.balance = max(self.balance - amount, 0)
        self.taint -= tainted
        return tainted, taken

    def give(self, amount: int, tainted: int, parts: Parts | None) -> None:
        if parts is None:
            parts = [(amount - tainted, False), (tainted, True)]
        for n, x in parts:
            if n == 0:
                continue
            if self.lots and self.lots[-1][1] == x:
                self.lots[-1][0] += n
            else:
                self.lots.append([n, x])
        self.balance += amount
        self.taint += tainted


Pool = _SharePool | _QueuePool


def _mark(parts: Parts, n: int) -> Parts:
    """``parts`` with the first ``n`` clean units marked tainted (a seed's received value)."""
    out: Parts = []
    for a, x in parts:
        if x or n == 0:
            out.append((a, x))
            continue
        m = min(a, n)
        n -= m
        out += [(m, True), (a - m, False)]
    return out


def split(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` by the largest-remainder rule (exact: the parts add
    up to ``total``; ties to the lowest index). Requires ``0 <= total <= sum(weights)``."""
    w = sum(weights)
    if w == 0:
        return [0] * len(weights)
    floors = [total * x // w for x in weights]
    rems = [total * x % w for x in weights]
    left = total - sum(floors)
    for i in sorted(range(len(weights)), key=lambda i: (-rems[i], i))[:left]:
        floors[i] += 1
    return floors


# --- the walk ---------------------------------------------------------------------------------------


@dataclass
class _Holder:
    pool: Pool
    hop: int
    path: list[int]
    seed: bool = False  # an address seed: what it receives is seed too
    best: int = 0  # the largest followed taint received: the representative path carries it


@dataclass
class _End:
    tainted: int
    hops: int
    path: list[int]
    best: int


_ROWS = """
SELECT t.rowid, b.height, coalesce(x.position, {wpos}), t.kind, coalesce(t.log_index, -1),
       t.trace_position, coalesce(t.tx_id, {notx}), t.from_id, t.to_id, t.amount::VARCHAR, b.time
FROM transfers t
JOIN blocks b ON b.chain = t.chain AND b.block_id = t.block_id
LEFT JOIN account_txs x ON x.chain = t.chain AND x.tx_id = t.tx_id
WHERE t.chain = $chain AND t.asset_id = $asset AND t.from_id <> t.to_id AND {where}
""".format(wpos=_WITHDRAWAL_POSITION, notx=NO_TX, where="{where}")

_BALANCE = """
SELECT (coalesce(sum(t.amount) FILTER (WHERE t.to_id = $a), 0::BIGNUM)
        - coalesce(sum(t.amount) FILTER (WHERE t.from_id = $a), 0::BIGNUM))::VARCHAR
FROM transfers t JOIN blocks b ON b.chain = t.chain AND b.block_id = t.block_id
WHERE t.chain = $chain AND t.asset_id = $asset AND t.from_id <> t.to_id
  AND (t.from_id = $a OR t.to_id = $a) AND b.height {op} $h
"""


def _row(r: tuple[Any, ...]) -> _Row:
    rowid, height, pos, kind, log, trace, tx_id, src, dst, amount, time = r
    trace_key = tuple(int(p) for p in str(trace).split(".")) if trace else ()
    key = (int(height), int(pos), _RANK.get(kind, 5), int(log), trace_key, int(rowid))
    return _Row(
        int(rowid), key, int(height), int(time), int(tx_id), str(kind), int(src), int(dst), int(amount)
    )


def _flag(stops: Bools, i: int) -> bool:
    return 0 <= i < len(stops) and bool(stops[i])


class _Walk:
    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        chain: str,
        asset_id: int,
        policy: str,
        backward: bool,
        limits: Limits,
        stops: Stops,
    ) -> None:
        self.con, self.chain, self.asset = con, chain, asset_id
        self.policy, self.backward, self.limits, self.stops = policy, backward, limits, stops
        self.holders: dict[int, _Holder] = {}
        self.heap: list[tuple[Any, int, _Row]] = []
        self.done: set[int] = set()
        self.counter = 0
        self.edges: list[RawEdge] = []
        self.ends: dict[tuple[int, str], _End] = {}
        self.swaps: list[dict[str, int]] = []
        self.swapped: set[tuple[int, int]] = set()
        self.seed_amount = 0
        self.cap_left: int | None = None
        keys = [*ZERO_KEYS, BEACON, FEE_SINK]
        rows = con.execute(
            "SELECT key, address_id FROM addresses WHERE chain = ? AND key IN (SELECT unnest(?))",
            [chain, keys],
        ).fetchall()
        ids = {bytes(k): int(i) for k, i in rows}
        self.terminal = {ids[k] for k in (*ZERO_KEYS, BEACON) if k in ids}
        self.fee_sink = ids.get(FEE_SINK, FEE_ADDRESS)

    # -- store access --

    def rows(self, where: str, params: dict[str, Any]) -> list[_Row]:
        sql = _ROWS.format(where=where)
        found = self.con.execute(sql, {"chain": self.chain, "asset": self.asset, **params}).fetchall()
        return [_row(r) for r in found]

    def balance_to(self, addr: int, height: int) -> int:
        """The stored balance from blocks below ``height`` (forward) or up to it (backward)."""
        op = "<=" if self.backward else "<"
        sql = _BALANCE.format(op=op)
        v = self.con.execute(sql, {"chain": self.chain, "asset": self.asset, "a": addr, "h": height})
        return int(v.fetchall()[0][0])

    def vkey(self, key: Key) -> Any:
        return _Desc(key) if self.backward else key

    def open(self, addr: int, height: int, pos: Key, exclude: int = -1) -> int:
        """Queue the transfers of ``addr`` after the walk position ``pos`` (in block ``height``); its
        balance there (excluding the row ``exclude``), never below zero."""
        base = self.balance_to(addr, height)
        where = "(t.from_id = $a OR t.to_id = $a) AND b.height " + (">= $h" if not self.backward else "<= $h")
        for r in self.rows(where, {"a": addr, "h": height}):
            if r.rowid == exclude:
                continue
            if r.height == height and ((r.key > pos) if self.backward else (r.key < pos)):
                received = r.dst == addr
                base += (
                    (-r.amount if received else r.amount)
                    if self.backward
                    else (r.amount if received else -r.amount)
                )
                continue
            self.counter += 1
            heapq.heappush(self.heap, (self.vkey(r.key), self.counter, r))
        return max(base, 0)

    def pool(self, balance: int, taint: int, taint_last: bool = False) -> Pool:
        """A holder's balance; for the queues the tainted part is the oldest lot unless ``taint_last``
        (a seed transaction's gain is the newest)."""
        if self.policy in ("fifo", "lifo"):
            parts = [(taint, True), (balance - taint, False)]
            return _QueuePool(self.policy, parts[::-1] if taint_last else parts)
        return _SharePool(self.policy, balance, taint)

    # -- end points --

    def end(self, addr: int, kind: str, tainted: int, hops: int, path: list[int]) -> None:
        e = self.ends.get((addr, kind))
        if e is None:
            self.ends[(addr, kind)] = _End(tainted, hops, path, tainted)
            return
        e.tainted += tainted
        e.hops = min(e.hops, hops)
        if tainted > e.best:
            e.best, e.path = tainted, path

    def stop_kind(self, row: _Row, dst: int, tainted: int, hop: int) -> str | None:
        lim = self.limits
        if not self.backward and row.kind == "fee":
            return "fees"
        if dst in self.terminal:
            return "origin" if self.backward else "unspent"
        if not self.in_window(row) or hop > lim.hops:
            return "beyond_limits"
        if _flag(self.stops.service, dst):
            return "service"
        if _flag(self.stops.super_cluster, dst):
            return "super_cluster"
        if tainted < lim.min_amount:
            return "below_threshold"
        return None

    def swap(self, tx_id: int, endpoint: int) -> None:
        """Other assets leaving the transaction in which taint reached a service."""
        if tx_id == NO_TX or (tx_id, endpoint) in self.swapped:
            return
        self.swapped.add((tx_id, endpoint))
        net: dict[tuple[int, int], int] = {}
        for asset, src, dst, amount in self.con.execute(
            """SELECT asset_id, from_id, to_id, amount::VARCHAR FROM transfers
               WHERE chain = ? AND tx_id = ? AND asset_id <> ? AND kind <> 'fee' AND from_id <> to_id""",
            [self.chain, tx_id, self.asset],
        ).fetchall():
            a = int(amount)
            net[(int(asset), int(dst))] = net.get((int(asset), int(dst)), 0) + a
            net[(int(asset), int(src))] = net.get((int(asset), int(src)), 0) - a
        for (asset, who), gained in sorted(net.items()):
            if gained <= 0 or who in self.terminal or who == self.fee_sink or _flag(self.stops.service, who):
                continue
            self.swaps.append(
                {
                    "tx_id": tx_id,
                    "endpoint_address_id": endpoint,
                    "asset_out_id": asset,
                    "amount_out": gained,
                    "recipient_id": who,
                }
            )

    # -- seeds --

    def seed_holder(self, addr: int, taint: int, balance: int, path: list[int], receives: bool) -> None:
        """A seed holder; ``receives``: what it receives later is seed too (address seeds)."""
        pool = self.pool(balance, taint, taint_last=not receives)
        self.holders[addr] = _Holder(pool, 0, path, seed=receives, best=taint)

    def in_window(self, row: _Row) -> bool:
        lim = self.limits
        if self.backward:
            return lim.since is None or row.time >= lim.since
        return lim.until is None or row.time <= lim.until

    def seed_addresses(self, addrs: list[int], start_time: int | None, amount: int | None) -> None:
        if start_time is None:
            height = _END if self.backward else -1
        else:
            found = self.con.execute(
                "SELECT max(height) FROM blocks WHERE chain = ? AND time <= ?", [self.chain, start_time]
            ).fetchall()[0][0]
            height = -1 if found is None else int(found)
        pos: Key = (height, _END)
        balances = [self.open(a, height, pos) for a in addrs]
        total = sum(balances)
        if amount is None:
            taints = balances
        elif amount <= total:
            taints = split(amount, balances)
            self.cap_left = 0
        else:
            taints = balances
            self.cap_left = amount - total
        for a, b, t in zip(addrs, balances, taints):
            self.seed_holder(a, t, b, [], True)
        self.seed_amount = sum(taints)

    def seed_tx(self, tx_id: int, amount: int | None) -> None:
        row = self.con.execute(
            """SELECT b.height, x.position FROM account_txs x
               JOIN blocks b ON b.chain = x.chain AND b.block_id = x.block_id
               WHERE x.chain = ? AND x.tx_id = ?""",
            [self.chain, tx_id],
        ).fetchall()
        if not row:
            raise NotFound(
                f"transaction id {tx_id} is not in the stored {self.chain} data", "ingest it first"
            )
        height, position = int(row[0][0]), int(row[0][1])
        net: dict[int, int] = {}
        for r in self.rows("t.tx_id = $tx AND t.kind <> 'fee'", {"tx": tx_id}):
            gain, loss = (r.src, r.dst) if self.backward else (r.dst, r.src)
            net[gain] = net.get(gain, 0) + r.amount
            net[loss] = net.get(loss, 0) - r.amount
        holders = sorted(a for a, g in net.items() if g > 0)
        gains = [net[a] for a in holders]
        total = sum(gains)
        taints = gains if amount is None or amount >= total else split(amount, gains)
        self.seed_amount = sum(taints)
        pos: Key = (height, position, _BEFORE_TX if self.backward else _AFTER_TX)
        for a, t in zip(holders, taints):
            if t == 0:
                continue
            fake = _Row(-1, pos, height, 0, tx_id, "seed", -1, a, t)
            kind = self.stop_kind(fake, a, t, 0)
            if kind is not None and kind != "beyond_limits":
                self.end(a, kind, t, 0, [tx_id])
                continue
            balance = self.open(a, height, pos)
            self.seed_holder(a, t, max(balance, t), [tx_id], False)

    # -- the loop --

    def run(self) -> None:
        holders, done = self.holders, self.done
        while self.heap:
            _k, _n, row = heapq.heappop(self.heap)
            if row.rowid in done:
                continue
            done.add(row.rowid)
            vs, vd = (row.dst, row.src) if self.backward else (row.src, row.dst)
            s = holders.get(vs)
            tainted, parts = s.pool.take(row.amount) if s is not None else (0, None)
            followed = 0
            hop = 0
            path: list[int] = []
            if s is not None and tainted > 0:
                # hops count transactions: a transfer inside the transaction the holder was reached by
                # (A -> router -> B in one call) continues that hop and does not repeat it in the path
                same_tx = row.tx_id != NO_TX and bool(s.path) and s.path[-1] == row.tx_id
                hop = s.hop if same_tx else s.hop + 1
                path = s.path if same_tx or row.tx_id == NO_TX else [*s.path, row.tx_id]
                kind = self.stop_kind(row, vd, tainted, hop)
                dst = FEE_ADDRESS if kind == "fees" else row.dst
                self.edges.append(RawEdge(row.tx_id, row.src, dst, row.time, row.amount, tainted, hop))
                if kind is None:
                    followed = tainted
                else:
                    self.end(FEE_ADDRESS if kind == "fees" else vd, kind, tainted, hop, path)
                    if kind == "service" and not self.backward:
                        self.swap(row.tx_id, vd)
            if followed == 0 or parts is None:
                parts = [(row.amount - followed, False), (followed, True)]
            d = holders.get(vd)
            if d is None:
                if followed == 0:
                    continue
                balance = self.open(vd, row.height, row.key, exclude=row.rowid)
                d = holders[vd] = _Holder(self.pool(balance, 0), hop, path)
            inject = 0
            if d.seed and self.in_window(row):
                inject = row.amount - followed
                if self.cap_left is not None:
                    inject = min(inject, self.cap_left)
                    self.cap_left -= inject
                self.seed_amount += inject
                if inject:
                    parts = _mark(parts, inject)
            d.pool.give(row.amount, followed + inject, parts)
            if followed > 0:
                d.hop = min(d.hop, hop)
                if followed > d.best:
                    d.best, d.path = followed, path

    def flow(self) -> RawFlow:
        left = "origin" if self.backward else "unspent"
        created = 0
        for addr, h in self.holders.items():
            created += h.pool.created
            if h.pool.taint > 0:
                self.end(addr, left, h.pool.taint, h.hop, h.path)
        endpoints = [
            RawEndpoint(addr, kind, e.tainted, e.hops, e.path)
            for (addr, kind), e in sorted(self.ends.items())
        ]
        totals = {"at_endpoints": 0, "unspent": 0, "fees": 0, "below_threshold": 0, "beyond_limits": 0}
        for p in endpoints:
            key = "at_endpoints" if p.kind in ("service", "super_cluster", "origin") else p.kind
            totals[key] += p.tainted
        flow = RawFlow(self.seed_amount, self.edges, endpoints, totals, created)
        flow.check()
        return flow


def trace_account(
    con: duckdb.DuckDBPyConnection,
    chain: str,
    asset_id: int,
    seed_addresses: list[int] | None,
    seed_tx_id: int | None,
    amount: int | None,
    policy: str,
    direction: str,
    limits: Limits,
    stops: Stops,
    start_time: int | None,
) -> tuple[RawFlow, list[dict[str, int]]]:
    """Trace one asset (``asset_id``: the native coin or a token) of an account chain from a seed.

    Seeds (exactly one of):

    - ``seed_addresses`` (one address or a cluster's): **forward**, the seed holds its balance at
      ``start_time`` (the end of the last block at or before it) plus everything it receives after
      (until ``limits.until``); with no start time that is everything it ever received. **Backward**, what
      it received up to ``start_time`` (its balance then plus everything it sent before, followed back
      in time); with no start time, everything it received. ``amount`` caps the seed: the first
      ``amount`` units (the balance, split over the addresses by the largest-remainder rule, then later
      receipts in time order; backward: the balance, then earlier receipts back in time).
    - ``seed_tx_id``: **forward**, the addresses that gain the asset in that transaction (net, fees
      left out) hold the gain; **backward**, the addresses that lose it (the senders) hold the loss.
      ``amount`` caps it, split in proportion to the gains (largest remainder).

    ``seed_amount`` of the flow is what was found (at most ``amount``). Returns the flow (conservation
    checked: the parts add up to ``seed_amount + created``) and the swaps seen (module docstring).
    """
    if policy not in POLICIES:
        raise InvalidInput(f"unknown policy {policy!r}", f"use one of {', '.join(POLICIES)}")
    if direction not in DIRECTIONS:
        raise InvalidInput(f"unknown direction {direction!r}", f"use one of {', '.join(DIRECTIONS)}")
    if (seed_addresses is None) == (seed_tx_id is None):
        raise InvalidInput("a trace needs one seed", "give addresses or a transaction, not both")
    if amount is not None and amount < 0:
        raise InvalidInput(f"amount {amount} is negative", "give a positive amount in base units")
    found = con.execute("SELECT 1 FROM assets WHERE chain = ? AND asset_id = ?", [chain, asset_id]).fetchall()
    if not found:
        raise NotFound(f"asset {asset_id} is not stored for {chain}", "check the chain and the asset")
    walk = _Walk(con, chain, asset_id, policy, direction == "backward", limits, stops)
    if seed_tx_id is not None:
        walk.seed_tx(seed_tx_id, amount)
    else:
        walk.seed_addresses(sorted(set(seed_addresses or [])), start_time, amount)
    walk.run()
    return walk.flow(), walk.swaps
