"""The alert queue (:mod:`fundtrail.detection.alerts`): ``GET /v1/alerts`` (filters, paginated, newest
first), ``GET /v1/alerts/{id}`` (with its events), and ``POST /v1/alerts/{id}/status`` (the review
workflow). Analysts, investigators and admins read (``query``); investigators and admins change a
status (``case.write``), through the one writer, with an alert event and an audit entry in the same
transaction."""

from __future__ import annotations

from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import Field
from starlette.responses import Response

from fundtrail.api.auth import require
from fundtrail.api.errors import blame
from fundtrail.api.jsonio import json_response
from fundtrail.api.models import CHAIN_PATTERN, StrictModel
from fundtrail.api.pagination import page, page_request
from fundtrail.api.service import service
from fundtrail.detection import alerts
from fundtrail.platform.principal import Principal

router = APIRouter(prefix="/v1/alerts", tags=["alerts"])
Reader = Annotated[Principal, Depends(require(alerts.READ_PERMISSION))]
Writer = Annotated[Principal, Depends(require(alerts.WRITE_PERMISSION))]
AlertId = Annotated[int, Path(ge=1, le=2**62)]
Name = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


class AlertStatusChange(StrictModel):
    status: Annotated[
        str, Field(min_length=1, max_length=20, description="new, reviewing, escalated, dismissed")
    ]
    reason: Annotated[
        str | None, Field(max_length=alerts.MAX_REASON, description="Why; required to dismiss.")
    ] = None


@router.get("", summary="Alerts matching every filter given, newest first (paginated)")
async def list_alerts(
    request: Request,
    who: Reader,
    status: Annotated[str | None, Query(max_length=20)] = None,
    detector: Name = None,
    typology: Name = None,
    chain: Annotated[str | None, Query(max_length=40, pattern=CHAIN_PATTERN)] = None,
    severity: Annotated[str | None, Query(max_length=20)] = None,
    min_score: Annotated[float | None, Query(ge=0, le=100)] = None,
    limit: Annotated[int | None, Query(description="Alerts per page.")] = None,
    cursor: Annotated[str | None, Query(max_length=64, description="`next` of the previous page.")] = None,
) -> Response:
    svc = service(request)
    req = page_request(limit, cursor, svc.settings.page_default, svc.settings.page_max)
    with blame("query.status"):
        if status is not None:
            alerts.check_status(status)
    with blame("query.severity"):
        if severity is not None:
            alerts.check_severity(severity)

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("query"):
            return alerts.list_alerts(
                con, who, status, detector, typology, chain, severity, min_score, req.limit, req.offset
            )

    out = await svc.store.read(work)
    return json_response(page(out["alerts"], req, int(out["total"])))


@router.get("/{alert_id}", summary="An alert with its events (creation and status changes)")
async def show_alert(request: Request, alert_id: AlertId, who: Reader) -> Response:
    out = await service(request).store.read(lambda con: alerts.show_alert(con, who, alert_id))
    return json_response(out)


@router.post("/{alert_id}/status", summary="Move an alert through the review workflow (audited)")
async def set_status(request: Request, alert_id: AlertId, body: AlertStatusChange, who: Writer) -> Response:
    with blame("body.status"):
        status = alerts.check_status(body.status)
    with blame("body.reason"):
        alerts.check_reason(status, body.reason)

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("body.status"):
            return alerts.set_status(con, who, alert_id, status, body.reason)

    return json_response(await service(request).store.write(work))
