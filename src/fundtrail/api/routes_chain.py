"""Chain data, read-only: ``GET /v1/summary``, ``/v1/{chain}/blocks/{ref}``, ``/v1/{chain}/txs/{txid}``,
``/v1/{chain}/addresses/{address}``, ``/v1/{chain}/clusters/{ref}`` and ``/v1/{chain}/explain-cluster``:
the JSON of ``fundtrail summary|show block|show tx|show address|show cluster|explain-cluster --json``.
Permission ``query``; reads run concurrently, each on its worker thread's cursor."""

from __future__ import annotations

from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from fundtrail.api.auth import require
from fundtrail.api.errors import blame
from fundtrail.api.jsonio import json_response
from fundtrail.api.service import service
from fundtrail.chains.bitcoin.network import by_chain
from fundtrail.chains.registry import Chain
from fundtrail.chains.registry import chain as get_chain
from fundtrail.clustering import read as cluster_read
from fundtrail.labels.store import labels_for_address_ids
from fundtrail.platform.principal import Principal
from fundtrail.store import account_read, bitcoin_read

router = APIRouter(prefix="/v1", tags=["chain data"])
Query_ = Annotated[Principal, Depends(require("query"))]
ChainPath = Annotated[str, Path(max_length=40, description="bitcoin, bitcoin-testnet, ethereum, tron, ...")]
Ref = Annotated[str, Path(min_length=1, max_length=200)]


def _chain(name: str) -> Chain:
    with blame("path.chain"):
        return get_chain(name)


@router.get("/summary", summary="What the store holds, per chain")
async def summary(request: Request, _: Query_) -> Response:
    def work(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
        return bitcoin_read.summary(con) + account_read.summary(con)

    return json_response({"chains": await service(request).store.read(work)})


@router.get("/{chain}/blocks/{ref}", summary="A block by height or hash")
async def block(request: Request, chain: ChainPath, ref: Ref, _: Query_) -> Response:
    c = _chain(chain)

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("path.ref"):
            if c.family == "bitcoin":
                return bitcoin_read.block(con, by_chain(c.name), ref)
            return account_read.block(con, c, ref)

    return json_response(await service(request).store.read(work))


@router.get(
    "/{chain}/txs/{txid}", summary="A transaction: inputs, outputs, fee (transfers on account chains)"
)
async def tx(request: Request, chain: ChainPath, txid: Ref, _: Query_) -> Response:
    c = _chain(chain)

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("path.txid"):
            if c.family == "bitcoin":
                return bitcoin_read.tx(con, by_chain(c.name), txid)
            return account_read.tx(con, c, txid)

    return json_response(await service(request).store.read(work))


@router.get("/{chain}/addresses/{address}", summary="An address: activity, cluster, labels")
async def address(request: Request, chain: ChainPath, address: Ref, _: Query_) -> Response:
    c = _chain(chain)

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("path.address"):
            if c.family == "bitcoin":
                a = bitcoin_read.address(con, by_chain(c.name), address)
            else:
                a = account_read.address(con, c, address)
        a["cluster"] = cluster_read.address_cluster(con, c, a["address_id"])
        a["labels"] = labels_for_address_ids(con, c.name, [a["address_id"]]).get(a["address_id"], [])
        return a

    return json_response(await service(request).store.read(work))


@router.get("/{chain}/clusters/{ref}", summary="A cluster by id or by one of its addresses")
async def cluster(
    request: Request,
    chain: ChainPath,
    ref: Ref,
    _: Query_,
    sample: Annotated[int, Query(ge=0, le=10_000, description="Addresses to list.")] = cluster_read.SAMPLE,
) -> Response:
    c = _chain(chain)

    def work(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        with blame("path.ref"):
            return cluster_read.cluster(con, c, ref, sample)

    return json_response(await service(request).store.read(work))


@router.get("/{chain}/explain-cluster", summary="The evidence linking two addresses")
async def explain_cluster(
    request: Request,
    chain: ChainPath,
    _: Query_,
    a: Annotated[str, Query(min_length=1, max_length=200)],
    b: Annotated[str, Query(min_length=1, max_length=200)],
) -> Response:
    c = _chain(chain)
    with blame("query.a"):
        c.parse(a)
    with blame("query.b"):
        c.parse(b)
    return json_response(await service(request).store.read(lambda con: cluster_read.explain(con, c, a, b)))
