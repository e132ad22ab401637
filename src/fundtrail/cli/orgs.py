"""``fundtrail orgs create|list``: the organisations of the installation (local administrator)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from fundtrail.cli.render import kv_table, out, print_json
from fundtrail.cli.state import store
from fundtrail.platform import accounts

app = typer.Typer(help="Organisations: create, list (the local administrator).", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Unique name, e.g. fiu-berlin.")],
    json: Json = False,
) -> None:
    """Create an organisation (audited as the local administrator)."""
    with store() as con:
        org = accounts.create_org(con, name, accounts.acting(con, None))
    if json:
        print_json(org)
        return
    out.print(kv_table(f"Created organisation {org['org_id']}", list(org.items())))


@app.command("list")
def list_(json: Json = False) -> None:
    """Every organisation with its number of users."""
    with store(read_only=True) as con:
        orgs = accounts.list_orgs(con, accounts.acting(con, None))
    if json:
        print_json(orgs)
        return
    table = Table(title="Organisations", title_justify="left")
    for col in ("id", "name", "users", "created"):
        table.add_column(col, justify="right" if col in ("id", "users") else "left")
    for o in orgs:
        table.add_row(str(o["org_id"]), o["name"], str(o["users"]), o["created_at"])
    out.print(table)
    if not orgs:
        out.print("no organisations: `fundtrail orgs create NAME`")
