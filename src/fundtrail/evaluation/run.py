"""``fundtrail evaluate`` end to end: read a simulated world's truth, score the store's clusters, run and
score a trace from every seed, and say whether detection can be scored; one JSON document back
(:mod:`fundtrail.evaluation.report`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from fundtrail.errors import InvalidInput
from fundtrail.evaluation import inputs, report
from fundtrail.evaluation.clustering import score_store
from fundtrail.evaluation.owners import owners_from_map
from fundtrail.evaluation.trace_runs import DEFAULT_HOPS, DEFAULT_POLICY, run_traces
from fundtrail.evaluation.tracing import score_tracing
from fundtrail.simulate.truth import Truth
from fundtrail.store.db import scalar
from fundtrail.tracing.model import POLICIES

JSON = dict[str, Any]


def check_options(policy: str, hops: int) -> None:
    if policy not in POLICIES:
        raise InvalidInput(f"unknown --policy {policy!r}", f"use one of {', '.join(POLICIES)}")
    if hops < 0:
        raise InvalidInput(f"--hops {hops} is negative", "give 0 or more hops")


def detection_unavailable(con: duckdb.DuckDBPyConnection) -> str:
    """Why detection cannot be scored on this store (alerts are written by detectors not built yet)."""
    has_alerts = scalar(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'alerts'")
    if has_alerts:
        return (
            "detection: not scored: the store has an alerts table this version of fundtrail cannot read "
            "(upgrade fundtrail)"
        )
    return (
        "detection: not available: fundtrail has no detectors yet (the store has no alerts), so there is "
        "nothing to score per typology"
    )


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
    notes = [detection_unavailable(con)]
    return report.build(truth, clustering, tracing, None, notes, policy, hops, len(seeds))
