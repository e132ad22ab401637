"""The audit trail: an append-only, hash-chained log of every action on case data and every investigative
query (trace, screen, export, label change, status change, account and key changes).

Each entry records ``seq`` (1, 2, 3, ...), ``at`` (ISO 8601 UTC with microseconds), who (``user_id``,
``user_name``, ``org_id``; null ids for a system actor named by a string), ``action`` (``case.create``,
``trace``, ...), ``target`` (``case:12``, ``bitcoin:1A1z...``), ``params`` (canonical JSON of the call's
parameters), ``result_digest`` (:func:`digest` of the JSON answer), ``prev_hash`` (the previous entry's
hash; 64 zeros for the first) and ``hash``::

    hash = sha256(canonical_json({"v": 1, "seq", "at", "user_id", "user_name", "org_id", "action",
                                  "target", "params", "result_digest", "prev_hash"}))

with ``params`` hashed as its stored text, so any change of any byte of an entry shows. A one-row head
record (``audit_head``: the last seq and hash) is written in the same transaction as each entry, so
deleting the last entries shows too. :func:`verify` walks the chain and names the first bad entry:
edited (its hash does not match its content), reordered (it was chained after another entry), deleted
(a gap in ``seq``, or a ``prev_hash`` that is no entry's hash), truncated (entries after the last one
the head records are missing).

Limits: the log lives in the store. Someone who can rewrite the whole store file can rewrite the whole
chain and the head consistently; that is detected only by comparing the head hash with a copy kept
elsewhere (anchoring): publish :func:`head` regularly (a ticket, an e-mail to the supervisor, a
timestamping service) and compare it with ``fundtrail audit verify``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, astuple, dataclass
from typing import Any

import duckdb
import pyarrow as pa

from fundtrail.errors import CorruptData, InvalidInput
from fundtrail.platform.common import JSON, atomic, canonical_json, check_text, sha256_hex
from fundtrail.platform.principal import LOCAL_ADMIN, Principal, require
from fundtrail.store.db import first, registered, scalar

GENESIS = "0" * 64
FORMAT = 1
CHUNK = 50_000  # entries read per query by verify
_ACTION = re.compile(r"[a-z][a-z0-9._-]{0,63}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_COLUMNS = (
    "seq, logged_at, user_id, user_name, org_id, action, target, params, result_digest, prev_hash, hash"
)


def digest(obj: Any) -> str:
    """SHA-256 (hex) of the canonical JSON of a result: what an entry records of the answer it gave."""
    return sha256_hex(canonical_json(obj))


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    user_id: int | None
    user_name: str
    org_id: int | None
    action: str
    target: str
    params: str  # canonical JSON text, as hashed
    result_digest: str
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        return entry_hash(
            self.seq,
            self.at,
            self.user_id,
            self.user_name,
            self.org_id,
            self.action,
            self.target,
            self.params,
            self.result_digest,
            self.prev_hash,
        )

    def as_dict(self) -> JSON:
        d = asdict(self)
        with contextlib.suppress(json.JSONDecodeError):  # an edited entry stays as stored
            d["params"] = json.loads(self.params)
        return d


def entry_hash(
    seq: int,
    at: str,
    user_id: int | None,
    user_name: str,
    org_id: int | None,
    action: str,
    target: str,
    params: str,
    result_digest: str,
    prev_hash: str,
) -> str:
    return sha256_hex(
        canonical_json(
            {
                "v": FORMAT,
                "seq": seq,
                "at": at,
                "user_id": user_id,
                "user_name": user_name,
                "org_id": org_id,
                "action": action,
                "target": target,
                "params": params,
                "result_digest": result_digest,
                "prev_hash": prev_hash,
            }
        )
    )


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, at, uid, uname, oid, action, target, params, rd, prev, h = row
    return AuditEntry(
        int(seq),
        str(at),
        None if uid is None else int(uid),
        str(uname),
        None if oid is None else int(oid),
        str(action),
        str(target),
        str(params),
        str(rd),
        str(prev),
        str(h),
    )


def append(
    con: duckdb.DuckDBPyConnection,
    actor: Principal | str,
    action: str,
    target: str,
    params: dict[str, Any],
    result_digest: str,
) -> AuditEntry:
    """Append one entry (in the caller's transaction when there is one, else in its own) and move the
    head. ``actor`` is the principal, or a name for a system actor; ``result_digest`` is :func:`digest`
    of the answer."""
    return append_many(con, [(actor, action, target, params, result_digest)])[0]


Pending = tuple[Principal | str, str, str, dict[str, Any], str]  # actor, action, target, params, digest
_ARROW = [
    (name.strip(), pa.int64() if name.strip() in ("seq", "user_id", "org_id") else pa.string())
    for name in _COLUMNS.split(",")
]


def append_many(con: duckdb.DuckDBPyConnection, items: Sequence[Pending]) -> list[AuditEntry]:
    """Append entries in order, in one transaction and one head update: what a busy service calls with
    the entries it queued for a few milliseconds (each entry costs microseconds, a transaction
    milliseconds)."""
    rows: list[tuple[int | None, str, int | None, str, str, str, str]] = []
    for actor, action, target, params, result_digest in items:
        if not _ACTION.fullmatch(action):
            raise InvalidInput(f"audit action {action!r} is not an action name", "use e.g. case.create")
        if not _HEX64.fullmatch(result_digest):
            raise InvalidInput(
                f"result digest {result_digest!r} is not a SHA-256", "pass audit.digest(result)"
            )
        if isinstance(actor, Principal):
            uid: int | None = actor.user_id
            uname, oid = actor.user_name, actor.org_id
        else:
            uid, oid, uname = None, None, check_text(actor, "audit actor", 200)
        rows.append(
            (
                uid,
                uname,
                oid,
                action,
                check_text(target, "audit target", 1000),
                canonical_json(params),
                result_digest,
            )
        )
    if not rows:
        return []
    at = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    out: list[AuditEntry] = []
    with atomic(con):
        last = first(con, "SELECT seq, hash FROM audit_head")
        had_head = last is not None
        if last is None:  # no head yet: chain onto the last entry, if any (a store from before the head)
            last = first(con, "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        seq, prev = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        for uid, uname, oid, action, target, text, rd in rows:
            seq += 1
            h = entry_hash(seq, at, uid, uname, oid, action, target, text, rd, prev)
            out.append(AuditEntry(seq, at, uid, uname, oid, action, target, text, rd, prev, h))
            prev = h
        if len(out) == 1:
            con.execute(
                f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                astuple(out[0]),
            )
        else:
            cols = list(zip(*(astuple(e) for e in out)))
            table = pa.table({name: pa.array(col, type=kind) for (name, kind), col in zip(_ARROW, cols)})
            with registered(con, f"_audit_{uuid.uuid4().hex}", table) as view:
                con.execute(f"INSERT INTO audit_log ({_COLUMNS}) SELECT {_COLUMNS} FROM {view}")
        if had_head:
            con.execute("UPDATE audit_head SET seq = ?, hash = ?, updated_at = now()", [seq, prev])
        else:
            con.execute("INSERT INTO audit_head VALUES (?, ?, now())", [seq, prev])
    return out


def head(con: duckdb.DuckDBPyConnection) -> JSON:
    """The head record ``{"seq", "hash"}`` (seq 0 and the genesis hash for an empty log): the value to
    anchor outside the store."""
    row = first(con, "SELECT seq, hash FROM audit_head")
    return {"seq": 0, "hash": GENESIS} if row is None else {"seq": int(row[0]), "hash": str(row[1])}


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of :func:`verify`. ``problem``: edited, reordered, deleted, truncated, inserted or
    head (the head record is missing); ``first_bad_seq`` the first entry that fails (for a deletion, the
    first missing seq)."""

    ok: bool
    entries: int
    head_seq: int | None
    head_hash: str | None
    first_bad_seq: int | None = None
    problem: str | None = None
    detail: str | None = None

    def as_dict(self) -> JSON:
        return asdict(self)

    def line(self) -> str:
        if self.ok:
            return f"audit log intact: {self.entries:,} entries, head {self.head_seq} {self.head_hash}"
        where = f"entry {self.first_bad_seq}" if self.first_bad_seq is not None else "the log"
        return f"audit log broken at {where} ({self.problem}): {self.detail}"

    def raise_if_bad(self) -> None:
        if not self.ok:
            intact = (
                f"entries before {self.first_bad_seq} are intact"
                if self.first_bad_seq is not None
                else "no entry was found bad"
            )
            raise CorruptData(
                self.line(),
                f"{intact}; compare the store with a backup and with the anchored head hash",
            )


def verify(con: duckdb.DuckDBPyConnection) -> VerifyReport:
    """Walk the chain from entry 1 and name the first bad entry and why."""
    hd = first(con, "SELECT seq, hash FROM audit_head")
    head_seq = None if hd is None else int(hd[0])
    head_hash = None if hd is None else str(hd[1])

    def bad(seq: int | None, problem: str, detail: str, checked: int) -> VerifyReport:
        return VerifyReport(False, checked, head_seq, head_hash, seq, problem, detail)

    lo_hi = first(con, "SELECT min(seq), max(seq) FROM audit_log")
    prev: AuditEntry | None = None
    checked = 0
    if lo_hi is not None and lo_hi[0] is not None:
        lo, top = int(lo_hi[0]), int(lo_hi[1])
        while lo <= top:
            rows = con.execute(
                f"SELECT {_COLUMNS} FROM audit_log WHERE seq >= ? AND seq < ? ORDER BY seq, hash",
                [lo, lo + CHUNK],
            ).fetchall()
            lo += CHUNK
            for row in rows:
                e = _entry(row)
                expected_seq = 1 if prev is None else prev.seq + 1
                expected_prev = GENESIS if prev is None else prev.hash
                if e.seq < expected_seq:
                    what = "appears twice" if prev is not None and e.seq == prev.seq else "is out of sequence"
                    return bad(e.seq, "inserted", f"entry {e.seq} {what}", checked)
                if e.seq > expected_seq:
                    after = f"entry {prev.seq}" if prev is not None else "the start of the log"
                    missing = (
                        f"entry {expected_seq} is"
                        if e.seq == expected_seq + 1
                        else f"entries {expected_seq}..{e.seq - 1} are"
                    )
                    return bad(
                        expected_seq, "deleted", f"{missing} missing: entry {e.seq} follows {after}", checked
                    )
                intact = e.computed_hash() == e.hash
                linked = e.prev_hash == expected_prev
                if not (intact and linked):
                    return _classify(con, e, expected_seq, intact, linked, bad, checked)
                prev = e
                checked += 1
    last_seq, last_hash = (prev.seq, prev.hash) if prev is not None else (0, GENESIS)
    if head_seq is None or head_hash is None:
        if checked:
            return bad(
                None, "head", "the head record is missing: deleting the last entries would not show", checked
            )
        return VerifyReport(True, 0, None, None)
    if head_seq > last_seq:
        missing = (
            f"entry {head_seq} is" if head_seq == last_seq + 1 else f"entries {last_seq + 1}..{head_seq} are"
        )
        return bad(
            last_seq + 1,
            "truncated",
            f"{missing} missing: the head record says the log ends at {head_seq}",
            checked,
        )
    if head_seq < last_seq:
        return bad(
            head_seq + 1,
            "inserted",
            f"entries after {head_seq} were not written by fundtrail (no head)",
            checked,
        )
    if head_hash != last_hash:
        return bad(last_seq, "edited", f"entry {last_seq} is not the entry the head record names", checked)
    return VerifyReport(True, checked, head_seq, head_hash)


def _classify(
    con: duckdb.DuckDBPyConnection,
    e: AuditEntry,
    expected_seq: int,
    intact: bool,
    linked: bool,
    bad: Callable[[int | None, str, str, int], VerifyReport],
    checked: int,
) -> VerifyReport:
    previous = f"entry {expected_seq - 1}" if expected_seq > 1 else "the start of the log"
    if not linked:
        other = scalar(
            con, "SELECT min(seq) FROM audit_log WHERE hash = ? AND seq <> ?", [e.prev_hash, e.seq]
        )
        if other is not None:
            return bad(
                e.seq, "reordered", f"entry {e.seq} was chained after entry {other}, not {previous}", checked
            )
    if not intact:
        return bad(e.seq, "edited", f"entry {e.seq}'s hash does not match its content", checked)
    if expected_seq > 1:
        # entry e is intact, so it was written at this seq right after the original entry before it: that
        # entry's hash changed, so it was edited and re-hashed (or replaced by another one)
        return bad(
            expected_seq - 1,
            "edited",
            f"entry {expected_seq - 1} was changed and re-hashed: entry {e.seq} was chained to another "
            f"entry {expected_seq - 1}",
            checked - 1,
        )
    return bad(e.seq, "deleted", f"entry {e.seq} was chained after an entry that is no longer there", checked)


def list_entries(
    con: duckdb.DuckDBPyConnection,
    principal: Principal = LOCAL_ADMIN,
    limit: int = 100,
    target: str | None = None,
    action: str | None = None,
    offset: int = 0,
) -> JSON:
    """The newest entries first, ``limit`` from ``offset`` on: ``{"entries", "total", "truncated"}``; an
    organisation's admin sees its organisation's entries, the local administrator every entry."""
    require(principal, "audit.read")
    if limit < 1 or limit > 100_000:
        raise InvalidInput(f"limit {limit} is out of range", "give a limit between 1 and 100,000")
    if offset < 0:
        raise InvalidInput(f"offset {offset} is negative", "give 0 or more")
    where: list[str] = ["TRUE"]
    params: list[Any] = []
    if not principal.is_local:
        where.append("org_id = ?")
        params.append(principal.org_id)
    if target is not None:
        where.append("target = ?")
        params.append(target)
    if action is not None:
        where.append("action = ?")
        params.append(action)
    cond = " AND ".join(where)
    total = int(scalar(con, f"SELECT count(*) FROM audit_log WHERE {cond}", params))
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM audit_log WHERE {cond} ORDER BY seq DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    entries = [_entry(r).as_dict() for r in rows]
    return {"entries": entries, "total": total, "truncated": total > offset + len(rows)}


def entries_for_target_prefix(con: duckdb.DuckDBPyConnection, prefix: str) -> list[JSON]:
    """Every entry whose target is ``prefix`` or starts with ``prefix/`` (a case and its parts), oldest
    first: the chain of custody a case package carries."""
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM audit_log WHERE target = ? OR starts_with(target, ?) ORDER BY seq",
        [prefix, prefix + "/"],
    ).fetchall()
    return [_entry(r).as_dict() for r in rows]


__all__ = [
    "GENESIS",
    "AuditEntry",
    "VerifyReport",
    "append",
    "append_many",
    "digest",
    "entries_for_target_prefix",
    "entry_hash",
    "head",
    "list_entries",
    "verify",
]
