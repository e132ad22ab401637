"""Running the traces the evaluation scores: a forward trace through the library behind
``fundtrail trace`` (:mod:`fundtrail.tracing.engine`) from every row of the truth's ``seeds``, turned into
the :class:`~fundtrail.evaluation.tracing.LegTrace` that :func:`~fundtrail.evaluation.tracing.score_tracing`
reads."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb

from fundtrail.chains.registry import CHAINS
from fundtrail.errors import InvalidInput, NotFound
from fundtrail.evaluation.inputs import Row, amount, required
from fundtrail.evaluation.tracing import LegTrace
from fundtrail.tracing.engine import TraceRequest, trace
from fundtrail.tracing.model import Limits

JSON = dict[str, Any]
DEFAULT_POLICY = "haircut"
DEFAULT_HOPS = 30


def run_traces(
    con: duckdb.DuckDBPyConnection,
    seeds: Sequence[Row],
    policy: str = DEFAULT_POLICY,
    hops: int = DEFAULT_HOPS,
    db_path: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[LegTrace]:
    """A forward trace (``fundtrail trace``'s library, stopping at labelled services) from every seed,
    tracing the seed's amount of its asset. A seed the store cannot trace (unknown, not ingested, an
    amount larger than the output) becomes a :class:`LegTrace` with its error."""
    out: list[LegTrace] = []
    total = len(seeds)
    if progress is not None:
        progress(0, total)
    for i, s in enumerate(seeds):
        out.append(_run_one(con, s, policy, hops, db_path))
        if progress is not None:
            progress(i + 1, total)
    return out


def _run_one(
    con: duckdb.DuckDBPyConnection, s: Row, policy: str, hops: int, db_path: Path | None
) -> LegTrace:
    required(s, "seeds", "operation_id", "leg", "chain", "seed", "asset")
    op, leg, chain, asset, text = (
        int(s["operation_id"]), int(s["leg"]), str(s["chain"]), str(s["asset"]), str(s["seed"])
    )  # fmt: skip
    value = amount(s, "seeds")
    if value <= 0:
        return LegTrace(op, leg, chain, asset, text, 0, {}, {}, "the truth's seed amount is not positive")
    c = CHAINS.get(chain)
    try:
        req = TraceRequest(
            chain=chain,
            seed=text,
            policy=policy,
            limits=Limits(hops=hops),
            asset=None if c is not None and c.family == "bitcoin" else asset,
            amount=value,
        )
        result = trace(con, req, db_path)
    except (InvalidInput, NotFound) as exc:
        return LegTrace(op, leg, chain, asset, text, 0, {}, {}, exc.line())
    return _leg(op, leg, chain, asset, text, result)


def _leg(op: int, leg: int, chain: str, asset: str, seed: str, r: JSON) -> LegTrace:
    received: dict[str, int] = {}
    for e in r["edges"]:
        if e["to"] is not None and e["tainted_amount"]:
            received[e["to"]] = received.get(e["to"], 0) + int(e["tainted_amount"])
    held: dict[str, int] = {}
    for p in r["endpoints"]:
        if p["kind"] != "fees" and p["address"] is not None and p["tainted_amount"]:
            held[p["address"]] = held.get(p["address"], 0) + int(p["tainted_amount"])
    totals = r["totals"]
    traced = int(totals["seed_amount"]) + int(totals.get("created", 0))
    return LegTrace(op, leg, chain, asset, seed, traced, received, held)
