"""The compiled building blocks the UTXO walks share (:mod:`fundtrail.tracing.utxo_forward`,
:mod:`fundtrail.tracing.utxo_backward`): the policy and end-point codes, row buffers, the binary heap,
the per-transaction distributions (haircut, poison, fifo/lifo on a line, tiho), the stop test, the two
LLVM intrinsics (``_prefetch``, ``_borrow``), the predecessor paths and the workspace reset.
:mod:`fundtrail.tracing.utxo_trace` (the public function) has the policies and the walks described.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import types
from numba.core import cgutils as _cgutils
from numba.extending import intrinsic

from fundtrail.tracing.arith import split_buffered

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

# codes the kernels use: the index in POLICIES / ENDPOINT_KINDS (a test checks they agree)
HAIRCUT, POISON, FIFO, LIFO, TIHO = 0, 1, 2, 3, 4
K_SERVICE, K_SUPER, K_UNSPENT, K_BELOW, K_BEYOND, K_FEES, K_ORIGIN = 0, 1, 2, 3, 4, 5, 6
_I64_MIN = np.iinfo(np.int64).min
_I64_MAX = np.iinfo(np.int64).max
_COLS = 7  # edge rows: tx, position, src, dst, amount, tainted, hop; event rows: tx, kind, addr, taint, hop


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


# --- LLVM intrinsics -----------------------------------------------------------------------------------

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


def _borrow_typing(typingctx: Any, arr: Any) -> Any:
    """``_borrow(a)`` in a kernel: the same array without its reference-counted owner (a null
    ``meminfo``), for passing to :func:`~fundtrail.tracing.utxo_forward._forward_steps`, which must not
    keep it. Numba counts references to arrays with atomic instructions wherever a function or branch
    takes one, and an atomic instruction waits for every memory access in flight: in the forward walk
    those waits cost more than the walk's own cache misses. On a borrowed array the count is skipped (a
    null test)."""
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
