"""``fundtrail case ...``: cases, their subjects, notes, shares and snapshots, and signed case packages.

Every command acts as the user named by ``--as USER`` (their organisation and role apply), or as the
installation's local administrator without it (who sees every case; opening and importing a case need a
user, whose organisation will own it)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from fundtrail.chains.registry import CHAINS
from fundtrail.cli.render import kv_table, out, print_json
from fundtrail.cli.state import state, store
from fundtrail.cli.trace import parse_time
from fundtrail.errors import InvalidInput
from fundtrail.platform import accounts, cases, package, signing
from fundtrail.settings import db_path
from fundtrail.tracing.engine import TraceRequest
from fundtrail.tracing.model import POLICIES, Limits

app = typer.Typer(help="Cases: open, work, share, snapshot, export and import them.", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
As = Annotated[
    str | None,
    typer.Option("--as", help="Act as this user (default: the installation's local administrator)."),
]
CaseId = Annotated[str, typer.Argument(metavar="CASE", help="The case id `case list` shows.")]
STATUS_HELP = f"One of: {', '.join(cases.STATUSES)}."


def _rows(d: dict[str, Any], skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        if k in skip:
            continue
        if k == "assignee":
            v = None if v is None else v["name"]
        elif k == "attachments":
            v = ", ".join(f"{a['name']} ({a['size']:,} B, sha256 {a['sha256'][:12]}…)" for a in v)
        elif isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        rows.append((k, "-" if v is None else v))
    return rows


def _case(c: dict[str, Any], title: str, json: bool) -> None:
    if json:
        print_json(c)
        return
    out.print(kv_table(title, _rows(c, ("subjects", "notes", "snapshots", "shares"))))
    if c.get("subjects"):
        t = Table(title="Subjects", title_justify="left")
        for col in ("id", "kind", "chain", "value", "note", "added by"):
            t.add_column(col, overflow="fold")
        for s in c["subjects"]:
            t.add_row(str(s["subject_id"]), s["kind"], s["chain"], s["value"], s["note"] or "", s["added_by"])
        out.print(t)
    if c.get("notes"):
        t = Table(title="Notes", title_justify="left")
        for col in ("id", "author", "at", "text", "attachments"):
            t.add_column(col, overflow="fold")
        for n in c["notes"]:
            files = ", ".join(f"{a['name']} ({a['size']:,} B)" for a in n["attachments"])
            t.add_row(str(n["note_id"]), n["author"], n["created_at"], n["text"], files)
        out.print(t)
    if c.get("snapshots"):
        t = Table(title="Snapshots", title_justify="left")
        for col in ("id", "kind", "chain", "title", "tip", "by", "at"):
            t.add_column(col, overflow="fold")
        for s in c["snapshots"]:
            tip = "-" if s["tip"]["height"] is None else f"{s['tip']['height']:,} {s['tip']['hash']}"
            t.add_row(
                str(s["snapshot_id"]),
                s["kind"],
                s["chain"],
                s["title"] or "",
                tip,
                s["created_by"],
                s["created_at"],
            )
        out.print(t)
    if c.get("shares"):
        t = Table(title="Shared with", title_justify="left")
        for col in ("organisation", "access", "by", "at"):
            t.add_column(col)
        for s in c["shares"]:
            t.add_row(s["org"], s["access"], s["granted_by"], s["granted_at"])
        out.print(t)


def _item(d: dict[str, Any], title: str, json: bool) -> None:
    if json:
        print_json(d)
        return
    out.print(kv_table(title, _rows(d, ("result",))))


@app.command("create")
def create(
    title: Annotated[str, typer.Argument(metavar="TITLE", help="A short title.")],
    as_user: As = None,
    description: Annotated[str | None, typer.Option("--description", help="What the case is about.")] = None,
    json: Json = False,
) -> None:
    """Open a case in the organisation of the user given with --as."""
    with store() as con:
        c = cases.create_case(con, accounts.acting(con, as_user), title, description)
    _case(c, f"Opened case {c['case_id']}", json)


@app.command("list")
def list_(
    as_user: As = None,
    status: Annotated[str | None, typer.Option("--status", help=STATUS_HELP)] = None,
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many cases.")] = 100,
    json: Json = False,
) -> None:
    """The cases the user can see (their organisation's and those shared with it), newest first."""
    with store() as con:
        result = cases.list_cases(con, accounts.acting(con, as_user), status, limit)
    if json:
        print_json(result)
        return
    t = Table(title="Cases", title_justify="left")
    for col in ("id", "title", "status", "organisation", "access", "assignee", "updated"):
        t.add_column(col, justify="right" if col == "id" else "left", overflow="fold")
    for c in result["cases"]:
        who = c["assignee"]["name"] if c["assignee"] else "-"
        t.add_row(str(c["case_id"]), c["title"], c["status"], c["org"], c["access"], who, c["updated_at"])
    out.print(t)
    if result["truncated"]:
        out.print(f"[yellow]truncated[/]: showing {len(result['cases']):,} of {result['total']:,} cases")
    elif not result["cases"]:
        out.print("no cases")


@app.command("show")
def show(case_id: CaseId, as_user: As = None, json: Json = False) -> None:
    """A case with its subjects, notes, snapshots and (for its owner) shares."""
    with store() as con:
        c = cases.show_case(con, accounts.acting(con, as_user), case_id)
    _case(c, f"Case {c['case_id']}: {c['title']}", json)


@app.command("assign")
def assign(
    case_id: CaseId,
    user: Annotated[str, typer.Argument(metavar="USER", help="A user of the case's organisation.")],
    as_user: As = None,
    json: Json = False,
) -> None:
    """Assign the case to a user of its organisation."""
    with store() as con:
        c = cases.assign(con, accounts.acting(con, as_user), case_id, user)
    _case(c, f"Case {c['case_id']} assigned to {user}", json)


@app.command("status")
def status(
    case_id: CaseId,
    new_status: Annotated[str, typer.Argument(metavar="STATUS", help=STATUS_HELP)],
    as_user: As = None,
    json: Json = False,
) -> None:
    """Change the case's status (a closed case is read-only until reopened)."""
    with store() as con:
        c = cases.set_status(con, accounts.acting(con, as_user), case_id, new_status)
    _case(c, f"Case {c['case_id']} is {c['status']}", json)


@app.command("add-subject")
def add_subject(
    case_id: CaseId,
    kind: Annotated[str, typer.Argument(metavar="KIND", help="address, tx or cluster.")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="The address, txid, or cluster id.")],
    chain: Annotated[str, typer.Option("--chain", help=f"One of: {', '.join(CHAINS)}.")] = "bitcoin",
    note: Annotated[str | None, typer.Option("--note", help="Why it is a subject.")] = None,
    as_user: As = None,
    json: Json = False,
) -> None:
    """Add an address, transaction or cluster to the case (parsed strictly for its chain)."""
    with store() as con:
        s = cases.add_subject(con, accounts.acting(con, as_user), case_id, kind, chain, value, note)
    _item(s, f"Subject {s['subject_id']} of case {case_id}", json)


