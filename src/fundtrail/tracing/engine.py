"""Follow the money: resolve a trace request against the store, run the chain family's tracer, and
present its flow as addresses, clusters and labels.

The family tracers (:mod:`fundtrail.tracing.utxo_trace`, :mod:`fundtrail.tracing.account_trace`) work on
integer ids and return a :class:`~fundtrail.tracing.model.RawFlow`; this module builds what they need
(the seed, the stop masks from labels and clusters) and turns the answer into the JSON contract of
``fundtrail trace``:
``{"seed","asset","policy","direction","as_of":{"height","block_hash"},"endpoints":[...],"edges":[...],
"totals":{"seed_amount","at_endpoints","unspent","fees","below_threshold","beyond_limits"}}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from fundtrail.chains.registry import Chain
from fundtrail.chains.registry import chain as get_chain
from fundtrail.errors import InvalidInput, NotFound
from fundtrail.labels.store import labels_for_address_ids
from fundtrail.store.assets import resolve_asset
from fundtrail.store.db import first, scalar
from fundtrail.tracing.account_trace import trace_account
from fundtrail.tracing.model import (
    DIRECTIONS,
    FEE_ADDRESS,
    NO_ADDRESS,
    POLICIES,
    TOTAL_KEYS,
    Limits,
    RawEdge,
    RawEndpoint,
    RawFlow,
    Stops,
)
from fundtrail.tracing.seeds import Seed, parse_seed
from fundtrail.tracing.utxo_graph import load
from fundtrail.tracing.utxo_trace import trace_utxo

JSON = dict[str, Any]
# where a trace ends: the services an investigator sends a freeze or KYC request to
SERVICE_CATEGORIES = ("exchange", "bridge", "mixer", "payment_processor")
# on account chains a swap through a labelled DEX is an end point too (what came out is named)
ACCOUNT_SERVICE_CATEGORIES = (*SERVICE_CATEGORIES, "defi")


@dataclass(frozen=True)
class TraceRequest:
    chain: str
    seed: str
    direction: str = "forward"
    policy: str = "haircut"
    limits: Limits = field(default_factory=Limits)
    by: str = "address"  # address | cluster
    asset: str | None = None  # account chains: symbol or contract; default the native coin
    amount: int | None = None  # base units; default all of the seed
    start: int | None = None  # unix time; default the seed's

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise InvalidInput(f"unknown direction {self.direction!r}", f"use one of {', '.join(DIRECTIONS)}")
        if self.policy not in POLICIES:
            raise InvalidInput(f"unknown policy {self.policy!r}", f"use one of {', '.join(POLICIES)}")
        if self.by not in ("address", "cluster"):
            raise InvalidInput(f"unknown --by {self.by!r}", "use address or cluster")
        if self.limits.hops < 0:
            raise InvalidInput(f"--hops {self.limits.hops} is negative", "give 0 or more hops")
        if self.limits.min_amount < 0:
            raise InvalidInput(f"--min-amount {self.limits.min_amount} is negative", "give 0 or more")
        if self.limits.since is not None and self.direction == "forward":
            raise InvalidInput("--since bounds backward traces", "use --until to bound a forward trace")
        if self.limits.until is not None and self.direction == "backward":
            raise InvalidInput("--until bounds forward traces", "use --since to bound a backward trace")
        if self.limits.max_cluster_size < 1:
            raise InvalidInput(
                f"--max-cluster-size {self.limits.max_cluster_size} is below 1", "give a size of at least 1"
            )
        if self.amount is not None and self.amount <= 0:
            raise InvalidInput(
                f"--amount {self.amount} is not positive", "give a positive amount in base units"
            )


def trace(con: duckdb.DuckDBPyConnection, req: TraceRequest, db_path: Path | None = None) -> JSON:
    c = get_chain(req.chain)
    seed = parse_seed(req.seed, c)
    categories = SERVICE_CATEGORIES if c.family == "bitcoin" else ACCOUNT_SERVICE_CATEGORIES
    st = stops(con, c.name, req.limits.max_cluster_size, categories)
    swaps: list[JSON] = []
    if c.family == "bitcoin":
        flow = _trace_bitcoin(con, c, seed, req, st, db_path)
        asset: str = "BTC"
        decimals: int | None = 8
    else:
        asset_id, asset, decimals = _asset(con, c, req.asset)
        flow, swaps = _trace_account(con, c, seed, req, st, asset_id)
    flow.check()
    out = _present(con, c, req, asset, flow, swaps)
    out["decimals"] = decimals
    return out


def stops(
    con: duckdb.DuckDBPyConnection, chain: str, max_cluster_size: int, categories: tuple[str, ...]
) -> Stops:
    """The stop masks: addresses labelled with a service category, or in a cluster whose definer label
    has one; addresses in clusters above ``max_cluster_size``."""
    n = int(scalar(con, "SELECT coalesce(max(address_id), -1) + 1 FROM addresses") or 0)
    service = np.zeros(n, dtype=np.bool_)
    super_cluster = np.zeros(n, dtype=np.bool_)
    rows = con.execute(
        """WITH l AS (SELECT a.address_id, l.is_cluster_definer FROM labels l
                      JOIN addresses a ON a.chain = l.chain AND a.key = l.key
                      WHERE l.chain = $chain AND l.category IN (SELECT unnest($cats)))
           SELECT address_id FROM l
           UNION
           SELECT m.address_id FROM l JOIN clusters c ON c.chain = $chain AND c.address_id = l.address_id
           JOIN clusters m ON m.chain = $chain AND m.cluster_id = c.cluster_id WHERE l.is_cluster_definer""",
        {"chain": chain, "cats": list(categories)},
    ).fetchall()
    service[[r[0] for r in rows]] = True
    big = con.execute(
        """SELECT address_id FROM clusters WHERE chain = $chain AND cluster_id IN
           (SELECT cluster_id FROM clusters WHERE chain = $chain GROUP BY 1 HAVING count(*) > $max)""",
        {"chain": chain, "max": max_cluster_size},
    ).fetchall()
    super_cluster[[r[0] for r in big]] = True
    return Stops(service=service, super_cluster=super_cluster)


# --- Bitcoin ------------------------------------------------------------------------------------------


def _trace_bitcoin(
    con: duckdb.DuckDBPyConnection, c: Chain, seed: Seed, req: TraceRequest, st: Stops, db_path: Path | None
) -> RawFlow:
    outputs = _seed_outputs(con, c, seed, req)
    graph = load(con, c.name, db_path)
    # an address's (cluster's) outputs may be downstream of each other (change back to itself): the
    # value that reaches one from another counts once
    overlapping = seed.kind in ("address", "cluster")
    return trace_utxo(
        graph, outputs, req.amount, req.policy, req.direction, req.limits, st, req.start, True, overlapping
    )


def _seed_outputs(
    con: duckdb.DuckDBPyConnection, c: Chain, seed: Seed, req: TraceRequest
) -> list[tuple[int, int]]:
    if seed.kind in ("output", "tx"):
        tx_id = scalar(
            con, "SELECT max(tx_id) FROM transactions WHERE chain = ? AND txid = ?", [c.name, seed.txid]
        )
        if tx_id is None:
            raise NotFound(
                f"transaction {seed.txid.hex() if seed.txid else ''} is not in the store", "ingest it first"
            )
        if seed.kind == "output":
            ok = scalar(con, "SELECT count(*) FROM tx_outputs WHERE tx_id = ? AND n = ?", [tx_id, seed.vout])
            if not ok:
                raise NotFound(
                    f"transaction {seed.text.split(':')[0]} has no output {seed.vout}", "check VOUT"
                )
            return [(int(tx_id), int(seed.vout or 0))]
        rows = con.execute("SELECT tx_id, n FROM tx_outputs WHERE tx_id = ? ORDER BY n", [tx_id]).fetchall()
        return [(int(t), int(n)) for t, n in rows]
    ids = _seed_address_ids(con, c, seed)
    time_cond = ""
    params: dict[str, Any] = {"chain": c.name, "ids": ids}
    if req.start is not None:
        # a loose transaction (no block, no time yet) is later than any start
        time_cond = (
            "AND (b.time IS NULL OR b.time >= $start)"
            if req.direction == "forward"
            else "AND b.time <= $start"
        )
        params["start"] = req.start
    rows = con.execute(
        f"""SELECT o.tx_id, o.n FROM tx_outputs o JOIN transactions t ON t.tx_id = o.tx_id
            LEFT JOIN blocks b ON b.block_id = t.block_id
            WHERE o.chain = $chain AND o.address_id IN (SELECT unnest($ids)) {time_cond}
            ORDER BY o.tx_id, o.n""",
        params,
    ).fetchall()
    if not rows:
        raise NotFound(f"seed {seed.text} received nothing in the stored data", "check the seed and --start")
    return [(int(t), int(n)) for t, n in rows]


def _seed_address_ids(con: duckdb.DuckDBPyConnection, c: Chain, seed: Seed) -> list[int]:
    if seed.kind == "cluster":
        from fundtrail.clustering.read import cluster_id_of, clustered, members

        if not clustered(con, c.name):
            raise NotFound(f"the {c.name} clusters are not built", "run `fundtrail cluster` first")
        known = scalar(
            con,
            "SELECT count(*) FROM addresses WHERE chain = ? AND address_id = ?",
            [c.name, seed.cluster_id],
        )
        if not known:
            raise NotFound(f"no {c.name} cluster {seed.cluster_id}", "give an id that `show cluster` shows")
        # an id of a member names its cluster (as `show cluster` reads it), never that address alone
        return members(con, c.name, cluster_id_of(con, c.name, int(seed.cluster_id or 0)))
    aid = scalar(con, "SELECT address_id FROM addresses WHERE chain = ? AND key = ?", [c.name, seed.key])
    if aid is None:
        raise NotFound(f"address {seed.text} never appears in the stored {c.name} data", "check the address")
    return [int(aid)]


# --- account chains -----------------------------------------------------------------------------------


def _asset(con: duckdb.DuckDBPyConnection, c: Chain, asset: str | None) -> tuple[int, str, int | None]:
    """(asset id, name, decimals) of the native coin (default) or a named token."""
    ref = resolve_asset(con, c, asset)
    if ref.asset_id is None:
        raise NotFound(f"no {c.name} data in the store", "ingest it first")
    return ref.asset_id, ref.name, ref.decimals


def _trace_account(
    con: duckdb.DuckDBPyConnection, c: Chain, seed: Seed, req: TraceRequest, st: Stops, asset_id: int
) -> tuple[RawFlow, list[JSON]]:
    seed_tx: int | None = None
    addresses: list[int] | None = None
    if seed.kind == "tx":
        seed_tx = scalar(
            con, "SELECT tx_id FROM account_txs WHERE chain = ? AND hash = ?", [c.name, seed.txid]
        )
        if seed_tx is None:
            raise NotFound(f"transaction {seed.text} is not in the store ({c.name})", "ingest it first")
    else:
        addresses = _seed_address_ids(con, c, seed)
    flow, swaps = trace_account(
        con,
        c.name,
        asset_id,
        addresses,
        seed_tx,
        req.amount,
        req.policy,
        req.direction,
        req.limits,
        st,
        req.start,
    )
    return flow, swaps


# --- presentation -------------------------------------------------------------------------------------


def _iso(t: int | None) -> str | None:
    if t is None or t < 0:
        return None
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Names:
    """Address ids, tx ids and clusters to the strings a person reads, fetched in bulk."""

    def __init__(self, con: duckdb.DuckDBPyConnection, c: Chain, flow: RawFlow, swaps: list[JSON]) -> None:
        ids = (
            {e.src for e in flow.edges} | {e.dst for e in flow.edges} | {p.address_id for p in flow.endpoints}
        )
        ids |= {s["endpoint_address_id"] for s in swaps} | {s["recipient_id"] for s in swaps}
        ids = {i for i in ids if i >= 0}
        self.c = c
        self.keys = dict(
            con.execute(
                "SELECT address_id, key FROM addresses WHERE address_id IN (SELECT unnest(?))", [sorted(ids)]
            ).fetchall()
        )
        self.cluster = dict(
            con.execute(
                "SELECT address_id, cluster_id FROM clusters "
                "WHERE chain = ? AND address_id IN (SELECT unnest(?))",
                [c.name, sorted(ids)],
            ).fetchall()
        )
        txs = {e.tx_id for e in flow.edges} | {t for p in flow.endpoints for t in p.path}
        txs |= {s["tx_id"] for s in swaps}
        table, col = ("transactions", "txid") if c.family == "bitcoin" else ("account_txs", "hash")
        self.hashes = dict(
            con.execute(
                f"SELECT tx_id, {col} FROM {table} WHERE tx_id IN (SELECT unnest(?))", [sorted(txs)]
            ).fetchall()
        )
        self.prefix = "" if c.family == "bitcoin" else "0x"

    def address(self, i: int) -> str | None:
        if i == FEE_ADDRESS:
            return "(fees)"
        if i == NO_ADDRESS or i not in self.keys:
            return None
        return self.c.show(bytes(self.keys[i]))

    def cluster_of(self, i: int) -> int | None:
        return None if i < 0 else int(self.cluster.get(i, i))

    def txid(self, t: int) -> str | None:
        h = self.hashes.get(t)
        return None if h is None else self.prefix + bytes(h).hex()


def _present(
    con: duckdb.DuckDBPyConnection, c: Chain, req: TraceRequest, asset: str, flow: RawFlow, swaps: list[JSON]
) -> JSON:
    names = _Names(con, c, flow, swaps)
    label_ids = sorted({p.address_id for p in flow.endpoints if p.address_id >= 0})
    own = labels_for_address_ids(con, c.name, label_ids)
    endpoints = [_endpoint(p, names, own) for p in flow.endpoints]
    edges = [_edge(e, names, req.by) for e in flow.edges]
    if req.by == "cluster":
        endpoints = _merge_endpoints(endpoints)
        edges = _merge_edges(edges)
    tip = first(
        con,
        "SELECT height, hash FROM blocks WHERE chain = ? ORDER BY height DESC NULLS LAST LIMIT 1",
        [c.name],
    )
    totals: JSON = {"seed_amount": flow.seed_amount, **{k: flow.totals.get(k, 0) for k in TOTAL_KEYS}}
    if req.policy == "poison":
        totals["created"] = flow.created
    out: JSON = {
        "chain": c.name,
        "seed": req.seed,
        "asset": asset,
        "policy": req.policy,
        "direction": req.direction,
        "by": req.by,
        "limits": {
            "hops": req.limits.hops,
            "min_amount": req.limits.min_amount,
            "until": _iso(req.limits.until),
            "since": _iso(req.limits.since),
            "max_cluster_size": req.limits.max_cluster_size,
        },
        "as_of": {
            "height": None if tip is None else tip[0],
            "block_hash": None if tip is None else names.prefix + bytes(tip[1]).hex(),
        },
        "endpoints": sorted(endpoints, key=lambda p: (-int(p["tainted_amount"]), str(p["address"]))),
        "edges": edges,
        "totals": totals,
    }
    if flow.notes:
        out["notes"] = list(dict.fromkeys(flow.notes))
    out["swaps"] = [
        {
            "txid": names.txid(s["tx_id"]),
            "via": names.address(s["endpoint_address_id"]),
            "asset_out": _asset_name(con, c, s["asset_out_id"]),
            "amount_out": s["amount_out"],
            "recipient": names.address(s["recipient_id"]),
        }
        for s in swaps
    ]
    return out


def _asset_name(con: duckdb.DuckDBPyConnection, c: Chain, asset_id: int) -> str | None:
    row = first(con, "SELECT symbol, contract FROM assets WHERE asset_id = ?", [asset_id])
    if row is None:
        return None
    return str(row[0]) if row[0] else (c.show(bytes(row[1])) if row[1] is not None else None)


def _endpoint(p: RawEndpoint, names: _Names, own: dict[int, list[JSON]]) -> JSON:
    labels = own.get(p.address_id, [])
    definers = [lab for lab in labels if lab["is_cluster_definer"]]
    category = (definers or labels)[0]["category"] if labels else None
    return {
        "address": names.address(p.address_id),
        "addresses": [names.address(p.address_id)],
        "cluster_id": names.cluster_of(p.address_id),
        "kind": p.kind,
        "labels": [
            {"label": lab["label"], "category": lab["category"], "source": lab["source"]} for lab in labels
        ],
        "category": category,
        "tainted_amount": p.tainted,
        "hops": p.hops,
        "path": [names.txid(t) for t in p.path],
    }


def _edge(e: RawEdge, names: _Names, by: str) -> JSON:
    src, dst = names.address(e.src), names.address(e.dst)
    if by == "cluster":
        sc, dc = names.cluster_of(e.src), names.cluster_of(e.dst)
        src = f"cluster:{sc}" if sc is not None else src
        dst = f"cluster:{dc}" if dc is not None else dst
    return {
        "txid": names.txid(e.tx_id),
        "from": src,
        "to": dst,
        "time": _iso(e.time),
        "amount": None if e.amount < 0 else e.amount,  # -1: unknown (an unresolved input, backward)
        "tainted_amount": e.tainted,
        "hop": e.hop,
    }


def _merge_endpoints(endpoints: list[JSON]) -> list[JSON]:
    by: dict[tuple[Any, str], JSON] = {}
    best: dict[tuple[Any, str], int] = {}  # the taint of the member whose path is kept
    for p in endpoints:
        k = (p["cluster_id"], p["kind"])
        if k not in by:
            by[k] = {**p, "addresses": list(p["addresses"]), "labels": list(p["labels"])}
            best[k] = p["tainted_amount"]
            continue
        q = by[k]
        q["tainted_amount"] += p["tainted_amount"]
        q["addresses"] += [a for a in p["addresses"] if a not in q["addresses"]]
        q["labels"] += [lab for lab in p["labels"] if lab not in q["labels"]]
        q["hops"] = min(q["hops"], p["hops"])
        if p["tainted_amount"] > best[k]:  # the path that carried the most taint (docs/commands/trace.md)
            best[k], q["path"] = p["tainted_amount"], p["path"]
        q["category"] = q["category"] or p["category"]
    return list(by.values())


def _merge_edges(edges: list[JSON]) -> list[JSON]:
    by: dict[tuple[Any, Any, Any], JSON] = {}
    for e in edges:
        k = (e["txid"], e["from"], e["to"])
        if k in by:
            q = by[k]
            # None: an unknown amount (an unresolved input, backward) leaves the sum unknown
            q["amount"] = None if q["amount"] is None or e["amount"] is None else q["amount"] + e["amount"]
            q["tainted_amount"] += e["tainted_amount"]
        else:
            by[k] = dict(e)
    return list(by.values())
