"""Who sees a case, and who may change it.

A case belongs to the organisation of the user who opened it (or imported it). Its users see it; another
organisation sees it only when the case is shared with it, read-only or read-write. For everyone else the
case does not exist: :class:`NotFound`, exactly as for an id never used, so existence itself stays
confidential. A read-only share refuses writes with :class:`PermissionDenied`; the role table
(``case.read``, ``case.write``) applies first. Only the owning organisation shares, assigns to its users,
and exports. The local administrator (the CLI) sees and may change every case.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from fundtrail.errors import InvalidInput, NotFound, PermissionDenied
from fundtrail.platform.common import now, parse_id
from fundtrail.platform.principal import Principal, require
from fundtrail.store.db import first, scalar


@dataclass(frozen=True)
class CaseAccess:
    """What the caller may do with a case: ``level`` is owner, write, read, or local (administrator)."""

    case_id: int
    org_id: int
    status: str
    level: str

    @property
    def target(self) -> str:
        return f"case:{self.case_id}"


def access(
    con: duckdb.DuckDBPyConnection, principal: Principal, case_id: int | str, write: bool = False
) -> CaseAccess:
    """The caller's access to a case, or NotFound (not visible) / PermissionDenied (read-only share,
    or the role lacks ``case.read``/``case.write``)."""
    require(principal, "case.write" if write else "case.read")
    cid = parse_id(case_id, "case id")
    missing = NotFound(f"no case {cid}", "see `fundtrail case list` for the cases you can see")
    row = first(con, "SELECT org_id, status FROM cases WHERE case_id = ?", [cid])
    if row is None:
        raise missing
    org_id, status = int(row[0]), str(row[1])
    if principal.is_local:
        level = "local"
    elif org_id == principal.org_id:
        level = "owner"
    else:
        share = scalar(
            con, "SELECT access FROM case_shares WHERE case_id = ? AND org_id = ?", [cid, principal.org_id]
        )
        if share is None:
            raise missing
        level = str(share)
    if write and level == "read":
        raise PermissionDenied(
            f"case {cid} is shared with your organisation read-only", "ask its owner for write access"
        )
    return CaseAccess(cid, org_id, status, level)


def writable(con: duckdb.DuckDBPyConnection, principal: Principal, case_id: int | str) -> CaseAccess:
    """Write access to a case that is not closed (what adding content needs)."""
    acc = access(con, principal, case_id, write=True)
    if acc.status == "closed":
        raise InvalidInput(
            f"case {acc.case_id} is closed", f"reopen it first: `fundtrail case status {acc.case_id} open`"
        )
    return acc


def owner(con: duckdb.DuckDBPyConnection, principal: Principal, case_id: int | str, what: str) -> CaseAccess:
    acc = access(con, principal, case_id, write=True)
    if acc.level not in ("owner", "local"):
        raise PermissionDenied(
            f"only the organisation that owns case {acc.case_id} may {what}", "ask its owner"
        )
    return acc


def touch(con: duckdb.DuckDBPyConnection, case_id: int) -> None:
    con.execute("UPDATE cases SET updated_at = ? WHERE case_id = ?", [now(), case_id])
