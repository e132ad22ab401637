"""Compiled kernels of the exposure job: CSR adjacency, hop distances, the propagation of category shares
over the cluster flow graph, and the choice of the intermediaries indirect exposure came through.

The graph is given as edge arrays over dense node indices (``0 .. n-1``, one per cluster with flows),
one edge per (source cluster, destination cluster) with its amount as float64. Category data are dense
``n x K`` arrays (K = the categories carried on the chain). Every kernel reads and writes only arrays;
each node's sums run over its edges in CSR order, so a result does not depend on threads or on which
other nodes were computed.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
FAR = np.int32(2**30)  # hop distance of a node not reached


def csr(n: int, key: I64, other: I64, weight: F64) -> tuple[I64, I64, F64, I64]:
    """Adjacency of ``n`` nodes grouped by ``key`` (stable: edges of a node keep their given order):
    ``offsets``, neighbour (``other``) per slot, weight per slot and the edge index per slot."""
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(key, minlength=n), out=offsets[1:])
    order = _counting_order(offsets, key)
    return offsets, other[order], weight[order], order


@nb.njit(cache=True, nogil=True)
def _counting_order(offsets: I64, key: I64) -> I64:
    """The stable counting-sort permutation of ``key`` (one pass, no comparison sort)."""
    fill = offsets[:-1].copy()
    order = np.empty(len(key), dtype=np.int64)
    for i in range(len(key)):
        k = key[i]
        order[fill[k]] = i
        fill[k] += 1
    return order


@nb.njit(cache=True, nogil=True)
def distances(offsets: I64, nbr: I64, seeds: I64, max_depth: int) -> I32:
    """Hops from the nearest seed along the CSR's edges (breadth-first, up to ``max_depth``; ``FAR``
    for nodes not reached)."""
    n = len(offsets) - 1
    dist = np.full(n, 2**30, dtype=np.int32)
    frontier = np.empty(n, dtype=np.int64)
    m = 0
    for s in seeds:
        if dist[s] != 0:
            dist[s] = 0
            frontier[m] = s
            m += 1
    nxt = np.empty(n, dtype=np.int64)
    for depth in range(1, max_depth + 1):
        k = 0
        for i in range(m):
            v = frontier[i]
            for j in range(offsets[v], offsets[v + 1]):
                u = nbr[j]
                if dist[u] > depth:
                    dist[u] = depth
                    nxt[k] = u
                    k += 1
        if k == 0:
            break
        frontier, nxt = nxt, frontier
        m = k
    return dist


@nb.njit(cache=True, nogil=True, parallel=True)
def direct_amounts(offsets: I64, nbr: I64, w: F64, carries: U8) -> tuple[F64, F64]:
    """Per node: the amount over its edges from/to neighbours carrying each category (``n x K``), and
    its total over all edges (``n``)."""
    n = len(offsets) - 1
    k_n = carries.shape[1]
    direct = np.zeros((n, k_n), dtype=np.float64)
    total = np.zeros(n, dtype=np.float64)
    for c in nb.prange(n):
        t = 0.0
        for j in range(offsets[c], offsets[c + 1]):
            u = nbr[j]
            t += w[j]
            for k in range(k_n):
                if carries[u, k]:
                    direct[c, k] += w[j]
        total[c] = t
    return direct, total


@nb.njit(cache=True, nogil=True, parallel=True)
def _step(
    offsets: I64,
    nbr: I64,
    w: F64,
    carrier: U8,
    direct: F64,
    total: F64,
    prev: F64,
    cur: F64,
    level: I32,
    max_level: int,
) -> None:
    """One hop: ``cur[c] = sum over uncategorised neighbours u of w(u, c) * (direct[u] + prev[u]) /
    total[u]``, for the nodes with ``level <= max_level``."""
    n = len(offsets) - 1
    k_n = direct.shape[1]
    for c in nb.prange(n):
        if level[c] > max_level:
            continue
        for k in range(k_n):
            cur[c, k] = 0.0
        for j in range(offsets[c], offsets[c + 1]):
            u = nbr[j]
            if carrier[u] or total[u] <= 0.0:
                continue
            f = w[j] / total[u]
            for k in range(k_n):
                s = direct[u, k] + prev[u, k]
                if s > 0.0:
                    cur[c, k] += f * s


def propagate(
    offsets: I64,
    nbr: I64,
    w: F64,
    carrier: U8,
    direct: F64,
    total: F64,
    hops: int,
    level: I32,
) -> tuple[F64, F64, npt.NDArray[np.int8]]:
    """Indirect exposure after ``hops`` hops, the value after ``hops - 1`` (what a neighbour passes on
    at the last hop) and, per node and category, the first hop (2..hops) at which it was > 0 (0: never).

    A node is computed at hop ``h`` only when ``level[node] <= hops - h`` (its distance from the nodes
    whose result is wanted), so an incremental run computes the nodes it needs and nothing else; with
    ``level`` all zero every node is computed."""
    n, k_n = direct.shape
    prev = np.zeros((n, k_n), dtype=np.float64)
    cur = np.zeros((n, k_n), dtype=np.float64)
    first = np.zeros((n, k_n), dtype=np.int8)
    for h in range(2, hops + 1):
        _step(offsets, nbr, w, carrier, direct, total, prev, cur, level, hops - h)
        _first_hop(cur, first, level, hops - h, h)
        prev, cur = cur, prev
    # prev holds hop ``hops``, cur hop ``hops - 1`` (zeros below hop 2: indirect needs two hops)
    return prev, cur, first


@nb.njit(cache=True, nogil=True, parallel=True)
def _first_hop(cur: F64, first: npt.NDArray[np.int8], level: I32, max_level: int, h: int) -> None:
    n, k_n = cur.shape
    for c in nb.prange(n):
        if level[c] > max_level:
            continue
        for k in range(k_n):
            if first[c, k] == 0 and cur[c, k] > 0.0:
                first[c, k] = h


@nb.njit(cache=True, nogil=True)
def top_intermediaries(
    offsets: I64,
    nbr: I64,
    w: F64,
    slot_edge: I64,
    carrier: U8,
    direct: F64,
    total: F64,
    before_last: F64,
    first: npt.NDArray[np.int8],
    nodes: I64,
    cats: I64,
    top: int,
) -> tuple[I64, I64, I64, F64, I64]:
    """For each (node, category) pair of ``nodes``/``cats``, the ``top`` uncategorised neighbours that
    passed on the most of it (amount = w * their share before the last hop; ties: lower node index).
    Returns per row: the pair's position, the neighbour, the edge index, the amount and the hops
    (1 + the neighbour's own first hop for the category: 1 when it got it directly)."""
    m = len(nodes)
    cap = m * top
    out_pair = np.empty(cap, dtype=np.int64)
    out_u = np.empty(cap, dtype=np.int64)
    out_e = np.empty(cap, dtype=np.int64)
    out_amt = np.empty(cap, dtype=np.float64)
    out_hops = np.empty(cap, dtype=np.int64)
    best_u = np.empty(top, dtype=np.int64)
    best_e = np.empty(top, dtype=np.int64)
    best_a = np.empty(top, dtype=np.float64)
    r = 0
    for p in range(m):
        c = nodes[p]
        k = cats[p]
        found = 0
        for j in range(offsets[c], offsets[c + 1]):
            u = nbr[j]
            if carrier[u] or total[u] <= 0.0:
                continue
            s = direct[u, k] + before_last[u, k]
            if s <= 0.0:
                continue
            a = w[j] * s / total[u]
            # insertion into the sorted best list (amount desc, node index asc)
            pos = found
            while pos > 0 and (best_a[pos - 1] < a or (best_a[pos - 1] == a and best_u[pos - 1] > u)):
                pos -= 1
            if pos >= top:
                continue
            last = min(found, top - 1)
            for q in range(last, pos, -1):
                best_u[q] = best_u[q - 1]
                best_e[q] = best_e[q - 1]
                best_a[q] = best_a[q - 1]
            best_u[pos] = u
            best_e[pos] = slot_edge[j]
            best_a[pos] = a
            if found < top:
                found += 1
        for q in range(found):
            u = best_u[q]
            out_pair[r] = p
            out_u[r] = u
            out_e[r] = best_e[q]
            out_amt[r] = best_a[q]
            out_hops[r] = 2 if direct[u, k] > 0.0 else 1 + first[u, k]
            r += 1
    return out_pair[:r], out_u[:r], out_e[:r], out_amt[:r], out_hops[:r]
