"""The compiled forward walk of :func:`fundtrail.tracing.utxo_trace.trace_utxo`: the queue (a two-level
bitmap over dense transaction indexes, smallest first), the per-transaction ``STATE`` records the
tainted outputs push into, the driver :func:`_forward` that owns the buffers, the walk itself
(:func:`_forward_steps`) and the predecessors it leaves (:func:`_forward_preds`). The policies and stops
are described in :mod:`fundtrail.tracing.utxo_trace`; the shared helpers are in
:mod:`fundtrail.tracing.utxo_kernels`.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

from fundtrail.tracing.model import FEE_ADDRESS
from fundtrail.tracing.utxo_kernels import (
    _COLS,
    _I64_MAX,
    FIFO,
    I64,
    K_BEYOND,
    K_FEES,
    K_UNSPENT,
    LIFO,
    POISON,
    Bools,
    _borrow,
    _distribute_into,
    _line,
    _prefetch,
    _put,
    _stop_kind,
)

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
