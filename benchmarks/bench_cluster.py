"""Clustering throughput: fundtrail's compiled union-find against GraphSense's own (the Rust package
``graphsense-clustering``) and SciPy's connected components, on the same generated input-address lists
of >= 10 million transactions.

Workload: per transaction 1 + Geometric(0.5) inputs (mean 2, capped at 64), addresses drawn from a
pool of 1.5 ids per transaction with a heavy tail (a tenth of the draws hit a hot 1% of the pool, as
exchanges' and services' addresses do). Unions = inputs - transactions (every input after the first is
one union operation), the same count for all three.

Timed: ours = ``union_groups`` over the CSR lists (with evidence recording, as the cluster job runs it,
and without) + the final root pass; GraphSense = ``process_transactions_arrow`` + ``get_mapping_min``;
SciPy = building the CSR adjacency + ``connected_components``. The partitions are compared (same
clusters, same min-id cluster ids). Peak memory: tracemalloc's peak over our run (NumPy reports its
buffers to it), input excluded, per union.
"""

from __future__ import annotations

import time
import tracemalloc
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fundtrail.clustering import unionfind

I64 = npt.NDArray[np.int64]
REFERENCE = "graphsense-clustering 0.2.0 (Rust): process_transactions_arrow + get_mapping_min(True)"


@dataclass
class ClusterBench:
    n_tx: int
    n_addr: int
    unions: int
    ours_s: float
    ours_no_evidence_s: float
    graphsense_s: float
    scipy_s: float
    same_partition: bool
    peak_bytes: int


def workload(n_tx: int, seed: int = 7) -> tuple[I64, I64, int]:
    rng = np.random.default_rng(seed)
    n_in = np.minimum(rng.geometric(0.5, n_tx), 64).astype(np.int64)  # >= 1, mean 2
    offsets = np.zeros(n_tx + 1, dtype=np.int64)
    np.cumsum(n_in, out=offsets[1:])
    n_addr = int(n_tx * 1.5)
    total = int(offsets[-1])
    # ids from 1: graphsense-clustering keeps id 0 as a placeholder
    members = rng.integers(1, n_addr, total, dtype=np.int64)
    hot = rng.random(total) < 0.1
    members[hot] = rng.integers(1, max(n_addr // 100, 2), int(hot.sum()), dtype=np.int64)
    return offsets, members, n_addr


def _ours(offsets: I64, members: I64, n_addr: int, evidence: bool) -> tuple[float, I64]:
    t0 = time.perf_counter()
    parent = unionfind.new_forest(n_addr)
    pos = np.empty(len(members) - (len(offsets) - 1) if evidence else 0, np.int64)
    unionfind.union_groups(parent, offsets, members, pos)
    root = unionfind.flatten(parent)
    return time.perf_counter() - t0, root


def run(n_tx: int = 10_000_000) -> ClusterBench:
    import gs_clustering
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    small_o, small_m, small_n = workload(1000)
    _ours(small_o, small_m, small_n, True)  # compile outside the timing
    offsets, members, n_addr = workload(n_tx)
    unions = len(members) - n_tx

    tracemalloc.start()
    ours_s, root = _ours(offsets, members, n_addr, True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    ours_plain_s, _ = _ours(offsets, members, n_addr, False)

    lists = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(members.astype(np.uint32)))
    t0 = time.perf_counter()
    gs = gs_clustering.Clustering(n_addr)
    gs.process_transactions_arrow(lists)
    mapping = gs.get_mapping_min(True)
    gs_s = time.perf_counter() - t0
    a = mapping.column(0).to_numpy().astype(np.int64)
    c = mapping.column(1).to_numpy().astype(np.int64)
    clustered = np.flatnonzero(np.bincount(root, minlength=n_addr)[root] > 1)
    same = bool(np.array_equal(a, clustered) and np.array_equal(c, root[clustered]))

    t0 = time.perf_counter()
    first = np.repeat(members[offsets[:-1]], np.diff(offsets))
    graph = csr_matrix((np.ones(len(members), dtype=np.int8), (first, members)), shape=(n_addr, n_addr))
    connected_components(graph, directed=False)
    scipy_s = time.perf_counter() - t0
    return ClusterBench(n_tx, n_addr, unions, ours_s, ours_plain_s, gs_s, scipy_s, same, peak)
