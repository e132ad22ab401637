"""Run every benchmark and print one JSON line per result (progress goes to stderr).

Usage: ``make bench`` or ``.venv/bin/python benchmarks/run.py [--data DIR] [--quick] [--check]``.
Each line is ``{"name", "ours", "reference", "ratio", "unit", "target", "met", "machine", ...}``; the
reference is measured in the same run, on the same bytes. Lines are also appended to
``bench-results.jsonl`` at the repository root.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout even without the editable install

import bench_api  # noqa: E402
import bench_cluster  # noqa: E402
import bench_decode  # noqa: E402
import bench_detect  # noqa: E402
import bench_etl  # noqa: E402
import bench_exposure  # noqa: E402
import bench_ingest  # noqa: E402
import bench_labels  # noqa: E402
import bench_screen  # noqa: E402
import bench_simulate  # noqa: E402
import bench_trace  # noqa: E402
from bench_common import load_blocks, log, machine, result_line  # noqa: E402

DECODE_TARGET = 25.0  # decode >= 25x python-bitcoinlib
INGEST_TARGET = 10.0  # end-to-end ingest >= 10x python-bitcoinlib's decode alone
ETL_TARGET = 0.5  # ethereum-etl ingest >= 0.5x pyarrow's bare CSV read of the same files
CLUSTER_TARGET = 1.0  # union-find >= graphsense-clustering's unions/s, same partition
CLUSTER_BYTES_PER_UNION = 40  # peak memory per union
TRACE_TARGET = 20.0  # haircut trace edges/s >= 20x a networkx BFS with the same arithmetic
GRAPH_BUILD_TARGET = 1_000_000  # UTXO graph build from the store, edges/s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data", help="shared data dir")
    ap.add_argument("--quick", action="store_true", help="fewer rounds (a smoke test, noisier figures)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is not met")
    ap.add_argument("--out", type=Path, default=REPO / "bench-results.jsonl", help="JSONL file to append to")
    args = ap.parse_args(argv)

    mach = machine()
    log(f"machine: {json.dumps(mach)}")
    data = load_blocks(args.data)
    mb = data.n_bytes / 1e6

    dec = bench_decode.run(data, rounds=2 if args.quick else 7, inner=3 if args.quick else 5)
    ing = bench_ingest.run(data, rounds=2 if args.quick else 9, expect_txs=dec.n_txs)

    common: dict[str, Any] = {
        "data": f"{dec.n_blocks} real mainnet blocks, {dec.n_txs} txs, {mb:.2f} MB",
        "machine": mach,
    }
    ref = dec.reference.best
    ref_gc = dec.reference_gc_on.best
    lines = [
        result_line(
            "bitcoin_decode_throughput", mb / dec.ours.best, mb / ref, "MB/s", bench_decode.REFERENCE,
            DECODE_TARGET,
            ours_tx_per_s=round(dec.n_txs / dec.ours.best),
            reference_tx_per_s=round(dec.n_txs / ref),
            ours_s=round(dec.ours.best, 5), reference_s=round(ref, 5),
            ratio_of_medians=round(dec.reference.median / dec.ours.median, 2),
            ratio_gc_on=round(ref_gc / dec.ours_gc_on.best, 2),
            met_gc_on=ref_gc / dec.ours_gc_on.best >= DECODE_TARGET,
            ours_gc_on_s=round(dec.ours_gc_on.best, 5), reference_gc_on_s=round(ref_gc, 5),
            hash_backend=dec.hash_backend,
            hashlib_floor_s=round(dec.hash_floor.best, 5),
            sha256_calls=dec.sha256_calls,
            ratio_bound_by_hashlib=round(ref / dec.hash_floor.best, 2),
            ours_hashlib_fallback_s=round(dec.ours_hashlib.best, 5),
            ratio_hashlib_fallback=round(ref / dec.ours_hashlib.best, 2),
            timing=f"best of {len(dec.ours.times)} (ours) / {len(dec.reference.times)} (reference), "
            "interleaved, one thread; ratio with the garbage collector off for both (as timeit), "
            "ratio_gc_on with it on (as an application runs)",
            **common,
        ),
        result_line(
            "bitcoin_ingest_end_to_end", mb / ing.ingest.best, mb / ref, "MB/s",
            bench_decode.REFERENCE + " (decode alone, from memory)", INGEST_TARGET,
            ours_tx_per_s=round(dec.n_txs / ing.ingest.best),
            reference_tx_per_s=round(dec.n_txs / ref),
            ours_s=round(ing.ingest.best, 5), reference_s=round(ref, 5),
            ours_median_s=round(ing.ingest.median, 5),
            ratio_of_medians=round(dec.reference.median / ing.ingest.median, 2),
            ratio_gc_on=round(ref_gc / ing.ingest.best, 2),
            met_gc_on=ref_gc / ing.ingest.best >= INGEST_TARGET,
            decode_share_s=round(dec.ours.best, 5),
            store_open_s=round(ing.open.median, 5), store_close_s=round(ing.close.median, 5),
            ratio_incl_open_close=round(ref / (ing.ingest.best + ing.open.median + ing.close.median), 2),
            duckdb_threads=ing.duckdb_threads,
            timing=f"best of {len(ing.ingest.times)} ingests, each into a fresh store, GC on (the "
            "reference with GC off for ratio, on for ratio_gc_on); ours reads the files (page cache), "
            "the reference starts from bytes in memory",
            **common,
        ),
    ]  # fmt: skip
    etl = bench_etl.run(args.data, copies=50 if args.quick else 200, rounds=2 if args.quick else 3)
    lines.append(
        result_line(
            "ethereum_etl_ingest", etl.rows / etl.ours_s, etl.rows / etl.reference_s, "rows/s",
            bench_etl.REFERENCE, ETL_TARGET, ours_s=round(etl.ours_s, 4),
            reference_s=round(etl.reference_s, 4),
            data=f"{etl.rows} rows (transactions + token transfers): the real export of blocks "
            "17,173,049-50 replicated under new block numbers and hashes",
            timing=f"best of {'2' if args.quick else '3'}, each into a fresh store", machine=mach,
        )
    )  # fmt: skip
    cl = bench_cluster.run(2_000_000 if args.quick else 10_000_000)
    lines.append(
        result_line(
            "clustering_unions", cl.unions / cl.ours_s, cl.unions / cl.graphsense_s, "unions/s",
            bench_cluster.REFERENCE, CLUSTER_TARGET,
            ours_s=round(cl.ours_s, 4), reference_s=round(cl.graphsense_s, 4),
            ours_without_evidence_per_s=round(cl.unions / cl.ours_no_evidence_s),
            scipy_per_s=round(cl.unions / cl.scipy_s), scipy_s=round(cl.scipy_s, 4),
            ratio_vs_scipy=round(cl.scipy_s / cl.ours_s, 2),
            same_partition=cl.same_partition,
            peak_bytes_per_union=round(cl.peak_bytes / cl.unions, 1),
            bytes_per_union_target=CLUSTER_BYTES_PER_UNION,
            met_memory=cl.peak_bytes / cl.unions <= CLUSTER_BYTES_PER_UNION,
            data=f"{cl.n_tx:,} generated transactions, {cl.unions:,} unions, {cl.n_addr:,} address ids "
            "(benchmarks/bench_cluster.py)",
            timing="one run each, same input; ours includes evidence recording and the final root pass",
            machine=mach,
        )
    )  # fmt: skip
    lines[-1]["met"] = lines[-1]["met"] and cl.same_partition and lines[-1]["met_memory"]
    tr = bench_trace.run(1_000_000 if args.quick else 5_000_000)
    graph_edges = tr.n_outputs + tr.n_inputs
    lines.append(
        result_line(
            "trace_haircut_20_hops", tr.ours_edges / tr.ours_s, tr.reference_edges / tr.reference_s,
            "edges/s", bench_trace.REFERENCE, TRACE_TARGET,
            ours_s=round(tr.ours_s, 3), reference_s=round(tr.reference_s, 3),
            ours_with_objects_s=round(tr.ours_objects_s, 3),
            ratio_with_objects=round(tr.reference_s / tr.ours_objects_s, 2),
            edges=tr.ours_edges, same_edges=tr.ours_edges == tr.reference_edges,
            reference_graph_build_s=round(tr.reference_build_s, 1),
            graph_build_edges_per_s=round(graph_edges / tr.build_s),
            graph_build_target=GRAPH_BUILD_TARGET,
            met_graph_build=graph_edges / tr.build_s >= GRAPH_BUILD_TARGET,
            data=f"{tr.n_tx:,} generated transactions, {tr.n_outputs:,} outputs (transfers), "
            f"{tr.n_inputs:,} inputs (benchmarks/bench_trace.py)",
            timing="one run each after a warm-up; ours = trace_utxo end to end (compiled walk and the "
            "Python result objects)",
            machine=mach,
        )
    )  # fmt: skip
    ex = bench_exposure.run()
    ex.update(target=None, met=bool(ex["same_result"]), machine=mach)
    lines.append(ex)
    for line in bench_detect.run(quick=args.quick):
        line["machine"] = mach
        lines.append(line)
    sim = bench_simulate.run(quick=args.quick)
    sim["machine"] = mach
    lines.append(sim)
    for line in bench_screen.run(quick=args.quick)["results"]:
        line["machine"] = mach
        lines.append(line)
    lab = bench_labels.run(args.data)
    lab["machine"] = mach
    lines.append(lab)
    api = bench_api.run(quick=args.quick)
    for line in api["results"]:
        line.update(machine=mach, setup=api["setup"])
        lines.append(line)
    with args.out.open("a") as f:
        for line in lines:
            text = json.dumps(line)
            print(text, flush=True)
            f.write(text + "\n")
    for line in lines:
        verdict = "met" if line["met"] else "NOT met"
        if line["target"] is None:
            log(f"{line['name']}: {line['ours']} {line['unit']} (reference {line['reference']}) {verdict}")
        elif line["unit"] in ("s", "ms"):
            log(f"{line['name']}: {line['ours']} {line['unit']} (target <= {line['target']}) {verdict}")
        elif line["unit"] == "addresses/s":  # an absolute rate target
            target = f"target >= {line['target']:,.0f}"
            log(f"{line['name']}: {line['ours']:,} {line['unit']} ({target}) {verdict}")
        elif line["unit"] == "requests/s":  # an absolute rate and a p99 target
            target = f"target >= {line['target']:,.0f}, p99 <= {line['target_p99_ms']} ms"
            got = f"{line['ours']:,} {line['unit']}, p99 {line['p99_ms']} ms"
            log(f"{line['name']}: {got} ({target}) {verdict}")
        else:
            log(f"{line['name']}: {line['ratio']}x (target {line['target']}x) {verdict}")
    return 1 if args.check and not all(line["met"] for line in lines) else 0


if __name__ == "__main__":
    raise SystemExit(main())