@app.command("note")
def note(
    case_id: CaseId,
    text: Annotated[str, typer.Argument(metavar="TEXT", help="The note.")],
    attach: Annotated[
        list[Path] | None, typer.Option("--attach", help="Attach a file (32 MiB at most); repeatable.")
    ] = None,
    as_user: As = None,
    json: Json = False,
) -> None:
    """Add a note, with attachments, to the case."""
    files: list[tuple[str, bytes]] = []
    for p in attach or []:
        try:
            files.append((p.name, p.read_bytes()))
        except OSError as exc:
            raise InvalidInput(f"cannot read {p} ({exc.strerror})", "check the --attach path") from None
    with store() as con:
        n = cases.add_note(con, accounts.acting(con, as_user), case_id, text, files)
    _item(n, f"Note {n['note_id']} of case {case_id}", json)


@app.command("share")
def share(
    case_id: CaseId,
    org: Annotated[str, typer.Argument(metavar="ORG", help="The organisation to share with.")],
    access: Annotated[str, typer.Option("--access", help="read or write.")] = "read",
    revoke: Annotated[bool, typer.Option("--revoke", help="Stop sharing with ORG.")] = False,
    as_user: As = None,
    json: Json = False,
) -> None:
    """Share the case with another organisation, read-only or read-write (or --revoke the share)."""
    with store() as con:
        shares = cases.share(con, accounts.acting(con, as_user), case_id, org, None if revoke else access)
    if json:
        print_json(shares)
        return
    t = Table(title=f"Case {case_id} is shared with", title_justify="left")
    for col in ("organisation", "access", "by", "at"):
        t.add_column(col)
    for s in shares:
        t.add_row(s["org"], s["access"], s["granted_by"], s["granted_at"])
    out.print(t if shares else f"case {case_id} is shared with no organisation")


@app.command("snapshot-trace")
def snapshot_trace(
    case_id: CaseId,
    seed: Annotated[str, typer.Option("--from", help="Seed: TXID:VOUT, a txid, an address, or cluster:ID.")],
    chain: Annotated[str, typer.Option("--chain", help=f"One of: {', '.join(CHAINS)}.")] = "bitcoin",
    direction: Annotated[str, typer.Option("--direction", help="forward or backward.")] = "forward",
    policy: Annotated[
        str, typer.Option("--policy", help=f"Taint policy: {', '.join(POLICIES)}.")
    ] = "haircut",
    hops: Annotated[int, typer.Option("--hops", help="Transactions to follow from the seed.")] = 10,
    min_amount: Annotated[int, typer.Option("--min-amount", help="Smallest tainted amount followed.")] = 0,
    until: Annotated[str | None, typer.Option("--until", help="Forward: nothing after this time.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Backward: nothing before this time.")] = None,
    start: Annotated[str | None, typer.Option("--start", help="Start time of an address seed.")] = None,
    amount: Annotated[int | None, typer.Option("--amount", help="Traced amount in base units.")] = None,
    asset: Annotated[str | None, typer.Option("--asset", help="Account chains: token.")] = None,
    by: Annotated[str, typer.Option("--by", help="address or cluster.")] = "address",
    max_cluster_size: Annotated[
        int, typer.Option("--max-cluster-size", help="Larger clusters end.")
    ] = 10_000,
    title: Annotated[str | None, typer.Option("--title", help="A title for the snapshot.")] = None,
    as_user: As = None,
    json: Json = False,
) -> None:
    """Run a trace (as `fundtrail trace`) and save it in the case with its parameters and the tip."""
    limits = Limits(
        hops, min_amount, parse_time(until, "--until"), parse_time(since, "--since"), max_cluster_size
    )
    req = TraceRequest(
        chain, seed, direction, policy, limits, by, asset, amount, parse_time(start, "--start")
    )
    with store() as con:
        s = cases.snapshot_trace(con, accounts.acting(con, as_user), case_id, req, db_path(state.db), title)
    _item(s, f"Snapshot {s['snapshot_id']} of case {case_id} (trace)", json)


@app.command("snapshot-screen")
def snapshot_screen(
    case_id: CaseId,
    items: Annotated[list[str], typer.Argument(metavar="ITEMS...", help="Addresses or txids to screen.")],
    chain: Annotated[str, typer.Option("--chain", help="The items' chain.")] = "bitcoin",
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Risk policy YAML (default: shipped).")
    ] = None,
    asset: Annotated[str | None, typer.Option("--asset", help="Account chains: token.")] = None,
    title: Annotated[str | None, typer.Option("--title", help="A title for the snapshot.")] = None,
    as_user: As = None,
    json: Json = False,
) -> None:
    """Screen addresses or transactions (as `fundtrail screen`) and save the results in the case."""
    text = None
    if policy is not None:
        try:
            text = policy.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(
                f"cannot read the policy {policy} ({exc})", "check the --policy path"
            ) from None
    with store() as con:
        s = cases.snapshot_screen(
            con,
            accounts.acting(con, as_user),
            case_id,
            chain,
            items,
            text,
            str(policy or "default"),
            asset,
            title,
        )
    _item(s, f"Snapshot {s['snapshot_id']} of case {case_id} (screen)", json)


