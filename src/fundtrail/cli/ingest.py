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
