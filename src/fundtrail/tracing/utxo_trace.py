"""Taint tracing on a UTXO chain: where did the value of some outputs go (forward), or where did it come
from (backward), under one of five policies. One compiled pass over a :class:`UtxoGraph`'s CSR arrays;
transactions are taken from a priority queue in topological order (forward: smallest index first;
backward: largest first), so a transaction reached through several tainted inputs (outputs) is
processed once, with all of them.

Policies, per transaction (forward; docs/tracing.md has worked examples and references). ``T`` is the
taint on its inputs, ``V`` its input value (= outputs + fee):

- ``haircut``: ``T`` spread over the outputs and the fee in proportion to their values (largest-remainder
  rounding, :func:`fundtrail.tracing.arith.split`).
- ``poison``: every output (and the fee) of a transaction with a tainted input is wholly tainted; the
  clean value pulled in (``V - T``) is counted as ``created``.
- ``fifo``: the inputs laid end to end in input order make a line of ``V`` units, each input's tainted
  units at its start; the outputs, then the fee, are laid along the same line in order, and each takes
  the tainted units that fall in its stretch. (So within an output the tainted units sit at its start,
  the convention the next hop relies on.)
- ``lifo``: the same, with the inputs laid in reverse order (the last input first): the most recently
  added value is the first to leave.
- ``tiho`` (taint in, highest out): ``T`` fills the outputs from the highest value down (equal values:
  lower output index first), each up to its value; what remains goes to the fee.

Backward, mirrored: the taint of a transaction's outputs ``U`` goes to its inputs. ``haircut``: in
proportion to the input values; ``poison``: every input wholly (``created += V - U``); ``fifo``/``lifo``:
the outputs (tainted units at their starts) then the fee laid on the line, inputs in order (``lifo``:
reversed) taking what falls in their stretch; ``tiho``: highest-value inputs first.

Unknown input values (an input whose funding output is not stored): the fee beyond the known inputs is
taken as 0, i.e. the unknown inputs together hold exactly ``max(0, outputs - known inputs)``, placed on
the first unresolved input (the others 0). Such transactions are counted in the flow's notes.

Stops (forward, per tainted output, in this order): a service address, a super-cluster address, taint
below ``min_amount``, unspent, spent after ``hops`` transactions or after ``until``: each ends there as an
endpoint of that kind; otherwise its spender is queued. Fee taint ends as ``fees``. Backward, per
tainted input: an unresolved input or a coinbase is ``origin``; service, super-cluster, below threshold,
and a funding transaction beyond ``hops`` or before ``since`` end as such; otherwise the funding output is
tainted and its transaction queued.

Hops count transactions: forward, the seed outputs are at hop 0 and their spender at hop 1; backward,
the seed outputs' own transaction is hop 1 and its funding transactions hop 2. ``limits.hops`` is the
number of transactions followed.

Edges (one per transaction and tainted output forward, per transaction and tainted input backward): the
forward edge goes from the address of the transaction's first tainted input (in input order) to the
output's address, amount = output value, tainted = its taint; the backward edge from the input's address
to the address of the transaction's first tainted output, amount = input value (-1 when unknown). Fee
taint is an edge to :data:`FEE_ADDRESS`. Edge time is the block time, -1 for a loose transaction.

Seeds must not overlap: a seed transaction reached by the taint of another seed (forward), or a seed
output reached backward from another seed, would count the same value twice and is refused, unless the
caller asks for ``overlapping`` seeds (an address's outputs: change back to itself): then the value
reaching a seed output from another seed is counted once and left out of ``seed_amount``.

This module holds the public function (:func:`trace_utxo`), the flow it returns (:class:`UtxoFlow`), the
per-graph workspace the walks mark, and the building of edges, endpoints and totals from the walks'
rows. The compiled walks are in :mod:`fundtrail.tracing.utxo_forward` and
:mod:`fundtrail.tracing.utxo_backward`, the helpers they share in :mod:`fundtrail.tracing.utxo_kernels`.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numba as nb
import numpy as np
import numpy.typing as npt

from fundtrail.errors import InvalidInput
from fundtrail.tracing.arith import split
from fundtrail.tracing.model import (
    DIRECTIONS,
    ENDPOINT_KINDS,
    POLICIES,
    Limits,
    RawEdge,
    RawEndpoint,
    RawFlow,
    Stops,
)
from fundtrail.tracing.utxo_backward import _backward
from fundtrail.tracing.utxo_forward import STATE, _forward, _forward_preds
from fundtrail.tracing.utxo_graph import LOOSE_TIME, UtxoGraph
from fundtrail.tracing.utxo_kernels import (
    _COLS,
    _I64_MAX,
    _I64_MIN,
    FIFO,
    I64,
    K_BELOW,
    K_BEYOND,
    K_FEES,
    K_UNSPENT,
    LIFO,
    _paths,
    _reset,
)

_AT_ENDPOINTS = ("service", "super_cluster", "origin")


@dataclass
class UtxoFlow(RawFlow):
    """A :class:`RawFlow` with what a reader must know about its completeness (house rule 5): the
    notes (on :class:`RawFlow`) and the count of transactions traced through unknown input values.

    ``edge_rows`` and ``event_rows`` are the compiled walk's results as NumPy rows (columns per
    ``_COLS``); ``edges`` and ``endpoints`` are the same as Python objects, made unless the caller asked
    for arrays only (``materialize=False``: a 20-hop trace can touch millions of edges, and building
    objects costs more than the walk)."""

    unknown_input_txs: int = 0  # transactions traced through with an input whose value is not stored
    edge_rows: I64 | None = None
    event_rows: I64 | None = None

    @property
    def n_edges(self) -> int:
        """Edges in the flow (without making objects of them)."""
        return len(self.edge_rows) if self.edge_rows is not None else len(self.edges)


# --- the public function -------------------------------------------------------------------------------


class _Workspace:
    """Per-graph scratch arrays a trace marks sparsely, kept between traces and reset by what the trace
    touched. Fresh ``np.zeros`` arrays are mapped lazily by the OS, so a trace touching random entries
    of a 10-million-output graph pays a page fault per new page (about as much as the walk itself); a
    reused, pre-faulted workspace pays none. One trace at a time uses it (a lock); a concurrent one
    allocates its own arrays. ``touched`` (set by the walk): the transactions it queued, which is all
    it wrote about, so resetting costs what the trace cost (``None``: unknown, everything is zeroed)."""

    def __init__(self, n: int, n_txo: int, prefault: bool = True) -> None:
        self.lock = threading.Lock()
        self.txo_taint = np.zeros(n_txo, np.int64)
        self.txo_flag = np.zeros(n_txo, np.bool_)
        self.tx_hop = np.zeros(n, np.int64)
        self.tx_pred = np.zeros(n, np.int64)
        self.queued = np.zeros(n, np.bool_)
        self.state = np.zeros(n, STATE)
        words = (n >> 6) + 2
        self.bits1 = np.zeros(words, np.uint64)
        self.bits2 = np.zeros((words >> 6) + 2, np.uint64)
        self.touched: I64 | None = np.zeros(0, np.int64)
        self.txo_dirty = False  # the walk wrote txo_taint/txo_flag of the touched transactions' outputs
        self.marks = False  # the walk wrote tx_hop/tx_pred/queued
        self.capacity = 0  # edges of the largest trace so far (the next one's first allocation)
        if prefault:
            for a in self._arrays():
                a.view(np.uint8).fill(0)  # touch every page once, here

    def _arrays(self) -> tuple[npt.NDArray[np.generic], ...]:
        return (self.txo_taint, self.txo_flag, self.tx_hop, self.tx_pred, self.queued, self.state, self.bits1,
                self.bits2)  # fmt: skip

    @staticmethod
    def fresh(n: int, n_txo: int) -> _Workspace:
        return _Workspace(n, n_txo, prefault=False)

    def reset(self, graph: UtxoGraph, seed_txos: I64) -> None:
        """Zero what the last trace wrote."""
        if self.touched is None:
            for a in self._arrays():
                a.view(np.uint8).fill(0)
        else:
            _reset(
                self.touched, self.txo_dirty, self.marks, self.state, self.bits1, self.bits2, self.tx_hop,
                self.tx_pred, self.queued, self.txo_taint, self.txo_flag, graph.out_off, seed_txos,
            )  # fmt: skip
        self.touched = np.zeros(0, np.int64)
        self.txo_dirty = self.marks = False


_WORKSPACES: dict[int, _Workspace] = {}  # by id() of a live graph; dropped when the graph is collected
_WORKSPACES_LOCK = threading.Lock()


@contextmanager
def _workspace(graph: UtxoGraph, seed_txos: I64) -> Iterator[_Workspace]:
    with _WORKSPACES_LOCK:
        ws = _WORKSPACES.get(id(graph))
        if ws is None:
            ws = _WORKSPACES[id(graph)] = _Workspace(len(graph), graph.n_txo)
            weakref.finalize(graph, _WORKSPACES.pop, id(graph), None)
    if not ws.lock.acquire(blocking=False):
        yield _Workspace.fresh(len(graph), graph.n_txo)
        return
    try:
        ws.touched = None  # until the walk reports what it touched
        yield ws
    finally:
        ws.reset(graph, seed_txos)
        ws.lock.release()


def _seed_txos(graph: UtxoGraph, seeds: list[tuple[int, int]]) -> I64:
    if not seeds:
        raise InvalidInput("no seed outputs", "give at least one txid:vout")
    txos = np.array([graph.txo_index(int(t), int(v)) for t, v in seeds], np.int64)
    if len(np.unique(txos)) != len(txos):
        raise InvalidInput("a seed output is given twice", "give each txid:vout once")
    return txos


def trace_utxo(
    graph: UtxoGraph,
    seeds: list[tuple[int, int]],
    amount: int | None,
    policy: str,
    direction: str,
    limits: Limits,
    stops: Stops,
    start_time: int | None = None,
    materialize: bool = True,
    overlapping: bool = False,
) -> UtxoFlow:
    """Trace the value of the seed outputs ``(tx_id, vout)`` through ``graph`` (module docstring).

    ``amount``: the tainted amount (default: the seeds' whole value); a smaller amount is spread over
    the seed outputs in proportion to their values. ``start_time`` is accepted for symmetry with the
    account tracer and not used: a UTXO seed fixes its own time (its transaction's block).
    ``materialize=False`` leaves ``edges`` and ``endpoints`` empty and the results in ``edge_rows`` and
    ``event_rows`` only (totals and checks are the same).
    ``overlapping=True`` (the outputs an address or cluster received) accepts seeds downstream of other
    seeds: value of one seed reaching another seed output counts once, and ``seed_amount`` is the seeds'
    amount less what reached them from the other seeds.
    Returns a flow whose totals add up to ``seed_amount + created`` (checked)."""
    del start_time
    if policy not in POLICIES:
        raise InvalidInput(f"unknown policy {policy!r}", f"choose one of {', '.join(POLICIES)}")
    if direction not in DIRECTIONS:
        raise InvalidInput(f"unknown direction {direction!r}", f"choose one of {', '.join(DIRECTIONS)}")
    if limits.hops < 0 or limits.min_amount < 0:
        raise InvalidInput("hops and min_amount must not be negative", "give 0 or more")
    txos = _seed_txos(graph, seeds)
    values = graph.out_value[txos]
    whole = int(values.sum())
    if amount is None:
        amount = whole
    if not 0 <= amount <= whole:
        raise InvalidInput(
            f"amount {amount} is outside 0..{whole} (the value of the seed outputs)",
            "give an amount no larger than the seeds hold, or none for their whole value",
        )
    with _workspace(graph, txos) as ws:
        flow = _run(
            graph, txos, values, amount, policy, direction, limits, stops, materialize, ws, overlapping
        )
    unknown = flow.unknown_input_txs
    ev = flow.event_rows if flow.event_rows is not None else np.zeros((0, _COLS), np.int64)
    if unknown:
        flow.notes.append(
            f"{unknown} transaction(s) traced through have inputs whose funding output is not stored "
            "(history not ingested): their unknown input values were taken to cover the outputs exactly"
        )
    origin = (ev[:, 1] == ENDPOINT_KINDS.index("origin")) & (ev[:, 2] < 0)
    unresolved = int(ev[origin, 3].sum())
    if direction == "backward" and unresolved:
        flow.notes.append(
            f"{unresolved} units reached inputs whose history is not stored: counted as origin (unknown)"
        )
    flow.check()
    return flow


def _run(
    graph: UtxoGraph,
    txos: I64,
    values: I64,
    amount: int,
    policy: str,
    direction: str,
    limits: Limits,
    stops: Stops,
    materialize: bool,
    ws: _Workspace,
    absorb: bool = False,
) -> UtxoFlow:
    """The walk in ``ws`` and its results (the workspace is reset by the caller)."""
    txo_taint, tx_hop, tx_pred, queued = ws.txo_taint, ws.tx_hop, ws.tx_pred, ws.queued
    txo_taint[txos] = split(amount, values)
    seed_tx = np.unique(graph.out_tx[txos]).astype(np.int64)
    service = np.asarray(stops.service, dtype=np.bool_)
    superc = np.asarray(stops.super_cluster, dtype=np.bool_)
    code = POLICIES.index(policy)
    if direction == "forward":
        until = _I64_MAX if limits.until is None else int(limits.until)  # a loose spender: LOOSE_TIME
        edges, ne, events, nv, created, unknown, conflict, overlap, touched, nt = _forward(
            graph.tx_rec,
            graph.out_rec,
            graph.out_tx,
            graph.in_txo,
            graph.in_addr,
            graph.time,
            seed_tx,
            code,
            limits.hops,
            limits.min_amount,
            until,
            service,
            superc,
            txo_taint,
            ws.txo_flag,
            ws.state,
            ws.bits1,
            ws.bits2,
            absorb,
            ws.capacity,
        )
        ws.capacity = max(ws.capacity, ne)  # the next trace starts with room for as many edges
        ws.touched = touched[:nt]
        ws.txo_dirty = code in (FIFO, LIFO)
        ws.marks = materialize
        if materialize and conflict < 0:
            _forward_preds(ws.touched, ws.state, graph.in_off, graph.in_txo, graph.out_tx, tx_pred)
    else:
        seed_mask = ws.txo_flag
        seed_mask[txos] = True
        since = _I64_MIN if limits.since is None else int(limits.since)
        edges, ne, events, nv, created, unknown, conflict, overlap, touched, nt = _backward(
            graph.out_off,
            graph.out_value,
            graph.out_addr,
            graph.out_spender,
            graph.out_tx,
            graph.in_off,
            graph.in_txo,
            graph.in_value,
            graph.in_addr,
            graph.time,
            graph.is_coinbase,
            seed_tx,
            seed_mask,
            code,
            limits.hops,
            limits.min_amount,
            since,
            service,
            superc,
            txo_taint,
            tx_hop,
            tx_pred,
            queued,
            absorb,
        )
        ws.touched = touched[:nt]
        ws.txo_dirty = True
        ws.marks = True
    if conflict >= 0:
        raise InvalidInput(
            f"seed transaction {graph.txid_hex(conflict)} is reached by the trace of another seed, so its "
            "value would count twice",
            "trace the seeds separately, or drop the later one",
        )
    ev = events[:nv]
    # value counted twice where seeds overlap (absorb): under poison the clean value marked ("created")
    # includes the seed output that was reached, so that count goes first; then the seed's own
    created, overlap = int(created), int(overlap)
    from_created = min(created, overlap)
    flow = UtxoFlow(
        seed_amount=amount - (overlap - from_created),
        created=created - from_created,
        totals=_totals(ev),
        unknown_input_txs=int(unknown),
        edge_rows=edges[:ne],
        event_rows=ev,
    )
    if materialize:
        flow.edges = _edges(graph, edges[:ne])
        flow.endpoints = _endpoints(graph, ev, tx_pred)
    return flow


def _edges(graph: UtxoGraph, rows: I64) -> list[RawEdge]:
    if not len(rows):
        return []
    tx = rows[:, 0]
    tx_ids = graph.tx_id[tx].tolist()
    times = graph.time[tx]
    times = np.where(times == LOOSE_TIME, -1, times).tolist()
    src, dst, amount, tainted, hop = (rows[:, c].tolist() for c in (2, 3, 4, 5, 6))
    with _gc_paused():  # millions of small objects: no cycle collection passes while they are made
        return list(map(RawEdge, tx_ids, src, dst, times, amount, tainted, hop))


@nb.njit(cache=True, nogil=True)
def _kind_sums(ev: I64, n_kinds: int) -> I64:
    """Per end-point kind the summed taint of the events (exact, in one pass)."""
    out = np.zeros(n_kinds, np.int64)
    for r in range(len(ev)):
        out[ev[r, 1]] += ev[r, 3]
    return out


def _totals(ev: I64) -> dict[str, int]:
    """The totals per TOTAL_KEYS from the end-point events."""
    per_kind = _kind_sums(ev, len(ENDPOINT_KINDS))
    return {
        "at_endpoints": int(sum(int(per_kind[ENDPOINT_KINDS.index(k)]) for k in _AT_ENDPOINTS)),
        "unspent": int(per_kind[K_UNSPENT]),
        "fees": int(per_kind[K_FEES]),
        "below_threshold": int(per_kind[K_BELOW]),
        "beyond_limits": int(per_kind[K_BEYOND]),
    }


def _endpoints(graph: UtxoGraph, ev: I64, tx_pred: I64) -> list[RawEndpoint]:
    """Events aggregated per (address, kind): summed taint, the smallest hop, and the path of the event
    carrying the most taint (first in processing order on ties)."""
    if not len(ev):
        return []
    seq = np.arange(len(ev), dtype=np.int64)
    order = np.lexsort((seq, -ev[:, 3], ev[:, 2], ev[:, 1]))  # by kind, address, most taint first
    s = ev[order]
    starts = np.flatnonzero(np.r_[True, (s[1:, 1] != s[:-1, 1]) | (s[1:, 2] != s[:-1, 2])])
    sums = np.add.reduceat(s[:, 3], starts)
    hop_min = np.minimum.reduceat(s[:, 4], starts)
    off, flat = _paths(tx_pred, s[starts, 0])
    path_ids = graph.tx_id[flat].tolist()
    addr, kind = s[starts, 2].tolist(), s[starts, 1].tolist()
    sums_l, hops_l, off_l = sums.tolist(), hop_min.tolist(), off.tolist()
    with _gc_paused():
        out = [
            RawEndpoint(
                addr[k], ENDPOINT_KINDS[kind[k]], sums_l[k], hops_l[k], path_ids[off_l[k] : off_l[k + 1]]
            )
            for k in range(len(starts))
        ]
    return out


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
