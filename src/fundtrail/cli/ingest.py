"""``fundtrail ingest ...``: bring chain data into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fundtrail.chains.bitcoin.blockfile import read_xor_key
from fundtrail.chains.bitcoin.network import network as get_network
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
    rpc_cookie: Annotated[
        Path | None,
        typer.Option("--rpc-cookie", help="The node's .cookie file, instead of user:pass in --url."),
    ] = None,
) -> None:
    """Ingest Bitcoin blocks from a Bitcoin Core node over JSON-RPC (batched getblockhash/getblock), with
    the same checks as block files. Resumes after the stored tip, follows reorgs (rolls back to the fork
    point and re-ingests), retries transient failures; --follow keeps up with new blocks."""
    net = get_network(network)
    with (
        connect_node(url, net, rpc_cookie) as client,
        store() as con,
        ingest_progress("bitcoin rpc", "blocks") as progress,
    ):
        s = ingest_rpc(con, client, net, from_height, to_height, follow, batch_size, progress, poll_seconds)
    report(s)
    err.print(
        f"heights {s.start_height}..{s.stored_tip} (node tip {s.node_tip}); fetched {s.fetched:,} blocks "
        f"in {s.requests:,} requests ({s.retries:,} retried); reorgs: {s.reorgs} "
        f"({s.rolled_back:,} blocks rolled back)"
    )


def _register_more() -> None:
    from fundtrail.cli import ingest_ethereum_etl, ingest_evm_rpc, ingest_tron

    for module in (ingest_ethereum_etl, ingest_evm_rpc, ingest_tron):
        module.register(app)


_register_more()
