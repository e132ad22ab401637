"""An organisation's private labels (:mod:`fundtrail.platform.private_labels`): visible to that
organisation only (another's label is a 404), audited by the library, so every route runs on the writer.
``GET /v1/private-labels`` (``label.read``, paginated), ``POST``, ``PATCH``, ``DELETE`` (``label.write``).
"""

from __future__ import annotations

from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from fundtrail.api.auth import require
from fundtrail.api.errors import blame
from fundtrail.api.jsonio import json_response
from fundtrail.api.models import CHAIN_PATTERN, PrivateLabelCreate, PrivateLabelEdit
from fundtrail.api.pagination import page, page_request
from fundtrail.api.service import service
from fundtrail.platform import private_labels as pl
from fundtrail.platform.principal import Principal

router = APIRouter(prefix="/v1/private-labels", tags=["labels"])
Reader = Annotated[Principal, Depends(require("label.read"))]
Writer = Annotated[Principal, Depends(require("label.write"))]
LabelId = Annotated[int, Path(ge=1, le=2**62)]


@router.get("", summary="The organisation's private labels, oldest first (paginated)")
async def list_private(
    request: Request,
    who: Reader,
    chain: Annotated[str | None, Query(max_length=40, pattern=CHAIN_PATTERN)] = None,
    address: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    svc = service(request)
    req = page_request(limit, cursor, svc.settings.page_default, svc.settings.page_max)

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("query.address"):
            return pl.list_private_labels(con, who, chain, address, req.limit, req.offset)

    out = await svc.store.write(work)
    return json_response(page(out["labels"], req, int(out["total"])))


@router.post("", status_code=201, summary="Label an address for the caller's organisation only")
async def add_private(request: Request, body: PrivateLabelCreate, who: Writer) -> Response:
    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("body"):
            return pl.add_private_label(con, who, body.chain, body.address, body.category, body.label)

    return json_response(await service(request).store.write(work), 201)


@router.patch("/{label_id}", summary="Change a private label's text or category")
async def edit_private(request: Request, label_id: LabelId, body: PrivateLabelEdit, who: Writer) -> Response:
    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("body"):
            return pl.edit_private_label(con, who, label_id, body.label, body.category)

    return json_response(await service(request).store.write(work))


@router.delete("/{label_id}", summary="Delete a private label")
async def delete_private(request: Request, label_id: LabelId, who: Writer) -> Response:
    return json_response(
        await service(request).store.write(lambda con: pl.delete_private_label(con, who, label_id))
    )
