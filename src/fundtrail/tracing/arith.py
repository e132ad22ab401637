"""Exact integer arithmetic for taint: floor(a * b / c) without 128-bit integers, and a proportional
split of an integer total that neither creates nor loses a base unit. Compiled with Numba (callable from
Python and from other kernels).

``mul_div(a, b, c)`` for ``0 <= a, b <= c < 2**53``: the product needs up to 106 bits, so the quotient is
first estimated in double precision (``a * b / c`` in floats is off by at most a few units, because the
quotient is below ``2**53`` and each float operation has a relative error of ``2**-53``), then corrected
exactly: the true remainder ``a*b - q*c`` is small (a few times ``c``, far below ``2**63``), so computing
it in wrapping 64-bit arithmetic gives its exact value even though ``a*b`` and ``q*c`` each overflow. A
few steps of ``q += 1`` / ``q -= 1`` bring the remainder into ``[0, c)``. In plain Python (no wrapping)
the same code runs on exact integers and gives the same answer.

``split(total, weights)``: the largest-remainder rule (Hamilton's method). With ``W = sum(weights)`` and
``0 <= total <= W``: each part is first ``floor(total * w_i / W)``; the units these floors leave over
(fewer than the number of non-zero weights) go one each to the parts with the largest remainders
``total * w_i mod W``, ties to the lowest index. Hence ``sum(parts) == total`` exactly (no unit created
or lost), every part is ``floor`` or ``ceil`` of its exact share, and no part exceeds its weight (a part
is rounded up only when its exact share is not a whole number, and that share is below its weight).
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]

EXACT_LIMIT = 2**53  # operands of mul_div and totals of split stay below this (21e14 satoshi do)
_SELECT_SORT_MIN = 16  # above this many parts, leftover units are placed by one stable sort


@nb.njit(cache=True, nogil=True)
def mul_div_rem(a: int, b: int, c: int) -> tuple[int, int]:
    """``(q, r)`` with ``a * b == q * c + r`` and ``0 <= r < c``, for ``0 <= a, b <= c < 2**53``, ``c > 0``
    (see the module docstring for why the wrapped 64-bit remainder is exact)."""
    q = np.int64(np.float64(a) * np.float64(b) / np.float64(c))
    r = np.int64(a) * np.int64(b) - q * np.int64(c)  # wraps; the true value is small, so this is exact
    while r < 0:
        q -= 1
        r += c
    while r >= c:
        q += 1
        r -= c
    return int(q), int(r)


@nb.njit(cache=True, nogil=True)
def mul_div(a: int, b: int, c: int) -> int:
    """``floor(a * b / c)`` exactly, for ``0 <= a, b <= c < 2**53``, ``c > 0``."""
    q, _ = mul_div_rem(a, b, c)
    return q


@nb.njit(cache=True, nogil=True)
def split_into(total: int, weights: I64, parts: I64) -> None:
    """:func:`split` writing into ``parts[:len(weights)]`` (kernels reuse one buffer). Requires
    ``0 <= total <= sum(weights) < 2**53`` and non-negative weights."""
    split_buffered(total, weights, parts, np.empty(len(weights), np.int64))


@nb.njit(cache=True, nogil=True)
def split_buffered(total: int, weights: I64, parts: I64, rem: I64) -> None:
    """:func:`split_into` with a caller's scratch buffer ``rem`` (at least ``len(weights)`` long): a
    kernel splitting once per transaction allocates nothing."""
    n = len(weights)
    wsum = np.int64(0)
    for i in range(n):
        wsum += weights[i]
    if total == 0 or wsum == 0:
        for i in range(n):
            parts[i] = 0
        return
    given = np.int64(0)
    for i in range(n):
        q, r = mul_div_rem(weights[i], total, int(wsum))
        parts[i] = q
        rem[i] = r
        given += q
    left = total - given
    if left == 0:
        return
    if n <= _SELECT_SORT_MIN:
        for _ in range(left):
            best = -1
            for i in range(n):
                if rem[i] > 0 and (best < 0 or rem[i] > rem[best]):
                    best = i
            parts[best] += 1
            rem[best] = 0
    else:
        order = np.argsort(-rem[:n], kind="mergesort")  # stable: equal remainders keep index order
        for k in range(left):
            parts[order[k]] += 1


@nb.njit(cache=True, nogil=True)
def split(total: int, weights: I64) -> I64:
    """``total`` distributed over ``weights`` by the largest-remainder rule (module docstring):
    ``sum(parts) == total``, each part within one unit of its exact share, ``parts[i] <= weights[i]``."""
    parts = np.zeros(len(weights), np.int64)
    split_into(total, weights, parts)
    return parts


def check_split_args(total: int, weights: I64) -> None:
    """The preconditions of :func:`split` as a Python check (raises ValueError)."""
    wsum = int(np.sum(weights, dtype=np.int64)) if len(weights) else 0
    if len(weights) and int(np.min(weights)) < 0:
        raise ValueError("split: negative weight")
    if not 0 <= total <= wsum:
        raise ValueError(f"split: total {total} outside [0, sum(weights) = {wsum}]")
    if wsum >= EXACT_LIMIT:
        raise ValueError("split: weights sum to 2**53 or more")
