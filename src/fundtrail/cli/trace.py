"""``fundtrail trace``: follow tainted funds forward (where did they go) or backward (where from)."""

from __future__ import annotations

import csv
import io
import json as jsonlib
import sys
from datetime import UTC, datetime
from typing import Annotated, Any
from xml.etree import ElementTree as ET

import typer
from rich.table import Table

from fundtrail.chains.registry import CHAINS
from fundtrail.cli.render import err, kv_table, out
from fundtrail.cli.state import state, store
from fundtrail.errors import InvalidInput
from fundtrail.settings import db_path
from fundtrail.tracing.engine import TraceRequest, trace
from fundtrail.tracing.model import DIRECTIONS, POLICIES, Limits


def parse_time(text: str | None, option: str) -> int | None:
    """An ISO 8601 date or date-time (UTC unless it says otherwise) or unix seconds."""
    if text is None:
        return None
    s = text.strip()
    if s.isdigit():
        return int(s)
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{option} {text!r} is not a time",
            "give an ISO 8601 date/time (2024-05-01T12:00Z) or unix seconds",
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp())


def trace_command(
    seed: Annotated[
        str,
        typer.Option("--from", help="Seed: TXID:VOUT (UTXO chains), a txid, an address, or cluster:ID."),
    ],
    chain: Annotated[str, typer.Option("--chain", help=f"One of: {', '.join(CHAINS)}.")] = "bitcoin",
    direction: Annotated[str, typer.Option("--direction", help="forward or backward.")] = "forward",
    policy: Annotated[
        str, typer.Option("--policy", help=f"Taint policy: {', '.join(POLICIES)}.")
    ] = "haircut",
    hops: Annotated[int, typer.Option("--hops", help="Transactions to follow from the seed.")] = 10,
    min_amount: Annotated[
        int, typer.Option("--min-amount", help="Do not follow tainted amounts below this (base units).")
    ] = 0,
    until: Annotated[
        str | None, typer.Option("--until", help="Forward: follow nothing after this time.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Backward: follow nothing before this time.")
    ] = None,
    start: Annotated[
        str | None, typer.Option("--start", help="Start time for an address or cluster seed (default: all).")
    ] = None,
    amount: Annotated[
        int | None, typer.Option("--amount", help="Traced amount in base units (default: all of the seed).")
    ] = None,
    asset: Annotated[
        str | None,
        typer.Option("--asset", help="Account chains: token contract or symbol (default: native)."),
    ] = None,
    by: Annotated[str, typer.Option("--by", help="Graph nodes: address or cluster.")] = "address",
    max_cluster_size: Annotated[
        int, typer.Option("--max-cluster-size", help="Clusters larger than this are end points.")
    ] = 10_000,
    json: Annotated[bool, typer.Option("--json", help="Print the whole trace as JSON.")] = False,
    csv_out: Annotated[bool, typer.Option("--csv", help="Print the flow's edges as CSV.")] = False,
    graphml: Annotated[bool, typer.Option("--graphml", help="Print the flow graph as GraphML.")] = False,
) -> None:
    """Follow the money from a seed: the flow graph, the end points (services, unspent wallets) with the
    tainted amount that reached each, and totals that add up to the seed amount exactly."""
    if sum((json, csv_out, graphml)) > 1:
        raise InvalidInput("--json, --csv and --graphml exclude each other", "choose one output format")
    if direction not in DIRECTIONS:
        raise InvalidInput(f"unknown --direction {direction!r}", f"use one of {', '.join(DIRECTIONS)}")
    limits = Limits(
        hops=hops,
        min_amount=min_amount,
        until=parse_time(until, "--until"),
        since=parse_time(since, "--since"),
        max_cluster_size=max_cluster_size,
    )
    req = TraceRequest(
        chain=chain,
        seed=seed,
        direction=direction,
        policy=policy,
        limits=limits,
        by=by,
        asset=asset,
        amount=amount,
        start=parse_time(start, "--start"),
    )
    with store(read_only=True) as con, err.status("tracing…"):
        result = trace(con, req, db_path(state.db))
    if json:
        sys.stdout.write(jsonlib.dumps(result, indent=2) + "\n")
    elif csv_out:
        sys.stdout.write(to_csv(result))
    elif graphml:
        sys.stdout.write(to_graphml(result))
    else:
        _tables(result)


EDGE_COLUMNS = ("txid", "from", "to", "time", "amount", "tainted_amount", "hop")


