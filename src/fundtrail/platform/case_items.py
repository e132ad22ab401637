"""A case's contents: subjects (an address, a transaction or a cluster of a chain, parsed strictly with
the chain's codecs, each once per case), notes, and attachments (files of up to 32 MiB, kept in the store,
attached to a note). Adding needs write access to an open case; every call is audited.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import duckdb

from fundtrail.chains.registry import chain as get_chain
from fundtrail.errors import InvalidInput, NotFound
from fundtrail.platform import audit
from fundtrail.platform.common import JSON, atomic, check_text, iso_of, next_id, now, parse_id
from fundtrail.platform.principal import Principal
from fundtrail.platform.visibility import access, touch, writable
from fundtrail.store.db import first, scalar

SUBJECT_KINDS = ("address", "tx", "cluster")
MAX_NOTE = 100_000
MAX_ATTACHMENT = 32 * 1024 * 1024
_ATTACHMENT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
_HEX64 = re.compile(r"(0x)?([0-9a-fA-F]{64})")
_CLUSTER = re.compile(r"(cluster:)?([0-9]{1,18})")


def parse_subject(kind: str, chain: str, value: str) -> tuple[str, str, str]:
    """(kind, chain, canonical value) of a subject, parsed strictly with the chain's codecs."""
    k = kind.strip().lower()
    if k not in SUBJECT_KINDS:
        raise InvalidInput(f"unknown subject kind {kind!r}", f"use one of {', '.join(SUBJECT_KINDS)}")
    c = get_chain(chain.strip())
    s = value.strip()
    if k == "address":
        return k, c.name, c.show(c.parse(s))
    if k == "tx":
        m = _HEX64.fullmatch(s)
        if m is None or (m.group(1) and c.family == "bitcoin"):
            want = "64 hex digits" if c.family == "bitcoin" else "0x and 64 hex digits"
            raise InvalidInput(f"{value!r} is not a {c.name} transaction id", f"give {want}")
        h = m.group(2).lower()
        return k, c.name, h if c.family == "bitcoin" else "0x" + h
    m = _CLUSTER.fullmatch(s)
    if m is None:
        raise InvalidInput(
            f"{value!r} is not a cluster id", "give the id `show cluster` shows, e.g. cluster:42"
        )
    return k, c.name, f"cluster:{int(m.group(2))}"


def add_subject(
    con: duckdb.DuckDBPyConnection,
    principal: Principal,
    case_id: int | str,
    kind: str,
    chain: str,
    value: str,
    note: str | None = None,
) -> JSON:
    """Add an address, transaction or cluster of a chain to the case (each once)."""
    k, c, v = parse_subject(kind, chain, value)
    text = check_text(note, "subject note", 2000) if note else None
    acc = writable(con, principal, case_id)
    with atomic(con):
        dup = scalar(
            con,
            "SELECT subject_id FROM case_subjects WHERE case_id = ? AND kind = ? AND chain = ? AND value = ?",
            [acc.case_id, k, c, v],
        )
        if dup is not None:
            raise InvalidInput(
                f"{k} {v} ({c}) is already subject {dup} of case {acc.case_id}", "nothing to do"
            )
        sid = int(
            scalar(
                con,
                "SELECT coalesce(max(subject_id), 0) + 1 FROM case_subjects WHERE case_id = ?",
                [acc.case_id],
            )
        )
        t = now()
        con.execute(
            "INSERT INTO case_subjects VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [acc.case_id, sid, k, c, v, text, principal.user_name, t],
        )
        touch(con, acc.case_id)
        out = {
            "subject_id": sid,
            "kind": k,
            "chain": c,
            "value": v,
            "note": text,
            "added_by": principal.user_name,
            "added_at": iso_of(t),
        }
        params = {"kind": k, "chain": c, "value": v}
        audit.append(
            con, principal, "case.subject.add", f"{acc.target}/subject:{sid}", params, audit.digest(out)
        )
    return out


def check_attachment_name(name: str) -> str:
    """A file name for an attachment: a base name of letters, digits, ``. _ -`` (no paths)."""
    if not _ATTACHMENT_NAME.fullmatch(name) or ".." in name:
        raise InvalidInput(
            f"attachment name {name!r} is not a plain file name",
            "use up to 100 letters, digits, '.', '_' or '-' (no directories)",
        )
    return name


def add_note(
    con: duckdb.DuckDBPyConnection,
    principal: Principal,
    case_id: int | str,
    text: str,
    attachments: Sequence[tuple[str, bytes]] = (),
) -> JSON:
    """Add a note, with optional attachments ``(file name, content)`` of up to 32 MiB each."""
    body = check_text(text, "note", MAX_NOTE)
    files = [(check_attachment_name(n), bytes(d)) for n, d in attachments]
    for n, d in files:
        if len(d) > MAX_ATTACHMENT:
            raise InvalidInput(
                f"attachment {n} is {len(d):,} bytes", f"keep attachments to {MAX_ATTACHMENT:,} bytes"
            )
    if len({n for n, _ in files}) != len(files):
        raise InvalidInput("two attachments have the same name", "rename one")
    acc = writable(con, principal, case_id)
    with atomic(con):
        nid = int(
            scalar(
                con, "SELECT coalesce(max(note_id), 0) + 1 FROM case_notes WHERE case_id = ?", [acc.case_id]
            )
        )
        t = now()
        con.execute(
            "INSERT INTO case_notes VALUES (?, ?, ?, ?, ?)", [acc.case_id, nid, principal.user_name, body, t]
        )
        meta = [insert_attachment(con, acc.case_id, nid, n, d, principal.user_name, t) for n, d in files]
        touch(con, acc.case_id)
        out = {
            "note_id": nid,
            "author": principal.user_name,
            "text": body,
            "created_at": iso_of(t),
            "attachments": meta,
        }
        params = {
            "length": len(body),
            "attachments": [{"name": m["name"], "sha256": m["sha256"]} for m in meta],
        }
        audit.append(con, principal, "case.note.add", f"{acc.target}/note:{nid}", params, audit.digest(out))
    return out


def insert_attachment(
    con: duckdb.DuckDBPyConnection, case_id: int, note_id: int | None, name: str, data: bytes, by: str, t: Any
) -> JSON:
    aid = next_id(con, "case_attachments", "attachment_id")
    digest = hashlib.sha256(data).hexdigest()
    con.execute(
        "INSERT INTO case_attachments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [case_id, aid, note_id, name, digest, len(data), data, by, t],
    )
    return {"attachment_id": aid, "name": name, "sha256": digest, "size": len(data)}


def get_attachment(
    con: duckdb.DuckDBPyConnection, principal: Principal, case_id: int | str, attachment_id: int | str
) -> tuple[str, bytes]:
    """(file name, content) of an attachment of a visible case."""
    acc = access(con, principal, case_id)
    aid = parse_id(attachment_id, "attachment id")
    row = first(
        con,
        "SELECT name, content FROM case_attachments WHERE case_id = ? AND attachment_id = ?",
        [acc.case_id, aid],
    )
    if row is None:
        raise NotFound(
            f"case {acc.case_id} has no attachment {aid}", f"see `fundtrail case show {acc.case_id}`"
        )
    name, data = str(row[0]), bytes(row[1])
    params = {"attachment_id": aid}
    audit.append(con, principal, "case.attachment.read", acc.target, params, hashlib.sha256(data).hexdigest())
    return name, data
