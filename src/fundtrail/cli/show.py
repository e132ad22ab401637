"""``fundtrail show block|tx|address`` and ``fundtrail summary``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fundtrail.chains.bitcoin.network import by_chain
from fundtrail.cli.render import kv_table, out, print_json, sat
from fundtrail.cli.state import store
from fundtrail.store import bitcoin_read

app = typer.Typer(help="Show a block, a transaction or an address from the store.", no_args_is_help=True)

Chain = Annotated[
    str,
    typer.Option("--chain", help="bitcoin, bitcoin-testnet, bitcoin-signet or bitcoin-regtest."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("block")
def block(
    ref: Annotated[str, typer.Argument(help="Block height or hash.")],
    chain: Chain = "bitcoin",
    json: Json = False,
) -> None:
    """A block's header fields and integrity checks."""
    net = by_chain(chain)
    with store(read_only=True) as con:
        b = bitcoin_read.block(con, net, ref)
    if json:
        print_json(b)
        return
    out.print(kv_table(f"Block {b['height'] if b['height'] is not None else ''}", list(b.items())))


@app.command("tx")
def tx(
    txid: Annotated[str, typer.Argument(help="Transaction id (64 hex digits).")],
    chain: Chain = "bitcoin",
    json: Json = False,
) -> None:
    """A transaction with its inputs (resolved address and value where known), outputs and fee."""
    net = by_chain(chain)
    with store(read_only=True) as con:
        t = bitcoin_read.tx(con, net, txid)
    if json:
        print_json(t)
        return
    out.print(
        kv_table(
            f"Transaction {t['txid']}",
            [
                ("block", f"{t['height']} {t['block_hash']}"),
                ("time", t["time"]),
                ("fee", sat(t["fee"]) if not t["is_coinbase"] else "coinbase"),
                ("size / vsize", f"{t['size']} / {t['vsize']}"),
            ],
        ),
    )
    ins = Table(title="Inputs", title_justify="left")
    for col in ("#", "spends", "address", "value"):
        ins.add_column(col, justify="right" if col == "value" else "left")
    for n, i in enumerate(t["inputs"]):
        spends = "coinbase" if i.get("coinbase") else f"{i['prev_txid']}:{i['prev_vout']}"
        addr = i["address"] or ("" if i.get("coinbase") or i["resolved"] else "[yellow]unresolved[/]")
        ins.add_row(str(n), spends, addr, "" if i.get("coinbase") else sat(i["value"]))
    out.print(ins)
    outs = Table(title="Outputs", title_justify="left")
    for col in ("#", "address", "type", "value"):
        outs.add_column(col, justify="right" if col == "value" else "left")
    for o in t["outputs"]:
        outs.add_row(str(o["n"]), o["address"] or "", o["script_type"], sat(o["value"]))
    out.print(outs)


@app.command("address")
def address(
    addr: Annotated[str, typer.Argument(metavar="ADDRESS", help="A Bitcoin address.")],
    chain: Chain = "bitcoin",
    json: Json = False,
) -> None:
    """An address's activity in the store: transactions, received, sent, balance, first and last seen."""
    net = by_chain(chain)
    with store(read_only=True) as con:
        a = bitcoin_read.address(con, net, addr)
    if json:
        print_json(a)
        return
    rows = [(k, sat(v) if k in ("received", "sent", "balance") else v) for k, v in a.items()]
    out.print(kv_table(f"Address {a['address']}", rows))


def summary(json: Json = False) -> None:
    """What the store holds, per chain: blocks, transactions, addresses, value moved."""
    with store(read_only=True) as con:
        rows = bitcoin_read.summary(con)
    if json:
        print_json(rows)
        return
    if not rows:
        out.print("the store is empty: ingest some blocks first")
    for r in rows:
        out.print(
            kv_table(
                f"Store summary: {r['chain']}",
                [
                    ("blocks", f"{r['blocks']:,}"),
                    ("heights", f"{r['min_height']}..{r['max_height']}"),
                    ("blocks without height", f"{r['blocks_without_height']:,}"),
                    ("transactions", f"{r['transactions']:,}"),
                    ("inputs", f"{r['inputs']:,} ({r['unresolved_inputs']:,} unresolved)"),
                    ("outputs", f"{r['outputs']:,}"),
                    ("addresses", f"{r['addresses']:,}"),
                    ("value moved", sat(r["value_moved"])),
                    ("value minted", sat(r["value_minted"])),
                    ("fees (where known)", sat(r["fees_known"])),
                    ("txs with unknown fee", f"{r['txs_with_unknown_fee']:,}"),
                ],
            ),
        )
