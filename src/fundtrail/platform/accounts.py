"""Organisations, users, roles and API keys.

* An **organisation** (an agency, an exchange, a unit) owns cases, notes and private labels.
* A **user** belongs to one organisation and has one role (:data:`~fundtrail.platform.principal.ROLES`;
  what each may do is :data:`~fundtrail.platform.principal.PERMISSIONS`). User and organisation names are
  unique in the installation (case-insensitive).
* An **API key** belongs to a user; it looks like ``ft_<key id: 16 hex>_<secret: 64 hex>``. The secret is
  256 random bits from :mod:`secrets`, printed once by :func:`create_key` and stored only as its SHA-256.
  A fast hash is right here (unlike for passwords): a salted slow hash (bcrypt, argon2) protects secrets a
  person chose from a low-entropy space against guessing, but guessing a 256-bit random secret from its
  SHA-256 is 2^256 work whatever the hash costs, and a slow hash would cost every API request tens of
  milliseconds. :func:`authenticate` compares digests in constant time (:func:`hmac.compare_digest`).

Every change is appended to the audit log. The local administrator (the CLI) manages everything; an
organisation's admin manages the users and keys of its own organisation.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import hmac
import re
import secrets
import threading
import time
from typing import Any

import duckdb

from fundtrail.errors import InvalidInput, NotFound, PermissionDenied, Unauthenticated
from fundtrail.platform import audit
from fundtrail.platform.common import JSON, atomic, check_name, iso, next_id, now, parse_id
from fundtrail.platform.principal import (
    LOCAL_ADMIN,
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    Principal,
    check_role,
    local_admin,
    require,
    require_local,
)
from fundtrail.store.db import first, scalar

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "LOCAL_ADMIN",
    "PERMISSIONS",
    "ROLES",
    "ROLE_PERMISSIONS",
    "KeyCache",
    "Principal",
    "acting",
    "authenticate",
    "create_key",
    "create_org",
    "create_user",
    "get_org",
    "get_user",
    "list_keys",
    "list_orgs",
    "list_users",
    "local_admin",
    "principal_for",
    "record_key_use",
    "require",
    "revoke_key",
    "set_role",
]

DEFAULT_RATE_LIMIT = 100  # requests per second per key
MAX_RATE_LIMIT = 1_000_000
LAST_USED_RESOLUTION_S = 60  # last_used_at is written at most once a minute per key
_KEY = re.compile(r"ft_([0-9a-f]{16})_([0-9a-f]{64})")
_NO_HASH = bytes(32)  # compared against when the key id is unknown, so both paths cost the same


# --- organisations -------------------------------------------------------------------------------------


def _org(row: tuple[Any, ...]) -> JSON:
    return {"org_id": int(row[0]), "name": row[1], "created_at": iso(row[2])}


def _find_org(con: duckdb.DuckDBPyConnection, ref: int | str) -> JSON:
    if isinstance(ref, int) or (isinstance(ref, str) and ref.strip().isascii() and ref.strip().isdigit()):
        oid = parse_id(ref, "organisation id")
        row = first(con, "SELECT org_id, name, epoch_us(created_at) FROM orgs WHERE org_id = ?", [oid])
    else:
        row = first(
            con,
            "SELECT org_id, name, epoch_us(created_at) FROM orgs WHERE lower(name) = lower(?)",
            [ref.strip()],
        )
    if row is None:
        raise NotFound(f"no organisation {ref!r}", "see `fundtrail orgs list`")
    return _org(row)


def create_org(con: duckdb.DuckDBPyConnection, name: str, actor: Principal = LOCAL_ADMIN) -> JSON:
    """A new organisation ``{"org_id", "name", "created_at"}`` (local administrator only)."""
    require_local(actor, "create organisations")
    name = check_name(name, "organisation name")
    with atomic(con):
        if scalar(con, "SELECT count(*) FROM orgs WHERE lower(name) = lower(?)", [name]):
            raise InvalidInput(f"an organisation named {name!r} exists", "choose another name")
        org_id = next_id(con, "orgs", "org_id")
        con.execute("INSERT INTO orgs VALUES (?, ?, ?)", [org_id, name, now()])
        out = _find_org(con, org_id)
        audit.append(con, actor, "org.create", f"org:{org_id}", {"name": name}, audit.digest(out))
    return out


def get_org(con: duckdb.DuckDBPyConnection, ref: int | str, actor: Principal = LOCAL_ADMIN) -> JSON:
    """An organisation by id or name; users see only their own (another is NotFound)."""
    org = _find_org(con, ref)
    if not actor.is_local and org["org_id"] != actor.org_id:
        raise NotFound(f"no organisation {ref!r}", "see `fundtrail orgs list`")
    return org


def list_orgs(con: duckdb.DuckDBPyConnection, actor: Principal = LOCAL_ADMIN) -> list[JSON]:
    """Every organisation with its user count (the local administrator), or the caller's own."""
    rows = con.execute(
        """SELECT o.org_id, o.name, epoch_us(o.created_at), count(u.user_id) FROM orgs o
           LEFT JOIN users u ON u.org_id = o.org_id
           WHERE ? OR o.org_id = ? GROUP BY ALL ORDER BY o.org_id""",
        [actor.is_local, actor.org_id],
    ).fetchall()
    return [{**_org(r[:3]), "users": int(r[3])} for r in rows]