def to_csv(result: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(EDGE_COLUMNS)
    for e in result["edges"]:
        w.writerow(["" if e[k] is None else e[k] for k in EDGE_COLUMNS])
    return buf.getvalue()


def to_graphml(result: dict[str, Any]) -> str:
    """GraphML (nodes: addresses or clusters with their end-point kind, labels and tainted amount;
    edges: transfers with txid, time, amount and tainted amount). Amounts are strings: GraphML's long is
    64-bit and wei amounts are not."""
    ns = "http://graphml.graphdrawing.org/xmlns"
    root = ET.Element("graphml", xmlns=ns)
    keys = [
        ("kind", "node"),
        ("labels", "node"),
        ("category", "node"),
        ("tainted_amount", "node"),
        ("txid", "edge"),
        ("time", "edge"),
        ("amount", "edge"),
        ("tainted_amount", "edge"),
        ("hop", "edge"),
    ]
    for name, kind in keys:
        ET.SubElement(
            root, "key", {"id": f"{kind}_{name}", "for": kind, "attr.name": name, "attr.type": "string"}
        )
    g = ET.SubElement(root, "graph", id="trace", edgedefault="directed")
    nodes: dict[str, dict[str, str]] = {}
    for e in result["edges"]:
        for n in (e["from"], e["to"]):
            nodes.setdefault(str(n), {})
    for p in result["endpoints"]:
        node = p["address"] if result.get("by") != "cluster" else f"cluster:{p['cluster_id']}"
        nodes.setdefault(str(node), {}).update(
            kind=p["kind"],
            labels="; ".join(lab["label"] for lab in p["labels"]),
            category=p["category"] or "",
            tainted_amount=str(p["tainted_amount"]),
        )
    for n, attrs in nodes.items():
        el = ET.SubElement(g, "node", id=n)
        for k, v in attrs.items():
            ET.SubElement(el, "data", key=f"node_{k}").text = v
    for i, e in enumerate(result["edges"]):
        el = ET.SubElement(g, "edge", id=f"e{i}", source=str(e["from"]), target=str(e["to"]))
        for k in ("txid", "time", "amount", "tainted_amount", "hop"):
            ET.SubElement(el, "data", key=f"edge_{k}").text = "" if e[k] is None else str(e[k])
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _amount(v: int, decimals: int | None, asset: str) -> str:
    if decimals is None:
        return f"{v:,} base units"
    sign = "-" if v < 0 else ""
    q, r = divmod(abs(v), 10**decimals)
    frac = f".{r:0{decimals}d}" if decimals else ""
    return f"{sign}{q:,}{frac} {asset}"


def _tables(r: dict[str, Any]) -> None:
    d, a = r["decimals"], r["asset"]
    t = r["totals"]
    rows: list[tuple[str, Any]] = [
        ("seed", f"{r['seed']} ({r['chain']}, {a})"),
        ("policy / direction", f"{r['policy']} / {r['direction']}"),
        ("as of", f"height {r['as_of']['height']} {r['as_of']['block_hash']}"),
        ("seed amount", _amount(t["seed_amount"], d, a)),
        ("at end points", _amount(t["at_endpoints"], d, a)),
        ("unspent in intermediary wallets", _amount(t["unspent"], d, a)),
        ("fees", _amount(t["fees"], d, a)),
        ("below threshold", _amount(t["below_threshold"], d, a)),
        ("beyond limits", _amount(t["beyond_limits"], d, a)),
    ]
    if "created" in t:
        rows.append(("clean value poisoned", _amount(t["created"], d, a)))
    rows.append(("transfers in the flow", f"{len(r['edges']):,}"))
    out.print(kv_table("Trace", rows))
    ep = Table(title="End points", title_justify="left")
    for col in ("address", "cluster", "kind", "attribution", "tainted", "hops"):
        ep.add_column(col, justify="right" if col in ("tainted", "hops") else "left")
    for p in r["endpoints"][:50]:
        attribution = ", ".join(sorted({lab["label"] for lab in p["labels"]})) or "-"
        ep.add_row(
            p["address"] or "(none)",
            str(p["cluster_id"]) if p["cluster_id"] is not None else "",
            p["kind"],
            attribution,
            _amount(p["tainted_amount"], d, a),
            str(p["hops"]),
        )
    if len(r["endpoints"]) > 50:
        ep.caption = f"{len(r['endpoints']) - 50:,} more end points: use --json"
    out.print(ep)
