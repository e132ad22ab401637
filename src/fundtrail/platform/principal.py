"""Who acts, and what each role may do.

A :class:`Principal` is the caller of every platform function: a user of an organisation, authenticated
by an API key (the REST API) or named with ``--as USER`` (the CLI), or the installation's **local
administrator** (:data:`LOCAL_ADMIN`, id 0): whoever runs the CLI on the server owns the store file and
so the installation. The local administrator creates organisations, trusts peer keys, and sees and may
do everything in every organisation; it is recorded in the audit log like anyone else.

The permission table (:data:`PERMISSIONS`) is the one place roles are defined; docs/platform.md shows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fundtrail.errors import InvalidInput, PermissionDenied

ROLES: tuple[str, ...] = ("admin", "investigator", "analyst", "screening-client")
LOCAL_ID = 0  # user and org id of the local administrator; real ids start at 1

_ALL = ROLES
_READERS = ("admin", "investigator", "analyst")
_WRITERS = ("admin", "investigator")

# permission -> (what it allows, the roles that have it); docs/platform.md shows this table
PERMISSIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "screen": ("screen addresses and transactions", _ALL),
    "query": ("read chain data and trace", _READERS),
    "case.read": ("read cases", _READERS),
    "case.write": ("open and change cases", _WRITERS),
    "label.read": ("read private labels", _READERS),
    "label.write": ("change labels", _WRITERS),
    "package.export": ("export case packages", _WRITERS),
    "package.import": ("import case packages", _WRITERS),
    "users.manage": ("manage users and keys", ("admin",)),
    "audit.read": ("read the audit log", ("admin",)),
}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    role: frozenset(p for p, (_, roles) in PERMISSIONS.items() if role in roles) for role in ROLES
}


@dataclass(frozen=True)
class Principal:
    """The caller. ``key_id`` is the API key it authenticated with ("" for the CLI), and
    ``rate_limit_per_s`` that key's rate limit (0: none, the CLI)."""

    user_id: int
    user_name: str
    org_id: int
    role: str
    key_id: str
    rate_limit_per_s: int

    @property
    def is_local(self) -> bool:
        """The installation's local administrator (the CLI without ``--as``)."""
        return self.user_id == LOCAL_ID

    def may(self, permission: str) -> bool:
        if permission not in PERMISSIONS:
            raise KeyError(permission)  # a bug: every permission is in the table
        return self.is_local or permission in ROLE_PERMISSIONS.get(self.role, frozenset())


LOCAL_ADMIN = Principal(LOCAL_ID, "local-admin", LOCAL_ID, "admin", "", 0)


def local_admin(os_user: str | None = None) -> Principal:
    """The local administrator, named after the operating-system user running the CLI when known."""
    name = f"local-admin:{os_user}" if os_user else LOCAL_ADMIN.user_name
    return Principal(LOCAL_ID, name, LOCAL_ID, "admin", "", 0)


def require(principal: Principal, permission: str) -> None:
    """PermissionDenied unless the principal's role has ``permission``."""
    if not principal.may(permission):
        what, roles = PERMISSIONS[permission]
        raise PermissionDenied(
            f"user {principal.user_name} ({principal.role}) may not {what} (permission {permission})",
            f"roles {', '.join(roles)} may; ask an admin of your organisation",
        )


def require_local(principal: Principal, what: str) -> None:
    """PermissionDenied unless the caller is the installation's local administrator."""
    if not principal.is_local:
        raise PermissionDenied(
            f"only the installation's local administrator may {what}",
            "run the command with the fundtrail CLI on the server",
        )


def check_role(role: str) -> str:
    r = role.strip().lower()
    if r not in ROLES:
        raise InvalidInput(f"unknown role {role!r}", f"use one of {', '.join(ROLES)}")
    return r
