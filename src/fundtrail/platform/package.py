"""Signed case packages: how one fundtrail installation hands a case to another (agencies of different
countries pass cases this way).

A package is a zip of::

    case.json        {"format", "case": {case_id, title, description, status, org, created_by, ...}}
    subjects.json    [{subject_id, kind, chain, value, note, added_by, added_at}]
    notes.json       [{note_id, author, text, created_at, attachments: [{attachment_id, name, sha256, size,
                                                                        path}]}]
    snapshots.json   [{snapshot_id, kind, title, chain, params, tip, result, result_digest, ...}]
    audit.json       the exporting installation's audit entries of the case (its chain of custody)
    attachments/<attachment id>-<name>
    manifest.json    {"format", "fundtrail_version", "created_at", "case_id", "exporter": {org_id, org,
                      user}, "installation": {"id", "public_key"}, "files": {path: {"sha256", "size"}}}
    manifest.sig     the 64-byte Ed25519 signature of manifest.json's bytes by the installation's key

Import checks, in order, and refuses at the first failure naming the file: every member name is a plain
relative path (no absolute path, ``..``, backslash, drive, symlink or duplicate: zip-slip) and no member or
total is oversized (:data:`MAX_MEMBER`, :data:`MAX_TOTAL`); ``manifest.sig`` verifies over ``manifest.json``
with a trusted key (a valid signature by an untrusted key is refused with the ``fundtrail case trust``
command that would trust it); every file's SHA-256 and size match the manifest, and no file is extra or
missing. Members are read into memory, never extracted to disk. The case is then stored as a new case of
the importing organisation, status ``open``, with its provenance (``origin``: installation, signer, original
case id and organisation, package SHA-256).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import stat
import zipfile
from dataclasses import dataclass
from typing import Any

import duckdb

from fundtrail import __version__
from fundtrail.errors import InvalidInput, PermissionDenied
from fundtrail.platform import audit
from fundtrail.platform.case_items import check_attachment_name, insert_attachment, parse_subject
from fundtrail.platform.cases import access, case_document
from fundtrail.platform.common import JSON, atomic, canonical_json, check_text, iso, next_id, now, parse_iso
from fundtrail.platform.package_verify import (
    FORMAT,
    MANIFEST,
    MAX_MEMBER,
    MAX_MEMBERS,
    MAX_PACKAGE,
    MAX_TOTAL,
    SIGNATURE,
    VerifiedPackage,
    parse_json,
    reject,
    verify_package,
)
from fundtrail.platform.principal import Principal, require
from fundtrail.platform.signing import InstallationKey, parse_public_key, trusted_keys
from fundtrail.store.db import scalar

_ZIP_TIME = (2000, 1, 1, 0, 0, 0)

__all__ = [
    "FORMAT",
    "MAX_MEMBER",
    "MAX_MEMBERS",
    "MAX_PACKAGE",
    "MAX_TOTAL",
    "ExportedPackage",
    "VerifiedPackage",
    "export_case",
    "import_case",
    "verify_package",
]


@dataclass(frozen=True)
class ExportedPackage:
    data: bytes  # the zip
    manifest: JSON
    sha256: str  # of the zip

    @property
    def filename(self) -> str:
        return f"case-{self.manifest['case_id']}-{self.manifest['installation']['id'][:8]}.ftcase.zip"


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n").encode()


def export_case(
    con: duckdb.DuckDBPyConnection, principal: Principal, case_id: int | str, key: InstallationKey
) -> ExportedPackage:
    """A signed package of a case of the caller's organisation (``package.export``)."""
    require(principal, "package.export")
    acc = access(con, principal, case_id)
    if acc.level not in ("owner", "local"):
        raise PermissionDenied(
            f"only the organisation that owns case {acc.case_id} may export it", "ask its owner"
        )
    doc = case_document(con, acc)
    case = {k: v for k, v in doc.items() if k not in ("subjects", "notes", "snapshots", "shares", "access")}
    files: dict[str, bytes] = {}
    notes = []
    for n in doc["notes"]:
        atts = []
        for a in n["attachments"]:
            path = f"attachments/{a['attachment_id']}-{a['name']}"
            files[path] = _attachment(con, acc.case_id, a["attachment_id"])
            atts.append({**a, "path": path})
        notes.append({**n, "attachments": atts})
    snapshots = [
        {
            **s,
            "params": json.loads(s["params"]),
            "tip": {"height": s["tip_height"], "hash": s["tip_hash"]},
            "result": json.loads(s["result"]),
        }
        for s in _snapshot_rows(con, acc.case_id)
    ]
    for s in snapshots:
        del s["tip_height"], s["tip_hash"]
    files["case.json"] = _json_bytes({"format": FORMAT, "case": case})
    files["subjects.json"] = _json_bytes(doc["subjects"])
    files["notes.json"] = _json_bytes(notes)
    files["snapshots.json"] = _json_bytes(snapshots)
    files["audit.json"] = _json_bytes(audit.entries_for_target_prefix(con, acc.target))
    manifest: JSON = {
        "format": FORMAT,
        "fundtrail_version": __version__,
        "created_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "case_id": acc.case_id,
        "exporter": {"org_id": doc["org_id"], "org": doc["org"], "user": principal.user_name},
        "installation": {"id": key.fingerprint, "public_key": key.text},
        "files": {
            p: {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for p, d in sorted(files.items())
        },
    }
    manifest_bytes = _json_bytes(manifest)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in [
            *sorted(files.items()),
            (MANIFEST, manifest_bytes),
            (SIGNATURE, key.sign(manifest_bytes)),
        ]:
            info = zipfile.ZipInfo(path, _ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data)
    data = buf.getvalue()
    out = ExportedPackage(data, manifest, hashlib.sha256(data).hexdigest())
    params = {"package_sha256": out.sha256, "installation": key.fingerprint, "files": len(files)}
    audit.append(con, principal, "case.export", acc.target, params, audit.digest(manifest))
    return out


def _attachment(con: duckdb.DuckDBPyConnection, case_id: int, attachment_id: int) -> bytes:
    return bytes(
        scalar(
            con,
            "SELECT content FROM case_attachments WHERE case_id = ? AND attachment_id = ?",
            [case_id, attachment_id],
        )
    )


def _snapshot_rows(con: duckdb.DuckDBPyConnection, case_id: int) -> list[JSON]:
    cols = (
        "snapshot_id",
        "kind",
        "title",
        "chain",
        "params",
        "tip_height",
        "tip_hash",
        "result",
        "result_digest",
        "created_by",
        "created_at",
    )
    rows = con.execute(
        f"SELECT {', '.join(cols[:-1])}, epoch_us(created_at) FROM case_snapshots WHERE case_id = ? "
        "ORDER BY snapshot_id",
        [case_id],
    ).fetchall()
    return [{**dict(zip(cols, r)), "created_at": iso(r[-1])} for r in rows]


# --- import ----------------------------------------------------------------------------------------------


def _list(pkg: VerifiedPackage, path: str) -> list[JSON]:
    value = parse_json(path, pkg.files[path])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise reject(path, "is not a list of objects")
    return value


def _field(path: str, item: JSON, key: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
    v = item.get(key)
    if v is None and optional:
        return None
    if not isinstance(v, kind) or isinstance(v, bool):
        raise reject(path, f"field {key!r} is missing or malformed")
    return v


def _time(path: str, item: JSON, key: str) -> dt.datetime:
    try:
        return parse_iso(_field(path, item, key, str))
    except ValueError:
        raise reject(path, f"field {key!r} is not an ISO 8601 UTC time") from None


def import_case(
    con: duckdb.DuckDBPyConnection, principal: Principal, data: bytes, own_key: InstallationKey | None = None
) -> JSON:
    """Verify a package (trusting the keys of ``trusted_keys`` and ``own_key``) and store its case as a new
    case of the caller's organisation. Answers the new case as ``show_case`` does."""
    require(principal, "package.import")
    if principal.is_local:
        raise InvalidInput(
            "an imported case belongs to an organisation", "act as a user of it: add --as USER"
        )
    trusted = {parse_public_key(k["public_key"]): k["name"] for k in trusted_keys(con)}
    if own_key is not None:
        trusted[own_key.public] = "this installation"
    pkg = verify_package(data, trusted)
    doc = parse_json("case.json", pkg.files["case.json"])
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("case"), dict):
        raise reject("case.json", f"not a {FORMAT} case")
    case = doc["case"]
    title = check_text(_field("case.json", case, "title", str), "title", 200)
    desc = _field("case.json", case, "description", str, optional=True)
    subjects, notes, snapshots = (
        _list(pkg, "subjects.json"),
        _list(pkg, "notes.json"),
        _list(pkg, "snapshots.json"),
    )
    origin = {
        "installation": pkg.installation,
        "signer": pkg.signer,
        "case_id": _field("case.json", case, "case_id", int),
        "org": _field("case.json", case, "org", str),
        "status": _field("case.json", case, "status", str),
        "exported_by": pkg.manifest.get("exporter", {}).get("user"),
        "exported_at": pkg.manifest.get("created_at"),
        "fundtrail_version": pkg.manifest.get("fundtrail_version"),
        "package_sha256": pkg.sha256,
        "imported_by": principal.user_name,
        "previous_origin": case.get("origin"),
    }
    where = f"@{origin['org']}"
    with atomic(con):
        cid = next_id(con, "cases", "case_id")
        t = now()
        con.execute(
            "INSERT INTO cases VALUES (?, ?, ?, ?, 'open', ?, NULL, ?, ?, ?)",
            [
                cid,
                principal.org_id,
                title,
                desc,
                f"{_field('case.json', case, 'created_by', str)}{where}",
                t,
                t,
                canonical_json(origin),
            ],
        )
        _import_subjects(con, cid, subjects, where)
        _import_notes(con, cid, notes, pkg, where)
        _import_snapshots(con, cid, snapshots, where)
        insert_attachment(
            con, cid, None, "origin-audit.json", pkg.files["audit.json"], principal.user_name, t
        )
        out = case_document(con, access(con, principal, cid))
        audit.append(con, principal, "case.import", f"case:{cid}", origin, audit.digest(out))
    return out


def _import_subjects(con: duckdb.DuckDBPyConnection, cid: int, items: list[JSON], where: str) -> None:
    path = "subjects.json"
    for i, s in enumerate(items, 1):
        try:
            kind, chain, value = parse_subject(
                _field(path, s, "kind", str), _field(path, s, "chain", str), _field(path, s, "value", str)
            )
        except InvalidInput as exc:
            raise reject(
                path, f"subject {i}: {exc.problem}", "the sender's data does not parse here"
            ) from None
        note = _field(path, s, "note", str, optional=True)
        con.execute(
            "INSERT INTO case_subjects VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                cid,
                i,
                kind,
                chain,
                value,
                note,
                f"{_field(path, s, 'added_by', str)}{where}",
                _time(path, s, "added_at"),
            ],
        )


