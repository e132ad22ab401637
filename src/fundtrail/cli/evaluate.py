"""``fundtrail evaluate``: score what the platform found against a simulated world's ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fundtrail.cli.render import err, out, print_json
from fundtrail.cli.state import state, store
from fundtrail.evaluation import report
from fundtrail.evaluation.inputs import load_truth
from fundtrail.evaluation.run import check_options, evaluate
from fundtrail.evaluation.trace_runs import DEFAULT_HOPS, DEFAULT_POLICY
from fundtrail.settings import db_path
from fundtrail.tracing.model import POLICIES


def evaluate_command(
    truth: Annotated[
        Path, typer.Option("--truth", help="A `fundtrail simulate --out` directory, or its truth/ folder.")
    ],
    json: Annotated[bool, typer.Option("--json", help="Print the scores as JSON.")] = False,
    policy: Annotated[
        str, typer.Option("--policy", help=f"Taint policy of the traces: {', '.join(POLICIES)}.")
    ] = DEFAULT_POLICY,
    hops: Annotated[int, typer.Option("--hops", help="Transactions each trace follows.")] = DEFAULT_HOPS,
) -> None:
    """Score the store against a simulated world's truth: clustering (pairwise precision and recall of
    entities), tracing (share of the laundered value followed to the true cash-out points, false end
    points) and, once detectors exist, detection per typology."""
    check_options(policy, hops)
    world = load_truth(truth)
    n = world.table("seeds").num_rows
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with store(read_only=True) as con, Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("scoring the clusters", total=n)

        def traced(done: int, total: int) -> None:
            bar.update(task, description="tracing the seeds", completed=done, total=total)

        result = evaluate(con, world, policy, hops, db_path(state.db), traced)
    if json:
        print_json(result)
    else:
        report.render(result, out)