@app.command("rerun")
def rerun(
    case_id: CaseId,
    snapshot_id: Annotated[
        str, typer.Argument(metavar="SNAPSHOT", help="The snapshot id `case show` lists.")
    ],
    as_user: As = None,
    json: Json = False,
) -> None:
    """Run a snapshot again with its parameters: is the result the same, and did the tip move?"""
    with store() as con:
        r = cases.rerun_snapshot(con, accounts.acting(con, as_user), case_id, snapshot_id, db_path(state.db))
    if json:
        print_json(r)
        return
    verdict = "[green]same result[/]" if r["same"] else f"[red]different[/]: {', '.join(r['differences'])}"
    tip = "the tip moved" if r["tip_moved"] else "same tip"
    out.print(
        kv_table(
            f"Re-run of snapshot {r['snapshot_id']} of case {case_id}",
            [
                ("result", verdict),
                ("data", tip),
                ("saved tip", r["saved_tip"]),
                ("current tip", r["current_tip"]),
                ("saved digest", r["saved_digest"]),
                ("re-run digest", r["rerun_digest"]),
            ],
        )
    )


@app.command("export")
def export(
    case_id: CaseId,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="The package file (default: ./case-ID-….zip).")
    ] = None,
    as_user: As = None,
    json: Json = False,
) -> None:
    """Export the case as a package signed with this installation's Ed25519 key."""
    with store() as con:
        key = signing.installation_key(db_path(state.db))
        pkg = package.export_case(con, accounts.acting(con, as_user), case_id, key)
    path = out_path or Path(pkg.filename)
    try:
        path.write_bytes(pkg.data)
    except OSError as exc:
        raise InvalidInput(f"cannot write {path} ({exc.strerror})", "check the --out path") from None
    info = {
        "path": str(path),
        "sha256": pkg.sha256,
        "bytes": len(pkg.data),
        "files": len(pkg.manifest["files"]),
        "installation": pkg.manifest["installation"],
    }
    if json:
        print_json(info)
        return
    out.print(kv_table(f"Exported case {case_id}", list(info.items())))


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="A package `case export` wrote.")],
    as_user: As = None,
    json: Json = False,
) -> None:
    """Verify a signed package (trusted key, every file's hash) and store it as a new case of the user's
    organisation, with its provenance."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path} ({exc.strerror})", "check the path") from None
    with store() as con:
        key = signing.installation_key(db_path(state.db))
        c = package.import_case(con, accounts.acting(con, as_user), data, key)
    _case(c, f"Imported as case {c['case_id']}", json)


@app.command("trust")
def trust(
    name: Annotated[
        str | None, typer.Argument(metavar="[NAME]", help="A name for the peer installation.")
    ] = None,
    key: Annotated[
        str | None, typer.Argument(metavar="[KEY]", help="Its public key, ed25519:<64 hex>.")
    ] = None,
    own: Annotated[bool, typer.Option("--own", help="Print this installation's public key.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the trusted keys.")] = False,
    revoke: Annotated[
        str | None, typer.Option("--revoke", help="Stop trusting the key of this name.")
    ] = None,
    json: Json = False,
) -> None:
    """Trust a peer installation's key (NAME KEY), so its packages import; --own prints this installation's
    key to give to peers; --list, --revoke NAME."""
    modes = sum((own, list_, revoke is not None, name is not None))
    if modes != 1 or (name is not None and key is None):
        raise InvalidInput(
            "give NAME KEY, or one of --own, --list, --revoke NAME", "see `fundtrail case trust --help`"
        )
    if own:
        k = signing.installation_key(db_path(state.db))
        info: Any = {"installation": k.fingerprint, "public_key": k.text, "key_file": str(k.path)}
    else:
        with store() as con:
            actor = accounts.acting(con, None)
            if list_:
                info = signing.trusted_keys(con)
            elif revoke is not None:
                info = signing.untrust_key(con, actor, revoke)
            else:
                assert name is not None and key is not None
                info = signing.trust_key(con, actor, name, key)
    if json:
        print_json(info)
    elif isinstance(info, list):
        t = Table(title="Trusted installation keys", title_justify="left")
        for col in ("name", "installation", "public key", "added by", "added"):
            t.add_column(col, overflow="fold")
        for row in info:
            t.add_row(row["name"], row["installation"], row["public_key"], row["added_by"], row["added_at"])
        out.print(t if info else "no trusted keys: `fundtrail case trust NAME KEY`")
    else:
        out.print(kv_table("Installation key" if own else "Trusted key", list(info.items())))
