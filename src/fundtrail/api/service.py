"""What every request shares: the settings, the store (one writer, concurrent readers), the screening
snapshots, the audit trail, the authenticator and its rate limiter. One :class:`Service` per app, on
``app.state.service``; routes get it through :func:`service`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request

from fundtrail.api.audit import AuditTrail
from fundtrail.api.auth import Authenticator
from fundtrail.api.config import ServiceSettings
from fundtrail.api.ratelimit import RateLimiter
from fundtrail.api.screening import ScreeningService
from fundtrail.api.store import StoreAccess
from fundtrail.screening.policy import load_policy


@dataclass
class Service:
    settings: ServiceSettings
    db_path: Path
    store: StoreAccess
    screening: ScreeningService
    audit: AuditTrail
    auth: Authenticator

    @classmethod
    def open(cls, db_path: Path, settings: ServiceSettings) -> Service:
        policy = load_policy(settings.policy)
        store = StoreAccess(db_path, settings.trace_workers, settings.duckdb_threads, settings.trace_nice)
        return cls(
            settings,
            db_path,
            store,
            ScreeningService(store, policy),
            AuditTrail(store),
            Authenticator(store, settings, RateLimiter()),
        )

    def close(self) -> None:
        if not self.store.closed:
            self.audit.close()
        self.store.close()


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc
