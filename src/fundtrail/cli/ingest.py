"""``fundtrail ingest ...``: bring chain data into the store."""

from __future__ import annotations

from dataclasses import asdict
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
from fundtrail.cli.render import err, ingest_progress, out, print_json, sat
from fundtrail.cli.state import store
from fundtrail.ingest.bitcoin_files import IngestSummary, ingest_block_files
from fundtrail.ingest.bitcoin_rpc import DEFAULT_BATCH_BLOCKS, DEFAULT_POLL_S, connect_node, ingest_rpc
from fundtrail.ingest.bitcoin_tx import ingest_raw_transactions

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


@app.command("bitcoin-tx")
def bitcoin_tx(
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="FILE|HEX",
            help="A raw transaction in hex, or a file holding hex (one transaction per line) or one raw "
            "binary transaction.",
        ),
    ],
    network: Network = "mainnet",
    json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Store single raw Bitcoin transactions outside any block (as received from an exchange or found on a
    seized device). Inputs resolve against the stored outputs; a transaction stored already is left as
    it is; when a block holding it is ingested later, the transaction becomes confirmed. Double spends
    against stored transactions are reported."""
    net = get_network(network)
    with store() as con:
        r = ingest_raw_transactions(con, sources, net)
    if json:
        print_json([{**asdict(t), "status": t.status} for t in r.loose])
        return
    for t in r.loose:
        fee = "fee unknown" if t.fee is None else f"fee {sat(t.fee)}"
        out.print(
            f"{t.txid}: {t.status}; {t.inputs} input(s), {t.unresolved} unresolved; {fee}", highlight=False
        )
        for c in t.conflicts:
            state = "confirmed" if c.confirmed else "unconfirmed"
            at = f" at height {c.height}" if c.height is not None else ""
            out.print(
                f"[yellow]double spend[/]: input {c.n} spends {c.prev_txid}:{c.prev_vout}, "
                f"also spent by {state} transaction {c.txid}{at}",
                highlight=False,
            )
    err.print(
        f"stored {r.txs:,} of {len(r.loose):,} transactions ({r.skipped:,} already stored), "
        f"{r.unresolved:,} inputs unresolved, {r.late_resolved:,} earlier inputs resolved, "
        f"{r.new_addresses:,} new addresses"
    )


def _register_more() -> None:
    from fundtrail.cli import ingest_ethereum_etl, ingest_evm_rpc, ingest_tron

    for module in (ingest_ethereum_etl, ingest_evm_rpc, ingest_tron):
        module.register(app)


_register_more()
