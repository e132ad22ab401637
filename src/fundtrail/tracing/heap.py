"""A binary min-heap of int64 in a caller's array, for compiled code: the topological sort of the UTXO
graph and the backward walk share it."""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


@nb.njit(cache=True, nogil=True)
def heap_push(heap: I64, hn: int, x: int) -> None:
    """Push ``x`` on the min-heap ``heap[:hn]`` (the caller made room, and adds one to ``hn``)."""
    k = hn
    while k > 0 and heap[(k - 1) // 2] > x:
        heap[k] = heap[(k - 1) // 2]
        k = (k - 1) // 2
    heap[k] = x


@nb.njit(cache=True, nogil=True)
def heap_pop(heap: I64, hn: int) -> int:
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
