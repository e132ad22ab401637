"""``fundtrail audit verify|list``: the hash-chained audit log."""

from __future__ import annotations

import json as jsonlib
from typing import Annotated

import typer
from rich.table import Table

from fundtrail.cli.render import out, print_json
from fundtrail.cli.state import store
from fundtrail.platform import accounts, audit

app = typer.Typer(help="The audit log: verify the hash chain, list entries.", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("verify")
def verify(json: Json = False) -> None:
    """Walk the hash chain; name the first edited, reordered or deleted entry (exit 4), else print the
    head (sequence number and hash) to anchor outside the store."""
    with store(read_only=True) as con:
        report = audit.verify(con)
    if json:
        print_json(report.as_dict())
    elif report.ok:
        out.print(f"[green]ok[/]: {report.line()}")
    report.raise_if_bad()


@app.command("list")
def list_(
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many entries.")] = 50,
    target: Annotated[str | None, typer.Option("--target", help="Only entries on this target.")] = None,
    action: Annotated[str | None, typer.Option("--action", help="Only entries of this action.")] = None,
    json: Json = False,
) -> None:
    """The newest entries first: who did what to which target, when, and the digest of the answer."""
    with store(read_only=True) as con:
        result = audit.list_entries(con, accounts.acting(con, None), limit, target, action)
    if json:
        print_json(result)
        return
    table = Table(title="Audit log", title_justify="left")
    for col in ("seq", "at", "who", "action", "target", "params", "result"):
        table.add_column(col, justify="right" if col == "seq" else "left", overflow="fold")
    for e in result["entries"]:
        params = jsonlib.dumps(e["params"], separators=(",", ":"))
        table.add_row(
            str(e["seq"]),
            e["at"],
            e["user_name"],
            e["action"],
            e["target"],
            params if len(params) <= 80 else params[:79] + "…",
            e["result_digest"][:12] + "…",
        )
    out.print(table)
    if result["truncated"]:
        out.print(f"[yellow]truncated[/]: showing {len(result['entries']):,} of {result['total']:,} entries")
