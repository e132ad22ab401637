"""``POST /v1/trace``: follow the money, the JSON of ``fundtrail trace --json``.

A trace runs on a trace thread (``trace_workers`` of them; more requests wait their turn), so it never
holds up screening or reads. The answer is serialised on that thread too, and its SHA-256 recorded in the
audit entry. Permission ``query``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import duckdb
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from fundtrail.api.auth import require
from fundtrail.api.errors import ApiError, blame
from fundtrail.api.jsonio import JSONBytes, canonical
from fundtrail.api.models import TraceBody
from fundtrail.api.service import service
from fundtrail.chains.registry import chain as get_chain
from fundtrail.platform.principal import Principal
from fundtrail.tracing.engine import TraceRequest, trace
from fundtrail.tracing.model import Limits
from fundtrail.tracing.seeds import parse_seed

router = APIRouter(prefix="/v1", tags=["tracing"])


def _time(value: str | int | None, field: str) -> int | None:
    """An ISO 8601 date or date-time (UTC unless it says otherwise) or unix seconds."""
    if value is None or isinstance(value, int):
        return value
    s = value.strip()
    if s.isdigit() and len(s) <= 12:
        return int(s)
    try:
        t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            422, "invalid_input", f"{field} {value[:40]!r} is not a time",
            "give an ISO 8601 date/time (2024-05-01T12:00Z) or unix seconds", field,
        ) from None  # fmt: skip
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return int(t.timestamp())


def trace_request(body: TraceBody, max_hops: int) -> TraceRequest:
    """The library's trace request of a body, every field checked and named when refused."""
    if body.hops > max_hops:
        raise ApiError(
            422, "invalid_input", f"body.hops {body.hops} is above {max_hops}",
            f"give at most {max_hops} hops", "body.hops",
        )  # fmt: skip
    with blame("body.chain"):
        c = get_chain(body.chain)
    with blame("body.seed"):
        parse_seed(body.seed, c)
    limits = Limits(
        hops=body.hops,
        min_amount=body.min_amount,
        until=_time(body.until, "body.until"),
        since=_time(body.since, "body.since"),
        max_cluster_size=body.max_cluster_size,
    )
    with blame("body.since" if body.since is not None else "body.until"):
        return TraceRequest(
            chain=c.name,
            seed=body.seed,
            direction=body.direction,
            policy=body.policy,
            limits=limits,
            by=body.by,
            asset=body.asset,
            amount=body.amount,
            start=_time(body.start, "body.start"),
        )


@router.post("/trace", summary="Trace funds forward or backward from a seed")
async def trace_route(
    request: Request, body: TraceBody, who: Annotated[Principal, Depends(require("query"))]
) -> Response:
    svc = service(request)
    req = trace_request(body, svc.settings.max_hops)

    def work(con: duckdb.DuckDBPyConnection) -> tuple[bytes, str]:
        with blame("body"):
            return canonical(trace(con, req, svc.db_path))

    body_bytes, digest = await svc.store.trace(work)
    params = body.model_dump(exclude_none=True)
    await svc.audit.record(who, "trace", f"{req.chain}:{body.seed}", params, digest)
    return JSONBytes(body_bytes)
