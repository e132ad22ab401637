"""Cases: an investigation of one organisation, with its subjects (addresses, transactions, clusters),
notes (with attachments), snapshots of traces and screenings (:mod:`fundtrail.platform.snapshots`), an
assignee, a status, and shares with other organisations.

Visibility (:mod:`fundtrail.platform.visibility`): a case belongs to the organisation of the user who
opened it (or imported it). Its users see it; another organisation sees it only when the case is shared
with it, read-only or read-write. For everyone else the case does not exist: :class:`NotFound`, exactly as
for an id never used, so existence itself stays confidential. A read-only share refuses writes with
:class:`PermissionDenied`; the role table (``case.read``, ``case.write``) applies first. Only the owning
organisation shares, assigns to its users, and exports. The local administrator (the CLI) sees every case.

This module holds the case itself (create, list, show, assign, status, share) and re-exports the
functions on its contents (:mod:`fundtrail.platform.case_items`: subjects, notes, attachments) and its
snapshots (:mod:`fundtrail.platform.snapshots`), so ``cases.<function>`` names every case call.

Statuses (:data:`STATUSES`): ``open`` (new, not yet worked), ``in-progress``, ``on-hold`` (waiting, e.g.
for an exchange's answer), ``closed``. Any status may follow any other; a closed case is read-only
(subjects, notes, snapshots, assignment) until its status is set back to open or in-progress.

Every call, reads included, appends an entry to the audit log (targets ``case:ID``,
``case:ID/subject:N``, ``case:ID/note:N``, ...).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import duckdb

from fundtrail.errors import InvalidInput, NotFound
from fundtrail.platform import audit
from fundtrail.platform.accounts import get_org, get_user
from fundtrail.platform.case_items import add_note, add_subject, get_attachment, parse_subject
from fundtrail.platform.common import JSON, atomic, check_text, iso, next_id, now
from fundtrail.platform.principal import Principal, require
from fundtrail.platform.snapshots import get_snapshot, rerun_snapshot, snapshot_screen, snapshot_trace
from fundtrail.platform.visibility import CaseAccess, access, owner, touch, writable
from fundtrail.store.db import first, scalar

STATUSES: dict[str, str] = {
    "open": "opened, not yet worked on",
    "in-progress": "being investigated",
    "on-hold": "waiting (for an answer, a court order, more data)",
    "closed": "finished; read-only until reopened",
}
ACCESS = ("read", "write")
MAX_TITLE = 200
MAX_DESCRIPTION = 10_000

__all__ = [
    "ACCESS",
    "STATUSES",
    "CaseAccess",
    "access",
    "add_note",
    "add_subject",
    "assign",
    "case_document",
    "create_case",
    "get_attachment",
    "get_snapshot",
    "list_cases",
    "parse_subject",
    "rerun_snapshot",
    "set_status",
    "share",
    "show_case",
    "snapshot_screen",
    "snapshot_trace",
    "writable",
]


# --- create, list, show ----------------------------------------------------------------------------------


def create_case(
    con: duckdb.DuckDBPyConnection, principal: Principal, title: str, description: str | None = None
) -> JSON:
    """Open a case in the caller's organisation; it starts ``open`` and unassigned."""
    require(principal, "case.write")
    if principal.is_local:
        raise InvalidInput(
            "a case belongs to the organisation of the user who opens it", "act as a user: add --as USER"
        )
    title = check_text(title, "title", MAX_TITLE)
    desc = check_text(description, "description", MAX_DESCRIPTION, allow_empty=True) if description else None
    with atomic(con):
        case_id = next_id(con, "cases", "case_id")
        t = now()
        con.execute(
            "INSERT INTO cases VALUES (?, ?, ?, ?, 'open', ?, NULL, ?, ?, NULL)",
            [case_id, principal.org_id, title, desc or None, principal.user_name, t, t],
        )
        out = _case_row(con, case_id, "owner")
        params = {"title": title, "description_sha256": _text_digest(desc)}
        audit.append(con, principal, "case.create", f"case:{case_id}", params, audit.digest(out))
    return out


def _text_digest(text: str | None) -> str | None:
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


_CASE_SQL = """SELECT c.case_id, c.org_id, o.name, c.title, c.description, c.status, c.created_by,
                      c.assignee_id, u.name, epoch_us(c.created_at), epoch_us(c.updated_at), c.origin
               FROM cases c JOIN orgs o ON o.org_id = c.org_id
               LEFT JOIN users u ON u.user_id = c.assignee_id"""


def _case(row: tuple[Any, ...], level: str) -> JSON:
    cid, oid, org, title, desc, status, by, aid, aname, created, updated, origin = row
    return {
        "case_id": int(cid),
        "org_id": int(oid),
        "org": org,
        "title": title,
        "description": desc,
        "status": status,
        "created_by": by,
        "assignee": None if aid is None else {"user_id": int(aid), "name": aname},
        "created_at": iso(created),
        "updated_at": iso(updated),
        "origin": json.loads(origin) if origin else None,
        "access": level,
    }


