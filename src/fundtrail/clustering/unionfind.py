"""Union-find over dense integer address ids, compiled with Numba.

One ``parent`` array indexed by address id holds the forest. The root of every set is its smallest
member (the union links the larger root under the smaller), so the cluster id is the minimum address
id of the cluster, the convention GraphSense's ``get_mapping_min`` uses; no rank or min array is kept.
``find`` halves paths as it walks, which keeps trees shallow (amortised near-constant time in practice).

Every union that joins two different sets is recorded (the two addresses and the evidence tx), so the
recorded edges of a cluster form a spanning tree of it: the chain of evidence ``explain-cluster`` walks.
A capped union (heuristics other than multi-input) is refused when the joined set would exceed
``max_size``; refusals are recorded too.
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


@nb.njit(cache=True, nogil=True)
def find(parent: I64, x: int) -> int:
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@nb.njit(cache=True, nogil=True)
def union_groups(parent: I64, offsets: I64, members: I64, out_pos: I64) -> int:
    """Union every group's members (``members[offsets[g]:offsets[g+1]]``) with its first member.
    Records the position in ``members`` of each member whose union merged two sets (``out_pos``, sized
    at least ``len(members) - groups``; :func:`merged_pairs` turns them into address pairs) and returns
    the number of merges; with an empty ``out_pos`` nothing is recorded."""
    record = len(out_pos) > 0
    n = 0
    for g in range(len(offsets) - 1):
        lo = offsets[g]
        hi = offsets[g + 1]
        if hi - lo < 2:
            continue
        ra = find(parent, members[lo])
        for k in range(lo + 1, hi):
            rb = find(parent, members[k])
            if ra == rb:
                continue
            if ra < rb:
                parent[rb] = ra
            else:
                parent[ra] = rb
                ra = rb
            if record:
                out_pos[n] = k
            n += 1
    return n


def merged_pairs(offsets: I64, members: I64, group_tx: I64, pos: I64) -> tuple[I64, I64, I64]:
    """(first input, merged input, tx) for the merge positions :func:`union_groups` recorded."""
    g = np.searchsorted(offsets, pos, side="right") - 1
    return members[offsets[g]], members[pos], group_tx[g]


@nb.njit(cache=True, nogil=True)
def union_pairs_capped(
    parent: I64,
    size: I64,
    a: I64,
    b: I64,
    tx: I64,
    max_size: int,
    out_a: I64,
    out_b: I64,
    out_tx: I64,
    ref_idx: I64,
    ref_size: I64,
) -> tuple[int, int]:
    """Union the pairs ``(a[i], b[i])`` in order, keeping ``size`` (per root) current, refusing a union
    whose result would exceed ``max_size`` (< 0: no cap). Returns (merges, refusals); the merges go to
    ``out_*``, the refused pair indexes and the sizes they would have made to ``ref_idx``/``ref_size``."""
    n = 0
    r = 0
    for i in range(len(a)):
        ra = find(parent, a[i])
        rb = find(parent, b[i])
        if ra == rb:
            continue
        joined = size[ra] + size[rb]
        if max_size >= 0 and joined > max_size:
            ref_idx[r] = i
            ref_size[r] = joined
            r += 1
            continue
        if ra < rb:
            parent[rb] = ra
            size[ra] = joined
        else:
            parent[ra] = rb
            size[rb] = joined
        out_a[n] = a[i]
        out_b[n] = b[i]
        out_tx[n] = tx[i]
        n += 1
    return n, r


@nb.njit(cache=True, nogil=True)
def flatten(parent: I64) -> I64:
    """Point every id straight at its root (= cluster id, the smallest member), in place; returns
    ``parent``, which now maps each id to its cluster id. A root is smaller than its members, so one
    ascending pass sees every parent already flat."""
    for x in range(len(parent)):
        parent[x] = parent[parent[x]]
    return parent


def roots(parent: I64) -> I64:
    """A flat copy of the forest: each id's cluster id (``parent`` is left flattened too)."""
    return flatten(parent).copy()


def new_forest(n: int) -> I64:
    return np.arange(n, dtype=np.int64)


def sizes(root_of: I64) -> I64:
    """The size of every set, indexed by its root (0 for ids that are not roots)."""
    return np.bincount(root_of, minlength=len(root_of)).astype(np.int64)
