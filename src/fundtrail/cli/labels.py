"""``fundtrail labels import|list|add|edit|delete``: attribution labels with their provenance."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from fundtrail.cli.render import err, kv_table, out, print_json
from fundtrail.cli.state import store
from fundtrail.errors import InvalidInput
from fundtrail.labels import csv_import, ofac, tagpack
from fundtrail.labels import store as label_store
from fundtrail.labels.report import ImportProgress, ProgressFn, SourceReport
from fundtrail.labels.taxonomy import CATEGORIES

app = typer.Typer(help="Attribution labels: import, list, add, edit, delete.", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
CATEGORY_HELP = f"One of: {', '.join(CATEGORIES)}."


class Importer(StrEnum):
    tagpack = "tagpack"
    ofac_xml = "ofac-xml"
    ofac_list = "ofac-list"
    csv = "csv"


@contextmanager
def _progress(description: str) -> Iterator[ProgressFn]:
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(description, total=None, note="")

        def update(ev: ImportProgress) -> None:
            bar.update(task, completed=ev.done, total=ev.total or None, note=ev.note)

        yield update


def _summary(reports: list[SourceReport]) -> None:
    table = Table(title="Imported label sources", title_justify="left")
    for col in ("source", "imported", "skipped", "reasons / warnings"):
        table.add_column(col, justify="right" if col in ("imported", "skipped") else "left", overflow="fold")
    for r in reports:
        notes = [f"{n:,} {why}" for why, n in sorted(r.skipped.items(), key=lambda x: -x[1])]
        notes += [f"[yellow]warning[/]: {n:,} {why}" for why, n in sorted(r.warnings.items())]
        table.add_row(r.source, f"{r.imported:,}", f"{sum(r.skipped.values()):,}", "; ".join(notes))
    total = sum(r.imported for r in reports)
    skipped = sum(sum(r.skipped.values()) for r in reports)
    table.add_row("[bold]total", f"[bold]{total:,}", f"[bold]{skipped:,}", f"{len(reports)} sources")
    out.print(table)


@app.command("import")
def import_(
    kind: Annotated[Importer, typer.Argument(help="Format: tagpack, ofac-xml, ofac-list or csv.")],
    path: Annotated[
        Path,
        typer.Argument(help="File, or a directory of packs (tagpack) or of per-asset lists (ofac-list)."),
    ],
    entities: Annotated[
        Path | None,
        typer.Option(
            "--entities",
            help="ofac-list only: sanctioned-addresses.json with entity names, programs and SDN uids.",
        ),
    ] = None,
    json: Json = False,
) -> None:
    """Import labels; each source is replaced whole (a re-import never duplicates)."""
    if entities is not None and kind is not Importer.ofac_list:
        raise InvalidInput("--entities applies to ofac-list imports only", "drop --entities")
    with store() as con, _progress(f"labels {kind.value}") as progress:
        if kind is Importer.tagpack:
            reports = tagpack.import_tagpacks(con, path, progress)
        elif kind is Importer.ofac_xml:
            reports = ofac.import_ofac_xml(con, path, progress)
        elif kind is Importer.ofac_list:
            reports = ofac.import_ofac_lists(con, path, entities, progress)
        else:
            reports = csv_import.import_csv(con, path, progress)
    if json:
        print_json([r.as_dict() for r in reports])
        return
    _summary(reports)


@app.command("list")
def list_(
    chain: Annotated[str | None, typer.Option("--chain", help="Only labels on this chain.")] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="Only labels of this address (EVM: any case).")
    ] = None,
    source: Annotated[str | None, typer.Option("--source", help="Only labels of this source.")] = None,
    category: Annotated[str | None, typer.Option("--category", help=CATEGORY_HELP)] = None,
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many labels.")] = 100,
    json: Json = False,
) -> None:
    """Labels matching every filter given, oldest first; says so when the list is truncated."""
    with store(read_only=True) as con:
        result = label_store.list_labels(con, chain, address, source, category, limit)
    if json:
        print_json({"labels": result.labels, "total": result.total, "truncated": result.truncated})
        return
    table = Table(title="Labels", title_justify="left")
    for col in ("id", "chain", "address", "label", "category", "conf.", "definer", "source"):
        table.add_column(col, justify="right" if col in ("id", "conf.") else "left", overflow="fold")
    for lb in result.labels:
        table.add_row(
            str(lb["label_id"]),
            lb["chain"],
            lb["address"],
            lb["label"],
            lb["category"],
            "[yellow]unknown[/]" if lb["confidence"] is None else str(lb["confidence"]),
            "yes" if lb["is_cluster_definer"] else "",
            lb["source"],
        )
    out.print(table)
    if result.truncated:
        out.print(
            f"[yellow]truncated[/]: showing {len(result.labels):,} of {result.total:,} labels "
            "(raise --limit or add filters)"
        )
    elif not result.labels:
        out.print("no labels match")


def _show(lb: dict[str, Any], title: str, json: bool) -> None:
    if json:
        print_json(lb)
        return
    out.print(kv_table(title, list(lb.items())))


@app.command("add")
def add(
    address: Annotated[str, typer.Argument(metavar="ADDRESS", help="The address to label.")],
    chain: Annotated[
        str, typer.Option("--chain", help="Chain of the address (e.g. bitcoin, ethereum, tron).")
    ],
    label: Annotated[str, typer.Option("--label", help="The label text, e.g. 'Binance deposit'.")],
    category: Annotated[str, typer.Option("--category", help=CATEGORY_HELP)],
    confidence: Annotated[int | None, typer.Option("--confidence", help="0-100; omit for unknown.")] = None,
    source: Annotated[str, typer.Option("--source", help="Where the label comes from.")] = "manual",
    context: Annotated[str | None, typer.Option("--context", help="A JSON object or free text.")] = None,
    definer: Annotated[
        bool, typer.Option("--definer", help="The label holds for the address's whole cluster.")
    ] = False,
    json: Json = False,
) -> None:
    """Add one label by hand."""
    with store() as con:
        lb = label_store.add_label(
            con,
            chain,
            address,
            label,
            category,
            confidence,
            source,
            label_store.parse_context(context),
            definer,
        )
    _show(lb, f"Added label {lb['label_id']}", json)


@app.command("edit")
def edit(
    label_id: Annotated[int, typer.Argument(metavar="LABEL_ID", help="Id shown by `labels list`.")],
    label: Annotated[str | None, typer.Option("--label", help="New label text.")] = None,
    category: Annotated[str | None, typer.Option("--category", help=CATEGORY_HELP)] = None,
    confidence: Annotated[int | None, typer.Option("--confidence", help="New confidence 0-100.")] = None,
    context: Annotated[
        str | None, typer.Option("--context", help="New context: a JSON object or free text.")
    ] = None,
    definer: Annotated[
        bool | None,
        typer.Option("--definer/--no-definer", help="Whether the label holds for the whole cluster."),
    ] = None,
    json: Json = False,
) -> None:
    """Change fields of one label (the others stay)."""
    with store() as con:
        lb = label_store.edit_label(
            con,
            label_id,
            label,
            category,
            confidence,
            label_store.parse_context(context) if context is not None else None,
            definer,
        )
    _show(lb, f"Edited label {label_id}", json)


@app.command("delete")
def delete(
    label_id: Annotated[int, typer.Argument(metavar="LABEL_ID", help="Id shown by `labels list`.")],
    json: Json = False,
) -> None:
    """Delete one label."""
    with store() as con:
        lb = label_store.delete_label(con, label_id)
    _show(lb, f"Deleted label {label_id}", json)
