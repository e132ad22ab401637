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
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import types
from numba.core import cgutils as _cgutils
from numba.extending import intrinsic

from fundtrail.errors import InvalidInput
from fundtrail.tracing.arith import split, split_buffered
from fundtrail.tracing.model import (
    DIRECTIONS,
    ENDPOINT_KINDS,
    FEE_ADDRESS,
    POLICIES,
    Limits,
    RawEdge,
    RawEndpoint,
    RawFlow,
    Stops,
)
from fundtrail.tracing.utxo_graph import LOOSE_TIME, UtxoGraph

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

# codes the kernels use: the index in POLICIES / ENDPOINT_KINDS (a test checks they agree)
HAIRCUT, POISON, FIFO, LIFO, TIHO = 0, 1, 2, 3, 4
K_SERVICE, K_SUPER, K_UNSPENT, K_BELOW, K_BEYOND, K_FEES, K_ORIGIN = 0, 1, 2, 3, 4, 5, 6
_AT_ENDPOINTS = ("service", "super_cluster", "origin")
_I64_MIN = np.iinfo(np.int64).min
_I64_MAX = np.iinfo(np.int64).max
_COLS = 7  # edge rows: tx, position, src, dst, amount, tainted, hop; event rows: tx, kind, addr, taint, hop


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


# --- compiled helpers ----------------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True)
def _grow(buf: I64) -> I64:
    """A buffer twice as long holding ``buf`` (rows or entries). The kernels grow their buffers at the
    call site (``if n == len(buf): buf = _grow(buf)``) and write through functions that return
    nothing: a compiled call that returns an array pays two atomic reference-count updates, and those
    stall the memory accesses in flight (measured: 40 % of the forward walk)."""
    bigger = np.empty((2 * buf.shape[0] + 16, *buf.shape[1:]), np.int64)
    bigger[: buf.shape[0]] = buf
    return bigger


@nb.njit(cache=True, nogil=True)
def _put(buf: I64, n: int, a: int, b: int, c: int, d: int, e: int, f: int, g: int) -> None:
    """Write row ``n`` (the caller made room)."""
    buf[n, 0] = a
    buf[n, 1] = b
    buf[n, 2] = c
    buf[n, 3] = d
    buf[n, 4] = e
    buf[n, 5] = f
    buf[n, 6] = g


