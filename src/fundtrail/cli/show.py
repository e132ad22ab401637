"""``fundtrail show block|tx|address`` and ``fundtrail summary``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from fundtrail.chains.bitcoin.network import by_chain
from fundtrail.chains.registry import CHAINS
from fundtrail.chains.registry import chain as get_chain
from fundtrail.cli.render import kv_table, labels_table, out, print_json, sat
from fundtrail.cli.state import store
from fundtrail.clustering import read as cluster_read
from fundtrail.labels.store import labels_for_address_ids
from fundtrail.store import account_read, bitcoin_read

app = typer.Typer(help="Show a block, a transaction or an address from the store.", no_args_is_help=True)

Chain = Annotated[
    str,
    typer.Option("--chain", help=f"One of: {', '.join(CHAINS)}."),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("block")
def block(
    ref: Annotated[str, typer.Argument(help="Block height or hash.")],
    chain: Chain = "bitcoin",
    json: Json = False,
) -> None:
    """A block's header fields and integrity checks."""
    c = get_chain(chain)
    with store(read_only=True) as con:
        if c.family == "bitcoin":
            b = bitcoin_read.block(con, by_chain(chain), ref)
        else:
            b = account_read.block(con, c, ref)
    if json:
        print_json(b)
        return
    rows: list[tuple[str, Any]] = list(b.items())
    if "witness_commitment_ok" in b and b["witness_commitment_ok"] is None:
        na = "not applicable (no witness data)"
        rows = [(k, na if k == "witness_commitment_ok" else v) for k, v in rows]
    out.print(kv_table(f"Block {b['height'] if b['height'] is not None else ''}", rows))


@app.command("tx")
def tx(
    txid: Annotated[str, typer.Argument(help="Transaction id (64 hex digits).")],
    chain: Chain = "bitcoin",
    json: Json = False,
) -> None:
    """A transaction with its inputs (resolved address and value where known), outputs and fee; on
    account chains its sender, recipient, value, fee, status and every transfer it made."""
    c = get_chain(chain)
    with store(read_only=True) as con:
        if c.family == "bitcoin":
            t = bitcoin_read.tx(con, by_chain(chain), txid)
        else:
            t = account_read.tx(con, c, txid)
    if json:
        print_json(t)
        return
    if c.family != "bitcoin":
        _account_tx_table(t)
        return
    out.print(
        kv_table(
            f"Transaction {t['txid']}",
            [
                ("status", t["status"]),
                (
                    "block",
                    f"{t['height']} {t['block_hash']}" if t["block_hash"] else "none (not in a stored block)",
                ),
                ("coinjoin", t["coinjoin"]["family"] or "no"),
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
    """An address's activity in the store: transactions, received, sent, balance, first and last seen
    (per asset on account chains)."""
    c = get_chain(chain)
    with store(read_only=True) as con:
        if c.family == "bitcoin":
            a = bitcoin_read.address(con, by_chain(chain), addr)
        else:
            a = account_read.address(con, c, addr)
        a["cluster"] = cluster_read.address_cluster(con, c, a["address_id"])
        a["labels"] = labels_for_address_ids(con, c.name, [a["address_id"]]).get(a["address_id"], [])
    if json:
        print_json(a)
        return
    if c.family != "bitcoin":
        _account_address_table(a)
    else:
        rows = [
            (k, sat(v) if k in ("received", "sent", "balance") else v)
            for k, v in a.items()
            if k not in ("cluster", "labels", "unconfirmed")
        ]
        u = a.get("unconfirmed")
        if u and u["tx_count"]:
            rows.append(
                ("unconfirmed", f"{u['tx_count']} txs, received {sat(u['received'])}, sent {sat(u['sent'])}")
            )
        out.print(kv_table(f"Address {a['address']}", rows))
    _attribution(a)


def _attribution(a: dict[str, Any]) -> None:
    cl = a["cluster"]
    if cl is None:
        out.print("cluster: [yellow]not built[/] (run `fundtrail cluster`)")
    else:
        definers = ", ".join(cl["definers"]) or "no definer label"
        out.print(f"cluster {cl['cluster_id']}: {cl['size']:,} addresses; {definers}")
        for conflict in cl["conflicts"]:
            out.print(f"[bold red]conflict:[/] {conflict['kind']}: {', '.join(conflict['entities'])}")
    if a["labels"]:
        out.print(labels_table(a["labels"]))


def summary(json: Json = False) -> None:
    """What the store holds, per chain: blocks, transactions, addresses, value moved."""
    with store(read_only=True) as con:
        rows = bitcoin_read.summary(con)
        accounts = account_read.summary(con)
    if json:
        print_json(rows + accounts)
        return
    for a in accounts:
        out.print(
            kv_table(
                f"Store summary: {a['chain']}",
                [
                    ("blocks", f"{a['blocks']:,}"),
                    ("heights", f"{a['min_height']}..{a['max_height']}"),
                    (
                        "transactions",
                        f"{a['transactions']:,} ({a['failed_transactions']:,} failed, "
                        f"{a['transactions_without_receipt']:,} without receipt)",
                    ),
                    ("transfers", ", ".join(f"{k} {n:,}" for k, n in a["transfers"].items())),
                    ("addresses", f"{a['addresses']:,}"),
                    (
                        "assets",
                        f"{a['assets']:,} ({a['assets_with_unknown_decimals']:,} with unknown decimals)",
                    ),
                ],
            )
        )
    if not rows and not accounts:
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


def _amount(v: int | None, text: str | None, symbol: str | None) -> str:
    if v is None:
        return "[yellow]unknown[/]"
    return f"{text} {symbol or ''}".strip() if text is not None else f"{v:,} base units"


def _account_tx_table(t: dict[str, Any]) -> None:
    out.print(
        kv_table(
            f"Transaction {t['txid']}",
            [
                ("block", f"{t['height']} {t['block_hash']}"),
                ("time", t["time"]),
                ("from", t["from"]),
                ("to", t["to"] or f"(creates {t['created_contract']})"),
                ("value (base units)", t["value"]),
                ("fee (base units)", t["fee"]),
                ("status", t["status"]),
                ("method", t["method"]),
            ],
        )
    )
    table = Table(title="Transfers", title_justify="left")
    for col in ("kind", "asset", "from", "to", "amount"):
        table.add_column(col, justify="right" if col == "amount" else "left")
    for x in t["transfers"]:
        table.add_row(
            x["kind"], x["asset"] or "", x["from"], x["to"], _amount(x["amount"], x["amount_decimal"], None)
        )
    out.print(table)


def _account_address_table(a: dict[str, Any]) -> None:
    out.print(
        kv_table(
            f"Address {a['address']}",
            [
                ("chain", a["chain"]),
                ("transactions", a["tx_count"]),
                ("first seen", a["first_seen"]),
                ("last seen", a["last_seen"]),
            ],
        )
    )
    table = Table(title="Assets", title_justify="left")
    for col in ("asset", "received", "sent", "balance"):
        table.add_column(col, justify="left" if col == "asset" else "right")
    for name, x in a["assets"].items():
        table.add_row(
            name,
            *(_amount(x[k], x[f"{k}_decimal"], None) for k in ("received", "sent", "balance")),
        )
    out.print(table)
