"""``fundtrail ingest evm-rpc``: EVM blocks, native and token transfers from a node's JSON-RPC."""

from __future__ import annotations

from typing import Annotated

import typer

from fundtrail.cli.ingest_common import (
    BatchSize,
    Follow,
    PollSeconds,
    follow_node,
    from_option,
    report_follow,
    to_option,
)
from fundtrail.cli.render import err
from fundtrail.ingest.evm_rpc import (
    CHAIN_IDS,
    DEFAULT_BATCH_BLOCKS,
    DEFAULT_POLL_S,
    EvmRpcSummary,
    check_options,
    connect_node,
    ingest_evm_rpc,
)


def register(app: typer.Typer) -> None:
    """Add the command to the ``ingest`` group."""
    app.command("evm-rpc")(evm_rpc)


def evm_rpc(
    url: Annotated[
        str,
        typer.Option(
            "--url", help="The node's JSON-RPC endpoint: http://host:8545 (or https://..., user:pass@)."
        ),
    ],
    chain: Annotated[
        str,
        typer.Option("--chain", help=f"The node's chain: {', '.join(CHAIN_IDS)} (checked with eth_chainId)."),
    ],
    from_height: Annotated[int | None, from_option("block number")] = None,
    to_height: Annotated[int | None, to_option("block number")] = None,
    follow: Follow = False,
    batch_size: BatchSize = DEFAULT_BATCH_BLOCKS,
    poll_seconds: PollSeconds = DEFAULT_POLL_S,
) -> None:
    """Ingest an EVM chain from a node's standard JSON-RPC (eth_getBlockByNumber, eth_getBlockReceipts or
    eth_getTransactionReceipt, trace_block or debug_traceBlockByNumber when offered): native, fee, token,
    internal and withdrawal transfers, token symbol and decimals from the contracts. Resumes after the
    stored tip, follows reorgs, retries transient failures; --follow keeps up with new blocks."""
    check_options(chain, from_height, to_height, batch_size, poll_seconds)  # before the store is opened
    s = follow_node(
        connect_node(url),
        f"{chain} rpc",
        lambda con, client, progress: ingest_evm_rpc(
            con, client, chain, from_height, to_height, follow, batch_size, progress, poll_seconds
        ),
    )
    report(s)


def report(s: EvmRpcSummary) -> None:
    err.print(
        f"stored {s.blocks:,} {s.chain} blocks ({s.skipped:,} already stored), {s.txs:,} txs, "
        f"{s.transfers:,} transfers ({s.token_transfers:,} token, {s.internal_transfers:,} internal, "
        f"{s.withdrawals:,} withdrawals, the rest native value and fees), {s.new_addresses:,} new addresses, "
        f"{s.new_assets:,} new assets"
    )
    report_follow(
        s,
        more=f"receipts: {s.receipts}; traces: {s.traces}; token contracts asked for metadata: "
        f"{s.tokens_asked:,} ({s.tokens_described:,} answered); ",
    )
    if s.traces == "unavailable":
        err.print(
            "[yellow]traces: unavailable[/]: the node offers neither trace_block nor "
            "debug_traceBlockByNumber, so internal transfers (value moved by contracts) are missing"
        )
    if s.traces_unreadable:
        err.print(
            f"[yellow]{s.traces_unreadable:,} value-moving trace frames the node did not state in full[/]: "
            "internal transfers are incomplete there"
        )
    if s.transfer_logs_skipped:
        err.print(
            f"skipped {s.transfer_logs_skipped:,} Transfer logs not of the 3-topic ERC-20 form (ERC-721 etc.)"
        )
