"""``fundtrail users create|list|set-role``: users of the organisations and their roles."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from fundtrail.cli.render import kv_table, out, print_json
from fundtrail.cli.state import store
from fundtrail.platform import accounts
from fundtrail.platform.principal import ROLES

app = typer.Typer(help="Users: create, list, set-role (the local administrator).", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ROLE_HELP = f"One of: {', '.join(ROLES)}."


def _show(user: dict[str, Any], title: str, json: bool) -> None:
    if json:
        print_json(user)
        return
    out.print(kv_table(title, list(user.items())))


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Unique user name, e.g. alice or a.b@fiu.org.")],
    org: Annotated[str, typer.Option("--org", help="The user's organisation (name or id).")],
    role: Annotated[str, typer.Option("--role", help=ROLE_HELP)],
    json: Json = False,
) -> None:
    """Create a user of an organisation with a role."""
    with store() as con:
        user = accounts.create_user(con, name, org, role, accounts.acting(con, None))
    _show(user, f"Created user {user['user_id']}", json)


@app.command("list")
def list_(
    org: Annotated[str | None, typer.Option("--org", help="Only users of this organisation.")] = None,
    json: Json = False,
) -> None:
    """Users with their organisation and role."""
    with store(read_only=True) as con:
        users = accounts.list_users(con, org, accounts.acting(con, None))
    if json:
        print_json(users)
        return
    table = Table(title="Users", title_justify="left")
    for col in ("id", "name", "organisation", "role", "created"):
        table.add_column(col, justify="right" if col == "id" else "left")
    for u in users:
        table.add_row(str(u["user_id"]), u["name"], u["org"], u["role"], u["created_at"])
    out.print(table)
    if not users:
        out.print("no users: `fundtrail users create NAME --org ORG --role ROLE`")


@app.command("set-role")
def set_role(
    user: Annotated[str, typer.Argument(metavar="USER", help="User name or id.")],
    role: Annotated[str, typer.Argument(metavar="ROLE", help=ROLE_HELP)],
    json: Json = False,
) -> None:
    """Change a user's role (their keys act with it from the next request on)."""
    with store() as con:
        u = accounts.set_role(con, user, role, accounts.acting(con, None))
    _show(u, f"User {u['name']} is now {u['role']}", json)
