"""``fundtrail evaluate`` end to end: read a simulated world's truth, score the store's clusters, run and
score a trace from every seed, and score the store's alerts per typology (when it has any); one JSON
document back (:mod:`fundtrail.evaluation.report`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from fundtrail.errors import InvalidInput
from fundtrail.evaluation import inputs, report
from fundtrail.evaluation.clustering import score_store
from fundtrail.evaluation.detection import Alert, DetectionResult, score_detection
from fundtrail.evaluation.owners import owners_from_map
from fundtrail.evaluation.trace_runs import DEFAULT_HOPS, DEFAULT_POLICY, run_traces
from fundtrail.evaluation.tracing import score_tracing
from fundtrail.simulate.truth import Truth
from fundtrail.tracing.model import POLICIES

JSON = dict[str, Any]


def check_options(policy: str, hops: int) -> None:
    if policy not in POLICIES:
        raise InvalidInput(f"unknown --policy {policy!r}", f"use one of {', '.join(POLICIES)}")
    if hops < 0:
        raise InvalidInput(f"--hops {hops} is negative", "give 0 or more hops")


def detection_unavailable(con: duckdb.DuckDBPyConnection) -> str:
    """Why detection is not scored on this store: it holds no alerts."""
    return (
        "detection: not available: the store has no alerts on the world's chains (run `fundtrail detect` "
        "first), so there is nothing to score per typology"
    )


def truth_chains(truth: Truth) -> list[str]:
    """The chains a world's truth speaks about (its addresses' chains)."""
    return sorted(set(truth.table("addresses").column("chain").unique().to_pylist()))


def stored_alerts(con: duckdb.DuckDBPyConnection, chains: list[str] | None = None) -> list[Alert]:
    """Every alert of the store on ``chains`` (default: all), whatever its review status (the detectors
    are scored, not the analysts), as the detection scorer reads them. Alerts on chains the truth does
    not cover (real data ingested beside a world) are not the world's and are left out."""
    rows = con.execute(
        "SELECT detector, typology, chain, txids, addresses FROM alerts "
        "WHERE $all OR chain IN (SELECT unnest($chains)) ORDER BY alert_id",
        {"all": chains is None, "chains": chains or []},
    ).fetchall()
    return [
        Alert(str(det), str(typ), str(chain), tuple(json.loads(txids)), tuple(json.loads(addrs)))
        for det, typ, chain, txids, addrs in rows
    ]


def score_alerts(con: duckdb.DuckDBPyConnection, truth: Truth) -> tuple[DetectionResult | None, list[str]]:
    """The detection scores of the store's alerts against the truth, or None and a note saying why
    there are none."""
    alerts = stored_alerts(con, truth_chains(truth))
    if not alerts:
        return None, [detection_unavailable(con)]
    result = score_detection(
        truth.rows("operations"), truth.rows("operation_txs"), truth.rows("operation_addresses"), alerts
    )
    detectors = sorted({a.detector for a in alerts})
    note = (
        f"detection: {len(alerts):,} stored alert(s) of {', '.join(detectors)} scored per typology "
        "(every status; an alert is true when it shares a transaction or an address with an operation of "
        "its typology)"
    )
    return result, [note]


def evaluate(
    con: duckdb.DuckDBPyConnection,
    truth: Truth,
    policy: str = DEFAULT_POLICY,
    hops: int = DEFAULT_HOPS,
    db_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> JSON:
    """Score the store against the world's truth (read by :func:`fundtrail.evaluation.inputs.load_truth`);
    ``progress(done, total)`` is called after each trace."""
    check_options(policy, hops)
    actors = inputs.actors(truth)
    owned = inputs.owned_addresses(truth, actors)  # built for clustering; reused for the trace end points
    seeds = truth.rows("seeds")
    clustering = score_store(con, owned, actors)
    traces = run_traces(con, seeds, policy, hops, db_path, progress)
    tracing = score_tracing(
        truth.rows("operations"),
        truth.rows("operation_addresses"),
        truth.rows("cashouts"),
        traces,
        owners_from_map(owned),
    )
    detection, notes = score_alerts(con, truth)
    return report.build(truth, clustering, tracing, detection, notes, policy, hops, len(seeds))
