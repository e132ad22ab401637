"""Detection quality and speed on simulated worlds (issue 8's benchmarks):

- per typology, the rules' precision and recall on a `small` world of a seed the detectors were not tuned
  on (seeds 1-4 were used in development; this uses 9): target recall >= 0.9 at precision >= 0.8 for
  every embedded typology a rule targets;
- the learned scorer trained on seed 1 and evaluated on seed 9: illicit-class F1 per chain, next to the
  published anchors (random forest on Elliptic 0.79, Weber et al. 2019; best GNN on AMLworld HI-Small
  0.68, Altman et al. 2023) — context, not a like-for-like comparison;
- (full run only) every detector over the `large` world (about 10 million transactions): target < 600 s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import log
from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.clustering.config import ClusterConfig
from fundtrail.clustering.engine import cluster
from fundtrail.detection.context import StoreContext
from fundtrail.detection.engine import run_detectors
from fundtrail.detection.scorer.evaluate import evaluate_world
from fundtrail.detection.scorer.model import train_world
from fundtrail.evaluation.detection import score_detection
from fundtrail.evaluation.run import stored_alerts, truth_chains
from fundtrail.ingest.bitcoin_files import ingest_block_files
from fundtrail.ingest.ethereum_etl import ingest_ethereum_etl
from fundtrail.labels.tagpack import import_tagpacks
from fundtrail.simulate.run import simulate
from fundtrail.simulate.scenario import load_scenario
from fundtrail.simulate.truth import Truth, read_truth
from fundtrail.store.db import connect

UNTUNED_SEED = 9
TRAIN_SEED = 1
RULE_TYPOLOGIES = (  # simulator typologies a rule targets
    "peeling_chain", "fan_out_fan_in", "mixing", "structuring", "round_tripping", "trade_disguise",
    "chain_hopping", "fast_cashout",
)  # fmt: skip
ANCHORS = {
    "Elliptic random forest (Weber et al. 2019)": 0.79,
    "AMLworld HI-Small best GNN (Altman et al. 2023)": 0.68,
}


def world_store(scenario: str, seed: int, tmp: Path) -> tuple[Any, Truth, dict[str, float]]:
    """Simulate, ingest both chains, import the world's labels, cluster: (connection, truth, seconds)."""
    times: dict[str, float] = {}
    t = time.perf_counter()
    s = simulate(load_scenario(scenario), seed, tmp / f"world-{seed}")
    times["simulate"] = time.perf_counter() - t
    con = connect(tmp / f"w{seed}.duckdb")
    t = time.perf_counter()
    ingest_block_files(con, sorted((s.out / "bitcoin").glob("blk*.dat")), REGTEST)
    e = s.out / "ethereum"
    ingest_ethereum_etl(
        con,
        "sim-ethereum",
        e / "blocks.csv",
        e / "transactions.csv",
        token_transfers=e / "token_transfers.csv",
    )
    times["ingest"] = time.perf_counter() - t
    import_tagpacks(con, s.out / "truth" / "labels.yaml")
    t = time.perf_counter()
    cluster(con, ClusterConfig())
    times["cluster"] = time.perf_counter() - t
    return con, read_truth(s.out), times


def quality(tmp: Path) -> list[dict[str, Any]]:
    con, truth, _ = world_store("small", UNTUNED_SEED, tmp)
    t = time.perf_counter()
    run_detectors(con)
    detect_s = time.perf_counter() - t
    ops, txs, addrs = truth.rows("operations"), truth.rows("operation_txs"), truth.rows("operation_addresses")
    result = score_detection(ops, txs, addrs, stored_alerts(con, truth_chains(truth))).as_json()
    lines: list[dict[str, Any]] = []
    for typology, s in sorted(result["typologies"].items()):
        p, r = s["precision"], s["recall"]
        targeted = typology in RULE_TYPOLOGIES
        lines.append(
            {
                "name": f"detect_{typology}",
                "ours": r,
                "reference": None,
                "ratio": None,
                "unit": "recall",
                "precision": p,
                "f1": s["f1"],
                "operations": s["operations"],
                "alerts": s["alerts"],
                "target": "recall >= 0.9 at precision >= 0.8" if targeted else "no rule targets it",
                "met": (
                    bool(r is not None and r >= 0.9 and p is not None and p >= 0.8) if targeted else None
                ),
                "world": f"small, seed {UNTUNED_SEED} (detectors tuned on seeds 1-4)",
                "detect_seconds": round(detect_s, 2),
            }
        )
    train_con, train_truth, _ = world_store("small", TRAIN_SEED, tmp)
    for chain in ("bitcoin-regtest", "sim-ethereum"):
        t = time.perf_counter()
        scorer = train_world(train_con, train_truth, chain)
        train_s = time.perf_counter() - t
        ev = evaluate_world(scorer, StoreContext(con, chain), truth)
        m = ev["illicit"]
        lines.append(
            {
                "name": f"scorer_f1_{chain}",
                "ours": m["f1"],
                "reference": ANCHORS,
                "ratio": None,
                "unit": "illicit-class F1",
                "precision": m["precision"],
                "recall": m["recall"],
                "pr_auc": m["pr_auc"],
                "target": "reported next to the anchors",
                "met": None,
                "world": f"trained on small seed {TRAIN_SEED}, evaluated on small seed {UNTUNED_SEED}",
                "train_seconds": round(train_s, 1),
            }
        )
    return lines


def speed(tmp: Path) -> dict[str, Any]:
    con, _, times = world_store("large", 7, tmp)
    t = time.perf_counter()
    report = run_detectors(con)
    seconds = time.perf_counter() - t
    alerts = report.totals()["alerts"]
    return {
        "name": "detect_all_large_world",
        "ours": round(seconds, 1),
        "reference": None,
        "ratio": None,
        "unit": "seconds",
        "target": 600,
        "met": seconds < 600,
        "alerts": alerts,
        "setup_seconds": {k: round(v, 1) for k, v in times.items()},
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        log("detect: quality on an untuned small world, scorer trained on another seed ...")
        lines = quality(tmp)
        if not quick:
            log("detect: every detector over the large world (simulate, ingest, cluster first) ...")
            lines.append(speed(tmp))
    return lines
