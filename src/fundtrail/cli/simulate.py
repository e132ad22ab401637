"""``fundtrail simulate``: generate a laundering world with ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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

from fundtrail.cli.render import err, out, print_json
from fundtrail.simulate.run import check_args, simulate
from fundtrail.simulate.scenario import load_scenario


def simulate_command(
    scenario: Annotated[
        str, typer.Option("--scenario", help="A preset (small, large) or a YAML scenario file.")
    ] = "small",
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives the same bytes.")] = 1,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Output directory (created; must be new or empty).")
    ] = Path("world"),
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out directory.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")] = False,
) -> None:
    """Simulate a world of honest activity and laundering operations on a UTXO chain (regtest blocks) and
    an account chain (ethereum-etl export with USDT), with its ground truth, labels and training cases."""
    sc = load_scenario(scenario)
    check_args(seed, out_dir, force)
    columns = [
        TextColumn("[bold]simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("blocks · {task.fields[txs]:,} txs · {task.fields[rate]:,.0f} txs/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("simulate", total=None, txs=0, rate=0.0)

        def progress(done: int, total: int, txs: int) -> None:
            elapsed = bar.tasks[0].elapsed or 1e-9
            bar.update(task, completed=done, total=total, txs=txs, rate=txs / elapsed)

        s = simulate(sc, seed, out_dir, progress, force)
    m = s.manifest
    if json:
        print_json({k: v for k, v in m.items() if k != "files"})
        return
    t = Table(title=f"World {s.scenario} (seed {s.seed}) in {s.out}", title_justify="left")
    t.add_column("what")
    t.add_column("count", justify="right")
    for chain, c in m["chains"].items():
        t.add_row(f"{chain} blocks", f"{c['blocks']:,}")
        t.add_row(f"{chain} transactions", f"{c['transactions']:,}")
    t.add_row("actors", f"{m['actors']:,}")
    for typology, n in m["operations"].items():
        t.add_row(f"operations: {typology}", str(n))
    t.add_row("training cases", ", ".join(m["cases"]) or "-")
    t.add_row(
        "generated in",
        f"{m['generation_seconds']:.1f} s ({m['transactions_per_second']:,.0f} txs/s)",
    )
    out.print(t)
    out.print(
        f"next: fundtrail ingest bitcoin-blocks --network regtest {s.out}/bitcoin/blk*.dat; "
        f"fundtrail ingest ethereum-etl --chain sim-ethereum --blocks {s.out}/ethereum/blocks.csv "
        f"--transactions {s.out}/ethereum/transactions.csv "
        f"--token-transfers {s.out}/ethereum/token_transfers.csv; "
        f"fundtrail labels import tagpack {s.out}/truth/labels.yaml"
    )