@nb.njit(cache=True, nogil=True)
def _hpush(heap: I64, hn: int, x: int) -> None:
    """Push ``x`` on the min-heap ``heap[:hn]`` (the caller made room, and adds one to ``hn``)."""
    k = hn
    while k > 0 and heap[(k - 1) // 2] > x:
        heap[k] = heap[(k - 1) // 2]
        k = (k - 1) // 2
    heap[k] = x


@nb.njit(cache=True, nogil=True)
def _hpop(heap: I64, hn: int) -> int:
    """Remove and return the smallest of ``heap[:hn]`` (the caller subtracts one from ``hn``)."""
    top = heap[0]
    hn -= 1
    last = heap[hn]
    k = 0
    while True:
        c = 2 * k + 1
        if c >= hn:
            break
        if c + 1 < hn and heap[c + 1] < heap[c]:
            c += 1
        if heap[c] >= last:
            break
        heap[k] = heap[c]
        k = c
    if hn > 0:
        heap[k] = last
    return int(top)


@nb.njit(cache=True, nogil=True)
def _line(src_len: I64, src_taint: I64, dst_len: I64, out: I64) -> None:
    """FIFO on one line: the source stretches laid end to end, each with its tainted units at its start;
    ``out[j]`` (added to) = the tainted units falling in destination stretch ``j``."""
    nd = len(dst_len)
    j = 0
    q1 = dst_len[0] if nd > 0 else 0  # end of destination stretch j
    p = 0
    for k in range(len(src_len)):
        a = p
        b = p + src_taint[k]
        p += src_len[k]
        while a < b:
            while j < nd and q1 <= a:
                j += 1
                if j < nd:
                    q1 += dst_len[j]
            if j >= nd:
                return  # more taint than line: impossible for valid values (conservation check catches)
            e = min(b, q1)
            out[j] += e - a
            a = e


@nb.njit(cache=True, nogil=True)
def _tiho(total: int, weights: I64, n_sorted: int, out: I64) -> None:
    """``total`` fills ``weights[:n_sorted]`` from the largest down (ties: lower index), each up to its
    weight, then ``weights[n_sorted:]`` in order (the fee)."""
    left = total
    order = np.argsort(-weights[:n_sorted], kind="mergesort")
    for k in order:
        take = min(left, weights[k])
        out[k] = take
        left -= take
    for k in range(n_sorted, len(weights)):
        take = min(left, weights[k])
        out[k] = take
        left -= take


@nb.njit(cache=True, nogil=True)
def _distribute(policy: int, total: int, src_len: I64, src_taint: I64, dst: I64, n_sorted: int) -> I64:
    """The taint each destination stretch receives (``dst`` = values of outputs + fee forward, of inputs
    backward) under haircut, poison, tiho or fifo (lifo: the caller reverses one side and calls
    :func:`_line` itself)."""
    parts = np.zeros(len(dst), np.int64)
    _distribute_into(policy, total, src_len, src_taint, dst, n_sorted, parts, np.empty(len(dst), np.int64))
    return parts


@nb.njit(cache=True, nogil=True)
def _distribute_into(
    policy: int, total: int, src_len: I64, src_taint: I64, dst: I64, n_sorted: int, parts: I64, rem: I64
) -> None:
    """:func:`_distribute` into the caller's zeroed ``parts`` with scratch ``rem`` (no allocation)."""
    if policy == HAIRCUT:
        split_buffered(total, dst, parts, rem)
    elif policy == POISON:
        parts[:] = dst
    elif policy == TIHO:
        _tiho(total, dst, n_sorted, parts)
    else:
        _line(src_len, src_taint, dst, parts)


@nb.njit(cache=True, nogil=True)
def _stop_kind(a: int, t: int, service: Bools, superc: Bools, min_amount: int) -> int:
    """The endpoint kind an address or amount forces (-1: none)."""
    if a >= 0 and a < len(service) and service[a]:
        return K_SERVICE
    if a >= 0 and a < len(superc) and superc[a]:
        return K_SUPER
    if t < min_amount:
        return K_BELOW
    return -1


# --- the forward queue: a two-level bitmap over dense indexes ---------------------------------------

_ONE = np.uint64(1)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_POS = np.zeros(64, np.int64)
for _b in range(64):
    _DEBRUIJN_POS[((1 << _b) * 0x03F79D71B4CB0A89 & 0xFFFFFFFFFFFFFFFF) >> 58] = _b
_D_STOP, _D_OUT, _D_REC = 2, 4, 6  # how many transactions ahead each stage of prefetching works
_AHEAD = _D_REC
STATE = np.dtype(
    [
        ("taint", np.int64),  # taint pushed into the transaction by its inputs
        ("best_t", np.int64),  # the largest of those pushes
        ("hop", np.int32),  # hop + 1 (0: not reached; 1: a seed transaction)
        ("first", np.int32),  # the first (in input order) input pushing taint
        ("best", np.int32),  # the input pushing the most taint (first on ties): the predecessor's
        ("pad", np.int32),
    ]
)  # 32 bytes per transaction: two per cache line


cgutils: Any = _cgutils  # untyped helpers of Numba's code generator


def _prefetch_typing(typingctx: Any, arr: Any, idx: Any) -> Any:
    """``_prefetch(arr, i)`` in a kernel: ask the CPU to fetch the cache line of ``arr[i]`` (LLVM's
    prefetch; no effect on results, and no fault for any address)."""
    del typingctx
    if not isinstance(arr, types.Array) or not isinstance(idx, types.Integer):
        return None
    sig = types.void(arr, idx)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(
            fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)]
        )
        return context.get_dummy_value()

    return sig, codegen


_prefetch: Any = intrinsic(_prefetch_typing)


@nb.njit(cache=True, nogil=True)
def _qpeek(bits1: npt.NDArray[np.uint64], bits2: npt.NDArray[np.uint64], after: int) -> int:
    """The smallest queued index above ``after`` (-1: none), leaving the queue as it is."""
    nxt = after + 1
    w = nxt >> 6
    if w >= len(bits1):
        return -1
    x = bits1[w] & (_ALL << np.uint64(nxt & 63))
    if x != 0:
        return w * 64 + _ctz(x)
    nxt = w + 1
    w2 = nxt >> 6
    if w2 >= len(bits2):
        return -1
    m = bits2[w2] & (_ALL << np.uint64(nxt & 63))
    while m == 0:
        w2 += 1
        if w2 >= len(bits2):
            return -1
        m = bits2[w2]
    w = w2 * 64 + _ctz(m)
    return w * 64 + _ctz(bits1[w])


