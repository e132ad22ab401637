"""``POST /v1/screen``: risk screening of one item or a batch, the JSON of ``fundtrail screen --json``.

``{"chain": "bitcoin", "item": "1A1z..."}`` answers one result (a malformed address is a 422 naming
``body.item``, a transaction not stored a 404). ``{"chain": ..., "items": [...]}`` answers
``{"chain", "count", "errors", "results": [...]}``, one result per item in input order; a malformed item
is a result ``{"input", "chain", "error", "exit_code"}`` and the batch goes on, as on the command line.
Every request appends one audit entry (not one per item) with the SHA-256 of the answer's bytes.
Permission ``screen`` (every role, screening clients included).
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from fundtrail.api.auth import require
from fundtrail.api.errors import ApiError, blame
from fundtrail.api.jsonio import JSONBytes, canonical
from fundtrail.api.models import ScreenRequest
from fundtrail.api.service import service
from fundtrail.chains.registry import CHAINS
from fundtrail.platform.principal import Principal
from fundtrail.screening.screen import Screener

router = APIRouter(prefix="/v1", tags=["screening"])


def _items(body: ScreenRequest, max_batch: int) -> list[str]:
    if body.item is not None and body.items is not None:
        raise ApiError(
            422, "invalid_input", "give item or items, not both", "one item, or a batch", "body.items"
        )
    if body.item is not None:
        return [body.item]
    if not body.items:
        raise ApiError(
            422, "invalid_input", "nothing to screen", "give item (one) or items (a batch)", "body.items"
        )
    if len(body.items) > max_batch:
        raise ApiError(
            422, "invalid_input", f"body.items holds {len(body.items):,} items, above {max_batch:,}",
            "split the batch into several requests", "body.items",
        )  # fmt: skip
    return body.items


@router.post("/screen", summary="Screen an address or transaction, or a batch")
async def screen(
    request: Request, body: ScreenRequest, who: Annotated[Principal, Depends(require("screen"))]
) -> Response:
    svc = service(request)
    items = _items(body, svc.settings.max_batch)
    chain, asset = body.chain, body.asset
    sc = svc.screening
    with blame("body.asset" if asset is not None and chain in CHAINS else "body.chain"):
        view = await sc.view(chain, asset)
    inline = sc.inline_ok(chain, items, svc.settings.inline_screen)
    data: Any
    if body.item is not None:
        item = body.item
        with blame("body.item"):
            if inline:
                data = sc.screen_one_inline(chain, asset, view, item)
            else:
                data = await sc.in_thread(chain, asset, view, lambda s: s.screen(chain, item))
        target = f"{chain}:{item}"
        params: dict[str, Any] = {"chain": chain, "asset": asset, "item": item}
    else:
        if inline:
            results = sc.screen_many_inline(chain, asset, view, items)
        else:

            def many(s: Screener) -> list[dict[str, Any]]:
                return list(s.screen_many(items, chain))

            results = await sc.in_thread(chain, asset, view, many)
        errors = sum(1 for r in results if "error" in r)
        data = {"chain": chain, "count": len(results), "errors": errors, "results": results}
        target = f"{chain}:batch of {len(items)}"
        params = {
            "chain": chain,
            "asset": asset,
            "items": len(items),
            "items_sha256": hashlib.sha256("\n".join(items).encode()).hexdigest(),
        }
    body_bytes, digest = canonical(data)
    await svc.audit.record(who, "screen", target, params, digest, wait=False)
    return JSONBytes(body_bytes)
