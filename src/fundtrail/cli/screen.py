"""``fundtrail screen``: risk screening of addresses and transactions against a policy."""

from __future__ import annotations

import csv
import io
import json as jsonlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from fundtrail.chains.registry import CHAINS
from fundtrail.cli.render import err, kv_table, out, print_json
from fundtrail.cli.state import store
from fundtrail.errors import InvalidInput
from fundtrail.screening.policy import load_policy
from fundtrail.screening.screen import Screener

_COLOURS = {"severe": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "none": "green"}
_REASONS_SHOWN = 8


def _lines(path: Path) -> Iterator[str]:
    """The items of a file: one per line, or the ``address`` column of a CSV (detected from its first
    line: a comma, or a lone ``address`` header). Blank lines and ``#`` comments are skipped."""
    try:
        f = path.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path} ({exc.strerror})", "check the --file path") from None
    with f:
        first = f.readline()
        head = first.strip()
        if "," in head or head.lower() == "address":
            rows = csv.reader(io.StringIO(first))
            header = [h.strip().lower() for h in next(rows)]
            if "address" not in header:
                raise InvalidInput(
                    f"{path}: CSV header {head!r} has no address column",
                    "name the column `address`, or give one address per line",
                )
            col = header.index("address")
            for row in csv.reader(f):
                if len(row) > col and row[col].strip() and not row[col].lstrip().startswith("#"):
                    yield row[col].strip()
            return
        if head and not head.startswith("#"):
            yield head
        for line in f:
            s = line.strip()
            if s and not s.startswith("#"):
                yield s


def _count(path: Path) -> int | None:
    try:
        with path.open("rb") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return None


def _severity(r: dict[str, Any]) -> str:
    sev = str(r["severity"])
    score = "unknown" if r["risk_score"] is None else str(r["risk_score"])
    return f"[{_COLOURS.get(sev, 'magenta')}]{sev}[/] ({score})"


def _reason_text(x: dict[str, Any]) -> str:
    who = f"{x['counterparty']}: " if "counterparty" in x else ""
    if x.get("detail") and x["rule"] in ("sanctions", "unknown-address", "exposure-not-computed"):
        return f"{who}{x['detail']}"
    if x["scope"] == "self":
        return f"{who}labelled {x['category']} ({x.get('label')}, {x.get('source')})"
    share = "" if x.get("share") is None else f", {x['share']:.1%} of {x['direction']}"
    hops = "" if x.get("hops") is None else f", {x['hops']} hop{'s' if x['hops'] != 1 else ''}"
    txs = f", tx {x['txids'][0]}" if x.get("txids") else ""
    return f"{who}{x['scope']} {x['direction']} {x['category']}: {x['amount']:,}{share}{hops}{txs}"


def _table(r: dict[str, Any]) -> Table:
    if "error" in r:
        t = Table(show_header=False, title=f"{r['input']}", title_justify="left")
        t.add_column(style="bold cyan")
        t.add_column(overflow="fold")
        t.add_row("error", f"[red]{r['error']}[/]")
        return t
    what = r.get("address") or r.get("txid")
    rows: list[tuple[str, Any]] = [
        ("chain", f"{r['chain']} ({r.get('asset') or '-'})"),
        ("severity", _severity(r)),
    ]
    if "txid" in r:
        parties = r["counterparties"]
        worst = sorted(parties, key=lambda p: -(p["risk_score"] or 0))[:5]
        rows.append(
            (
                "counterparties",
                f"{len(parties)}: " + ", ".join(f"{p['address']} {p['severity']}" for p in worst),
            )
        )
    else:
        rows.append(("cluster", r["cluster_id"]))
    labels = r["labels"]
    rows.append(
        ("labels", "; ".join(f"{x['label']} ({x['category']}, {x['source']})" for x in labels[:5]) or "-")
    )
    for scope in ("direct", "indirect"):
        exp = (r.get("exposure") or {}).get(scope) or {}
        if exp:
            rows.append(
                (
                    scope,
                    ", ".join(
                        f"{cat} {v['share_received']:.1%} in / {v['share_sent']:.1%} out"
                        for cat, v in exp.items()
                    ),
                )
            )
    for i, x in enumerate(r["reasons"][:_REASONS_SHOWN]):
        rows.append(("reasons" if i == 0 else "", _reason_text(x)))
    if len(r["reasons"]) > _REASONS_SHOWN:
        rows.append(("", f"{len(r['reasons']) - _REASONS_SHOWN} more: use --json"))
    height = r["as_of"]["height"]
    rows.append(("as of", "-" if height is None else f"height {height:,} {r['as_of']['block_hash']}"))
    return kv_table(str(what), rows)


def screen_command(
    items: Annotated[
        list[str] | None, typer.Argument(help="Addresses or transaction ids (64 hex digits) to screen.")
    ] = None,
    chain: Annotated[
        str, typer.Option("--chain", help=f"One of: {', '.join(CHAINS)}, or a chain with imported labels.")
    ] = "bitcoin",
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Risk policy YAML (default: the shipped policy).")
    ] = None,
    asset: Annotated[
        str | None,
        typer.Option("--asset", help="Token on account chains (contract or symbol; default native)."),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option("--file", help="Items to screen: one per line, or a CSV with an `address` column."),
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON (JSON lines for several items).")] = False,
) -> None:
    """Screen addresses or transactions: risk score, severity and the reasons (labels, exposure to
    illicit categories, sanctions), against a risk policy."""
    given = list(items or [])
    if not given and file is None:
        raise InvalidInput("nothing to screen", "give addresses or txids, or --file FILE")
    pol = load_policy(policy)
    with store(read_only=True) as con:
        screener = Screener(con, pol, asset=asset)
        if file is None and len(given) == 1:
            data = screener.screen(chain, given[0])
            if json:
                print_json(data)
            else:
                out.print(_table(data))
            return
        exit_code = _batch(screener, chain, given, file, json)
    if exit_code:
        raise typer.Exit(exit_code)


def _batch(screener: Screener, chain: str, given: list[str], file: Path | None, json: bool) -> int:
    def source() -> Iterator[str]:
        yield from given
        if file is not None:
            yield from _lines(file)

    total = len(given) + (_count(file) or 0 if file is not None else 0)
    exit_code = 0
    columns = [
        TextColumn("[bold]screening"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    write = sys.stdout.write
    with Progress(*columns, console=err, transient=True, disable=file is None) as bar:
        task = bar.add_task("screening", total=total or None, rate="")
        done = 0
        for r in screener.screen_many(source(), chain):
            if "error" in r:
                exit_code = max(exit_code, int(r.get("exit_code", 2)))
            if json:
                write(jsonlib.dumps(r) + "\n")
            else:
                out.print(_table(r))
            done += 1
            if done % 1000 == 0:
                elapsed = bar.tasks[0].elapsed or 1e-9
                bar.update(task, completed=done, rate=f"{done / elapsed:,.0f}/s")
        bar.update(task, completed=done)
    sys.stdout.flush()
    return exit_code
