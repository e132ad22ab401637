"""``fundtrail cluster``, ``fundtrail show cluster`` and ``fundtrail explain-cluster``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fundtrail.chains.registry import CHAINS
from fundtrail.chains.registry import chain as get_chain
from fundtrail.cli.render import err, kv_table, labels_table, out, print_json
from fundtrail.cli.state import store
from fundtrail.clustering import config as cluster_config
from fundtrail.clustering import engine, read
from fundtrail.settings import config_path

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ChainOpt = Annotated[str, typer.Option("--chain", help=f"One of: {', '.join(CHAINS)}.")]
_STAGES = 5  # progress steps the engine reports per chain


def cluster(
    chain: Annotated[
        list[str] | None, typer.Option("--chain", help="Chain to cluster (repeatable; default: every chain).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML configuration ([clustering] table).")
    ] = None,
    change: Annotated[
        str | None,
        typer.Option(
            "--change",
            help=f"Change heuristics, comma-separated ({', '.join(cluster_config.CHANGE_RULES)}) or 'none'.",
        ),
    ] = None,
    account: Annotated[
        str | None,
        typer.Option(
            "--account",
            help=f"Account-chain heuristics ({', '.join(cluster_config.ACCOUNT_RULES)}) or 'none'.",
        ),
    ] = None,
    payjoin_aware: Annotated[
        bool | None, typer.Option("--payjoin-aware/--no-payjoin-aware", help="Leave PayJoin candidates out.")
    ] = None,
    coinjoin_exclusion: Annotated[
        bool | None,
        typer.Option("--coinjoin-exclusion/--no-coinjoin-exclusion", help="Leave detected CoinJoins out."),
    ] = None,
    max_cluster_size: Annotated[
        int | None,
        typer.Option("--max-cluster-size", help="Refuse non-multi-input merges making a larger cluster."),
    ] = None,
    full: Annotated[bool, typer.Option("--full", help="Recompute from scratch.")] = False,
    json: Json = False,
) -> None:
    """Build or update the address clusters (incrementally: only what is new since the last run)."""
    cfg = cluster_config.load(config_path(config)).with_overrides(
        change=cluster_config.parse_list(change),
        account=cluster_config.parse_list(account),
        payjoin_aware=payjoin_aware,
        coinjoin_exclusion=coinjoin_exclusion,
        max_cluster_size=max_cluster_size,
    )
    chains = [get_chain(c).name for c in chain] if chain else None
    with store() as con:
        todo = chains or engine.stored_chains(con)
        columns = [TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=err, transient=True) as bar:
            task = bar.add_task("clustering", total=_STAGES * max(len(todo), 1))

            def step(msg: str) -> None:
                bar.update(task, advance=1, description=msg)

            reports = engine.cluster(con, cfg, todo, full=full, progress=step)
    if json:
        print_json([r.as_json() for r in reports])
        return
    t = Table(title="Clusters", title_justify="left")
    for col in ("chain", "run", "txs", "deferred", "excluded", "merges", "refused", "clusters", "largest"):
        t.add_column(col, justify="right" if col in ("txs", "deferred", "clusters", "largest") else "left")
    for r in reports:
        t.add_row(
            r.chain,
            f"{r.mode} ({r.reason})",
            f"{r.txs_processed:,}",
            f"{r.deferred:,}",
            _counts(r.excluded),
            _counts(r.merges),
            _counts(r.refusals),
            f"{r.clusters:,} ({r.clustered_addresses:,} addr.)",
            f"{r.largest:,}",
        )
    out.print(t)


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in d.items()) or "-"


def show_cluster(
    ref: Annotated[str, typer.Argument(help="An address of the cluster, or the cluster id.")],
    chain: ChainOpt = "bitcoin",
    sample: Annotated[int, typer.Option("--sample", help="Addresses to list.")] = read.SAMPLE,
    json: Json = False,
) -> None:
    """A cluster: its size, sample addresses, labels and categories, the heuristics that built it, and
    conflicting attributions."""
    c = get_chain(chain)
    with store(read_only=True) as con:
        data = read.cluster(con, c, ref, sample)
    if json:
        print_json(data)
        return
    rows: list[tuple[str, Any]] = [
        ("chain", data["chain"]),
        ("cluster id", data["cluster_id"]),
        ("size", f"{data['size']:,} addresses"),
        ("definers", ", ".join(sorted({d["label"] for d in data["definers"]})) or "-"),
        ("categories", ", ".join(data["categories"]) or "-"),
        ("heuristics", _counts(data["heuristics"])),
        ("refused merges", data["refused_merges"]),
    ]
    out.print(kv_table(f"Cluster {data['cluster_id']}", rows))
    for conflict in data["conflicts"]:
        out.print(f"[bold red]conflict:[/] {conflict['kind']}: {', '.join(conflict['entities'])}")
    if data["labels"]:
        out.print(labels_table(data["labels"], with_address=True))
    out.print("addresses: " + ", ".join(data["addresses_sample"]) + (" …" if data["size"] > sample else ""))


def explain_cluster(
    a: Annotated[str, typer.Argument(help="First address.")],
    b: Annotated[str, typer.Argument(help="Second address.")],
    chain: ChainOpt = "bitcoin",
    json: Json = False,
) -> None:
    """The chain of evidence linking two addresses: each merge from one to the other with its heuristic
    and transaction — or that they are not linked."""
    c = get_chain(chain)
    with store(read_only=True) as con:
        data = read.explain(con, c, a, b)
    if json:
        print_json(data)
        return
    if not data["linked"]:
        out.print(
            f"{data['a']} and {data['b']} are not linked: clusters {data['clusters'][0]} and "
            f"{data['clusters'][1]}"
        )
        return
    t = Table(title=f"{data['a']} → {data['b']}: cluster {data['cluster_id']}", title_justify="left")
    for col in ("#", "from", "to", "heuristic", "transaction"):
        t.add_column(col)
    for i, s in enumerate(data["steps"], 1):
        t.add_row(str(i), s["from"], s["to"], s["heuristic"], s["txid"] or "?")
    out.print(t)
    if not data["steps"]:
        out.print("the same address")
