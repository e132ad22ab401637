"""``fundtrail serve``: the REST API over the store (docs/api.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fundtrail.api.config import ServiceSettings
from fundtrail.api.server import LOG_LEVELS, serve
from fundtrail.cli.render import err
from fundtrail.cli.state import state
from fundtrail.settings import db_path

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve_command(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    max_body: Annotated[
        int, typer.Option("--max-body", help="Largest request body in bytes (413 above).")
    ] = ServiceSettings.max_body_bytes,
    max_batch: Annotated[
        int, typer.Option("--max-batch", help="Most items per screening request.")
    ] = ServiceSettings.max_batch,
    rate_limit: Annotated[
        float,
        typer.Option("--rate-limit", help="Requests per second of a key that has no limit of its own."),
    ] = ServiceSettings.rate_limit_per_s,
    trace_workers: Annotated[
        int, typer.Option("--trace-workers", help="Traces run at the same time (threads).")
    ] = ServiceSettings.trace_workers,
    policy: Annotated[
        Path | None, typer.Option("--policy", help="Risk policy YAML for screening (default: shipped).")
    ] = None,
    duckdb_threads: Annotated[
        int | None,
        typer.Option("--duckdb-threads", help="DuckDB threads per query (default: the cores less one)."),
    ] = None,
    trace_nice: Annotated[
        int,
        typer.Option("--trace-nice", help="Lower OS priority of trace threads (0: none; Linux)."),
    ] = ServiceSettings.trace_nice,
    log_level: Annotated[str, typer.Option("--log-level", help=f"One of: {', '.join(LOG_LEVELS)}.")] = "info",
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="Log one line per request.")
    ] = True,
) -> None:
    """Serve the REST API (OpenAPI at /docs, routes under /v1) until Ctrl-C. The service holds the store
    open: stop it to ingest or to run other commands on the same store."""
    settings = ServiceSettings(
        max_body_bytes=max_body,
        max_batch=max_batch,
        rate_limit_per_s=rate_limit,
        trace_workers=trace_workers,
        policy=policy,
        duckdb_threads=duckdb_threads,
        trace_nice=trace_nice,
    )
    if host not in _LOOPBACK:
        err.print(
            f"[yellow]warning[/]: listening on {host}: the service speaks plain HTTP; put a TLS-terminating "
            "reverse proxy in front of it before exposing it beyond this machine"
        )
    serve(db_path(state.db), host, port, settings, log_level, access_log)
