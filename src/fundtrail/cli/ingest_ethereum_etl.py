"""``fundtrail ingest ethereum-etl``: ethereum-etl exports of an EVM chain into the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fundtrail.cli.render import err
from fundtrail.cli.state import store
from fundtrail.ingest.ethereum_etl import ingest_ethereum_etl

FileOpt = Annotated[Path, typer.Option(help="ethereum-etl export, CSV or JSON lines.")]
MaybeFile = Annotated[Path | None, typer.Option(help="ethereum-etl export, CSV or JSON lines.")]


def register(app: typer.Typer) -> None:
    app.command("ethereum-etl")(ethereum_etl)


def ethereum_etl(
    blocks: FileOpt,
    transactions: FileOpt,
    receipts: MaybeFile = None,
    logs: MaybeFile = None,
    token_transfers: Annotated[
        Path | None,
        typer.Option("--token-transfers", help="token_transfers export (used when --logs is not given)."),
    ] = None,
    chain: Annotated[str, typer.Option(help="The EVM chain the export is from.")] = "ethereum",
    allow_missing_transactions: Annotated[
        bool,
        typer.Option(
            "--allow-missing-transactions",
            help="Accept logs/transfers of transactions the export lacks (a partial export).",
        ),
    ] = False,
) -> None:
    """Ingest ethereum-etl exports (blocks, transactions, and optionally receipts, logs, token transfers):
    native value, fees, ERC-20 transfers and beacon withdrawals. The whole export is stored or nothing."""
    with store() as con, err.status("reading and checking the export"):
        s = ingest_ethereum_etl(
            con, chain, blocks, transactions, receipts, logs, token_transfers, allow_missing_transactions
        )
    w = s.written
    err.print(
        f"stored {w.blocks:,} blocks ({w.skipped:,} already stored), {w.txs:,} transactions, "
        f"{w.transfers:,} transfers (token transfers from {s.token_transfers_from}; "
        f"{s.logs_skipped:,} non-standard Transfer logs skipped; {s.withdrawals:,} withdrawals), "
        f"{w.new_addresses:,} new addresses, {w.new_assets:,} new assets"
    )