def _case_row(con: duckdb.DuckDBPyConnection, case_id: int, level: str) -> JSON:
    row = first(con, f"{_CASE_SQL} WHERE c.case_id = ?", [case_id])
    if row is None:
        raise NotFound(f"no case {case_id}", "see `fundtrail case list`")
    return _case(row, level)


def list_cases(
    con: duckdb.DuckDBPyConnection,
    principal: Principal,
    status: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> JSON:
    """The cases the caller can see, newest first, ``limit`` from ``offset`` on:
    ``{"cases", "total", "truncated"}`` (truncated: more follow)."""
    require(principal, "case.read")
    if status is not None and status not in STATUSES:
        raise InvalidInput(f"unknown status {status!r}", f"use one of {', '.join(STATUSES)}")
    if not 1 <= limit <= 10_000:
        raise InvalidInput(f"limit {limit} is out of range", "give 1 to 10,000")
    if offset < 0:
        raise InvalidInput(f"offset {offset} is negative", "give 0 or more")
    level = """CASE WHEN $local THEN 'local' WHEN c.org_id = $org THEN 'owner'
                    ELSE (SELECT s.access FROM case_shares s WHERE s.case_id = c.case_id AND s.org_id = $org)
               END"""
    cond = "($local OR c.org_id = $org OR c.case_id IN (SELECT case_id FROM case_shares WHERE org_id = $org))"
    params: dict[str, Any] = {"local": principal.is_local, "org": principal.org_id}
    if status is not None:
        cond += " AND c.status = $status"
        params["status"] = status
    total = int(scalar(con, f"SELECT count(*) FROM cases c WHERE {cond}", params))
    rows = con.execute(
        f"{_CASE_SQL.replace('c.origin', f'c.origin, {level}', 1)} WHERE {cond} "
        "ORDER BY c.case_id DESC LIMIT $limit OFFSET $offset",
        {**params, "limit": limit, "offset": offset},
    ).fetchall()
    cases = [_case(r[:12], str(r[12])) for r in rows]
    out = {"cases": cases, "total": total, "truncated": total > offset + len(rows)}
    params_logged = {"status": status, "limit": limit, "offset": offset}
    audit.append(con, principal, "case.list", "cases", params_logged, audit.digest(out))
    return out


def show_case(con: duckdb.DuckDBPyConnection, principal: Principal, case_id: int | str) -> JSON:
    """A case with its subjects, notes (attachments listed, not included), snapshots (parameters and
    tip, not results) and, for its owner, its shares."""
    acc = access(con, principal, case_id)
    out = case_document(con, acc)
    audit.append(con, principal, "case.show", acc.target, {}, audit.digest(out))
    return out


def case_document(con: duckdb.DuckDBPyConnection, acc: CaseAccess) -> JSON:
    """The case as :func:`show_case` answers (no audit entry: for callers that already checked access)."""
    out = _case_row(con, acc.case_id, acc.level)
    cid = acc.case_id
    out["subjects"] = [
        {
            "subject_id": int(r[0]),
            "kind": r[1],
            "chain": r[2],
            "value": r[3],
            "note": r[4],
            "added_by": r[5],
            "added_at": iso(r[6]),
        }
        for r in con.execute(
            "SELECT subject_id, kind, chain, value, note, added_by, epoch_us(added_at) FROM case_subjects "
            "WHERE case_id = ? ORDER BY subject_id",
            [cid],
        ).fetchall()
    ]
    attachments: dict[int | None, list[JSON]] = {}
    for r in con.execute(
        "SELECT attachment_id, note_id, name, sha256, size, added_by, epoch_us(added_at) "
        "FROM case_attachments WHERE case_id = ? ORDER BY attachment_id",
        [cid],
    ).fetchall():
        attachments.setdefault(None if r[1] is None else int(r[1]), []).append(
            {
                "attachment_id": int(r[0]),
                "name": r[2],
                "sha256": r[3],
                "size": int(r[4]),
                "added_by": r[5],
                "added_at": iso(r[6]),
            }
        )
    out["notes"] = [
        {
            "note_id": int(r[0]),
            "author": r[1],
            "text": r[2],
            "created_at": iso(r[3]),
            "attachments": attachments.get(int(r[0]), []),
        }
        for r in con.execute(
            "SELECT note_id, author, text, epoch_us(created_at) FROM case_notes WHERE case_id = ? "
            "ORDER BY note_id",
            [cid],
        ).fetchall()
    ]
    out["snapshots"] = [
        {
            "snapshot_id": int(r[0]),
            "kind": r[1],
            "title": r[2],
            "chain": r[3],
            "params": json.loads(r[4]),
            "tip": {"height": r[5], "hash": r[6]},
            "result_digest": r[7],
            "created_by": r[8],
            "created_at": iso(r[9]),
        }
        for r in con.execute(
            "SELECT snapshot_id, kind, title, chain, params, tip_height, tip_hash, result_digest, "
            "created_by, epoch_us(created_at) FROM case_snapshots WHERE case_id = ? ORDER BY snapshot_id",
            [cid],
        ).fetchall()
    ]
    if acc.level in ("owner", "local"):
        out["shares"] = _shares(con, cid)
    return out


def _shares(con: duckdb.DuckDBPyConnection, case_id: int) -> list[JSON]:
    return [
        {"org_id": int(r[0]), "org": r[1], "access": r[2], "granted_by": r[3], "granted_at": iso(r[4])}
        for r in con.execute(
            """SELECT s.org_id, o.name, s.access, s.granted_by, epoch_us(s.granted_at) FROM case_shares s
               JOIN orgs o ON o.org_id = s.org_id WHERE s.case_id = ? ORDER BY s.org_id""",
            [case_id],
        ).fetchall()
    ]


# --- assignment, status, shares ------------------------------------------------------------------------


def assign(con: duckdb.DuckDBPyConnection, principal: Principal, case_id: int | str, user: int | str) -> JSON:
    """Assign the case to a user of its organisation."""
    acc = owner(con, principal, case_id, "assign it")
    if acc.status == "closed":
        raise InvalidInput(
            f"case {acc.case_id} is closed", f"reopen it first: `fundtrail case status {acc.case_id} open`"
        )
    u = get_user(con, user)
    if u["org_id"] != acc.org_id:
        raise InvalidInput(
            f"user {u['name']} is not in the organisation that owns case {acc.case_id}",
            "assign the case to a user of its organisation",
        )
    with atomic(con):
        con.execute("UPDATE cases SET assignee_id = ? WHERE case_id = ?", [u["user_id"], acc.case_id])
        touch(con, acc.case_id)
        out = _case_row(con, acc.case_id, acc.level)
        params = {"user_id": u["user_id"], "user": u["name"]}
        audit.append(con, principal, "case.assign", acc.target, params, audit.digest(out))
    return out


def set_status(con: duckdb.DuckDBPyConnection, principal: Principal, case_id: int | str, status: str) -> JSON:
    """Change the case's status (:data:`STATUSES`)."""
    s = status.strip().lower()
    if s not in STATUSES:
        raise InvalidInput(f"unknown status {status!r}", f"use one of {', '.join(STATUSES)}")
    acc = access(con, principal, case_id, write=True)
    if s == acc.status:
        raise InvalidInput(f"case {acc.case_id} is already {s}", "nothing to do")
    with atomic(con):
        con.execute("UPDATE cases SET status = ? WHERE case_id = ?", [s, acc.case_id])
        touch(con, acc.case_id)
        out = _case_row(con, acc.case_id, acc.level)
        params = {"status": s, "was": acc.status}
        audit.append(con, principal, "case.status", acc.target, params, audit.digest(out))
    return out


def share(
    con: duckdb.DuckDBPyConnection,
    principal: Principal,
    case_id: int | str,
    org: int | str,
    level: str | None,
) -> list[JSON]:
    """Share the case with another organisation (``read`` or ``write``), change its access, or revoke it
    (``None``). Answers the case's shares."""
    if level is not None and level not in ACCESS:
        raise InvalidInput(f"unknown access {level!r}", f"use one of {', '.join(ACCESS)}")
    acc = owner(con, principal, case_id, "share it")
    target = get_org(con, org)  # any organisation of the installation may be named
    if target["org_id"] == acc.org_id:
        raise InvalidInput(
            f"case {acc.case_id} belongs to {target['name']}", "share it with another organisation"
        )
    with atomic(con):
        had = scalar(
            con,
            "SELECT access FROM case_shares WHERE case_id = ? AND org_id = ?",
            [acc.case_id, target["org_id"]],
        )
        if level is None and had is None:
            raise InvalidInput(f"case {acc.case_id} is not shared with {target['name']}", "nothing to revoke")
        con.execute(
            "DELETE FROM case_shares WHERE case_id = ? AND org_id = ?", [acc.case_id, target["org_id"]]
        )
        if level is not None:
            con.execute(
                "INSERT INTO case_shares VALUES (?, ?, ?, ?, ?)",
                [acc.case_id, target["org_id"], level, principal.user_name, now()],
            )
        touch(con, acc.case_id)
        out = _shares(con, acc.case_id)
        params = {"org_id": target["org_id"], "access": level, "was": had}
        action = "case.unshare" if level is None else "case.share"
        audit.append(con, principal, action, acc.target, params, audit.digest(out))
    return out
