"""Who am I, the audit trail, and an organisation's users and keys.

``GET /v1/me`` (any key): the caller's user, organisation, role and permissions. ``GET /v1/audit/verify``
and ``GET /v1/audit`` (permission ``audit.read``, admins): the chain checked end to end, and the
organisation's entries, newest first. ``/v1/users`` and ``/v1/keys`` (permission ``users.manage``: an
organisation's admin, for its own organisation): the service holds the store open, so the CLI cannot
manage accounts while it runs; these routes can. A new key's secret is in the answer once. Organisations
are created by the installation's administrator with the CLI (``fundtrail orgs create``).
"""

from __future__ import annotations

from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from fundtrail.api.auth import require
from fundtrail.api.errors import blame
from fundtrail.api.jsonio import json_response
from fundtrail.api.models import KeyCreate, RoleChange, UserCreate
from fundtrail.api.pagination import page, page_request
from fundtrail.api.service import service
from fundtrail.platform import accounts, audit
from fundtrail.platform.principal import ROLE_PERMISSIONS, Principal

router = APIRouter(prefix="/v1", tags=["administration"])
Admin = Annotated[Principal, Depends(require("users.manage"))]
Auditor = Annotated[Principal, Depends(require("audit.read"))]
UserRef = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/me", summary="The caller: user, organisation, role, permissions")
async def me(who: Annotated[Principal, Depends(require("screen"))]) -> Response:
    return json_response(
        {
            "user_id": who.user_id,
            "user": who.user_name,
            "org_id": who.org_id,
            "role": who.role,
            "key_id": who.key_id,
            "rate_limit_per_s": who.rate_limit_per_s,
            "permissions": sorted(ROLE_PERMISSIONS.get(who.role, frozenset())),
        }
    )


@router.get("/audit/verify", summary="Verify the whole audit chain; names the first bad entry")
async def audit_verify(request: Request, _: Auditor) -> Response:
    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        report = audit.verify(con)
        return {**report.as_dict(), "message": report.line(), "head": audit.head(con)}

    svc = service(request)
    await svc.audit.flush()
    return json_response(await svc.store.read(work))


@router.get("/audit", summary="The organisation's audit entries, newest first (paginated)")
async def audit_list(
    request: Request,
    who: Auditor,
    limit: Annotated[int | None, Query(description="Entries per page.")] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    target: Annotated[str | None, Query(max_length=500)] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z][a-z0-9._-]*$")] = None,
) -> Response:
    svc = service(request)
    req = page_request(limit, cursor, svc.settings.page_default, svc.settings.page_max)

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        return audit.list_entries(con, who, req.limit, target, action, req.offset)

    await svc.audit.flush()
    out = await svc.store.read(work)
    return json_response(page(out["entries"], req, int(out["total"])))


@router.get("/users", summary="The organisation's users")
async def users(request: Request, who: Admin) -> Response:
    items = await service(request).store.read(lambda con: accounts.list_users(con, None, who))
    return json_response({"items": items, "next": None, "truncated": False, "total": len(items)})


@router.post("/users", status_code=201, summary="A new user of the caller's organisation")
async def create_user(request: Request, body: UserCreate, who: Admin) -> Response:
    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("body"):
            return accounts.create_user(con, body.name, who.org_id, body.role, who)

    return json_response(await service(request).store.write(work), 201)


@router.put("/users/{user}/role", summary="Change a user's role")
async def set_role(request: Request, user: UserRef, body: RoleChange, who: Admin) -> Response:
    svc = service(request)

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("body.role"):
            return accounts.set_role(con, user, body.role, who)

    out = await svc.store.write(work)
    svc.auth.forget()  # cached principals carry the old role
    return json_response(out)


@router.get("/keys", summary="The organisation's API keys (never their secrets)")
async def keys(
    request: Request, who: Admin, user: Annotated[str | None, Query(max_length=64)] = None
) -> Response:
    items = await service(request).store.read(lambda con: accounts.list_keys(con, user, who))
    return json_response({"items": items, "next": None, "truncated": False, "total": len(items)})


@router.post("/keys", status_code=201, summary="A new API key; its secret is in this answer only")
async def create_key(request: Request, body: KeyCreate, who: Admin) -> Response:
    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("body"):
            key_id, secret = accounts.create_key(con, body.user, body.rate_limit, who)
        return {"key_id": key_id, "key": secret, "shown_once": True}

    return json_response(await service(request).store.write(work), 201)


@router.delete("/keys/{key_id}", summary="Revoke an API key")
async def revoke_key(
    request: Request, key_id: Annotated[str, Path(min_length=1, max_length=64)], who: Admin
) -> Response:
    svc = service(request)
    out = await svc.store.write(lambda con: accounts.revoke_key(con, key_id, who))
    svc.auth.forget(out["key_id"])
    return json_response(out)
