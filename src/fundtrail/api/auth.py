"""Who is calling: the API key of a request, checked by the platform library, then the key's rate limit,
then the role's permission.

A key is sent as ``Authorization: Bearer ft_...`` or ``X-API-Key: ft_...``. The platform verifies it
(:func:`fundtrail.platform.accounts.authenticate`: the stored SHA-256, a constant-time comparison, the
revocation) on a reader's cursor; its last use is then recorded through the one writer without waiting
for it. A verified key is remembered for ``auth_cache_s`` seconds under the SHA-256 of what was presented,
so a client calling a thousand times a second costs one verification per period; a key revoked or a role
changed through this service is forgotten at once, and an unknown key is remembered as unknown for a few
seconds (a flood of bad keys does not reach the store).

Failures answer 401 (no key, malformed, unknown, revoked: the message never repeats the key), 429 with
``Retry-After`` (over the key's rate), 403 (the role lacks the permission; the permission table is
:data:`fundtrail.platform.principal.PERMISSIONS`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable

from fastapi import Request

from fundtrail.api.config import ServiceSettings
from fundtrail.api.errors import ApiError, from_library
from fundtrail.api.ratelimit import RateLimiter
from fundtrail.api.requestlog import WHO
from fundtrail.api.store import StoreAccess
from fundtrail.errors import FundtrailError, Unauthenticated
from fundtrail.platform import accounts
from fundtrail.platform.principal import Principal
from fundtrail.platform.principal import require as require_permission

MAX_KEY_CHARS = 256
NEGATIVE_CACHE_S = 5.0
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer ft_...`",
    },
    "apiKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key: `X-API-Key`",
    },
}


def _unauthenticated(message: str, fix: str, field: str | None) -> ApiError:
    return ApiError(401, "unauthenticated", message, fix, field, {"WWW-Authenticate": "Bearer"})


class Authenticator:
    def __init__(self, store: StoreAccess, settings: ServiceSettings, limiter: RateLimiter) -> None:
        self.store = store
        self.settings = settings
        self.limiter = limiter
        self._known: dict[bytes, tuple[Principal, float]] = {}
        self._unknown: dict[bytes, tuple[str, str, float]] = {}

    async def authenticate(self, presented: str) -> Principal:
        digest = hashlib.sha256(presented.encode()).digest()
        now = time.monotonic()
        hit = self._known.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        miss = self._unknown.get(digest)
        if miss is not None and miss[2] > now:
            raise _unauthenticated(miss[0], miss[1], None)
        try:
            principal = await self.store.read(
                lambda con: accounts.authenticate(con, presented, record_use=False)
            )
        except FundtrailError as exc:
            err = from_library(exc)
            if isinstance(exc, Unauthenticated):
                fix = exc.fix or "check the key"
                err = _unauthenticated(exc.problem, fix, None)
                if len(self._unknown) > 10_000:
                    self._unknown.clear()
                self._unknown[digest] = (exc.problem, fix, now + NEGATIVE_CACHE_S)
            raise err from None
        if len(self._known) > 10_000:
            self._known.clear()
        self._known[digest] = (principal, now + self.settings.auth_cache_s)
        key_id = principal.key_id
        self.store.submit_write(lambda con: accounts.record_key_use(con, key_id))  # advisory, not awaited
        return principal

    def forget(self, key_id: str | None = None) -> None:
        """Forget remembered keys: one key id, or every key (a role or revocation change)."""
        if key_id is None:
            self._known.clear()
        else:
            self._known = {d: v for d, v in self._known.items() if v[0].key_id != key_id}
        self.limiter.forget(key_id or "")

    def rate(self, principal: Principal) -> float:
        return float(principal.rate_limit_per_s or self.settings.rate_limit_per_s)


def presented_key(request: Request) -> str:
    """The key of the request, from ``Authorization: Bearer`` or ``X-API-Key``."""
    headers = request.headers
    raw_auth = headers.get("authorization")
    if raw_auth is not None:
        scheme, _, credentials = raw_auth.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _unauthenticated(
                "the Authorization header is not `Bearer <key>`",
                "send Authorization: Bearer ft_... (or X-API-Key: ft_...)",
                "header.authorization",
            )
        key, field = credentials.strip(), "header.authorization"
    else:
        key, field = headers.get("x-api-key", ""), "header.x-api-key"
    if not key:
        raise _unauthenticated(
            "no API key",
            "send Authorization: Bearer ft_... or X-API-Key: ft_... (an admin creates keys)",
            None,
        )
    if len(key) > MAX_KEY_CHARS or not key.isascii() or not key.isprintable():
        raise _unauthenticated("the API key is malformed", "send the key exactly as it was shown", field)
    return key


def require(permission: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the authenticated, rate-limited principal, refused (403) without ``permission``.
    (The headers are read here directly; the OpenAPI document declares both schemes: see app.py.)"""

    async def dependency(request: Request) -> Principal:
        auth: Authenticator = request.app.state.service.auth
        principal = await auth.authenticate(presented_key(request))
        request.scope[WHO] = f"{principal.key_id}/{principal.user_name}"
        auth.limiter.check(principal.key_id, auth.rate(principal))
        try:
            require_permission(principal, permission)
        except FundtrailError as exc:
            raise from_library(exc) from None
        return principal

    dependency.__name__ = f"require_{permission.replace('.', '_')}"
    return dependency
