"""``fundtrail ingest tron``: TRON blocks, TRX and TRC-20 transfers from a node's HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer

from fundtrail.cli.render import err, ingest_progress
from fundtrail.cli.state import store
from fundtrail.ingest.tron_http import (
    DEFAULT_BATCH_BLOCKS,
    DEFAULT_POLL_S,
    TronIngestSummary,
    connect_node,
    ingest_tron,
)


def register(app: typer.Typer) -> None:
    """Add the command to the ``ingest`` group."""
    app.command("tron")(tron)


def tron(
    url: Annotated[
        str,
        typer.Option(
            "--url",
            help="The node's HTTP API: http://host:8090 (java-tron full node) or https://api.trongrid.io.",
        ),
    ],
    from_height: Annotated[
        int | None, typer.Option("--from", help="First height (default: resume after the stored tip).")
    ] = None,
    to_height: Annotated[
        int | None, typer.Option("--to", help="Last height (default: the node's tip).")
    ] = None,
    follow: Annotated[
        bool,
        typer.Option("--follow", help="After reaching the tip, keep polling for new blocks (Ctrl-C stops)."),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Blocks per batch; each batch is one transaction.")
    ] = DEFAULT_BATCH_BLOCKS,
    poll_seconds: Annotated[
        float, typer.Option("--poll-seconds", help="With --follow: seconds between looks at the node's tip.")
    ] = DEFAULT_POLL_S,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="API key for TronGrid-style gateways (sent as TRON-PRO-API-KEY)."),
    ] = None,
) -> None:
    """Ingest TRON blocks from a node's HTTP API (getblockbylimitnext or getblockbynum, and
    gettransactioninfobyblocknum): TRX transfers, TRC-20 Transfer logs (USDT first), internal TRX
    transfers and fees. Resumes after the stored tip, follows reorgs, retries transient failures;
    --follow keeps up with new blocks."""
    with (
        connect_node(url, api_key) as client,
        store() as con,
        ingest_progress("tron", "blocks") as progress,
    ):
        s = ingest_tron(con, client, from_height, to_height, follow, batch_size, progress, poll_seconds)
    report(s)


def report(s: TronIngestSummary) -> None:
    err.print(
        f"stored {s.blocks:,} blocks ({s.skipped:,} already stored), {s.txs:,} txs, "
        f"{s.transfers:,} transfers ({s.token_transfers:,} TRC-20, {s.internal_transfers:,} internal), "
        f"{s.new_addresses:,} new addresses"
    )
    err.print(
        f"heights {s.start_height}..{s.stored_tip} (node tip {s.node_tip}); fetched {s.fetched:,} blocks "
        f"({'getblockbylimitnext' if s.limitnext else 'getblockbynum'}) and {s.info_requests:,} receipt "
        f"lists in {s.requests:,} requests ({s.retries:,} retried); reorgs: {s.reorgs} "
        f"({s.rolled_back:,} blocks rolled back)"
    )
    skipped = {
        "non-standard Transfer logs": s.odd_transfer_logs,
        "internal transactions with a negative callValue": s.negative_call_values,
        "transactions of an unknown contract type (tx_type null)": s.unknown_types,
        "transactions without a receipt (fee unknown)": s.missing_infos,
    }
    for what, n in skipped.items():
        if n:
            err.print(f"note: {n:,} {what}")