@nb.njit(cache=True, nogil=True)
def _ctz(x: np.uint64) -> int:
    """The index of the lowest set bit of a non-zero word (de Bruijn multiplication)."""
    return int(_DEBRUIJN_POS[((x & (~x + _ONE)) * _DEBRUIJN) >> np.uint64(58)])


@nb.njit(cache=True, nogil=True)
def _qpush(bits1: npt.NDArray[np.uint64], bits2: npt.NDArray[np.uint64], x: int, cur: int) -> int:
    """Set ``x`` in the queue (``bits1``: one bit per transaction; ``bits2``: one per non-zero word of
    ``bits1``); returns the new cursor (the lowest word that may hold a set bit)."""
    w = x >> 6
    if bits1[w] == 0:
        bits2[w >> 6] |= _ONE << np.uint64(w & 63)
    bits1[w] |= _ONE << np.uint64(x & 63)
    return min(w, cur)


@nb.njit(cache=True, nogil=True)
def _qpop(bits1: npt.NDArray[np.uint64], bits2: npt.NDArray[np.uint64], cur: int) -> tuple[int, int]:
    """Remove the smallest set index at or after word ``cur`` (the queue must not be empty); returns it
    and the new cursor. The walk's pushes all lie ahead of the cursor (topological order), so the scan
    passes over the graph at most once, 4,096 transactions per summary word where nothing is queued."""
    x = bits1[cur]
    if x == 0:
        nxt = cur + 1
        w2 = nxt >> 6
        m = bits2[w2] & (_ALL << np.uint64(nxt & 63))
        while m == 0:
            w2 += 1
            m = bits2[w2]
        cur = w2 * 64 + _ctz(m)
        x = bits1[cur]
    b = _ctz(x)
    x &= x - _ONE
    bits1[cur] = x
    if x == 0:
        bits2[cur >> 6] &= ~(_ONE << np.uint64(cur & 63))
    return cur * 64 + b, cur


# --- forward -------------------------------------------------------------------------------------------


def _borrow_typing(typingctx: Any, arr: Any) -> Any:
    """``_borrow(a)`` in a kernel: the same array without its reference-counted owner (a null
    ``meminfo``), for passing to :func:`_forward_steps`, which must not keep it. Numba counts
    references to arrays with atomic instructions wherever a function or branch takes one, and an
    atomic instruction waits for every memory access in flight: in the forward walk those waits cost
    more than the walk's own cache misses. On a borrowed array the count is skipped (a null test)."""
    del typingctx
    if not isinstance(arr, types.Array):
        return None
    sig = arr(arr)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        aryty = signature.args[0]
        src = context.make_array(aryty)(context, builder, args[0])
        dst = context.make_array(aryty)(context, builder)
        for name in ("data", "shape", "strides", "itemsize", "nitems", "parent"):
            setattr(dst, name, getattr(src, name))
        dst.meminfo = cgutils.get_null_value(dst.meminfo.type)
        return dst._getvalue()

    return sig, codegen


_borrow: Any = intrinsic(_borrow_typing)


# the forward walk's counters between calls of its steps (one int64 array)
_C_NE, _C_NV, _C_NT, _C_QN, _C_CUR, _C_CREATED, _C_UNKNOWN, _C_OVERLAP, _C_NEED, _C_CONFLICT = range(10)
_DONE, _ROOM, _SCRATCH = 0, 1, 2


