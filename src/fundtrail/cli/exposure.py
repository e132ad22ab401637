"""``fundtrail exposure``: precompute every cluster's exposure to the attribution categories."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fundtrail.chains.registry import chain as get_chain
from fundtrail.cli.render import err, out, print_json
from fundtrail.cli.state import store
from fundtrail.screening import exposure as ex


def exposure_command(
    chain: Annotated[
        list[str] | None,
        typer.Option("--chain", help="Chain to compute (repeatable; default: every chain in the store)."),
    ] = None,
    asset: Annotated[
        str | None,
        typer.Option("--asset", help="Asset id, symbol or 'native' (default: every asset with transfers)."),
    ] = None,
    hops: Annotated[
        int, typer.Option("--hops", help=f"Hops of indirect exposure (1 to {ex.MAX_HOPS}; 1: direct only).")
    ] = ex.DEFAULT_HOPS,
    full: Annotated[bool, typer.Option("--full", help="Recompute from scratch.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Compute or update the exposure of every cluster (direct and indirect, received and sent, per
    category): incrementally, only the clusters new transactions reach within --hops."""
    chains = [get_chain(c).name for c in chain] if chain else None
    with store() as con:
        todo = chains or ex.stored_chains(con)
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task("exposure", total=None)

            def step(msg: str) -> None:
                bar.update(task, advance=1, description=msg)

            reports = ex.exposure(con, todo, asset, hops, full, progress=step)
    if json:
        print_json([r.as_json() for r in reports])
        return
    t = Table(title=f"Exposure ({hops} hops)", title_justify="left")
    for col in ("chain", "asset", "run", "clusters", "updated", "categories", "time"):
        t.add_column(col, justify="right" if col in ("clusters", "updated", "time") else "left")
    for r in reports:
        t.add_row(
            r.chain,
            f"{r.asset or '?'} ({r.asset_id})",
            f"{r.mode} ({r.reason})",
            f"{r.clusters:,}",
            f"{r.clusters_updated:,}",
            ", ".join(f"{k} {v:,}" for k, v in r.categories.items()) or "-",
            f"{r.seconds:.2f} s",
        )
    out.print(t)
    clamped = sum(r.clamped for r in reports)
    if clamped:
        out.print(f"[yellow]{clamped:,} amounts above 2^127 - 1 were stored clamped to it[/]")