# --- users ---------------------------------------------------------------------------------------------

_USER_SQL = """SELECT u.user_id, u.name, u.org_id, o.name, u.role, epoch_us(u.created_at),
                      epoch_us(u.updated_at)
               FROM users u JOIN orgs o ON o.org_id = u.org_id"""


def _user(row: tuple[Any, ...]) -> JSON:
    uid, name, oid, org, role, created, updated = row
    return {
        "user_id": int(uid),
        "name": name,
        "org_id": int(oid),
        "org": org,
        "role": role,
        "created_at": iso(created),
        "updated_at": iso(updated),
    }


def _find_user(con: duckdb.DuckDBPyConnection, ref: int | str) -> JSON:
    if isinstance(ref, int) or (ref.strip().isascii() and ref.strip().isdigit()):
        row = first(con, f"{_USER_SQL} WHERE u.user_id = ?", [parse_id(ref, "user id")])
    else:
        row = first(con, f"{_USER_SQL} WHERE lower(u.name) = lower(?)", [ref.strip()])
    if row is None:
        raise NotFound(f"no user {ref!r}", "see `fundtrail users list`")
    return _user(row)


def _may_manage(actor: Principal, org_id: int, what: str) -> None:
    """The local administrator, or an admin of ``org_id`` (another organisation's users are NotFound)."""
    if actor.is_local:
        return
    require(actor, "users.manage")
    if org_id != actor.org_id:
        raise PermissionDenied(
            f"user {actor.user_name} may not {what} of another organisation",
            "ask that organisation's admin or the installation's administrator",
        )


def get_user(con: duckdb.DuckDBPyConnection, ref: int | str, actor: Principal = LOCAL_ADMIN) -> JSON:
    """A user by id or name; an organisation's users see only its own users."""
    user = _find_user(con, ref)
    if not actor.is_local and user["org_id"] != actor.org_id:
        raise NotFound(f"no user {ref!r}", "see `fundtrail users list`")
    return user


def create_user(
    con: duckdb.DuckDBPyConnection, name: str, org: int | str, role: str, actor: Principal = LOCAL_ADMIN
) -> JSON:
    """A new user of ``org`` (id or name) with ``role``."""
    name = check_name(name, "user name")
    role = check_role(role)
    target_org = _find_org(con, org)
    _may_manage(actor, target_org["org_id"], "create users")
    with atomic(con):
        if scalar(con, "SELECT count(*) FROM users WHERE lower(name) = lower(?)", [name]):
            raise InvalidInput(f"a user named {name!r} exists", "choose another name")
        user_id = next_id(con, "users", "user_id")
        t = now()
        con.execute(
            "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)", [user_id, name, target_org["org_id"], role, t, t]
        )
        out = _find_user(con, user_id)
        params = {"name": name, "org_id": target_org["org_id"], "role": role}
        audit.append(con, actor, "user.create", f"user:{user_id}", params, audit.digest(out))
    return out


def list_users(
    con: duckdb.DuckDBPyConnection, org: int | str | None = None, actor: Principal = LOCAL_ADMIN
) -> list[JSON]:
    """Users, of one organisation when ``org`` is given; an organisation's users see only its own."""
    if not actor.is_local:
        require(actor, "users.manage")
    cond = "TRUE"
    params: list[Any] = []
    if org is not None:
        cond += " AND u.org_id = ?"
        params.append(get_org(con, org, actor)["org_id"])
    if not actor.is_local:
        cond += " AND u.org_id = ?"
        params.append(actor.org_id)
    rows = con.execute(f"{_USER_SQL} WHERE {cond} ORDER BY u.user_id", params).fetchall()
    return [_user(r) for r in rows]


