"""Exposure precomputation: per cluster, how much value it received from and sent to clusters of each
attribution category, directly and through up to N hops of unlabelled intermediaries.

Per (chain, asset) the job builds the cluster flow graph (``exposure_flows``), the categories each
cluster carries (any label of any of its addresses), and propagates category shares over the graph with
compiled sparse iterations (``exposure_kernels``). Results go to the tables of schema version 4:
``exposure`` (one row per cluster, scope, direction and category with exposure), ``exposure_totals``
(every cluster with flows), ``exposure_evidence`` (counterparties and intermediaries with their tx ids)
and ``exposure_state`` (what the results were built on). Definitions: docs/screening.md, "Exposure".

Runs are incremental: the clusters touched by transactions above the stored watermark, and every cluster
within N hops downstream or upstream of them, are recomputed and rewritten; nothing else changes, and
the result equals a full recompute (a property test checks it). A full recompute happens on the first
run, with ``full=True``, when the hop setting, the labels, the clusters or the stored transactions
below the watermark (a rollback) changed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fundtrail.chains.registry import chain as get_chain
from fundtrail.errors import InvalidInput, NotFound
from fundtrail.labels.store import labels_version
from fundtrail.screening import exposure_flows as flows
from fundtrail.screening import exposure_kernels as kern
from fundtrail.screening.exposure_flows import BITCOIN_ASSET, huge
from fundtrail.store import assets
from fundtrail.store.db import arrow, first, registered, scalar, transaction

I64 = npt.NDArray[np.int64]
Progress = Callable[[str], None]
DEFAULT_HOPS = 3
MAX_HOPS = 10
RULES_VERSION = 1  # bump when a definition changes: stored results are then recomputed in full
DIRECT_EVIDENCE_MAX = 10  # counterparties kept per (cluster, direction, category), largest first
INDIRECT_EVIDENCE_MAX = 3  # intermediaries kept per (cluster, direction, category), largest first
EVIDENCE_TX_MAX = 5  # tx ids kept per counterparty edge, largest flow first
_FLOAT_HUGEINT_MAX = 1.7e38  # below 2^127: indirect (float) amounts are clamped to it
DIRECTIONS = ("received", "sent")


@dataclass
class ExposureReport:
    chain: str
    asset_id: int
    asset: str | None  # symbol where known
    mode: str  # full | incremental
    reason: str
    hops: int
    clusters: int = 0  # clusters with flows of this asset
    edges: int = 0  # cluster pairs with flows
    clusters_updated: int = 0  # clusters whose rows were rewritten
    categories: dict[str, int] = field(default_factory=dict)  # category -> clusters exposed to it
    clamped: int = 0  # edge amounts above HUGEINT's maximum, stored clamped
    watermark: int = -1
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class _State:
    config: str
    watermark: int
    clusters_version: str
    labels_version: str


def stored_chains(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT chain FROM blocks ORDER BY chain").fetchall()]


def assets_with_transfers(con: duckdb.DuckDBPyConnection, chain: str) -> list[int]:
    """The assets an exposure run covers by default: Bitcoin's coin (-1), or every asset of an account
    chain that moved in a transfer other than a fee."""
    if get_chain(chain).family == "bitcoin":
        return [BITCOIN_ASSET]
    rows = con.execute(
        "SELECT DISTINCT asset_id FROM transfers WHERE chain = ? AND kind <> 'fee' ORDER BY 1", [chain]
    ).fetchall()
    return [int(r[0]) for r in rows]


def resolve_asset(con: duckdb.DuckDBPyConnection, chain: str, text: str) -> int:
    """The id of the asset ``text`` names (see :func:`fundtrail.store.assets.resolve_asset`)."""
    ref = assets.resolve_asset(con, get_chain(chain), text)
    if ref.asset_id is None:
        raise NotFound(f"no {chain} data in the store", "ingest it first")
    return ref.asset_id


def exposure(
    con: duckdb.DuckDBPyConnection,
    chains: list[str] | None = None,
    asset: str | None = None,
    hops: int = DEFAULT_HOPS,
    full: bool = False,
    progress: Progress | None = None,
) -> list[ExposureReport]:
    """Compute exposure for ``chains`` (default: every chain in the store), every asset or ``asset``."""
    if not 1 <= hops <= MAX_HOPS:
        raise InvalidInput(f"hops must be 1 to {MAX_HOPS}, not {hops}", "pass --hops 3 (the default)")
    # every chain's asset is resolved before any is computed: an asset unknown on a later chain must not
    # leave the earlier chains written (docs/commands/exposure.md: "nothing is written")
    todo = [
        (c, None if asset is None else resolve_asset(con, c, asset))
        for c in (chains if chains else stored_chains(con))
    ]
    out: list[ExposureReport] = []
    for c, aid in todo:
        out += compute_exposure(con, c, aid, hops, full, progress)
    return out


def compute_exposure(
    con: duckdb.DuckDBPyConnection,
    chain: str,
    asset_id: int | None = None,
    hops: int = DEFAULT_HOPS,
    full: bool = False,
    progress: Progress | None = None,
) -> list[ExposureReport]:
    """Build or update the exposure of one chain's clusters for ``asset_id`` (default: every asset with
    transfers; Bitcoin: -1); one report per asset."""
    name = get_chain(chain).name
    if not 1 <= hops <= MAX_HOPS:
        raise InvalidInput(f"hops must be 1 to {MAX_HOPS}, not {hops}", "pass --hops 3 (the default)")
    ids = assets_with_transfers(con, name) if asset_id is None else [asset_id]
    return [_compute(con, name, a, hops, full, progress or (lambda _m: None)) for a in ids]


# --- one (chain, asset) ----------------------------------------------------------------------------------


def _compute(
    con: duckdb.DuckDBPyConnection, chain: str, asset_id: int, hops: int, full: bool, say: Progress
) -> ExposureReport:
    t0 = time.perf_counter()
    family = get_chain(chain).family
    tag = f"{chain}/{asset_id}"
    lv = labels_version(con)
    cv = _clusters_fp(con, chain)
    state = _read_state(con, chain, asset_id)
    max_tx, watermark = _watermarks(con, chain, family)
    config = json.dumps({"hops": hops, "rules": RULES_VERSION}, sort_keys=True)
    mode, reason = _decide(con, chain, family, state, config, cv, lv, full)
    report = ExposureReport(chain, asset_id, _symbol(con, chain, asset_id), mode, reason, hops)
    report.watermark = watermark
    try:
        say(f"{tag}: flow graph")
        flows.build(con, chain, family, asset_id)
        report.clamped = flows.clamped_count(con, family)
        e = arrow(con, "SELECT src, dst, amount_f FROM _ft_edges")
        src = e.column(0).to_numpy().astype(np.int64)
        dst = e.column(1).to_numpy().astype(np.int64)
        w = e.column(2).to_numpy().astype(np.float64)
        nodes = np.unique(np.concatenate([src, dst]))
        n = len(nodes)
        si, di = np.searchsorted(nodes, src), np.searchsorted(nodes, dst)
        report.clusters, report.edges = n, len(src)
        carrier_ids, names, cat_idx = flows.carriers(con, chain)
        carries = np.zeros((n, max(len(names), 1)), dtype=np.uint8)
        pos = np.searchsorted(nodes, carrier_ids)
        ok = pos < n
        ok[ok] = nodes[pos[ok]] == carrier_ids[ok]
        carries[pos[ok], cat_idx[ok]] = 1
        carrier = carries.max(axis=1) if n else np.zeros(0, np.uint8)
        graphs = {
            "received": kern.csr(n, di, si, w),  # in-edges: counterparty = source
            "sent": kern.csr(n, si, di, w),  # out-edges: counterparty = destination
        }

        say(f"{tag}: affected clusters")
        if mode == "incremental" and state is not None:
            seeds = _node_index(nodes, flows.touched(con, chain, family, asset_id, state.watermark))
            near = np.zeros(n, dtype=np.bool_)
            for g in graphs.values():  # upstream (in-edges) and downstream (out-edges) within N hops
                near |= kern.distances(g[0], g[1], seeds, hops) <= hops
            affected = np.flatnonzero(near).astype(np.int64)
        else:
            affected = np.arange(n, dtype=np.int64)
        report.clusters_updated = len(affected)

        say(f"{tag}: propagation")
        ind_rows: list[pa.Table] = []
        ev_rows: list[pa.Table] = []
        for direction, (off, nbr, ww, slot_edge) in graphs.items():
            level = (
                np.zeros(n, dtype=np.int32)
                if len(affected) == n
                else kern.distances(off, nbr, affected, hops - 1)
            )
            direct, total = kern.direct_amounts(off, nbr, ww, carries)
            ind, before, first_hop = kern.propagate(off, nbr, ww, carrier, direct, total, hops, level)
            sub = ind[affected]
            ai, k = np.nonzero(sub >= 1.0)
            c_nodes = affected[ai]
            amount = sub[ai, k]
            ind_rows.append(
                pa.table(
                    {
                        "cluster_id": nodes[c_nodes],
                        "direction": pa.array([direction] * len(ai), pa.string()),
                        "category": pa.array([names[x] for x in k], pa.string()),
                        "amount_f": np.minimum(np.floor(amount), _FLOAT_HUGEINT_MAX),
                        "share": amount / total[c_nodes],
                        "hops": first_hop[c_nodes, k].astype(np.int32),
                    }
                )
            )
            p, u, edge, amt, ev_hops = kern.top_intermediaries(
                off,
                nbr,
                ww,
                slot_edge,
                carrier,
                direct,
                total,
                before,
                first_hop,
                c_nodes,
                k.astype(np.int64),
                INDIRECT_EVIDENCE_MAX,
            )
            ev_rows.append(
                pa.table(
                    {
                        "cluster_id": nodes[c_nodes[p]],
                        "direction": pa.array([direction] * len(p), pa.string()),
                        "category": pa.array([names[x] for x in k[p]], pa.string()),
                        "counterparty": nodes[u],
                        "amount_f": np.minimum(np.floor(amt), _FLOAT_HUGEINT_MAX),
                        "hops": ev_hops.astype(np.int32),
                        "src": src[edge],
                        "dst": dst[edge],
                    }
                )
            )

        say(f"{tag}: writing")
        state_row = [chain, asset_id, config, watermark, f"{cv};{_data_fp(con, chain, family, max_tx)}", lv]
        _write(
            con,
            family,
            state_row,
            mode == "full",
            pa.table({"cluster_id": nodes[affected]}),
            pa.concat_tables(ind_rows),
            pa.concat_tables(ev_rows),
        )
    finally:
        flows.drop(con)
    report.categories = {
        str(r[0]): int(r[1])
        for r in con.execute(
            """SELECT category, count(DISTINCT cluster_id) FROM exposure WHERE chain = ? AND asset_id = ?
               GROUP BY 1 ORDER BY 1""",
            [chain, asset_id],
        ).fetchall()
    }
    report.seconds = round(time.perf_counter() - t0, 3)
    return report


def _node_index(nodes: I64, cluster_ids: I64) -> I64:
    """Positions in ``nodes`` of the given cluster ids (ids without flows left out)."""
    pos = np.searchsorted(nodes, cluster_ids)
    ok = pos < len(nodes)
    ok[ok] = nodes[pos[ok]] == cluster_ids[ok]
    return pos[ok].astype(np.int64)


def _write(
    con: duckdb.DuckDBPyConnection,
    family: str,
    state_row: list[Any],
    full: bool,
    affected: pa.Table,
    indirect: pa.Table,
    ind_evidence: pa.Table,
) -> None:
    """Rewrite the rows of the affected clusters (all of the chain's asset on a full run) and the state,
    in one transaction. Direct exposure, totals and direct evidence are exact sums in SQL."""
    chain, asset_id = state_row[0], state_row[1]
    key = {"chain": chain, "asset": asset_id}
    only = "" if full else "WHERE cluster_id IN (SELECT cluster_id FROM _ft_a)"
    with (
        registered(con, "_ft_a", affected),
        registered(con, "_ft_ind", indirect),
        registered(con, "_ft_indev", ind_evidence),
    ):
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _ft_totals AS
                SELECT cluster_id, coalesce(r, 0) AS received, coalesce(s, 0) AS sent
                FROM (SELECT dst AS cluster_id, sum(amount) AS r FROM _ft_edges GROUP BY 1)
                FULL JOIN (SELECT src AS cluster_id, sum(amount) AS s FROM _ft_edges GROUP BY 1)
                USING (cluster_id) {only}"""
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _ft_direct AS
                SELECT * FROM (
                    SELECT e.dst AS cluster_id, 'received' AS direction, k.category, e.src AS counterparty,
                           e.src, e.dst, e.amount
                    FROM _ft_edges e JOIN _ft_carriers k ON k.cluster_id = e.src
                    UNION ALL
                    SELECT e.src, 'sent', k.category, e.dst, e.src, e.dst, e.amount
                    FROM _ft_edges e JOIN _ft_carriers k ON k.cluster_id = e.dst) {only}"""
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _ft_direct_top AS
                SELECT * FROM _ft_direct QUALIFY row_number() OVER (
                    PARTITION BY cluster_id, direction, category ORDER BY amount DESC, counterparty)
                    <= {DIRECT_EVIDENCE_MAX}"""
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _ft_txlists AS
                SELECT f.src, f.dst, coalesce(list(f.tx_id ORDER BY f.amount DESC, f.tx_id)
                       FILTER (WHERE f.tx_id IS NOT NULL), [])[1:{EVIDENCE_TX_MAX}] AS tx_ids
                FROM _ft_txflow f JOIN (SELECT src, dst FROM _ft_direct_top UNION
                                       SELECT src, dst FROM _ft_indev) p USING (src, dst)
                GROUP BY f.src, f.dst"""
        )
        with transaction(con):
            for table in ("exposure", "exposure_totals", "exposure_evidence"):
                con.execute(
                    f"DELETE FROM {table} WHERE chain = $chain AND asset_id = $asset"
                    + ("" if full else " AND cluster_id IN (SELECT cluster_id FROM _ft_a)"),
                    key,
                )
            con.execute(
                f"""INSERT INTO exposure_totals SELECT $chain, $asset, cluster_id, {huge("received", family)},
                    {huge("sent", family)} FROM _ft_totals""",
                key,
            )
            con.execute(
                f"""INSERT INTO exposure
                    SELECT $chain, $asset, d.cluster_id, 'direct', d.direction, d.category,
                           {huge("d.amount", family)},
                           d.amount::DOUBLE / (CASE d.direction WHEN 'received' THEN t.received
                                               ELSE t.sent END)::DOUBLE, 1
                    FROM (SELECT cluster_id, direction, category, sum(amount) AS amount FROM _ft_direct
                          GROUP BY ALL) d JOIN _ft_totals t USING (cluster_id)""",
                key,
            )
            con.execute(
                """INSERT INTO exposure SELECT $chain, $asset, cluster_id, 'indirect', direction, category,
                   amount_f::HUGEINT, share, hops FROM _ft_ind""",
                key,
            )
            con.execute(
                f"""INSERT INTO exposure_evidence
                    SELECT $chain, $asset, d.cluster_id, 'direct', d.direction, d.category, d.counterparty,
                           {huge("d.amount", family)}, 1, coalesce(l.tx_ids, [])
                    FROM _ft_direct_top d LEFT JOIN _ft_txlists l USING (src, dst)""",
                key,
            )
            con.execute(
                """INSERT INTO exposure_evidence
                   SELECT $chain, $asset, d.cluster_id, 'indirect', d.direction, d.category, d.counterparty,
                          d.amount_f::HUGEINT, d.hops, coalesce(l.tx_ids, [])
                   FROM _ft_indev d LEFT JOIN _ft_txlists l USING (src, dst)""",
                key,
            )
            con.execute("DELETE FROM exposure_state WHERE chain = $chain AND asset_id = $asset", key)
            con.execute("INSERT INTO exposure_state VALUES (?, ?, ?, ?, ?, ?, now())", state_row)
        for name in ("_ft_totals", "_ft_direct", "_ft_direct_top"):
            con.execute(f"DROP TABLE IF EXISTS {name}")


# --- state: what the stored results were built on -------------------------------------------------------


def _read_state(con: duckdb.DuckDBPyConnection, chain: str, asset_id: int) -> _State | None:
    row = first(
        con,
        """SELECT config, tx_watermark, clusters_version, labels_version FROM exposure_state
           WHERE chain = ? AND asset_id = ?""",
        [chain, asset_id],
    )
    return None if row is None else _State(row[0], int(row[1]), row[2], row[3])


def _clusters_fp(con: duckdb.DuckDBPyConnection, chain: str) -> str:
    """A fingerprint of the chain's clusters (every (address, cluster) row). The pair is hashed as one
    string: DuckDB's multi-argument ``hash(a, b)`` combines per-column hashes so that, XOR-ed over rows,
    an even number of members moving between the same two clusters cancels out."""
    row = first(
        con,
        "SELECT count(*), coalesce(bit_xor(hash(format('{}:{}', address_id, cluster_id))), 0) FROM clusters"
        " WHERE chain = ?",
        [chain],
    )
    assert row is not None
    return f"clusters={int(row[0])}:{int(row[1]):x}"


def _data_fp(con: duckdb.DuckDBPyConnection, chain: str, family: str, max_tx: int) -> str:
    """A fingerprint of the stored transactions up to ``max_tx`` (changes when a rollback removed one),
    with ``max_tx`` itself so a later run can recompute it over the same range."""
    if family == "bitcoin":
        sql = (
            "SELECT count(*), coalesce(bit_xor(hash(format('{}:{}', tx_id, hex(txid)))), 0), 0"
            " FROM transactions"
        )
    else:
        sql = """SELECT count(*), coalesce(bit_xor(hash(format('{}:{}', tx_id, hex(hash)))), 0),
                 (SELECT count(*) FROM transfers WHERE chain = $chain AND tx_id IS NULL) FROM account_txs"""
    row = first(con, sql + " WHERE chain = $chain AND tx_id <= $max", {"chain": chain, "max": max_tx})
    assert row is not None
    return f"txs={max_tx}:{int(row[0])}:{int(row[1]):x}:{int(row[2])}"


def _watermarks(con: duckdb.DuckDBPyConnection, chain: str, family: str) -> tuple[int, int]:
    """(highest stored tx id, watermark). On Bitcoin the watermark stays below the first transaction
    with an unresolved input: it takes part once resolved, so the next run takes it up again."""
    table = "transactions" if family == "bitcoin" else "account_txs"
    max_tx = int(scalar(con, f"SELECT coalesce(max(tx_id), -1) FROM {table} WHERE chain = ?", [chain]))
    if family != "bitcoin":
        return max_tx, max_tx
    low = scalar(con, "SELECT min(tx_id) FROM unresolved_inputs WHERE chain = ?", [chain])
    return max_tx, max_tx if low is None else min(max_tx, int(low) - 1)


def _decide(
    con: duckdb.DuckDBPyConnection,
    chain: str,
    family: str,
    state: _State | None,
    config: str,
    clusters_fp: str,
    lv: str,
    full: bool,
) -> tuple[str, str]:
    if full:
        return "full", "asked for (--full)"
    if state is None:
        return "full", "first run for this chain and asset"
    if state.config != config:
        was, now = json.loads(state.config), json.loads(config)
        if was.get("hops") != now["hops"]:
            return "full", f"hop setting changed ({was.get('hops')} -> {now['hops']})"
        return "full", "the exposure rules changed (new fundtrail version)"
    if state.labels_version != lv:
        return "full", "labels changed"
    stored_clusters, _, stored_data = state.clusters_version.partition(";")
    if stored_clusters != clusters_fp:
        return "full", "clusters changed (fundtrail cluster ran since)"
    stored_max = int(stored_data.split("=", 1)[1].split(":", 1)[0]) if stored_data.startswith("txs=") else -2
    if stored_max == -2 or _data_fp(con, chain, family, stored_max) != stored_data:
        return "full", "transactions the exposure was built on were rolled back"
    return "incremental", "new transactions since the last run"


def _symbol(con: duckdb.DuckDBPyConnection, chain: str, asset_id: int) -> str | None:
    if asset_id == BITCOIN_ASSET:
        return "BTC"
    v = scalar(con, "SELECT symbol FROM assets WHERE chain = ? AND asset_id = ?", [chain, asset_id])
    return None if v is None else str(v)


# --- reading -------------------------------------------------------------------------------------------


def new_entry(scope: str) -> dict[str, Any]:
    """An empty exposure entry of ``scope``: indirect entries carry both hop keys (null: no exposure in
    that direction), so every entry has the keys of the JSON contract (docs/screening.md)."""
    entry: dict[str, Any] = {"received": 0, "sent": 0, "share_received": 0.0, "share_sent": 0.0}
    if scope == "indirect":
        entry.update(hops_received=None, hops_sent=None)
    return entry


def exposure_of(
    con: duckdb.DuckDBPyConnection, chain: str, asset_id: int, cluster_ids: list[int]
) -> dict[int, dict[str, Any]]:
    """The stored exposure of ``cluster_ids`` (clusters without flows are absent): per cluster
    ``{"received", "sent", "direct": {CATEGORY: {"received", "sent", "share_received", "share_sent"}},
    "indirect": {...}, "evidence": [{"scope", "direction", "category", "counterparty_cluster", "amount",
    "hops", "tx_ids"}]}``. Amounts are ints in base units, shares floats; indirect entries also carry
    ``hops_received`` / ``hops_sent`` (the hop count at which the category first appeared)."""
    ids = pa.table({"cluster_id": pa.array(sorted(set(cluster_ids)), pa.int64())})
    key = {"chain": chain, "asset": asset_id}
    out: dict[int, dict[str, Any]] = {}
    with registered(con, "_ft_q", ids):
        for cid, rec, sent in con.execute(
            """SELECT cluster_id, received, sent FROM exposure_totals JOIN _ft_q USING (cluster_id)
               WHERE chain = $chain AND asset_id = $asset ORDER BY 1""",
            key,
        ).fetchall():
            out[int(cid)] = {
                "received": int(rec),
                "sent": int(sent),
                "direct": {},
                "indirect": {},
                "evidence": [],
            }
        for cid, scope, direction, cat, amount, share, hops in con.execute(
            """SELECT cluster_id, scope, direction, category, amount, share, hops FROM exposure
               JOIN _ft_q USING (cluster_id) WHERE chain = $chain AND asset_id = $asset
               ORDER BY cluster_id, scope, category, direction""",
            key,
        ).fetchall():
            entry = out[int(cid)][scope].setdefault(cat, new_entry(scope))
            entry[direction] = int(amount)
            entry[f"share_{direction}"] = float(share)
            if scope == "indirect":
                entry[f"hops_{direction}"] = int(hops)
        for cid, scope, direction, cat, cp, amount, hops, txs in con.execute(
            """SELECT cluster_id, scope, direction, category, counterparty_id, amount, hops, tx_ids
               FROM exposure_evidence JOIN _ft_q USING (cluster_id)
               WHERE chain = $chain AND asset_id = $asset
               ORDER BY cluster_id, scope, direction, category, amount DESC, counterparty_id""",
            key,
        ).fetchall():
            out[int(cid)]["evidence"].append(
                {
                    "scope": scope,
                    "direction": direction,
                    "category": cat,
                    "counterparty_cluster": int(cp),
                    "amount": int(amount),
                    "hops": int(hops),
                    "tx_ids": [int(t) for t in txs],
                }
            )
    return out
