"""What the node-following ``ingest`` commands (bitcoin-rpc, evm-rpc, tron) share: their options, the
run with a progress bar, and the summary line about heights, requests and reorgs."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Annotated, Any, TypeVar

import duckdb
import typer

from fundtrail.cli.render import err, ingest_progress
from fundtrail.cli.state import store
from fundtrail.ingest.follow import FollowSummary
from fundtrail.ingest.progress import ProgressFn

C = TypeVar("C")
S = TypeVar("S", bound=FollowSummary)


def from_option(unit: str = "height") -> Any:
    return typer.Option("--from", help=f"First {unit} (default: resume after the stored tip).")


def to_option(unit: str = "height") -> Any:
    return typer.Option("--to", help=f"Last {unit} (default: the node's tip).")


FromHeight = Annotated[int | None, from_option()]
ToHeight = Annotated[int | None, to_option()]
Follow = Annotated[
    bool, typer.Option("--follow", help="After reaching the tip, keep polling for new blocks (Ctrl-C stops).")
]
BatchSize = Annotated[
    int, typer.Option("--batch-size", help="Blocks per batch; each batch is one transaction.")
]
PollSeconds = Annotated[
    float, typer.Option("--poll-seconds", help="With --follow: seconds between looks at the node's tip.")
]


def follow_node(
    client: AbstractContextManager[C],
    description: str,
    job: Callable[[duckdb.DuckDBPyConnection, C, ProgressFn], S],
) -> S:
    """Run ``job`` with the node's client, the store and a progress bar, closing all three after."""
    with client as c, store() as con, ingest_progress(description, "blocks") as progress:
        return job(con, c, progress)


def report_follow(s: FollowSummary, fetched: str = "", more: str = "") -> None:
    """The line every node-following command ends with; ``fetched`` adds to "fetched N blocks", ``more``
    goes before the reorgs."""
    err.print(
        f"heights {s.start_height}..{s.stored_tip} (node tip {s.node_tip}); fetched {s.fetched:,} blocks"
        f"{fetched} in {s.requests:,} requests ({s.retries:,} retried); {more}reorgs: {s.reorgs} "
        f"({s.rolled_back:,} blocks rolled back)"
    )
