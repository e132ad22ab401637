"""Cases (:mod:`fundtrail.platform.cases` and :mod:`fundtrail.platform.snapshots`): create, list, show,
assign, status, subjects, notes with attachments, shares, snapshots of traces and screenings, re-runs.

Visibility is the library's: a case of another organisation that is not shared with the caller's is a
404 exactly like a case that does not exist; a read-only share refuses writes with 403. Every call,
reads included, is appended to the audit log by the library, in the same transaction as its effect, so
every case route runs on the one writer. A snapshot or re-run of a trace holds the writer for the
trace's duration: other writes wait, reads and screening do not (screening's audit entries queue).
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from fundtrail.api.auth import require
from fundtrail.api.errors import ApiError, blame
from fundtrail.api.jsonio import json_response
from fundtrail.api.models import (
    Assignee,
    CaseCreate,
    NoteAdd,
    ScreenSnapshot,
    ShareChange,
    StatusChange,
    SubjectAdd,
    TraceSnapshot,
)
from fundtrail.api.pagination import page, page_request
from fundtrail.api.routes_trace import trace_request
from fundtrail.api.service import Service, service
from fundtrail.platform import case_items, cases, snapshots
from fundtrail.platform.principal import Principal

router = APIRouter(prefix="/v1/cases", tags=["cases"])
Reader = Annotated[Principal, Depends(require("case.read"))]
Writer = Annotated[Principal, Depends(require("case.write"))]
CaseId = Annotated[int, Path(ge=1, le=2**62)]
SubId = Annotated[int, Path(ge=1, le=2**62)]


async def _write(svc: Service, fn: Any, field: str = "body") -> Any:
    def work(con: duckdb.DuckDBPyConnection) -> Any:
        with blame(field):
            return fn(con)

    return await svc.store.write(work)


@router.get("", summary="The cases the caller's organisation can see, newest first (paginated)")
async def list_cases(
    request: Request,
    who: Reader,
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int | None, Query(description="Cases per page.")] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    svc = service(request)
    req = page_request(limit, cursor, svc.settings.page_default, svc.settings.page_max)
    out = await _write(
        svc, lambda con: cases.list_cases(con, who, status, req.limit, req.offset), "query.status"
    )
    return json_response(page(out["cases"], req, int(out["total"])))


@router.post("", status_code=201, summary="Open a case in the caller's organisation")
async def create_case(request: Request, body: CaseCreate, who: Writer) -> Response:
    svc = service(request)
    out = await _write(svc, lambda con: cases.create_case(con, who, body.title, body.description))
    return json_response(out, 201)


@router.get("/{case_id}", summary="A case: subjects, notes, snapshots (without results), shares")
async def show_case(request: Request, case_id: CaseId, who: Reader) -> Response:
    return json_response(await _write(service(request), lambda con: cases.show_case(con, who, case_id)))


@router.put("/{case_id}/assignee", summary="Assign the case to a user of its organisation")
async def assign(request: Request, case_id: CaseId, body: Assignee, who: Writer) -> Response:
    out = await _write(service(request), lambda con: cases.assign(con, who, case_id, body.user), "body.user")
    return json_response(out)


@router.put("/{case_id}/status", summary="Change the case's status")
async def set_status(request: Request, case_id: CaseId, body: StatusChange, who: Writer) -> Response:
    fn = lambda con: cases.set_status(con, who, case_id, body.status)  # noqa: E731
    return json_response(await _write(service(request), fn, "body.status"))


@router.post("/{case_id}/subjects", status_code=201, summary="Add an address, transaction or cluster")
async def add_subject(request: Request, case_id: CaseId, body: SubjectAdd, who: Writer) -> Response:
    with blame("body.value"):
        case_items.parse_subject(body.kind, body.chain, body.value)

    def fn(con: duckdb.DuckDBPyConnection) -> Any:
        return case_items.add_subject(con, who, case_id, body.kind, body.chain, body.value, body.note)

    return json_response(await _write(service(request), fn), 201)


@router.post("/{case_id}/notes", status_code=201, summary="Add a note, with attachments (base64)")
async def add_note(request: Request, case_id: CaseId, body: NoteAdd, who: Writer) -> Response:
    files: list[tuple[str, bytes]] = []
    for i, a in enumerate(body.attachments):
        with blame(f"body.attachments[{i}].name"):
            case_items.check_attachment_name(a.name)
        try:
            files.append((a.name, base64.b64decode(a.content_base64, validate=True)))
        except (binascii.Error, ValueError):
            raise ApiError(
                422, "invalid_input", "the attachment's content is not base64", "encode the file's bytes "
                "as standard base64", f"body.attachments[{i}].content_base64",
            ) from None  # fmt: skip
    fn = lambda con: case_items.add_note(con, who, case_id, body.text, files)  # noqa: E731
    return json_response(await _write(service(request), fn), 201)


@router.get("/{case_id}/attachments/{attachment_id}", summary="An attachment's bytes")
async def attachment(request: Request, case_id: CaseId, attachment_id: SubId, who: Reader) -> Response:
    name, data = await _write(
        service(request), lambda con: case_items.get_attachment(con, who, case_id, attachment_id)
    )
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.put("/{case_id}/shares/{org}", summary="Share with another organisation (read, write; null revokes)")
async def share(
    request: Request,
    case_id: CaseId,
    org: Annotated[str, Path(min_length=1, max_length=64, description="Organisation name or id.")],
    body: ShareChange,
    who: Writer,
) -> Response:
    out = await _write(
        service(request), lambda con: cases.share(con, who, case_id, org, body.access), "path.org"
    )
    return json_response({"shares": out})


@router.post("/{case_id}/snapshots/trace", status_code=201, summary="Run a trace and save it in the case")
async def snapshot_trace(request: Request, case_id: CaseId, body: TraceSnapshot, who: Writer) -> Response:
    svc = service(request)
    req = trace_request(body, svc.settings.max_hops)
    fn = lambda con: snapshots.snapshot_trace(con, who, case_id, req, svc.db_path, body.title)  # noqa: E731
    return json_response(await _write(svc, fn), 201)


@router.post("/{case_id}/snapshots/screen", status_code=201, summary="Screen items and save the results")
async def snapshot_screen(request: Request, case_id: CaseId, body: ScreenSnapshot, who: Writer) -> Response:
    svc = service(request)
    policy_path = svc.settings.policy
    text = policy_path.read_text(encoding="utf-8") if policy_path is not None else None
    source = str(policy_path) if policy_path is not None else "default"

    def fn(con: duckdb.DuckDBPyConnection) -> Any:
        return snapshots.snapshot_screen(
            con, who, case_id, body.chain, body.items, text, source, body.asset, body.title
        )

    return json_response(await _write(svc, fn), 201)


@router.get("/{case_id}/snapshots/{snapshot_id}", summary="A snapshot with its result")
async def get_snapshot(request: Request, case_id: CaseId, snapshot_id: SubId, who: Reader) -> Response:
    fn = lambda con: snapshots.get_snapshot(con, who, case_id, snapshot_id)  # noqa: E731
    return json_response(await _write(service(request), fn))


@router.post("/{case_id}/snapshots/{snapshot_id}/rerun", summary="Run a snapshot again and compare")
async def rerun(request: Request, case_id: CaseId, snapshot_id: SubId, who: Reader) -> Response:
    svc = service(request)
    fn = lambda con: snapshots.rerun_snapshot(con, who, case_id, snapshot_id, svc.db_path)  # noqa: E731
    return json_response(await _write(svc, fn))
