"""``fundtrail ingest tron``: TRON blocks, TRX and TRC-20 transfers from a node's HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer

from fundtrail.cli.ingest_common import (
    BatchSize,
    Follow,
    FromHeight,
    PollSeconds,
    ToHeight,
    follow_node,
    report_follow,
)
from fundtrail.cli.render import err
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
    from_height: FromHeight = None,
    to_height: ToHeight = None,
    follow: Follow = False,
    batch_size: BatchSize = DEFAULT_BATCH_BLOCKS,
    poll_seconds: PollSeconds = DEFAULT_POLL_S,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", help="API key for TronGrid-style gateways (sent as TRON-PRO-API-KEY)."),
    ] = None,
) -> None:
    """Ingest TRON blocks from a node's HTTP API (getblockbylimitnext or getblockbynum, and
    gettransactioninfobyblocknum): TRX transfers, TRC-20 Transfer logs (USDT first), internal TRX
    transfers and fees. Resumes after the stored tip, follows reorgs, retries transient failures;
    --follow keeps up with new blocks."""
    s = follow_node(
        connect_node(url, api_key),
        "tron",
        lambda con, client, progress: ingest_tron(
            con, client, from_height, to_height, follow, batch_size, progress, poll_seconds
        ),
    )
    report(s)


def report(s: TronIngestSummary) -> None:
    err.print(
        f"stored {s.blocks:,} blocks ({s.skipped:,} already stored), {s.txs:,} txs, "
        f"{s.transfers:,} transfers ({s.token_transfers:,} TRC-20, {s.internal_transfers:,} internal), "
        f"{s.new_addresses:,} new addresses"
    )
    method = "getblockbylimitnext" if s.limitnext else "getblockbynum"
    report_follow(s, fetched=f" ({method}) and {s.info_requests:,} receipt lists")
    skipped = {
        "non-standard Transfer logs": s.odd_transfer_logs,
        "internal transactions with a negative callValue": s.negative_call_values,
        "transactions of an unknown contract type (tx_type null)": s.unknown_types,
        "transactions without a receipt (fee unknown)": s.missing_infos,
    }
    for what, n in skipped.items():
        if n:
            err.print(f"note: {n:,} {what}")
