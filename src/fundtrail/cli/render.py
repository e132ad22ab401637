"""Rendering for people: Rich tables and progress bars. Machines get ``--json``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from fundtrail.ingest.progress import Progress as Event
from fundtrail.ingest.progress import ProgressFn

out = Console()
err = Console(stderr=True)


def print_json(data: Any) -> None:
    out.print_json(json.dumps(data), indent=2)


def sat(v: int | None) -> str:
    """Satoshi as BTC with all eight decimals (exact: integer arithmetic), or 'unknown'."""
    if v is None:
        return "[yellow]unknown[/]"
    sign = "-" if v < 0 else ""
    q, r = divmod(abs(v), 100_000_000)
    return f"{sign}{q:,}.{r:08d} BTC"


def kv_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    t = Table(title=title, show_header=False, title_justify="left")
    t.add_column(style="bold cyan")
    t.add_column(overflow="fold")
    for k, v in rows:
        t.add_row(k, "[yellow]unknown[/]" if v is None else str(v))
    return t


@contextmanager
def ingest_progress(description: str, unit: str) -> Iterator[ProgressFn]:
    """A progress bar with blocks/s, tx/s and ETA; yields the callback the ingest job calls."""
    start = time.monotonic()
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(description, total=None, stats="")

        def update(ev: Event) -> None:
            dt = max(time.monotonic() - start, 1e-9)
            done = f"{ev.done / 1e6:,.1f} MB" if unit == "bytes" else f"height {ev.done:,}"
            stats = (
                f"{done}  {ev.blocks:,} blocks ({ev.blocks / dt:,.0f}/s)  "
                f"{ev.txs:,} txs ({ev.txs / dt:,.0f}/s) {ev.note}"
            )
            bar.update(task, completed=ev.done, total=ev.total, stats=stats)

        yield update


def labels_table(labels: list[dict[str, Any]], with_address: bool = False, limit: int = 50) -> Table:
    """Attribution labels as a table (``show address``, ``show cluster``)."""
    t = Table(title="Labels", title_justify="left")
    cols = ("address",) if with_address else ()
    for col in (*cols, "label", "category", "source", "confidence", "definer"):
        t.add_column(col)
    for lab in labels[:limit]:
        row = (lab["address"],) if with_address else ()
        t.add_row(
            *row,
            lab["label"],
            lab["category"],
            lab["source"],
            "unknown" if lab["confidence"] is None else str(lab["confidence"]),
            "yes" if lab["is_cluster_definer"] else "",
        )
    if len(labels) > limit:
        t.caption = f"{len(labels) - limit:,} more labels: use --json"
    return t
