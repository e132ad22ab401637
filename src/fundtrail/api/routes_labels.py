"""Attribution labels (the shared ones of ``fundtrail labels``): ``GET /v1/labels`` (filters, paginated),
``GET /v1/labels/{id}``, and for investigators and admins ``POST``, ``PATCH``, ``DELETE``. A change goes
through the one writer, is appended to the audit log, and makes screening reload its snapshot."""

from __future__ import annotations

from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from fundtrail.api.auth import require
from fundtrail.api.errors import ApiError, blame
from fundtrail.api.jsonio import json_response
from fundtrail.api.models import CHAIN_PATTERN, LabelCreate, LabelEdit
from fundtrail.api.pagination import page, page_request
from fundtrail.api.service import service
from fundtrail.labels import store as label_store
from fundtrail.labels.addresses import resolve_on
from fundtrail.labels.taxonomy import check_category
from fundtrail.platform.audit import digest
from fundtrail.platform.principal import Principal

router = APIRouter(prefix="/v1/labels", tags=["labels"])
LabelId = Annotated[int, Path(ge=1, le=2**62)]


@router.get("", summary="Labels matching every filter given, in id order (paginated)")
async def list_labels(
    request: Request,
    _: Annotated[Principal, Depends(require("query"))],
    chain: Annotated[str | None, Query(max_length=40, pattern=CHAIN_PATTERN)] = None,
    address: Annotated[str | None, Query(max_length=200)] = None,
    source: Annotated[str | None, Query(max_length=100)] = None,
    category: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int | None, Query(description="Labels per page.")] = None,
    cursor: Annotated[str | None, Query(max_length=64, description="`next` of the previous page.")] = None,
) -> Response:
    svc = service(request)
    req = page_request(limit, cursor, svc.settings.page_default, svc.settings.page_max)

    if address is not None:
        if chain is None:
            raise ApiError(
                422,
                "invalid_input",
                "query.address needs query.chain",
                "add the address's chain",
                "query.chain",
            )
        with blame("query.address"):
            resolve_on(chain, address, strict=True)
    if category is not None:
        with blame("query.category"):
            check_category(category)

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("query"):
            result = label_store.list_labels(con, chain, address, source, category, req.offset + req.limit)
        return page(result.labels[req.offset :], req, result.total)

    return json_response(await svc.store.read(work))


@router.get("/{label_id}", summary="One label")
async def get_label(
    request: Request, label_id: LabelId, _: Annotated[Principal, Depends(require("query"))]
) -> Response:
    return json_response(await service(request).store.read(lambda con: label_store.get_label(con, label_id)))


async def _audited(
    request: Request, who: Principal, action: str, target: str, params: dict[str, Any], lab: dict[str, Any]
) -> None:
    await service(request).audit.record(who, action, target, params, digest(lab))


@router.post("", status_code=201, summary="Add one label")
async def add_label(
    request: Request, body: LabelCreate, who: Annotated[Principal, Depends(require("label.write"))]
) -> Response:
    with blame("body.address"):
        resolve_on(body.chain, body.address, strict=True)
    with blame("body.category"):
        check_category(body.category)
    with blame("body.source"):
        label_store.check_source(body.source)

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("body"):
            return label_store.add_label(
                con,
                body.chain,
                body.address,
                body.label,
                body.category,
                body.confidence,
                body.source,
                body.context,
                body.definer,
            )

    lab = await service(request).store.write(work, screening=True)
    await _audited(request, who, "label.add", f"label:{lab['label_id']}", body.model_dump(), lab)
    return json_response(lab, 201)


@router.patch("/{label_id}", summary="Change fields of one label (the others stay)")
async def edit_label(
    request: Request,
    label_id: LabelId,
    body: LabelEdit,
    who: Annotated[Principal, Depends(require("label.write"))],
) -> Response:
    if body.category is not None:
        with blame("body.category"):
            check_category(body.category)

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("body"):
            return label_store.edit_label(
                con, label_id, body.label, body.category, body.confidence, body.context, body.definer
            )

    lab = await service(request).store.write(work, screening=True)
    params = body.model_dump(exclude_none=True)
    await _audited(request, who, "label.edit", f"label:{label_id}", params, lab)
    return json_response(lab)


@router.delete("/{label_id}", summary="Delete one label")
async def delete_label(
    request: Request, label_id: LabelId, who: Annotated[Principal, Depends(require("label.write"))]
) -> Response:
    lab = await service(request).store.write(
        lambda con: label_store.delete_label(con, label_id), screening=True
    )
    await _audited(request, who, "label.delete", f"label:{label_id}", {}, lab)
    return json_response(lab)