def _import_notes(
    con: duckdb.DuckDBPyConnection, cid: int, items: list[JSON], pkg: VerifiedPackage, where: str
) -> None:
    path = "notes.json"
    for i, n in enumerate(items, 1):
        author = f"{_field(path, n, 'author', str)}{where}"
        at = _time(path, n, "created_at")
        con.execute(
            "INSERT INTO case_notes VALUES (?, ?, ?, ?, ?)",
            [cid, i, author, _field(path, n, "text", str), at],
        )
        for a in _field(path, n, "attachments", list):
            if not isinstance(a, dict):
                raise reject(path, f"note {i}: malformed attachment")
            member = _field(path, a, "path", str)
            if member not in pkg.files or not member.startswith("attachments/"):
                raise reject(path, f"note {i}: attachment {member!r} is not in the package")
            content = pkg.files[member]
            if hashlib.sha256(content).hexdigest() != a.get("sha256"):
                raise reject(member, "does not match the SHA-256 its note records")
            try:
                name = check_attachment_name(_field(path, a, "name", str))
            except InvalidInput as exc:
                raise reject(path, f"note {i}: {exc.problem}") from None
            insert_attachment(con, cid, i, name, content, author, at)


def _import_snapshots(con: duckdb.DuckDBPyConnection, cid: int, items: list[JSON], where: str) -> None:
    path = "snapshots.json"
    for i, s in enumerate(items, 1):
        kind = _field(path, s, "kind", str)
        if kind not in ("trace", "screen"):
            raise reject(path, f"snapshot {i}: unknown kind {kind!r}")
        result = s.get("result")
        digest = _field(path, s, "result_digest", str)
        if audit.digest(result) != digest:
            raise reject(path, f"snapshot {i}: its result does not match its digest")
        tip = _field(path, s, "tip", dict)
        con.execute(
            "INSERT INTO case_snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                cid,
                i,
                kind,
                _field(path, s, "title", str, optional=True),
                _field(path, s, "chain", str),
                canonical_json(_field(path, s, "params", dict)),
                _field(path, tip, "height", int, optional=True),
                _field(path, tip, "hash", str, optional=True),
                canonical_json(result),
                digest,
                f"{_field(path, s, 'created_by', str)}{where}",
                _time(path, s, "created_at"),
            ],
        )
