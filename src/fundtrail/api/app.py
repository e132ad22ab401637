"""The application: :func:`create_app` opens the store and wires routes, errors and middleware.

Layers of a request, outside in: the request log (id, timing), the body size limit (413 before parsing),
the router (authentication, rate limit and permission as a dependency of each route, then the route,
which calls the library through the store's one writer or concurrent readers), and the error handlers
that turn every error into the one error shape. OpenAPI is at ``/openapi.json``, its browser at ``/docs``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.responses import Response

from fundtrail import __version__
from fundtrail.api import (
    errors,
    routes_admin,
    routes_alerts,
    routes_cases,
    routes_chain,
    routes_labels,
    routes_packages,
    routes_private,
    routes_screen,
    routes_trace,
)
from fundtrail.api.auth import SECURITY_SCHEMES
from fundtrail.api.bodylimit import BodyLimit
from fundtrail.api.config import ServiceSettings
from fundtrail.api.jsonio import json_response
from fundtrail.api.logs import install_filters
from fundtrail.api.requestlog import RequestLog
from fundtrail.api.service import Service

UPLOAD_PATHS = ("/v1/packages/import",)
DESCRIPTION = """The fundtrail platform service: chain data, labels, screening, tracing, cases and signed
case packages, for the organisations of one installation. Every route under `/v1` takes an API key
(`Authorization: Bearer ft_...` or `X-API-Key`); every error has one shape,
`{"error": {"status", "code", "message", "fix", "field"}}`. See docs/api.md."""


def create_app(db_path: Path, settings: ServiceSettings | None = None) -> FastAPI:
    """The service on the store at ``db_path`` (opened now, migrated forward, closed at shutdown)."""
    cfg = settings or ServiceSettings()
    svc = Service.open(db_path, cfg)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        svc.close()

    app = FastAPI(
        title=cfg.title,
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        # FastAPI's OpenTelemetry hooks: off (they cost every request, and their logs would carry
        # exception messages past the redaction below); a deployment that wants spans wraps the app
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.service = svc
    errors.install(app)

    @app.get("/v1/health", tags=["service"], summary="Liveness: no key needed, no data")
    async def health() -> Response:
        return json_response({"status": "ok", "version": __version__})

    routers = (
        routes_screen,
        routes_trace,
        routes_labels,
        routes_private,
        routes_packages,
        routes_cases,
        routes_admin,
        routes_alerts,
        routes_chain,  # last: its /v1/{chain}/... patterns must not shadow the fixed paths
    )
    for module in routers:
        app.include_router(module.router)
    app.add_middleware(
        BodyLimit, limit=cfg.max_body_bytes, overrides=dict.fromkeys(UPLOAD_PATHS, cfg.max_upload_bytes)
    )
    app.add_middleware(RequestLog)
    install_filters()
    _declare_security(app)
    return app


def _declare_security(app: FastAPI) -> None:
    """The OpenAPI document names both ways of sending a key on every route but the health check (the
    routes read the headers themselves, which costs less per request than two security dependencies)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
            for path, ops in schema["paths"].items():
                if path.startswith("/v1/") and path != "/v1/health":
                    for op in ops.values():
                        op["security"] = [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