def set_role(
    con: duckdb.DuckDBPyConnection, user: int | str, role: str, actor: Principal = LOCAL_ADMIN
) -> JSON:
    """Change a user's role (their keys act with the new role from the next request on)."""
    role = check_role(role)
    target = get_user(con, user, actor)
    _may_manage(actor, target["org_id"], "change roles")
    with atomic(con):
        con.execute(
            "UPDATE users SET role = ?, updated_at = ? WHERE user_id = ?", [role, now(), target["user_id"]]
        )
        _changed()
        out = _find_user(con, target["user_id"])
        params = {"role": role, "was": target["role"]}
        audit.append(con, actor, "user.set-role", f"user:{target['user_id']}", params, audit.digest(out))
    return out


def principal_for(con: duckdb.DuckDBPyConnection, user: int | str) -> Principal:
    """The principal of a user named on the CLI (``--as USER``): no key, no rate limit."""
    u = _find_user(con, user)
    return Principal(u["user_id"], u["name"], u["org_id"], u["role"], "", 0)


def acting(con: duckdb.DuckDBPyConnection, as_user: str | None) -> Principal:
    """Who a CLI command acts as: the user named by ``--as``, else the local administrator (named after
    the operating-system user running it)."""
    if as_user is not None:
        return principal_for(con, as_user)
    try:
        os_user: str | None = getpass.getuser()
    except (KeyError, OSError):
        os_user = None
    return local_admin(os_user)


# --- API keys ------------------------------------------------------------------------------------------


def _key(row: tuple[Any, ...]) -> JSON:
    key_id, prefix, uid, uname, oid, limit, created, revoked, used = row
    return {
        "key_id": key_id,
        "prefix": prefix,
        "user_id": int(uid),
        "user": uname,
        "org_id": int(oid),
        "rate_limit_per_s": int(limit),
        "created_at": iso(created),
        "revoked_at": iso(revoked),
        "last_used_at": iso(used),
        "active": revoked is None,
    }


_KEY_SQL = """SELECT k.key_id, k.prefix, u.user_id, u.name, u.org_id, k.rate_limit_per_s,
                     epoch_us(k.created_at), epoch_us(k.revoked_at), epoch_us(k.last_used_at)
              FROM api_keys k JOIN users u ON u.user_id = k.user_id"""


def create_key(
    con: duckdb.DuckDBPyConnection,
    user_id: int | str,
    rate_limit: int = DEFAULT_RATE_LIMIT,
    actor: Principal = LOCAL_ADMIN,
) -> tuple[str, str]:
    """A new API key for a user (id or name): ``(key_id, key)``. ``key`` (``ft_<id>_<secret>``) is shown
    this once; the store keeps only the SHA-256 of its secret."""
    if isinstance(rate_limit, bool) or not 1 <= rate_limit <= MAX_RATE_LIMIT:
        raise InvalidInput(
            f"rate limit {rate_limit!r} is out of range", f"give 1 to {MAX_RATE_LIMIT:,} requests per second"
        )
    user = get_user(con, user_id, actor)
    _may_manage(actor, user["org_id"], "create keys for users")
    secret = secrets.token_hex(32)
    with atomic(con):
        key_id = secrets.token_hex(8)
        while scalar(con, "SELECT count(*) FROM api_keys WHERE key_id = ?", [key_id]):
            key_id = secrets.token_hex(8)  # 2^-64 per try
        digest = hashlib.sha256(secret.encode("ascii")).digest()
        con.execute(
            "INSERT INTO api_keys VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",
            [key_id, user["user_id"], digest, f"ft_{key_id}_", rate_limit, now()],
        )
        out = _find_key(con, key_id)
        params = {"user_id": user["user_id"], "rate_limit_per_s": rate_limit}
        audit.append(con, actor, "key.create", f"key:{key_id}", params, audit.digest(out))
    return key_id, f"ft_{key_id}_{secret}"


def _find_key(con: duckdb.DuckDBPyConnection, key_id: str) -> JSON:
    row = first(con, f"{_KEY_SQL} WHERE k.key_id = ?", [key_id.strip()])
    if row is None:
        raise NotFound(f"no API key {key_id!r}", "see `fundtrail keys list`")
    return _key(row)


def list_keys(
    con: duckdb.DuckDBPyConnection, user: int | str | None = None, actor: Principal = LOCAL_ADMIN
) -> list[JSON]:
    """Keys (never their secrets), of one user when given; an organisation's admin sees its own."""
    if not actor.is_local:
        require(actor, "users.manage")
    cond = "TRUE"
    params: list[Any] = []
    if user is not None:
        cond += " AND u.user_id = ?"
        params.append(get_user(con, user, actor)["user_id"])
    if not actor.is_local:
        cond += " AND u.org_id = ?"
        params.append(actor.org_id)
    rows = con.execute(f"{_KEY_SQL} WHERE {cond} ORDER BY k.created_at, k.key_id", params).fetchall()
    return [_key(r) for r in rows]


