"""Private labels: attribution an organisation keeps to itself (a suspect's wallet under investigation, an
informant's tip), beside the shared labels of :mod:`fundtrail.labels.store`. Same categories
(:data:`fundtrail.labels.taxonomy.CATEGORIES`), addresses parsed as the label importers parse them. Only
the owning organisation sees and changes them (another organisation's label is NotFound); reading needs
``label.read``, changing ``label.write``; every change is audited (``label.private.add|edit|delete``).
"""

from __future__ import annotations

from typing import Any

import duckdb

from fundtrail.errors import InvalidInput, NotFound
from fundtrail.labels.addresses import resolve_on
from fundtrail.labels.taxonomy import check_category
from fundtrail.platform import audit
from fundtrail.platform.common import JSON, atomic, check_text, iso, next_id, now, parse_id
from fundtrail.platform.principal import Principal, require
from fundtrail.store.db import first, scalar

MAX_LABEL = 500
_SQL = """SELECT label_id, org_id, chain, address, category, label, created_by, epoch_us(created_at),
                 epoch_us(updated_at) FROM private_labels"""


def _label(row: tuple[Any, ...]) -> JSON:
    lid, oid, chain, address, category, label, by, created, updated = row
    return {
        "label_id": int(lid),
        "org_id": int(oid),
        "chain": chain,
        "address": address,
        "category": category,
        "label": label,
        "created_by": by,
        "created_at": iso(created),
        "updated_at": iso(updated),
    }


def _own(con: duckdb.DuckDBPyConnection, principal: Principal, label_id: int | str) -> JSON:
    lid = parse_id(label_id, "label id")
    row = first(con, f"{_SQL} WHERE label_id = ?", [lid])
    if row is None or (not principal.is_local and int(row[1]) != principal.org_id):
        raise NotFound(f"no private label {lid}", "see the organisation's private labels")
    return _label(row)


def add_private_label(
    con: duckdb.DuckDBPyConnection, principal: Principal, chain: str, address: str, category: str, label: str
) -> JSON:
    """Label an address for the caller's organisation only."""
    require(principal, "label.write")
    if principal.is_local:
        raise InvalidInput("a private label belongs to an organisation", "act as a user of it: add --as USER")
    r = resolve_on(chain.strip(), address, strict=True)
    cat = check_category(category.strip())
    text = check_text(label, "label", MAX_LABEL)
    with atomic(con):
        lid = next_id(con, "private_labels", "label_id")
        t = now()
        con.execute(
            "INSERT INTO private_labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [lid, principal.org_id, r.chain, r.address, cat, text, principal.user_name, t, t],
        )
        out = _own(con, principal, lid)
        params = {"chain": r.chain, "address": r.address, "category": cat, "label": text}
        audit.append(con, principal, "label.private.add", f"private-label:{lid}", params, audit.digest(out))
    return out


def edit_private_label(
    con: duckdb.DuckDBPyConnection,
    principal: Principal,
    label_id: int | str,
    label: str | None = None,
    category: str | None = None,
) -> JSON:
    """Change a private label's text or category."""
    require(principal, "label.write")
    old = _own(con, principal, label_id)
    text = check_text(label, "label", MAX_LABEL) if label is not None else old["label"]
    cat = check_category(category.strip()) if category is not None else old["category"]
    with atomic(con):
        con.execute(
            "UPDATE private_labels SET label = ?, category = ?, updated_at = ? WHERE label_id = ?",
            [text, cat, now(), old["label_id"]],
        )
        out = _own(con, principal, old["label_id"])
        params = {"label": text, "category": cat}
        audit.append(
            con,
            principal,
            "label.private.edit",
            f"private-label:{old['label_id']}",
            params,
            audit.digest(out),
        )
    return out


def delete_private_label(con: duckdb.DuckDBPyConnection, principal: Principal, label_id: int | str) -> JSON:
    """Delete a private label; answers the deleted label."""
    require(principal, "label.write")
    old = _own(con, principal, label_id)
    with atomic(con):
        con.execute("DELETE FROM private_labels WHERE label_id = ?", [old["label_id"]])
        audit.append(
            con, principal, "label.private.delete", f"private-label:{old['label_id']}", {}, audit.digest(old)
        )
    return old


def list_private_labels(
    con: duckdb.DuckDBPyConnection,
    principal: Principal,
    chain: str | None = None,
    address: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> JSON:
    """The caller's organisation's private labels (the local administrator: every organisation's),
    oldest first, ``limit`` from ``offset`` on: ``{"labels", "total", "truncated"}``."""
    require(principal, "label.read")
    if not 1 <= limit <= 100_000:
        raise InvalidInput(f"limit {limit} is out of range", "give 1 to 100,000")
    if offset < 0:
        raise InvalidInput(f"offset {offset} is negative", "give 0 or more")
    cond: list[str] = ["TRUE"]
    params: list[Any] = []
    if not principal.is_local:
        cond.append("org_id = ?")
        params.append(principal.org_id)
    if chain is not None:
        cond.append("chain = ?")
        params.append(chain.strip())
    if address is not None:
        if chain is None:
            raise InvalidInput("--address needs --chain", "add the address's chain")
        cond.append("address = ?")
        params.append(resolve_on(chain.strip(), address, strict=True).address)
    where = " AND ".join(cond)
    total = int(scalar(con, f"SELECT count(*) FROM private_labels WHERE {where}", params))
    rows = con.execute(
        f"{_SQL} WHERE {where} ORDER BY label_id LIMIT ? OFFSET ?", [*params, limit, offset]
    ).fetchall()
    out = {"labels": [_label(r) for r in rows], "total": total, "truncated": total > offset + len(rows)}
    audit.append(
        con,
        principal,
        "label.private.list",
        "private-labels",
        {"chain": chain, "address": address},
        audit.digest(out),
    )
    return out
