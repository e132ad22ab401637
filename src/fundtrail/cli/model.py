"""``fundtrail model train|evaluate``: the learned scorer, trained on a simulated world's truth and
evaluated on another world (docs/detectors/scorer.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fundtrail.chains.registry import chain as get_chain
from fundtrail.cli.render import err, out, print_json
from fundtrail.cli.state import store
from fundtrail.detection.context import StoreContext
from fundtrail.detection.scorer.evaluate import evaluate_world, model_dirs
from fundtrail.detection.scorer.labels import world_chains
from fundtrail.detection.scorer.model import load_model, train_world
from fundtrail.errors import NotFound
from fundtrail.evaluation.inputs import load_truth

app = typer.Typer(
    help="The learned scorer: train on a simulated world, evaluate on another.", no_args_is_help=True
)

TruthOpt = Annotated[
    Path, typer.Option("--truth", help="A `fundtrail simulate --out` directory, or its truth/ folder.")
]
ChainOpt = Annotated[
    str | None, typer.Option("--chain", help="One chain (default: every chain of the world in the store).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _bar() -> Progress:
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    return Progress(*columns, console=err, transient=True)


def _f(v: Any) -> str:
    return "[yellow]n/a[/]" if v is None else f"{v:.3f}"


@app.command("train")
def train_command(
    truth: TruthOpt,
    chain: ChainOpt = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Model directory (one sub-directory per chain is written).")
    ] = Path("fundtrail-model"),
    json: JsonOpt = False,
) -> None:
    """Train the scorer on the store's transactions (the store given by --db holds the ingested, clustered
    world), labelled by the world's truth; calibrate it on a held-out quarter; save it to --out/CHAIN."""
    world = load_truth(truth)
    models: list[dict[str, Any]] = []
    with store(read_only=True) as con, _bar() as bar:
        chains = [get_chain(chain).name] if chain else world_chains(con, world)
        task = bar.add_task("training", total=len(chains))
        for c in chains:
            bar.update(task, description=f"training on {c}")
            path = train_world(con, world, c).save(out_dir / c)
            models.append({"chain": c, "path": str(path), "metadata": load_model(path).metadata})
            bar.advance(task)
    if json:
        print_json({"models": models})
        return
    t = Table(title=f"Models saved in {out_dir}/CHAIN (held-out quarter of the world)", title_justify="left")
    for col in ("chain", "rows", "illicit", "precision", "recall", "F1", "PR-AUC"):
        t.add_column(col)
    for m in models:
        md, h = m["metadata"], m["metadata"]["held_out_metrics"]
        t.add_row(
            m["chain"], f"{md['rows']:,}", f"{md['positives']:,}", _f(h["precision"]), _f(h["recall"]),
            _f(h["f1"]), _f(h["pr_auc"]),
        )  # fmt: skip
    out.print(t)


@app.command("evaluate")
def evaluate_command(
    model: Annotated[Path, typer.Option("--model", help="A model directory written by `model train`.")],
    truth: TruthOpt,
    chain: ChainOpt = None,
    json: JsonOpt = False,
) -> None:
    """Score every transaction of the store (another world than the training one, ingested and
    clustered) and compare with that world's truth: precision, recall and F1 of the illicit class at the
    calibrated 0.5 threshold, the best-F1 threshold, PR-AUC, next to published anchors."""
    world = load_truth(truth)
    scorers = [load_model(p) for p in model_dirs(model)]
    if chain:
        name = get_chain(chain).name
        scorers = [s for s in scorers if s.metadata.get("chain") == name]
    if not scorers:
        where = f" for {chain}" if chain else ""
        raise NotFound(f"no model{where} in {model}", "train one with `fundtrail model train --out DIR`")
    results = []
    with store(read_only=True) as con, _bar() as bar:
        task = bar.add_task("scoring", total=len(scorers))
        for s in scorers:
            c = str(s.metadata.get("chain"))
            bar.update(task, description=f"scoring {c}")
            results.append(evaluate_world(s, StoreContext(con, get_chain(c).name), world))
            bar.advance(task)
    if json:
        print_json({"evaluations": results})
        return
    _render(results)


def _render(results: list[dict[str, Any]]) -> None:
    for r in results:
        tw, ew = r["model"]["trained_on"], r["world"]
        m, b = r["illicit"], r["illicit"]["best_f1"]
        t = Table(
            title=f"{r['chain']}: trained on {tw.get('scenario')} seed {tw.get('seed')}, "
            f"evaluated on {ew.get('scenario')} seed {ew.get('seed')}",
            title_justify="left",
            show_header=False,
        )
        t.add_column(style="bold cyan")
        t.add_column()
        t.add_row("transactions (illicit)", f"{m['rows']:,} ({m['positives']:,})")
        t.add_row("flagged at 0.5", f"{m['flagged']:,}")
        t.add_row("precision / recall / F1", f"{_f(m['precision'])} / {_f(m['recall'])} / {_f(m['f1'])}")
        t.add_row("PR-AUC", _f(m["pr_auc"]))
        t.add_row("best F1 (threshold, chosen on this world)", f"{_f(b['f1'])} ({_f(b['threshold'])})")
        out.print(t)
        if r["same_seed"]:
            out.print("[yellow]warning: evaluated on the world it was trained on (same seed): not a test[/]")
        top = Table(title=f"Highest scores on {r['chain']}", title_justify="left")
        for col in ("txid", "p", "illicit", "main reason"):
            top.add_column(col, overflow="fold")
        for x in r["top"][:5]:
            why = x["reasons"][0]["text"] if x["reasons"] else ""
            top.add_row(x["txid"][:18] + "…", f"{x['probability']:.3f}", "yes" if x["illicit"] else "no", why)
        out.print(top)
    a = Table(title="Published anchors: " + results[0]["anchors_note"], title_justify="left")
    a.add_column("model")
    a.add_column("illicit F1")
    for anchor in results[0]["anchors"]:
        a.add_row(anchor["name"], f"{anchor['illicit_f1']:.2f}")
    out.print(a)
