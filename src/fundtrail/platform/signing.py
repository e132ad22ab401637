"""The installation's Ed25519 signing key and the peer keys it trusts (``cryptography``'s Ed25519).

**The installation key** signs the case packages this installation exports. It is generated on first use
and kept in a file beside the store, ``<db>.signing-key`` (PEM, PKCS#8, unencrypted, created with mode
0600; a key file that group or others may read is refused). Back it up with the store: peers trust its
public key. The installation's id is the first 32 hex digits of the SHA-256 of its public key.

**Trusted keys** (table ``trusted_keys``) are the public keys of peer installations whose packages this one
imports, each under a name (``fundtrail case trust NAME ed25519:<64 hex>``; the local administrator only).
An installation always trusts its own key. Public keys are written ``ed25519:`` and the 32 raw bytes in hex.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import duckdb
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from fundtrail.errors import InvalidInput, NotFound, StoreError
from fundtrail.platform import audit
from fundtrail.platform.common import JSON, atomic, check_name, iso, now
from fundtrail.platform.principal import Principal, require_local
from fundtrail.store.db import first, scalar

KEY_SUFFIX = ".signing-key"
PUBLIC_PREFIX = "ed25519:"
_PUBLIC = re.compile(r"(?:ed25519:)?([0-9a-fA-F]{64})")


def fingerprint(public: bytes) -> str:
    """The installation id of a public key: the first 32 hex digits of its SHA-256."""
    return hashlib.sha256(public).hexdigest()[:32]


def public_text(public: bytes) -> str:
    return PUBLIC_PREFIX + public.hex()


@dataclass(frozen=True)
class InstallationKey:
    private: Ed25519PrivateKey
    public: bytes  # 32 raw bytes
    path: Path | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public)

    @property
    def text(self) -> str:
        return public_text(self.public)

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def key_path(db_path: Path) -> Path:
    """Where the signing key of the store at ``db_path`` lives."""
    return db_path.with_name(db_path.name + KEY_SUFFIX)


def _raw_public(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_or_create(path: Path) -> InstallationKey:
    """The key in ``path``, generated (mode 0600) when the file does not exist."""
    try:
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return load(path)
    except OSError as exc:
        raise StoreError(
            f"cannot create the signing key {path} ({exc.strerror})", "check the directory"
        ) from None
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return InstallationKey(private, _raw_public(private), path)


def load(path: Path) -> InstallationKey:
    """The key in ``path``: refused when missing, unreadable, not Ed25519, or readable by others."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no signing key at {path}", "export a case once to create it") from None
    except OSError as exc:
        raise StoreError(
            f"cannot read the signing key {path} ({exc.strerror})", "check its permissions"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreError(
            f"the signing key {path} may be read by other users (mode {stat.S_IMODE(mode):o})",
            f"restrict it: chmod 600 {path}",
        )
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise StoreError(
            f"{path} is not an unencrypted PEM private key", "restore it from a backup"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise StoreError(f"{path} is not an Ed25519 key", "restore it from a backup")
    return InstallationKey(private, _raw_public(private), path)


def installation_key(db_path: Path) -> InstallationKey:
    """The signing key of the store at ``db_path`` (``<db>.signing-key``), created on first use."""
    return load_or_create(key_path(db_path))


def parse_public_key(text: str) -> bytes:
    """32 raw bytes from ``ed25519:<64 hex>`` (or the 64 hex digits alone), checked to be a valid key."""
    m = _PUBLIC.fullmatch(text.strip())
    if m is None:
        raise InvalidInput(
            f"{text.strip()[:80]!r} is not an Ed25519 public key",
            "give ed25519: and 64 hex digits, as `fundtrail case trust --own` prints it",
        )
    raw = bytes.fromhex(m.group(1))
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise InvalidInput("not a valid Ed25519 public key", "check the key you were given") from None
    return raw


def verifies(public: bytes, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``public``'s Ed25519 signature of ``data``."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- trusted peer keys -------------------------------------------------------------------------------------


def _trusted(row: tuple[str, str, str, str, int]) -> JSON:
    name, public, fp, by, added = row
    return {"name": name, "public_key": public, "installation": fp, "added_by": by, "added_at": iso(added)}


def trusted_keys(con: duckdb.DuckDBPyConnection) -> list[JSON]:
    """The peer keys this installation trusts, by name."""
    rows = con.execute(
        "SELECT name, public_key, fingerprint, added_by, epoch_us(added_at) FROM trusted_keys ORDER BY name"
    ).fetchall()
    return [_trusted(r) for r in rows]


def trust_key(con: duckdb.DuckDBPyConnection, principal: Principal, name: str, key: str) -> JSON:
    """Trust a peer installation's public key under ``name`` (local administrator only)."""
    require_local(principal, "trust peer keys")
    name = check_name(name, "trusted key name")
    raw = parse_public_key(key)
    text = public_text(raw)
    with atomic(con):
        if scalar(con, "SELECT count(*) FROM trusted_keys WHERE lower(name) = lower(?)", [name]):
            raise InvalidInput(
                f"a trusted key named {name!r} exists", "choose another name, or --revoke it first"
            )
        other = scalar(con, "SELECT name FROM trusted_keys WHERE public_key = ?", [text])
        if other is not None:
            raise InvalidInput(f"this key is already trusted as {other!r}", "nothing to do")
        con.execute(
            "INSERT INTO trusted_keys VALUES (?, ?, ?, ?, ?)",
            [name, text, fingerprint(raw), principal.user_name, now()],
        )
        row = first(
            con,
            "SELECT name, public_key, fingerprint, added_by, epoch_us(added_at) FROM trusted_keys "
            "WHERE name = ?",
            [name],
        )
        assert row is not None
        out = _trusted(row)
        audit.append(
            con, principal, "trust.add", f"trusted-key:{name}", {"public_key": text}, audit.digest(out)
        )
    return out


def untrust_key(con: duckdb.DuckDBPyConnection, principal: Principal, name: str) -> JSON:
    """Stop trusting a peer key (packages it signed are refused from now on)."""
    require_local(principal, "trust peer keys")
    row = first(
        con,
        "SELECT name, public_key, fingerprint, added_by, epoch_us(added_at) FROM trusted_keys "
        "WHERE lower(name) = lower(?)",
        [name.strip()],
    )
    if row is None:
        raise NotFound(f"no trusted key named {name!r}", "see `fundtrail case trust --list`")
    out = _trusted(row)
    with atomic(con):
        con.execute("DELETE FROM trusted_keys WHERE name = ?", [out["name"]])
        audit.append(con, principal, "trust.revoke", f"trusted-key:{out['name']}", {}, audit.digest(out))
    return out
