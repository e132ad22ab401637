"""``fundtrail alerts list|show|set-status``: the alert queue (:mod:`fundtrail.detection.alerts`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from fundtrail.cli.render import kv_table, out, print_json
from fundtrail.cli.state import store
from fundtrail.detection import alerts
from fundtrail.detection.base import SEVERITIES
from fundtrail.detection.prices import DECIMALS
from fundtrail.platform.accounts import acting

app = typer.Typer(help="The alert queue: list, show, and review alerts.", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
As = Annotated[
    str | None,
    typer.Option("--as", help="Act as this user (default: the installation's local administrator)."),
]
AlertId = Annotated[str, typer.Argument(metavar="ID", help="The alert id `alerts list` shows.")]
STATUS_HELP = f"One of: {', '.join(alerts.STATUSES)}."


def amount_text(amount: int | None, asset: str | None) -> str:
    """Base units as the asset's whole units when its decimals are known (exact), else base units."""
    if amount is None:
        return "-"
    d = DECIMALS.get((asset or "").upper())
    if d is None:
        return f"{amount:,} base units" + (f" of {asset}" if asset else "")
    sign = "-" if amount < 0 else ""
    q, r = divmod(abs(amount), 10**d)
    frac = f"{r:0{d}d}".rstrip("0")
    return f"{sign}{q:,}{'.' + frac if frac else ''} {asset}"


@app.command("list")
def list_(
    status: Annotated[str | None, typer.Option("--status", help=STATUS_HELP)] = None,
    detector: Annotated[str | None, typer.Option("--detector", help="Only this detector's alerts.")] = None,
    typology: Annotated[str | None, typer.Option("--typology", help="Only alerts of this typology.")] = None,
    chain: Annotated[str | None, typer.Option("--chain", help="Only alerts on this chain.")] = None,
    severity: Annotated[
        str | None, typer.Option("--severity", help=f"One of: {', '.join(SEVERITIES)}.")
    ] = None,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Only scores >= this (0-100).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many alerts.")] = 100,
    offset: Annotated[int, typer.Option("--offset", help="Skip this many (the next page).")] = 0,
    as_user: As = None,
    json: Json = False,
) -> None:
    """The alerts matching every filter, newest first."""
    with store(read_only=True) as con:
        result = alerts.list_alerts(
            con, acting(con, as_user), status, detector, typology, chain, severity, min_score, limit, offset
        )
    if json:
        print_json(result)
        return
    t = Table(title="Alerts", title_justify="left")
    for col in ("id", "severity", "score", "detector", "chain", "status", "window", "amount", "why"):
        t.add_column(col, justify="right" if col in ("id", "score") else "left", overflow="fold")
    for a in result["alerts"]:
        why = a["explanation"] if len(a["explanation"]) <= 120 else a["explanation"][:119] + "…"
        t.add_row(
            str(a["alert_id"]),
            a["severity"],
            f"{a['score']:.1f}",
            a["detector"],
            a["chain"],
            a["status"],
            f"{a['window_start']} .. {a['window_end']}",
            amount_text(a["amount"], a["asset"]),
            why,
        )
    out.print(t)
    shown = len(result["alerts"])
    if result["truncated"]:
        out.print(f"[yellow]truncated[/]: alerts {offset + 1:,}-{offset + shown:,} of {result['total']:,}")
    elif not shown:
        out.print("no alerts")


def _print(a: dict[str, Any], title: str) -> None:
    skip = ("addresses", "txids", "evidence", "events", "entities", "amount", "asset")
    rows: list[tuple[str, Any]] = [(k, "-" if v is None else v) for k, v in a.items() if k not in skip]
    rows.insert(6, ("amount", amount_text(a["amount"], a["asset"])))
    rows.append(("entities", ", ".join(str(e) for e in a["entities"]) or "-"))
    rows.append(("addresses", "\n".join(a["addresses"]) or "-"))
    rows.append(("transactions", "\n".join(a["txids"]) or "-"))
    rows.append(("evidence", "\n".join(f"{k}: {v}" for k, v in a["evidence"].items()) or "-"))
    out.print(kv_table(title, rows))
    t = Table(title="Events", title_justify="left")
    for col in ("seq", "at", "who", "from", "to", "reason"):
        t.add_column(col, overflow="fold")
    for e in a.get("events", []):
        t.add_row(str(e["seq"]), e["at"], e["who"], e["from"] or "-", e["to"], e["reason"] or "")
    out.print(t)


@app.command("show")
def show(alert_id: AlertId, as_user: As = None, json: Json = False) -> None:
    """An alert: what fired, on which transactions and addresses, why, and its status history."""
    with store(read_only=True) as con:
        a = alerts.show_alert(con, acting(con, as_user), alert_id)
    if json:
        print_json(a)
    else:
        _print(a, f"Alert {a['alert_id']}")


@app.command("set-status")
def set_status(
    alert_id: AlertId,
    status: Annotated[str, typer.Argument(metavar="STATUS", help=STATUS_HELP)],
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why (required to dismiss: why it is not suspicious).")
    ] = None,
    as_user: As = None,
    json: Json = False,
) -> None:
    """Move an alert through the workflow (new, reviewing, escalated, dismissed); audited."""
    with store() as con:
        a = alerts.set_status(con, acting(con, as_user), alert_id, status, reason)
    if json:
        print_json(a)
    else:
        _print(a, f"Alert {a['alert_id']} is now {a['status']}")
