"""The compiled backward walk of :func:`fundtrail.tracing.utxo_trace.trace_utxo`: transactions taken
from a binary heap, largest index first, their outputs' taint spread over their inputs. The policies and
stops are described in :mod:`fundtrail.tracing.utxo_trace`; the shared helpers are in
:mod:`fundtrail.tracing.utxo_kernels`.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from fundtrail.tracing.heap import heap_pop, heap_push
from fundtrail.tracing.utxo_kernels import (
    _COLS,
    _I64_MAX,
    I64,
    K_BEYOND,
    K_ORIGIN,
    LIFO,
    POISON,
    Bools,
    _distribute,
    _grow,
    _line,
    _put,
    _stop_kind,
)


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
    """Backward trace (see :func:`~fundtrail.tracing.utxo_forward._forward` for the arrays, ``absorb``
    and the result); a binary heap (largest index first) for its queue, ``tx_hop``/``tx_pred``/``queued``
    for its marks."""
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
        heap_push(heap, hn, -s)
        hn += 1
        if nt == len(touched):
            touched = _grow(touched)
        touched[nt] = s
        nt += 1
    while hn > 0:
        s = -heap_pop(heap, hn)
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
                        heap_push(heap, hn, -p)
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
