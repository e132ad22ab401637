"""Tracing: a 20-hop haircut trace over a generated UTXO graph of >= 10 million transfers, against a
straightforward networkx BFS with the same haircut arithmetic on the same graph; and the graph build
from the store.

Workload (generated, seeded): ``n`` transactions; the first 1,000 and any while fewer than 4 outputs are
unspent mint 50 BTC; every other transaction spends 1 + Geometric(0.55) random unspent outputs (at most
8), pays a fee of 0.1 % (at most 10,000 sat) and splits the rest over 1-3 outputs; 2,000 transactions per
block, addresses random. Written into a fresh store with Arrow (``transactions``, ``tx_inputs``,
``tx_outputs``, ``blocks``), then:

- build: ``utxo_graph.build`` (store -> CSR), edges = outputs + inputs, per second;
- ours: ``trace_utxo`` haircut forward, 20 hops, from an output of the first spending transaction:
  the compiled walk with every edge's amount and taint and every end point in arrays
  (``materialize=False``); also timed with the result made into Python objects; rate = tainted edges
  (tx, output) in the flow per second;
- reference: networkx 3.6 ``DiGraph`` (transactions as nodes, spends as edges, outputs as node data),
  a BFS in topological order (heap) applying the same haircut (floor of taint * value / input total,
  the remainder to the first output) to the same 20 hops; its graph build is timed apart.
"""

from __future__ import annotations

import heapq
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fundtrail.store.db import connect
from fundtrail.tracing import utxo_graph
from fundtrail.tracing.model import FEE_ADDRESS, Limits, Stops
from fundtrail.tracing.utxo_trace import trace_utxo

I64 = npt.NDArray[np.int64]
CHAIN = "bitcoin-regtest"
PER_BLOCK = 2000
REFERENCE = "networkx 3.6.1 DiGraph, BFS in topological order with the same haircut arithmetic (Python ints)"


@dataclass
class TraceBench:
    n_tx: int
    n_outputs: int
    n_inputs: int
    build_s: float
    ours_s: float  # the walk with its results in arrays
    ours_objects_s: float  # the same, also made into Python objects (what the CLI then prints)
    ours_edges: int
    reference_s: float
    reference_edges: int
    reference_build_s: float


