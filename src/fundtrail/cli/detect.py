"""``fundtrail detect``: run the typology detectors over the store and keep their alerts
(:func:`fundtrail.detection.engine.run_detectors`); ``--list`` shows the detectors and their parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from fundtrail.cli.render import err, out, print_json
from fundtrail.cli.state import store
from fundtrail.detection import config as detection_config
from fundtrail.detection import registry
from fundtrail.detection.engine import RunReport, run_detectors
from fundtrail.platform.accounts import acting
from fundtrail.settings import config_path


def _list(json: bool) -> None:
    rows: list[dict[str, Any]] = [
        {
            "name": d.name,
            "typology": d.typology,
            "families": sorted(d.families),
            "summary": d.summary,
            "params": detection_config.describe(d),
        }
        for d in registry.get(None)
    ]
    if json:
        print_json({"detectors": rows})
        return
    t = Table(title="Detectors", title_justify="left", show_lines=True)
    for col in ("detector", "typology", "families", "what it finds", "parameters (default, unit)"):
        t.add_column(col, overflow="fold")
    for r in rows:
        params = "\n".join(f"{p['name']} = {p['default']!r} {p['unit']}: {p['help']}" for p in r["params"])
        t.add_row(r["name"], r["typology"], ", ".join(r["families"]), r["summary"], params or "-")
    out.print(t)
    if not rows:
        out.print("no detectors installed")


def _render(report: RunReport) -> None:
    t = Table(title=f"Detector run {report.run_id}", title_justify="left")
    counts = ("alerts", "raised", "updated", "reopened", "seen", "merged")
    cols = ("chain", "detector", "since", "seconds", *counts)
    for i, col in enumerate(cols):
        t.add_column(col, justify="right" if i >= 2 else "left")
    for d in report.detectors:
        t.add_row(
            d.chain,
            d.detector,
            f"{d.since_height:,}",
            f"{d.seconds:.2f}",
            *(f"{getattr(d, k):,}" for k in cols[4:]),
        )
    tot = report.totals()
    t.add_row("[bold]total", "", "", f"{report.seconds:.2f}", *(f"[bold]{tot[k]:,}" for k in cols[4:]))
    out.print(t)
    for c in report.chains:
        tip = "no blocks" if c.tip is None else f"tip {c.tip:,}"
        load = f", data loaded in {c.load_seconds:.2f} s" if c.status == "run" else ""
        out.print(f"{c.chain} ({c.family}, {tip}): {c.status}{load}")


def detect_command(
    detectors: Annotated[
        str | None,
        typer.Option("--detectors", help="Detectors to run, comma-separated (default: all; see --list)."),
    ] = None,
    since: Annotated[
        int | None,
        typer.Option(
            "--since",
            help="Report patterns with a transaction at or after this height (default: incremental, "
            "after the tip the last run saw; 0 rescans everything).",
        ),
    ] = None,
    chain: Annotated[
        list[str] | None, typer.Option("--chain", help="Only this chain (repeatable; default: every chain).")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the detectors and their parameters.")] = False,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML configuration ([detection.<detector>] tables).")
    ] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Run the typology detectors over the store's chains and store their alerts, deduplicated across
    runs (`fundtrail alerts list` shows them)."""
    if list_:
        _list(json)
        return
    names = registry.parse_names(detectors)
    cfg = detection_config.load(config_path(config), registry.discover())
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with store() as con, Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(chain_name: str, detector: str, done: int, total: int) -> None:
            if chain_name not in tasks:
                tasks[chain_name] = bar.add_task(chain_name, total=total)
            what = f"{chain_name}: {detector}" if detector else f"{chain_name}: done"
            bar.update(tasks[chain_name], description=what, completed=done, total=total)

        report = run_detectors(
            con, names, chain or None, since, cfg.params, progress, cfg.prices_usd, acting(con, None)
        )
    if json:
        print_json(report.as_json())
    else:
        _render(report)
