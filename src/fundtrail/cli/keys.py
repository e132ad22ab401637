"""``fundtrail keys create|list|revoke``: API keys of users (the secret is printed once)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fundtrail.cli.render import err, kv_table, out, print_json
from fundtrail.cli.state import store
from fundtrail.platform import accounts

app = typer.Typer(help="API keys: create, list, revoke (the local administrator).", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("create")
def create(
    user: Annotated[str, typer.Option("--user", help="The key's user (name or id).")],
    rate_limit: Annotated[
        int, typer.Option("--rate-limit", help="Requests per second the API accepts with this key.")
    ] = accounts.DEFAULT_RATE_LIMIT,
    json: Json = False,
) -> None:
    """Create an API key; its secret is printed this once and stored only as a SHA-256."""
    with store() as con:
        actor = accounts.acting(con, None)
        key_id, key = accounts.create_key(con, user, rate_limit, actor)
        info = next(k for k in accounts.list_keys(con, user, actor) if k["key_id"] == key_id)
    if json:
        print_json({**info, "key": key})
        return
    rows = [(k, "-" if v is None else v) for k, v in info.items()]
    out.print(kv_table(f"Created API key {key_id}", [*rows, ("key", key)]))
    err.print("[yellow]store the key now[/]: it is not shown again (fundtrail keeps only its hash)")


@app.command("list")
def list_(
    user: Annotated[str | None, typer.Option("--user", help="Only keys of this user.")] = None,
    json: Json = False,
) -> None:
    """API keys (never their secrets) with user, rate limit, creation, last use and revocation."""
    with store(read_only=True) as con:
        keys = accounts.list_keys(con, user, accounts.acting(con, None))
    if json:
        print_json(keys)
        return
    table = Table(title="API keys", title_justify="left")
    for col in ("key id", "prefix", "user", "rate/s", "created", "last used", "revoked"):
        table.add_column(col, justify="right" if col == "rate/s" else "left")
    for k in keys:
        table.add_row(
            k["key_id"],
            k["prefix"] + "…",
            k["user"],
            f"{k['rate_limit_per_s']:,}",
            k["created_at"],
            k["last_used_at"] or "-",
            k["revoked_at"] or "",
        )
    out.print(table)
    if not keys:
        out.print("no keys: `fundtrail keys create --user USER`")


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key id `keys list` shows.")],
    json: Json = False,
) -> None:
    """Revoke a key: requests with it are refused from now on (401)."""
    with store() as con:
        k = accounts.revoke_key(con, key_id, accounts.acting(con, None))
    if json:
        print_json(k)
        return
    out.print(
        kv_table(f"Revoked API key {k['key_id']}", [(a, "-" if v is None else v) for a, v in k.items()])
    )