@nb.njit(cache=True)
def generate(n: int, n_mint: int, seed: int) -> tuple[I64, I64, I64, I64, I64, I64]:
    np.random.seed(seed)
    cap = n * 4
    out_tx = np.empty(cap, np.int64)
    out_n = np.empty(cap, np.int64)
    out_val = np.empty(cap, np.int64)
    in_tx = np.empty(cap, np.int64)
    in_n = np.empty(cap, np.int64)
    in_prev = np.empty(cap, np.int64)
    pool = np.empty(cap, np.int64)
    pn = no = ni = 0
    for i in range(n):
        if i < n_mint or pn < 4:
            out_tx[no], out_n[no], out_val[no] = i, 0, 5_000_000_000
            pool[pn] = no
            pn += 1
            no += 1
            continue
        k = 1
        while np.random.random() < 0.45 and k < 8:
            k += 1
        total = 0
        for j in range(k):
            if pn == 0:
                break
            r = np.random.randint(0, pn)
            o = pool[r]
            pool[r] = pool[pn - 1]
            pn -= 1
            in_tx[ni], in_n[ni], in_prev[ni] = i, j, o
            ni += 1
            total += out_val[o]
        left = total - min(total // 1000, 10_000)
        m = np.random.randint(1, 4)
        for j in range(m):
            v = left if j == m - 1 else np.random.randint(0, left + 1)
            left -= v
            out_tx[no], out_n[no], out_val[no] = i, j, v
            pool[pn] = no
            pn += 1
            no += 1
    return out_tx[:no], out_n[:no], out_val[:no], in_tx[:ni], in_n[:ni], in_prev[:ni]


def write_store(path: Path, n: int) -> tuple[I64, I64, I64, I64, I64, I64]:
    out_tx, out_n, out_val, in_tx, in_n, in_prev = generate(n, 1000, 7)
    con = connect(path)
    ids = np.arange(n, dtype=np.int64)
    txid = pa.array([int(i).to_bytes(32, "big") for i in range(n)], pa.binary())
    in_cnt = np.bincount(in_tx, minlength=n)
    out_cnt = np.bincount(out_tx, minlength=n)
    addr = np.random.default_rng(1).integers(0, n, len(out_tx))
    nb_ = (n + PER_BLOCK - 1) // PER_BLOCK
    bids = np.arange(nb_, dtype=np.int64)
    zero = pa.array([b"\0" * 32] * nb_, pa.binary())
    tables: dict[str, pa.Table] = {
        "_b_txs": pa.table(
            {
                "tx_id": ids,
                "block_id": ids // PER_BLOCK,
                "position": (ids % PER_BLOCK).astype(np.int32),
                "txid": txid,
                "coinbase": in_cnt == 0,
                "n_in": in_cnt.astype(np.int32),
                "n_out": out_cnt.astype(np.int32),
            }
        ),
        "_b_blocks": pa.table({"block_id": bids, "hash": zero, "time": 1_600_000_000 + 600 * bids}),
        "_b_outs": pa.table(
            {"tx_id": out_tx, "n": out_n.astype(np.int32), "value": out_val, "address_id": addr}
        ),
        "_b_ins": pa.table(
            {
                "tx_id": in_tx,
                "n": in_n.astype(np.int32),
                "prev_vout": out_n[in_prev],
                "prev_tx_id": out_tx[in_prev],
                "address_id": addr[in_prev],
                "value": out_val[in_prev],
            }
        ),
    }
    for name, table in tables.items():
        con.register(name, table)
    con.execute(
        f"""INSERT INTO blocks (chain, block_id, hash, height, height_source, prev_hash, merkle_root, version,
               time, bits, nonce, tx_count, size, stripped_size, weight, merkle_ok, witness_ok, source,
               ingested_at)
            SELECT '{CHAIN}', block_id, hash, block_id, 'rpc', hash, hash, 1, time, 0, 0, {PER_BLOCK},
                   0, 0, 0, true, true, 'bench', now() FROM _b_blocks"""
    )
    con.execute(
        f"""INSERT INTO transactions SELECT '{CHAIN}', tx_id, block_id, position, txid, txid, 1, 0, 250, 1000,
               coinbase, n_in, n_out, NULL, 0, NULL, NULL FROM _b_txs"""
    )
    con.execute(
        f"INSERT INTO tx_outputs SELECT '{CHAIN}', tx_id, n, value, 'p2pkh', address_id, NULL FROM _b_outs"
    )
    con.execute(
        f"""INSERT INTO tx_inputs SELECT '{CHAIN}', tx_id, n, '\\x00'::BLOB, prev_vout::UINTEGER, 0, 0,
               prev_tx_id, address_id, value, true FROM _b_ins"""
    )
    for name in tables:
        con.unregister(name)
    con.close()
    return out_tx, out_n, out_val, in_tx, in_n, in_prev


def _reference(
    arrays: tuple[I64, ...], n: int, seed_tx: int, seed_taint: int, hops: int
) -> tuple[float, int, float]:
    import networkx as nx

    out_tx, _out_n, out_val, in_tx, _in_n, in_prev = arrays
    t0 = time.perf_counter()
    g = nx.DiGraph()
    spender = np.full(len(out_tx), -1, np.int64)
    spender[in_prev] = in_tx
    in_total = np.bincount(in_tx, weights=out_val[in_prev], minlength=n).astype(np.int64)
    starts = np.searchsorted(out_tx, np.arange(n + 1))
    for i in range(n):
        lo, hi = int(starts[i]), int(starts[i + 1])
        g.add_node(
            i, outputs=[(int(out_val[k]), int(spender[k])) for k in range(lo, hi)], in_total=int(in_total[i])
        )
    g.add_edges_from(zip(out_tx[spender >= 0].tolist(), spender[spender >= 0].tolist()))
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    taint_in: dict[int, int] = {}
    hop: dict[int, int] = {seed_tx: 0}
    edges = 0
    heap = [seed_tx]
    first = first_pass = True
    while heap:
        tx = heapq.heappop(heap)
        node: dict[str, Any] = g.nodes[tx]
        outs = node["outputs"]
        if first:  # the seed transaction: its output 0 carries the whole seed taint
            shares = [seed_taint] + [0] * (len(outs) - 1)
            first = False
        else:  # haircut: outputs and fee in proportion to value, largest remainder, ties to the lowest
            t, total = taint_in.pop(tx), node["in_total"]
            weights = [v for v, _s in outs] + [total - sum(v for v, _s in outs)]
            shares = [t * w // total for w in weights]
            left = t - sum(shares)
            for k in sorted(range(len(weights)), key=lambda k: (-(t * weights[k] % total), k))[:left]:
                shares[k] += 1
            shares = shares[:-1]  # the fee's share ends there
        seed_outputs = first_pass
        first_pass = False
        for (v, sp), s in zip(outs, shares):
            if s <= 0:
                continue
            edges += 0 if seed_outputs else 1  # the seed output is where the trace starts, not an edge
            if sp < 0 or hop[tx] + 1 > hops:
                continue
            if sp not in taint_in:
                taint_in[sp] = 0
                hop[sp] = hop[tx] + 1
                heapq.heappush(heap, sp)
            hop[sp] = min(hop[sp], hop[tx] + 1)  # hops: the shortest path from the seed
            taint_in[sp] += s
            del v
    return time.perf_counter() - t0, edges, build_s


def run(n_tx: int = 5_000_000, hops: int = 20) -> TraceBench:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.duckdb"
        arrays = write_store(path, n_tx)
        con = connect(path, read_only=True)
        t0 = time.perf_counter()
        graph = utxo_graph.build(con, CHAIN)
        build_s = time.perf_counter() - t0
        con.close()
    out_tx = arrays[0]
    in_tx = arrays[3]
    seed_tx = int(in_tx[0])  # the first transaction that spends something
    seed_out = int(np.searchsorted(out_tx, seed_tx))
    seed_value = int(arrays[2][seed_out])
    n_addr = n_tx + 1
    stops = Stops(service=np.zeros(n_addr, np.bool_), super_cluster=np.zeros(n_addr, np.bool_))
    limits = Limits(hops=hops)
    trace_utxo(graph, [(seed_tx, 0)], None, "haircut", "forward", Limits(hops=2), stops)  # compile
    t0 = time.perf_counter()
    flow = trace_utxo(graph, [(seed_tx, 0)], None, "haircut", "forward", limits, stops, materialize=False)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    trace_utxo(graph, [(seed_tx, 0)], None, "haircut", "forward", limits, stops)
    objects_s = time.perf_counter() - t0
    ref_s, ref_edges, ref_build_s = _reference(arrays, n_tx, seed_tx, seed_value, hops)
    assert flow.edge_rows is not None
    ours_edges = int((flow.edge_rows[:, 3] != FEE_ADDRESS).sum())  # (tx, output) edges, as the reference
    return TraceBench(
        n_tx, len(out_tx), len(in_tx), build_s, ours_s, objects_s, ours_edges, ref_s, ref_edges, ref_build_s
    )


if __name__ == "__main__":
    import sys

    print(run(int(sys.argv[1]) if len(sys.argv) > 1 else 5_000_000))
