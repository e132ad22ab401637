"""Reading and checking a case package (:mod:`fundtrail.platform.package` writes and imports them):
member paths (zip-slip) and sizes, the Ed25519 signature of the manifest against trusted keys, and every
file against the manifest. Every refusal names the file that fails. Members are read into memory and never
extracted to disk; a member is never read past the size the zip directory declares.
"""

from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fundtrail.errors import CorruptData, InvalidInput, PermissionDenied
from fundtrail.platform.common import JSON
from fundtrail.platform.signing import fingerprint, parse_public_key, public_text, verifies

FORMAT = "fundtrail-case-package/1"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
REQUIRED = ("case.json", "subjects.json", "notes.json", "snapshots.json", "audit.json")
MAX_PACKAGE = 512 * 1024 * 1024
MAX_MEMBER = 64 * 1024 * 1024
MAX_TOTAL = 512 * 1024 * 1024
MAX_MEMBERS = 10_000


@dataclass(frozen=True)
class VerifiedPackage:
    manifest: JSON
    files: dict[str, bytes]  # every member but the manifest and its signature
    signer: str  # the trusted key's name
    installation: str  # the signer's installation id
    sha256: str


def reject(
    path: str,
    problem: str,
    fix: str = "the package was changed after it was signed: ask the sender for a fresh export",
) -> CorruptData:
    return CorruptData(f"package rejected: {path}: {problem}", fix)


def _check_name(name: str) -> None:
    parts = name.split("/")
    unsafe = (
        not name
        or len(name) > 255
        or "\\" in name
        or "\x00" in name
        or ":" in name
        or name.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
    )
    if unsafe:
        raise reject(
            repr(name),
            "unsafe member path (absolute, '..', or not a plain relative path: zip-slip)",
            "refused: the package is malformed or malicious",
        )


def _members(data: bytes) -> dict[str, bytes]:
    if len(data) > MAX_PACKAGE:
        raise CorruptData(
            f"package rejected: {len(data):,} bytes", f"packages are at most {MAX_PACKAGE:,} bytes"
        )
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise CorruptData(
            "package rejected: not a zip file", "give the .zip `fundtrail case export` wrote"
        ) from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise CorruptData(f"package rejected: {len(infos):,} members", f"at most {MAX_MEMBERS:,}")
        seen: set[str] = set()
        total = 0
        for info in infos:
            _check_name(info.filename)
            if info.filename in seen:
                raise reject(info.filename, "appears twice in the zip")
            seen.add(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16) or info.is_dir():
                raise reject(
                    info.filename, "is a link or a directory, not a file", "refused: malformed package"
                )
            if info.flag_bits & 0x1:
                raise reject(info.filename, "is encrypted", "refused: malformed package")
            total += info.file_size
            if info.file_size > MAX_MEMBER or total > MAX_TOTAL:
                raise reject(
                    info.filename,
                    f"oversized ({info.file_size:,} bytes; total {total:,})",
                    f"members are at most {MAX_MEMBER:,} bytes, {MAX_TOTAL:,} in all",
                )
        out: dict[str, bytes] = {}
        for info in infos:
            out[info.filename] = _read(zf, info)
    return out


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    """A member's bytes, never more than it declares (a lying header cannot inflate memory)."""
    try:
        with zf.open(info) as f:
            data = f.read(info.file_size + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError, RuntimeError) as exc:
        raise reject(info.filename, f"cannot be read ({exc})") from None
    if len(data) != info.file_size:
        raise reject(info.filename, "its size differs from the zip directory's")
    return data


def parse_json(path: str, data: bytes) -> Any:
    def no_constants(name: str) -> None:
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(data.decode("utf-8"), parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError) as exc:
        raise reject(path, f"not valid JSON ({exc})") from None


def verify_package(data: bytes, trusted: Mapping[bytes, str]) -> VerifiedPackage:
    """Check a package against trusted public keys (raw 32 bytes -> name); CorruptData names the file that
    fails, PermissionDenied an untrusted signer."""
    members = _members(data)
    for name in (MANIFEST, SIGNATURE):
        if name not in members:
            raise reject(name, "missing")
    raw, sig = members.pop(MANIFEST), members.pop(SIGNATURE)
    signer = next((pub for pub in trusted if verifies(pub, sig, raw)), None)
    manifest = parse_json(MANIFEST, raw) if signer is not None else _unverified(raw, sig)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise reject(MANIFEST, f"not a {FORMAT} manifest")
    try:
        claimed = parse_public_key(str(manifest["installation"]["public_key"]))
    except (KeyError, TypeError, InvalidInput):
        raise reject(MANIFEST, "names no installation public key") from None
    if claimed != signer:
        raise reject(MANIFEST, "names another key than the one that signed it")
    listed = manifest.get("files")
    if not isinstance(listed, dict):
        raise reject(MANIFEST, "lists no files")
    for path in sorted(set(members) - set(listed)):
        raise reject(path, "is not in the manifest (added after signing)")
    for path, entry in sorted(listed.items()):
        _check_name(path)
        if path not in members:
            raise reject(path, "is listed in the manifest but missing from the package")
        if not isinstance(entry, dict):
            raise reject(MANIFEST, f"malformed entry for {path}")
        d = members[path]
        if entry.get("size") != len(d) or entry.get("sha256") != hashlib.sha256(d).hexdigest():
            raise reject(path, "its SHA-256 or size does not match the manifest (changed after signing)")
    for path in REQUIRED:
        if path not in members:
            raise reject(path, "missing")
    return VerifiedPackage(
        manifest, members, trusted[signer], fingerprint(signer), hashlib.sha256(data).hexdigest()
    )


def _unverified(raw: bytes, sig: bytes) -> Any:
    """No trusted key verifies the signature: say whether the package is intact but from an untrusted
    installation (PermissionDenied, with the command that trusts it) or was changed (CorruptData)."""
    try:
        claimed = parse_public_key(str(json.loads(raw.decode("utf-8"))["installation"]["public_key"]))
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, InvalidInput):
        claimed = None
    if claimed is not None and verifies(claimed, sig, raw):
        key = public_text(claimed)
        raise PermissionDenied(
            f"package signed by installation {fingerprint(claimed)}, whose key is not trusted here",
            f"check the key with its sender by another channel, then run `fundtrail case trust NAME {key}`",
        )
    raise reject(f"{SIGNATURE} / {MANIFEST}", "the Ed25519 signature does not verify over the manifest")
