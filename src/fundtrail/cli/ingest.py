"""``fundtrail ingest ...``: bring chain data into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fundtrail.chains.bitcoin.blockfile import read_xor_key
from fundtrail.chains.bitcoin.network import network as get_network
from fundtrail.cli.ingest_common import (
    BatchSize,
    Follow,
    FromHeight,
    PollSeconds,
    ToHeight,
    follow_node,
    report_follow,
)
from fundtrail.cli.render import err, ingest_progress
from fundtrail.cli.state import store
from fundtrail.ingest.bitcoin_files import IngestSummary, ingest_block_files
from fundtrail.ingest.bitcoin_rpc import DEFAULT_BATCH_BLOCKS, DEFAULT_POLL_S, connect_node, ingest_rpc

app = typer.Typer(help="Bring chain data into the store.", no_args_is_help=True)

Network = Annotated[
    str, typer.Option("--network", help="mainnet, testnet, signet or regtest (address prefixes differ).")
]


def report(s: IngestSummary) -> None:
    err.print(
        f"stored {s.blocks:,} blocks ({s.skipped:,} already stored), {s.txs:,} txs, {s.inputs:,} inputs "
        f"({s.unresolved:,} unresolved, {s.late_resolved:,} earlier ones resolved), {s.outputs:,} outputs, "
        f"{s.new_addresses:,} new addresses"
    )


@app.command("bitcoin-blocks")
def bitcoin_blocks(
    paths: Annotated[list[Path], typer.Argument(help="blk*.dat files, or files holding one block.")],
    network: Network = "mainnet",
    xor_key: Annotated[
        Path | None, typer.Option("--xor-key", help="blocks/xor.dat of Bitcoin Core >= 28.")
    ] = None,
) -> None:
    """Ingest Bitcoin block files: blk*.dat (magic + length framing) or one serialized block (binary or
    hex text) per file. Every block's merkle root, witness commitment and proof of work are checked."""
    net = get_network(network)
    key = read_xor_key(xor_key) if xor_key else None
    with store() as con, ingest_progress("bitcoin blocks", "bytes") as progress:
        summary = ingest_block_files(con, paths, net, key, progress)
    report(summary)


@app.command("bitcoin-rpc")
def bitcoin_rpc(
    url: Annotated[
        str,
        typer.Option(
            "--url",
            help="Bitcoin Core JSON-RPC endpoint, http://user:pass@host:8332 (port defaults per network).",
        ),
    ],
    network: Network = "mainnet",
    from_height: FromHeight = None,
    to_height: ToHeight = None,
    follow: Follow = False,
    batch_size: BatchSize = DEFAULT_BATCH_BLOCKS,
    poll_seconds: PollSeconds = DEFAULT_POLL_S,
    rpc_cookie: Annotated[
        Path | None,
        typer.Option("--rpc-cookie", help="The node's .cookie file, instead of user:pass in --url."),
    ] = None,
) -> None:
    """Ingest Bitcoin blocks from a Bitcoin Core node over JSON-RPC (batched getblockhash/getblock), with
    the same checks as block files. Resumes after the stored tip, follows reorgs (rolls back to the fork
    point and re-ingests), retries transient failures; --follow keeps up with new blocks."""
    net = get_network(network)
    s = follow_node(
        connect_node(url, net, rpc_cookie),
        "bitcoin rpc",
        lambda con, client, progress: ingest_rpc(
            con, client, net, from_height, to_height, follow, batch_size, progress, poll_seconds
        ),
    )
    report(s)
    report_follow(s)


def _register_more() -> None:
    from fundtrail.cli import ingest_ethereum_etl, ingest_evm_rpc, ingest_tron

    for module in (ingest_ethereum_etl, ingest_evm_rpc, ingest_tron):
        module.register(app)


_register_more()
