"""Signed case packages (:mod:`fundtrail.platform.package`): ``GET /v1/cases/{id}/export`` downloads a
case of the caller's organisation as a signed zip; ``POST /v1/packages/import`` uploads one (the raw zip
as the body, ``Content-Type: application/zip``, up to ``max_upload_bytes``), verifies its signature
against the trusted keys and this installation's own, every file's hash, and stores it as a new case of
the caller's organisation. A tampered package is a 422 naming the file that fails. The installation's
signing key is ``<db>.signing-key`` (created on first export)."""

from __future__ import annotations

from typing import Annotated

import duckdb
from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from fundtrail.api.auth import require
from fundtrail.api.errors import ApiError
from fundtrail.api.jsonio import json_response
from fundtrail.api.service import service
from fundtrail.platform import package, signing
from fundtrail.platform.principal import Principal

router = APIRouter(prefix="/v1", tags=["packages"])
ZIP_TYPES = ("application/zip", "application/octet-stream", "application/x-zip-compressed")


@router.get(
    "/cases/{case_id}/export",
    summary="The case as a signed package (zip)",
    responses={200: {"content": {"application/zip": {}}}},
)
async def export(
    request: Request,
    case_id: Annotated[int, Path(ge=1, le=2**62)],
    who: Annotated[Principal, Depends(require("package.export"))],
) -> Response:
    svc = service(request)

    def work(con: duckdb.DuckDBPyConnection) -> package.ExportedPackage:
        return package.export_case(con, who, case_id, signing.installation_key(svc.db_path))

    pkg = await svc.store.write(work)
    return Response(
        pkg.data,
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{pkg.filename}"',
            "X-Package-SHA256": pkg.sha256,
        },
    )


@router.post(
    "/packages/import",
    status_code=201,
    summary="Import a signed package as a new case (body: the zip)",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/zip": {"schema": {"type": "string"}}}}
    },
)
async def import_package(
    request: Request, who: Annotated[Principal, Depends(require("package.import"))]
) -> Response:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ZIP_TYPES:
        raise ApiError(
            415, "unsupported_media_type", f"the body is {kind or 'untyped'}, not a zip",
            "send the package's bytes with Content-Type: application/zip", "header.content-type",
        )  # fmt: skip
    data = await request.body()
    if not data:
        raise ApiError(422, "invalid_input", "the body is empty", "send the package's bytes", "body")
    svc = service(request)

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
        return package.import_case(con, who, data, signing.installation_key(svc.db_path))

    return json_response(await svc.store.write(work), 201)
