"""The evaluation's answer: one JSON document, and the Rich tables a person reads.

JSON (amounts are exact integers in base units; ratios are floats, or null where there is nothing to
divide by)::

    {"truth": {"path", "scenario", "seed", "rows": {TABLE: N}},
     "clustering": {"overall": SCORE | null,
                    "chains": [{"chain", "status", "truth_addresses", "unseen", "score": SCORE | null}],
                    "kinds": {KIND: SCORE}},
     "tracing": {"policy", "hops", "seeds", "overall": AGG, "typologies": {TYPOLOGY: AGG},
                 "operations": [{"operation_id", "typology", "case", ...AGG, "failed_legs",
                                 "false_endpoint_sample": [{"chain", "address", "tainted_amount"}]}],
                 "failed": [{"operation_id", "leg", "chain", "seed", "error"}]},
     "detection": {"overall": DET, "typologies": {TYPOLOGY: DET}} | null,
     "notes": [TEXT]}

    SCORE = {"addresses", "entities", "clusters", "truth_pairs", "predicted_pairs", "true_pairs",
             "precision", "recall", "f1"}
    AGG   = {"operations", "legs", "share", "entity_share", "false_endpoints", "false_endpoint_share",
             "amounts": [{"chain", "asset", "expected", "recovered", "entity_recovered", "traced",
                          "false_endpoint_value", "share", "entity_share", "false_endpoint_share"}]}
    DET   = {"operations", "detected", "alerts", "true_alerts", "precision", "recall", "f1"}
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from fundtrail.evaluation.clustering import ClusteringResult
from fundtrail.evaluation.detection import DetectionResult
from fundtrail.evaluation.tracing import TracingResult
from fundtrail.simulate.truth import Truth

JSON = dict[str, Any]
OPERATIONS_SHOWN = 30
FAILED_SHOWN = 10


def build(
    truth: Truth,
    clustering: ClusteringResult,
    tracing: TracingResult,
    detection: DetectionResult | None,
    notes: list[str],
    policy: str,
    hops: int,
    seeds: int,
) -> JSON:
    m = truth.manifest
    return {
        "truth": {
            "path": str(truth.root),
            "scenario": m.get("scenario"),
            "seed": m.get("seed"),
            "rows": {name: truth.table(name).num_rows for name in truth.tables},
        },
        "clustering": clustering.as_json(),
        "tracing": {"policy": policy, "hops": hops, "seeds": seeds, **tracing.as_json()},
        "detection": None if detection is None else detection.as_json(),
        "notes": [*clustering.notes, *tracing.notes, *notes],
    }


# --- tables -------------------------------------------------------------------------------------------


def _r(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _table(title: str, columns: list[str], right_from: int = 1) -> Table:
    t = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        t.add_column(c, justify="right" if i >= right_from else "left")
    return t


def render(report: JSON, console: Console) -> None:
    tr = report["truth"]
    scenario = f"{tr['scenario']} seed {tr['seed']}" if tr["scenario"] is not None else "unnamed world"
    console.print(f"[bold]Evaluation[/] of {tr['path']} ({scenario})")
    _clustering(report["clustering"], console)
    _tracing(report["tracing"], console)
    det = report["detection"]
    if det is None:
        console.print("[bold]Detection[/]: not available (see the notes)")
    else:
        t = _table("Detection", ["typology", "operations", "detected", "alerts", "precision", "recall", "F1"])
        for name, s in [*det["typologies"].items(), ("overall", det["overall"])]:
            t.add_row(
                name,
                *(f"{s[k]:,}" for k in ("operations", "detected", "alerts")),
                *(_r(s[k]) for k in ("precision", "recall", "f1")),
            )
        console.print(t)
    for n in report["notes"]:
        console.print(f"[yellow]note:[/] {n}")


def _score_row(name: str, s: JSON | None, extra: list[str]) -> list[str]:
    if s is None:
        return [name, *extra, "-", "-", "-", "-", "-", "-"]
    return [
        name,
        *extra,
        f"{s['addresses']:,}",
        f"{s['entities']:,}",
        f"{s['clusters']:,}",
        _r(s["precision"]),
        _r(s["recall"]),
        _r(s["f1"]),
    ]


def _clustering(c: JSON, console: Console) -> None:
    cols = ["chain", "status", "unseen", "addresses", "entities", "clusters", "precision", "recall", "F1"]
    t = _table("Clustering (pairwise)", cols, right_from=2)
    for ch in c["chains"]:
        t.add_row(*_score_row(ch["chain"], ch["score"], [ch["status"], f"{ch['unseen']:,}"]))
    t.add_row(*_score_row("overall", c["overall"], ["", ""]))
    console.print(t)
    if c["kinds"]:
        k = _table(
            "Clustering per actor kind",
            ["kind", "addresses", "entities", "clusters", "precision", "recall", "F1"],
        )
        for name, s in c["kinds"].items():
            k.add_row(*_score_row(name, s, []))
        console.print(k)


def _agg_row(name: str, a: JSON) -> list[str]:
    return [
        name,
        f"{a['operations']:,}",
        f"{a['legs']:,}",
        _r(a["share"]),
        _r(a["entity_share"]),
        f"{a['false_endpoints']:,}",
        _r(a["false_endpoint_share"]),
    ]


def _tracing(tr: JSON, console: Console) -> None:
    cols = [
        "typology",
        "operations",
        "legs",
        "share to cash-outs",
        "entity share",
        "false end points",
        "their share",
    ]
    t = _table(f"Tracing ({tr['policy']}, {tr['hops']} hops, {tr['seeds']:,} seeds)", cols)
    for name, a in tr["typologies"].items():
        t.add_row(*_agg_row(name, a))
    t.add_row(*_agg_row("overall", tr["overall"]))
    console.print(t)
    amounts = tr["overall"]["amounts"]
    if amounts:
        cols = [
            "chain",
            "asset",
            "expected",
            "recovered",
            "at cash-out owners",
            "traced",
            "at false end points",
        ]
        a = _table("Traced value (base units)", cols, right_from=2)
        keys = ("expected", "recovered", "entity_recovered", "traced", "false_endpoint_value")
        for x in amounts:
            a.add_row(x["chain"], x["asset"], *(f"{x[k]:,}" for k in keys))
        console.print(a)
    ops = sorted(
        tr["operations"], key=lambda o: (o["share"] is not None, o["share"] or 0.0, o["operation_id"])
    )
    if ops:
        cols = [
            "operation",
            "typology",
            "case",
            "legs",
            "share",
            "entity share",
            "false end points",
            "their share",
        ]
        o = _table("Operations (lowest share first)", cols, right_from=3)
        for op in ops[:OPERATIONS_SHOWN]:
            o.add_row(
                str(op["operation_id"]),
                op["typology"],
                op["case"] or "-",
                f"{op['legs']}" + (f" ({op['failed_legs']} failed)" if op["failed_legs"] else ""),
                _r(op["share"]),
                _r(op["entity_share"]),
                f"{op['false_endpoints']:,}",
                _r(op["false_endpoint_share"]),
            )
        if len(ops) > OPERATIONS_SHOWN:
            o.caption = f"{len(ops) - OPERATIONS_SHOWN:,} more operations: use --json"
        console.print(o)
    for f in tr["failed"][:FAILED_SHOWN]:
        console.print(
            f"[red]not traced:[/] operation {f['operation_id']} leg {f['leg']} ({f['chain']} {f['seed']}): "
            f"{f['error']}"
        )
    if len(tr["failed"]) > FAILED_SHOWN:
        console.print(f"[red]not traced:[/] {len(tr['failed']) - FAILED_SHOWN:,} more seeds: use --json")