def revoke_key(con: duckdb.DuckDBPyConnection, key_id: str, actor: Principal = LOCAL_ADMIN) -> JSON:
    """Revoke a key: it authenticates no more (revoking twice is an error)."""
    key = _find_key(con, key_id)
    if not actor.is_local and key["org_id"] != actor.org_id:
        raise NotFound(f"no API key {key_id!r}", "see `fundtrail keys list`")
    _may_manage(actor, key["org_id"], "revoke keys")
    if not key["active"]:
        raise InvalidInput(f"API key {key['key_id']} is already revoked", "nothing to do")
    with atomic(con):
        con.execute("UPDATE api_keys SET revoked_at = ? WHERE key_id = ?", [now(), key["key_id"]])
        _changed()
        out = _find_key(con, key["key_id"])
        audit.append(con, actor, "key.revoke", f"key:{key['key_id']}", {}, audit.digest(out))
    return out


_generation = 0  # bumped by every change of a key, user or role: drops every KeyCache entry


def _changed() -> None:
    global _generation
    _generation += 1


class KeyCache:
    """Principals of recently authenticated keys, for a service that authenticates every request: a hit
    costs a SHA-256 and a dictionary lookup instead of a query. An entry lives ``ttl_s`` seconds, and
    every entry is dropped as soon as a key is revoked or a role changes through this library in this
    process (the service is the only process that may write its store). Thread-safe (one lock)."""

    def __init__(self, ttl_s: float = 10.0, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[bytes, Principal, float, int]] = {}
        self._lock = threading.Lock()

    def get(self, key_id: str, secret_hash: bytes) -> Principal | None:
        with self._lock:
            hit = self._entries.get(key_id)
        if hit is None:
            return None
        stored, principal, at, generation = hit
        fresh = generation == _generation and time.monotonic() - at < self.ttl_s
        return principal if fresh and hmac.compare_digest(stored, secret_hash) else None

    def put(self, key_id: str, secret_hash: bytes, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[key_id] = (secret_hash, principal, time.monotonic(), _generation)


def authenticate(
    con: duckdb.DuckDBPyConnection, presented: str, record_use: bool = True, cache: KeyCache | None = None
) -> Principal:
    """The principal of a presented API key, or :class:`Unauthenticated` (unknown, malformed or revoked;
    the message never repeats the secret). With ``record_use`` the key's last use is written (at most once
    a minute; skipped when the connection cannot write); a service that serialises its writes passes False
    and calls :func:`record_key_use` from its writer. With a ``cache``, a key seen in the last seconds is
    answered without a query."""
    m = _KEY.fullmatch(presented.strip()) if len(presented) <= 200 else None
    if m is None:
        raise Unauthenticated(
            "malformed API key", "pass the whole key `fundtrail keys create` printed (ft_<id>_<secret>)"
        )
    key_id, secret = m.group(1), m.group(2)
    presented_hash = hashlib.sha256(secret.encode("ascii")).digest()
    if cache is not None and (hit := cache.get(key_id, presented_hash)) is not None:
        return hit
    row = first(
        con,
        """SELECT k.secret_sha256, k.revoked_at IS NOT NULL, k.rate_limit_per_s,
                  epoch_us(now()) - coalesce(epoch_us(k.last_used_at), 0), u.user_id, u.name, u.org_id, u.role
           FROM api_keys k JOIN users u ON u.user_id = k.user_id WHERE k.key_id = ?""",
        [key_id],
    )
    stored = bytes(row[0]) if row is not None else _NO_HASH
    if not hmac.compare_digest(presented_hash, stored) or row is None:
        raise Unauthenticated("unknown API key", "check the key, or ask your admin for a new one")
    _, revoked, limit, since_used_us, uid, uname, oid, role = row
    if revoked:
        raise Unauthenticated(f"API key ft_{key_id}_… is revoked", "ask your admin for a new key")
    if record_use and since_used_us >= LAST_USED_RESOLUTION_S * 1_000_000:
        # a read-only connection or a concurrent update: the last use is advisory
        with contextlib.suppress(duckdb.Error):
            record_key_use(con, key_id)
    principal = Principal(int(uid), str(uname), int(oid), str(role), key_id, int(limit))
    if cache is not None:
        cache.put(key_id, presented_hash, principal)
    return principal


def record_key_use(con: duckdb.DuckDBPyConnection, key_id: str) -> None:
    """Set a key's ``last_used_at`` to now, unless it was set less than a minute ago."""
    con.execute(
        f"""UPDATE api_keys SET last_used_at = now() WHERE key_id = ?
            AND (last_used_at IS NULL OR last_used_at < now() - INTERVAL {LAST_USED_RESOLUTION_S} SECOND)""",
        [key_id],
    )
