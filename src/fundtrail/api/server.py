"""Running the service: uvicorn on one process (DuckDB lets one process open the store for writing, so
the service scales with threads, not worker processes), the redacting log configuration, no server
header."""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from fundtrail.api.app import create_app
from fundtrail.api.config import ServiceSettings
from fundtrail.api.logs import log_config
from fundtrail.errors import InvalidInput

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
SWITCH_INTERVAL_S = 0.001  # the GIL changes hands every 1 ms (default 5): a trace thread's Python parts
# delay the event loop by at most that much per hand-over, which keeps screening's p99 low during traces


def server(
    db_path: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServiceSettings | None = None,
    log_level: str = "info",
    access_log: bool = True,
) -> uvicorn.Server:
    """A configured uvicorn server over the store at ``db_path`` (``.run()`` serves until Ctrl-C)."""
    if not 0 <= port <= 65535:
        raise InvalidInput(f"port {port} is out of range", "give a port 1..65535 (0: any free port)")
    if log_level not in LOG_LEVELS:
        raise InvalidInput(f"unknown log level {log_level!r}", f"use one of {', '.join(LOG_LEVELS)}")
    app = create_app(db_path, settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=log_config(log_level),
        log_level=log_level,
        access_log=access_log,
        server_header=False,
        proxy_headers=False,
        loop="asyncio",
        http="h11",
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    return uvicorn.Server(config)


def serve(
    db_path: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServiceSettings | None = None,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Serve until interrupted."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    server(db_path, host, port, settings, log_level, access_log).run()