@nb.njit(cache=True, nogil=True)
def _forward(
    tx_rec: npt.NDArray[np.void],
    out_rec: npt.NDArray[np.void],
    out_tx: I64,
    in_txo: I64,
    in_addr: I64,
    time: I64,
    seed_tx: I64,
    policy: int,
    hops: int,
    min_amount: int,
    until: int,
    service: Bools,
    superc: Bools,
    txo_taint: I64,
    followed: Bools,
    state: npt.NDArray[np.void],
    bits1: npt.NDArray[np.uint64],
    bits2: npt.NDArray[np.uint64],
    absorb: bool,
    capacity: int,
) -> tuple[I64, int, I64, int, int, int, int, int, I64, int]:
    """Forward trace; ``txo_taint`` holds the seed taint. Each tainted output that is followed pushes
    its taint into its spender's ``state`` record (sum, first input, largest push, smallest hop), so a
    transaction taken from the queue has what its inputs carry without reading them; fifo and lifo,
    which lay the inputs on a line, read them (``txo_taint`` and ``followed`` of the spent outputs,
    written for those two only). ``followed``: the tainted outputs whose spender was queued (only those
    carry taint into it: an output that became an endpoint keeps its taint even when its spender is
    reached through another output). ``absorb``: a seed transaction reached by the taint of another
    seed is not refused; its seed outputs take what reaches them up to their value, and the excess
    (value counted twice) is returned as ``overlap``. ``capacity``: edge rows to allocate at first.
    Returns (edges, n, events, n, created, unknown-input txs, conflicting seed tx or -1, overlap,
    touched transactions, n).

    This driver owns the buffers; :func:`_forward_steps` walks with borrowed views of everything
    (:func:`_borrow`) until the queue is empty or a buffer is too small, and the driver grows it."""
    edges = np.empty((max(capacity, 64), _COLS), np.int64)
    events = np.empty((max(capacity // 2, 64), _COLS), np.int64)
    touched = np.empty(max(capacity // 2, 64, len(seed_tx)), np.int64)
    width = 64
    scratch = np.zeros((5, width), np.int64)  # per-transaction buffers: inputs, taints, dst, parts, rem
    ahead = np.zeros(_AHEAD + 1, np.int64)
    ctr = np.zeros(10, np.int64)
    ctr[_C_CUR] = len(bits1) - 1
    ctr[_C_CONFLICT] = -1
    for s in seed_tx:
        state[s].hop = 1
        ctr[_C_CUR] = _qpush(bits1, bits2, s, ctr[_C_CUR])
        ctr[_C_QN] += 1
        touched[ctr[_C_NT]] = s
        ctr[_C_NT] += 1
    while True:
        status = _forward_steps(
            _borrow(tx_rec), _borrow(out_rec), _borrow(out_tx), _borrow(in_txo), _borrow(in_addr),
            _borrow(time), policy, hops, min_amount, until, _borrow(service), _borrow(superc),
            _borrow(txo_taint), _borrow(followed), _borrow(state), _borrow(bits1), _borrow(bits2), absorb,
            _borrow(edges), _borrow(events), _borrow(touched), _borrow(scratch[0]), _borrow(scratch[1]),
            _borrow(scratch[2]), _borrow(scratch[3]), _borrow(scratch[4]), _borrow(ahead), _borrow(ctr),
        )  # fmt: skip
        if status == _DONE:
            break
        need = ctr[_C_NEED]
        if status == _ROOM:
            if ctr[_C_NE] + need > len(edges):
                edges = _grow_to(edges, ctr[_C_NE], max(2 * len(edges), ctr[_C_NE] + need))
            if ctr[_C_NV] + need > len(events):
                events = _grow_to(events, ctr[_C_NV], max(2 * len(events), ctr[_C_NV] + need))
            if ctr[_C_NT] + need > len(touched):
                touched = _grow_to(touched, ctr[_C_NT], max(2 * len(touched), ctr[_C_NT] + need))
        else:
            width = max(2 * width, need)
            scratch = np.zeros((5, width), np.int64)
    return (edges, ctr[_C_NE], events, ctr[_C_NV], ctr[_C_CREATED], ctr[_C_UNKNOWN], ctr[_C_CONFLICT],
            ctr[_C_OVERLAP], touched, ctr[_C_NT])  # fmt: skip


@nb.njit(cache=True, nogil=True)
def _grow_to(buf: I64, n: int, size: int) -> I64:
    """A buffer of ``size`` rows (entries) holding the first ``n`` of ``buf``."""
    bigger = np.empty((size, *buf.shape[1:]), np.int64)
    bigger[:n] = buf[:n]
    return bigger


@nb.njit(cache=True, nogil=True)
def _forward_steps(
    tx_rec: npt.NDArray[np.void],
    out_rec: npt.NDArray[np.void],
    out_tx: I64,
    in_txo: I64,
    in_addr: I64,
    time: I64,
    policy: int,
    hops: int,
    min_amount: int,
    until: int,
    service: Bools,
    superc: Bools,
    txo_taint: I64,
    followed: Bools,
    state: npt.NDArray[np.void],
    bits1: npt.NDArray[np.uint64],
    bits2: npt.NDArray[np.uint64],
    absorb: bool,
    edges: I64,
    events: I64,
    touched: I64,
    in_buf: I64,
    taint_buf: I64,
    dst_buf: I64,
    parts_buf: I64,
    rem_buf: I64,
    ahead: I64,
    ctr: I64,
) -> int:
    """The forward walk (see :func:`_forward`) from the queue in ``bits1``/``bits2`` and the counters in
    ``ctr``, until the queue is empty (:data:`_DONE`), a seed transaction is reached by another seed
    (``ctr[_C_CONFLICT]``; :data:`_DONE`), or the next transaction needs more room in the row buffers
    (:data:`_ROOM`) or the scratch buffers (:data:`_SCRATCH`) than they have: it is then put back in
    the queue and ``ctr[_C_NEED]`` says how much."""
    ne = ctr[_C_NE]
    nv = ctr[_C_NV]
    nt = ctr[_C_NT]
    qn = ctr[_C_QN]
    cur = ctr[_C_CUR]
    created = ctr[_C_CREATED]
    unknown_txs = ctr[_C_UNKNOWN]
    overlap = ctr[_C_OVERLAP]
    status = _DONE
    pull = policy in (FIFO, LIFO)
    timed = until < _I64_MAX
    width = len(in_buf)
    na = 0
    while qn > 0:
        s, cur = _qpop(bits1, bits2, cur)
        qn -= 1
        rec = tx_rec[s]
        need = rec.n_out + 1
        if ne + need > len(edges) or nv + need > len(events) or nt + need > len(touched):
            status = _ROOM
        elif need > width or rec.n_in > width:
            status = _SCRATCH
            need = max(need, rec.n_in)
        if status != _DONE:
            cur = _qpush(bits1, bits2, s, cur)
            qn += 1
            ctr[_C_NEED] = need
            break
        # the window ahead[:na]: the next queued transactions in order (kept from one transaction to the
        # next, extended by one, and refilled only when a push lands inside it)
        if na > 0 and ahead[0] == s:
            for k in range(na - 1):
                ahead[k] = ahead[k + 1]
            na -= 1
        else:
            na = 0
        last = ahead[na - 1] if na > 0 else s
        while na < _AHEAD and na < qn:
            x = _qpeek(bits1, bits2, last)
            if x < 0:
                break
            ahead[na] = x
            na += 1
            last = x
        if qn > 0:  # fetch ahead what the next transactions will read
            if na >= _D_REC:
                _prefetch(tx_rec, ahead[_D_REC - 1])
                _prefetch(state, ahead[_D_REC - 1])
            if na >= _D_OUT:
                n2 = ahead[_D_OUT - 1]
                r2 = tx_rec[n2]
                _prefetch(out_rec, r2.out0)
                _prefetch(out_rec, r2.out0 + max(r2.n_out - 1, 0))
                if state[n2].taint > 0:
                    _prefetch(in_addr, r2.in0 + state[n2].first)
            if na >= _D_STOP:
                r1 = tx_rec[ahead[_D_STOP - 1]]
                for j in range(r1.out0, r1.out0 + min(r1.n_out, 4)):
                    a1 = out_rec[j].addr
                    if a1 >= 0 and a1 < len(service):
                        _prefetch(service, a1)
                    if a1 >= 0 and a1 < len(superc):
                        _prefetch(superc, a1)
                    sp1 = out_rec[j].spender
                    if sp1 >= 0:
                        _prefetch(state, sp1)
        st = state[s]
        o0 = rec.out0
        no = rec.n_out
        i0 = rec.in0
        ni = rec.n_in
        seed = st.hop == 1
        lens = in_buf[:0]
        taints = taint_buf[:0]
        known = 0
        first_unknown = -1
        if pull:
            lens = in_buf[:ni]
            taints = taint_buf[:ni]
            lens[:] = 0
            taints[:] = 0
            total = 0
            first_t = -1
            best = -1
            best_t = 0
            hmin = _I64_MAX
            for k in range(ni):
                o = in_txo[i0 + k]
                if o < 0:
                    if first_unknown < 0:
                        first_unknown = k
                    continue
                v = out_rec[o].value
                lens[k] = v
                known += v
                t = txo_taint[o]
                if t > 0 and followed[o]:  # an output that ended as an endpoint is not pulled in again
                    taints[k] = t
                    total += t
                    if first_t < 0:
                        first_t = k
                    h = state[out_tx[o]].hop - 1
                    if h < hmin:
                        hmin = h
                    if t > best_t:
                        best_t = t
                        best = k
            if not seed and total > 0:
                st.hop = hmin + 2
                st.best = best
        else:
            total = st.taint
            first_t = st.first
        if seed and total > 0 and not absorb:
            ctr[_C_CONFLICT] = s  # a seed reached by another
            break
        hop = 0 if seed else st.hop - 1
        parts = parts_buf[: no + 1]
        if total > 0:
            vout = 0
            for j in range(no):
                vout += out_rec[o0 + j].value
            fee = rec.fee
            if fee < 0:
                fee = -1 - fee
                unknown_txs += 1
                if pull:
                    lens[first_unknown] = vout + fee - known
            dst = dst_buf[: no + 1]
            for j in range(no):
                dst[j] = out_rec[o0 + j].value
            dst[no] = fee
            parts[:] = 0
            if policy == LIFO:
                _line(lens[::-1].copy(), taints[::-1].copy(), dst, parts)
            else:
                _distribute_into(policy, total, lens, taints, dst, no, parts, rem_buf)
            if policy == POISON:
                created += vout + fee - total
            src = in_addr[i0 + first_t]
            for j in range(no):
                o = o0 + j
                t = parts[j]
                if seed:
                    t += txo_taint[o]
                    v = out_rec[o].value
                    if t > v:  # a seed output reached by another seed (absorb)
                        overlap += t - v
                        t = v
                    parts[j] = t
                if pull:
                    txo_taint[o] = t
                if t > 0:
                    orec = out_rec[o]
                    _put(edges, ne, s, j, src, orec.addr, orec.value, t, hop)
                    ne += 1
            if parts[no] > 0:
                _put(edges, ne, s, -1, src, FEE_ADDRESS, fee, parts[no], hop)
                ne += 1
                _put(events, nv, s, K_FEES, FEE_ADDRESS, parts[no], hop, -1, 0)
                nv += 1
        else:  # a seed transaction that no other seed reaches: its own seed outputs
            for j in range(no):
                parts[j] = txo_taint[o0 + j]
        for j in range(no):
            t = parts[j]
            if t <= 0:
                continue
            o = o0 + j
            orec = out_rec[o]
            a = orec.addr
            kind = _stop_kind(a, t, service, superc, min_amount)
            if kind < 0:
                sp = orec.spender
                if sp < 0:
                    kind = K_UNSPENT
                elif hop >= hops or (timed and time[sp] > until):
                    kind = K_BEYOND
                else:
                    if pull:
                        followed[o] = True
                    pos = orec.spender_pos
                    nxt = state[sp]
                    if nxt.hop == 0:
                        nxt.hop = hop + 2
                        cur = _qpush(bits1, bits2, sp, cur)
                        qn += 1
                        if na > 0 and sp < ahead[na - 1]:
                            na = 0  # the window no longer lists the next transactions
                        touched[nt] = sp
                        nt += 1
                    elif hop + 2 < nxt.hop:
                        nxt.hop = hop + 2
                    if nxt.taint == 0:
                        nxt.first = pos
                        nxt.best = pos
                        nxt.best_t = t
                    else:
                        if pos < nxt.first:
                            nxt.first = pos
                        if t > nxt.best_t or (t == nxt.best_t and pos < nxt.best):
                            nxt.best = pos
                            nxt.best_t = t
                    nxt.taint += t
            if kind >= 0:
                _put(events, nv, s, kind, a, t, hop, o, 0)
                nv += 1
    ctr[_C_NE] = ne
    ctr[_C_NV] = nv
    ctr[_C_NT] = nt
    ctr[_C_QN] = qn
    ctr[_C_CUR] = cur
    ctr[_C_CREATED] = created
    ctr[_C_UNKNOWN] = unknown_txs
    ctr[_C_OVERLAP] = overlap
    return status


@nb.njit(cache=True, nogil=True)
def _forward_preds(
    touched: I64, state: npt.NDArray[np.void], in_off: I64, in_txo: I64, out_tx: I64, tx_pred: I64
) -> None:
    """``tx_pred`` (predecessor + 1) of the transactions a forward walk processed, from the input that
    pushed the most taint into each (seeds: none)."""
    for s in touched:
        if state[s].hop >= 2:
            tx_pred[s] = out_tx[in_txo[in_off[s] + state[s].best]] + 1


# --- backward ------------------------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True)
def _backward(
    out_off: I64,
    out_value: I64,
    out_addr: I64,
    out_spender: I64,
    out_tx: I64,
    in_off: I64,
    in_txo: I64,
    in_value: I64,
    in_addr: I64,
    time: I64,
    is_coinbase: Bools,
    seed_tx: I64,
    seed_txo: Bools,
    policy: int,
    hops: int,
    min_amount: int,
    since: int,
    service: Bools,
    superc: Bools,
    txo_taint: I64,
    tx_hop: I64,
    tx_pred: I64,
    queued: Bools,
    absorb: bool,
) -> tuple[I64, int, I64, int, int, int, int, int, I64, int]:
    """Backward trace (see :func:`_forward` for the arrays, ``absorb`` and the result); a binary heap
    (largest index first) for its queue, ``tx_hop``/``tx_pred``/``queued`` for its marks."""
    edges = np.empty((64, _COLS), np.int64)
    events = np.empty((64, _COLS), np.int64)
    ne = 0
    nv = 0
    heap = np.empty(64, np.int64)
    hn = 0
    created = 0
    unknown_txs = 0
    overlap = 0
    touched = np.empty(64, np.int64)
    nt = 0
    for s in seed_tx:
        tx_hop[s] = 2  # hop 1
        queued[s] = True
        if hn == len(heap):
            heap = _grow(heap)
        _hpush(heap, hn, -s)
        hn += 1
        if nt == len(touched):
            touched = _grow(touched)
        touched[nt] = s
        nt += 1
    while hn > 0:
        s = -_hpop(heap, hn)
        hn -= 1
        o0 = out_off[s]
        no = out_off[s + 1] - o0
        i0 = in_off[s]
        ni = in_off[s + 1] - i0
        total = 0
        first_out = -1
        best = -1
        best_t = 0
        hmin = _I64_MAX
        for j in range(no):
            o = o0 + j
            t = txo_taint[o]
            if t <= 0:
                continue
            total += t
            if first_out < 0:
                first_out = j
            if not seed_txo[o]:
                sp = out_spender[o]
                if tx_hop[sp] - 1 < hmin:
                    hmin = tx_hop[sp] - 1
                if t > best_t:
                    best_t = t
                    best = sp
        if hmin == _I64_MAX:
            hop = 1  # a seed transaction
        else:
            hop = hmin + 1
            tx_hop[s] = hop + 1
            tx_pred[s] = best + 1
        if total == 0:
            continue
        if is_coinbase[s] or hop > hops:
            kind = K_ORIGIN if is_coinbase[s] else K_BEYOND
            for j in range(no):
                o = o0 + j
                if txo_taint[o] > 0:
                    if nv == len(events):
                        events = _grow(events)
                    _put(events, nv, s, kind, out_addr[o], txo_taint[o], hop, o, 0)
                    nv += 1
            continue
        vout = 0
        for j in range(no):
            vout += out_value[o0 + j]
        lens = np.zeros(ni, np.int64)
        known = 0
        first_unknown = -1
        for k in range(ni):
            o = in_txo[i0 + k]
            if o < 0:
                if first_unknown < 0:
                    first_unknown = k
            else:
                lens[k] = out_value[o]
                known += out_value[o]
        fee = max(0, known - vout)
        if first_unknown >= 0:
            lens[first_unknown] = vout + fee - known
            unknown_txs += 1
        src_len = np.empty(no + 1, np.int64)
        src_taint = np.zeros(no + 1, np.int64)
        src_len[:no] = out_value[o0 : o0 + no]
        src_len[no] = fee
        src_taint[:no] = txo_taint[o0 : o0 + no]
        if policy == LIFO:
            rparts = np.zeros(ni, np.int64)
            _line(src_len, src_taint, lens[::-1].copy(), rparts)
            parts = rparts[::-1].copy()
        else:
            parts = _distribute(policy, total, src_len, src_taint, lens, ni)
        if policy == POISON:
            created += vout + fee - total
        dst = out_addr[o0 + first_out]
        for k in range(ni):
            x = parts[k]
            if x <= 0:
                continue
            r = i0 + k
            o = in_txo[r]
            if ne == len(edges):
                edges = _grow(edges)
            _put(edges, ne, s, k, in_addr[r], dst, in_value[r], x, hop)
            ne += 1
            if o < 0:
                if nv == len(events):
                    events = _grow(events)
                _put(events, nv, s, K_ORIGIN, in_addr[r], x, hop, -1, 0)
                nv += 1
                continue
            a = out_addr[o]
            kind = _stop_kind(a, x, service, superc, min_amount)
            if kind < 0:
                p = out_tx[o]
                if hop >= hops or time[p] < since:
                    kind = K_BEYOND
                else:
                    if seed_txo[o] and not absorb:
                        return edges, ne, events, nv, created, unknown_txs, p, 0, touched, nt
                    txo_taint[o] += x
                    if txo_taint[o] > out_value[o]:  # a seed output reached by another seed (absorb)
                        overlap += txo_taint[o] - out_value[o]
                        txo_taint[o] = out_value[o]
                    if not queued[p]:
                        queued[p] = True
                        if hn == len(heap):
                            heap = _grow(heap)
                        _hpush(heap, hn, -p)
                        hn += 1
                        if nt == len(touched):
                            touched = _grow(touched)
                        touched[nt] = p
                        nt += 1
            if kind >= 0:
                if nv == len(events):
                    events = _grow(events)
                _put(events, nv, s, kind, a, x, hop, o, 0)
                nv += 1
    return edges, ne, events, nv, created, unknown_txs, -1, overlap, touched, nt


@nb.njit(cache=True, nogil=True)
def _paths(tx_pred: I64, ends: I64) -> tuple[I64, I64]:
    """CSR of the predecessor chains ending at each of ``ends``, seed first."""
    off = np.zeros(len(ends) + 1, np.int64)
    for e in range(len(ends)):
        d = ends[e]
        m = 1
        while tx_pred[d] > 0:
            d = tx_pred[d] - 1
            m += 1
        off[e + 1] = off[e] + m
    flat = np.empty(off[-1], np.int64)
    for e in range(len(ends)):
        d = ends[e]
        k = off[e + 1] - 1
        flat[k] = d
        while tx_pred[d] > 0:
            d = tx_pred[d] - 1
            k -= 1
            flat[k] = d
    return off, flat


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


@nb.njit(cache=True, nogil=True)
def _reset(
    touched: I64, txo_dirty: bool, marks: bool, state: npt.NDArray[np.void], bits1: npt.NDArray[np.uint64],
    bits2: npt.NDArray[np.uint64], tx_hop: I64, tx_pred: I64, queued: Bools, txo_taint: I64, txo_flag: Bools,
    out_off: I64, seed_txos: I64,
) -> None:  # fmt: skip
    """Zero what a trace can have written: per touched (queued) transaction its marks, its queue bits
    (left set only when the walk stopped early) and, when the walk wrote them, its outputs' taint and
    flags (every output a walk writes belongs to a transaction it queued), and its ``tx_hop``,
    ``tx_pred`` and ``queued`` marks when it wrote those (``marks``); and the seed outputs."""
    for i in touched:
        if marks:
            queued[i] = False
            tx_hop[i] = 0
            tx_pred[i] = 0
        r = state[i]
        r.taint = 0
        r.best_t = 0
        r.hop = 0
        r.first = 0
        r.best = 0
        bits1[i >> 6] = 0
        bits2[i >> 12] = 0
        if txo_dirty:
            for k in range(out_off[i], out_off[i + 1]):
                txo_taint[k] = 0
                txo_flag[k] = False
    for t in seed_txos:
        txo_taint[t] = 0
        txo_flag[t] = False


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
