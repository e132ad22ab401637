"""The alert queue: list and show stored alerts, and move them through the review workflow.

Statuses and the transitions allowed (:data:`TRANSITIONS`)::

    new        -> reviewing | escalated | dismissed
    reviewing  -> escalated | dismissed | new
    escalated  -> reviewing | dismissed
    dismissed  -> reviewing            (reopen)

Dismissing needs a reason (why the alert is a false positive, or covered elsewhere). Every change
appends an ``alert_events`` row (who, when, from, to, reason) and an entry in the platform's hash-chained
audit log (``alert.status``, target ``alert:ID``), in one transaction. A dismissed alert stays dismissed
when a later run finds the same pattern again, and goes back to ``new`` only if the pattern grew
(detection/engine.py).

Alerts belong to the installation (detectors run over the shared chain data): every user whose role
has ``query`` reads them (analysts, investigators, admins); a user whose role has ``case.write``
(investigators, admins) changes their status: reviewing alerts is case work.

JSON of an alert::

    {"alert_id", "detector", "typology", "chain", "severity", "score", "addresses": [TEXT],
     "txids": [TEXT], "entities": [CLUSTER_ID], "window_start", "window_end" (ISO 8601 UTC),
     "amount" (integer base units of asset, or null), "asset", "explanation", "evidence": {...},
     "status", "status_reason", "first_seen_run", "last_seen_run", "created_at", "updated_at",
     "dedup_key"}

``show`` adds ``"events": [{"seq", "who", "user_id", "at", "from", "to", "reason"}]``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import duckdb

from fundtrail.detection.base import SEVERITIES
from fundtrail.errors import InvalidInput, NotFound
from fundtrail.platform import audit
from fundtrail.platform.common import JSON, atomic, check_text, iso, parse_id
from fundtrail.platform.principal import Principal, require
from fundtrail.store.db import first, scalar

STATUSES: dict[str, str] = {
    "new": "raised by a detector, not yet looked at",
    "reviewing": "an analyst is looking at it",
    "escalated": "worth a case or a report",
    "dismissed": "not suspicious (the reason says why)",
}
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("reviewing", "escalated", "dismissed"),
    "reviewing": ("escalated", "dismissed", "new"),
    "escalated": ("reviewing", "dismissed"),
    "dismissed": ("reviewing",),
}
MAX_REASON = 2_000
READ_PERMISSION = "query"
WRITE_PERMISSION = "case.write"  # investigators and admins (the permission table's writers)
MAX_LIMIT = 10_000

_SELECT = """SELECT alert_id, detector, typology, chain, severity, score, addresses, txids, entities,
                    window_start, window_end, amount, asset, explanation, evidence, status, status_reason,
                    first_seen_run, last_seen_run, epoch_us(created_at), epoch_us(updated_at), dedup_key
             FROM alerts"""


def _when(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _alert(row: tuple[Any, ...]) -> JSON:
    (aid, det, typ, chain, sev, score, addrs, txids, ents, ws, we, amount, asset, expl, ev, status, reason,
     first_run, last_run, created, updated, key) = row  # fmt: skip
    return {
        "alert_id": int(aid),
        "detector": det,
        "typology": typ,
        "chain": chain,
        "severity": sev,
        "score": float(score),
        "addresses": json.loads(addrs),
        "txids": json.loads(txids),
        "entities": json.loads(ents),
        "window_start": _when(int(ws)),
        "window_end": _when(int(we)),
        "amount": None if amount is None else int(amount),
        "asset": asset,
        "explanation": expl,
        "evidence": json.loads(ev),
        "status": status,
        "status_reason": reason,
        "first_seen_run": int(first_run),
        "last_seen_run": int(last_run),
        "created_at": iso(created),
        "updated_at": iso(updated),
        "dedup_key": key,
    }


def check_status(status: str) -> str:
    s = status.strip().lower()
    if s not in STATUSES:
        raise InvalidInput(f"unknown alert status {status!r}", f"use one of {', '.join(STATUSES)}")
    return s


def check_severity(severity: str) -> str:
    s = severity.strip().lower()
    if s not in SEVERITIES:
        raise InvalidInput(f"unknown severity {severity!r}", f"use one of {', '.join(SEVERITIES)}")
    return s


def check_reason(status: str, reason: str | None) -> str:
    """The reason of a change to ``status`` ("" for none); dismissing needs one."""
    text = check_text(reason, "reason", MAX_REASON, allow_empty=True) if reason is not None else ""
    if status == "dismissed" and not text:
        raise InvalidInput("dismissing an alert needs a reason", "give a reason (why it is not suspicious)")
    return text


def list_alerts(
    con: duckdb.DuckDBPyConnection,
    principal: Principal,
    status: str | None = None,
    detector: str | None = None,
    typology: str | None = None,
    chain: str | None = None,
    severity: str | None = None,
    min_score: float | None = None,
    limit: int = 100,
    offset: int = 0,
) -> JSON:
    """The alerts matching every filter given, newest first, ``limit`` from ``offset`` on:
    ``{"alerts", "total", "truncated"}`` (truncated: more follow)."""
    require(principal, READ_PERMISSION)
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit {limit} is out of range", f"give 1 to {MAX_LIMIT:,}")
    if offset < 0:
        raise InvalidInput(f"offset {offset} is negative", "give 0 or more")
    where = ["TRUE"]
    params: list[Any] = []
    if status is not None:
        where.append("status = ?")
        params.append(check_status(status))
    if severity is not None:
        where.append("severity = ?")
        params.append(check_severity(severity))
    if min_score is not None:
        if not 0.0 <= min_score <= 100.0:
            raise InvalidInput(f"minimum score {min_score} is outside 0-100", "give a score from 0 to 100")
        where.append("score >= ?")
        params.append(float(min_score))
    for column, value in (("detector", detector), ("typology", typology), ("chain", chain)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    cond = " AND ".join(where)
    total = int(scalar(con, f"SELECT count(*) FROM alerts WHERE {cond}", params))
    rows = con.execute(
        f"{_SELECT} WHERE {cond} ORDER BY alert_id DESC LIMIT ? OFFSET ?", [*params, limit, offset]
    ).fetchall()
    return {"alerts": [_alert(r) for r in rows], "total": total, "truncated": total > offset + len(rows)}


def _events(con: duckdb.DuckDBPyConnection, alert_id: int) -> list[JSON]:
    rows = con.execute(
        """SELECT seq, who, user_id, epoch_us(changed_at), from_status, to_status, reason
           FROM alert_events WHERE alert_id = ? ORDER BY seq""",
        [alert_id],
    ).fetchall()
    return [
        {
            "seq": int(seq),
            "who": who,
            "user_id": None if uid is None else int(uid),
            "at": iso(at),
            "from": old,
            "to": new,
            "reason": reason,
        }
        for seq, who, uid, at, old, new, reason in rows
    ]


def _get(con: duckdb.DuckDBPyConnection, alert_id: int) -> JSON:
    row = first(con, f"{_SELECT} WHERE alert_id = ?", [alert_id])
    if row is None:
        raise NotFound(f"no alert {alert_id}", "see `fundtrail alerts list`")
    return _alert(row)


def show_alert(con: duckdb.DuckDBPyConnection, principal: Principal, alert_id: int | str) -> JSON:
    """An alert with its events (its creation and every status change), oldest first."""
    require(principal, READ_PERMISSION)
    aid = parse_id(alert_id, "alert id")
    out = _get(con, aid)
    out["events"] = _events(con, aid)
    return out


def set_status(
    con: duckdb.DuckDBPyConnection,
    principal_or_name: Principal | str,
    alert_id: int | str,
    status: str,
    reason: str | None = None,
) -> JSON:
    """Move an alert to ``status`` (the workflow of the module docstring), recording who and why; the
    alert with its events back. A principal needs ``case.write``; a string names a system actor."""
    if isinstance(principal_or_name, Principal):
        require(principal_or_name, WRITE_PERMISSION)
        who, uid = principal_or_name.user_name, principal_or_name.user_id
    else:
        who, uid = check_text(principal_or_name, "actor", 200), None
    aid = parse_id(alert_id, "alert id")
    new = check_status(status)
    text = check_reason(new, reason)
    with atomic(con):
        old = scalar(con, "SELECT status FROM alerts WHERE alert_id = ?", [aid])
        if old is None:
            raise NotFound(f"no alert {aid}", "see `fundtrail alerts list`")
        allowed = TRANSITIONS[str(old)]
        if new not in allowed:
            raise InvalidInput(
                f"alert {aid} is {old}: it cannot become {new}",
                f"from {old} an alert may become {', '.join(allowed)}",
            )
        seq = int(scalar(con, "SELECT coalesce(max(seq), 0) + 1 FROM alert_events WHERE alert_id = ?", [aid]))
        con.execute(
            "UPDATE alerts SET status = ?, status_reason = ?, updated_at = now() WHERE alert_id = ?",
            [new, text or None, aid],
        )
        con.execute(
            """INSERT INTO alert_events
               (alert_id, seq, user_id, who, changed_at, from_status, to_status, reason)
               VALUES (?, ?, ?, ?, now(), ?, ?, ?)""",
            [aid, seq, uid, who, old, new, text or None],
        )
        out = _get(con, aid)
        out["events"] = _events(con, aid)
        params = {"from": old, "to": new, "reason": text or None}
        audit.append(con, principal_or_name, "alert.status", f"alert:{aid}", params, audit.digest(out))
    return out
