"""The cluster job: apply the configured heuristics to the store, incrementally.

Per chain, a run takes up what is new since the last run (transactions with a higher ``tx_id``, and
transactions deferred last time because an input was unresolved), applies the heuristics' links to the
stored partition with the compiled union-find, and writes back only the addresses whose cluster
changed, the evidence of every merge, the refused merges and the new watermark — in one transaction.

A run recomputes the chain from scratch instead when: there is no previous run; the configuration
differs from the stored one; a block the clusters were built on is gone (a reorg rolled it back); on an
account chain, the labels changed (the deposit-address heuristic reads the exchange labels); or
``full=True``. Multi-input merges are never capped; any other heuristic's merge that would make a
cluster larger than ``max_cluster_size`` is refused and recorded (the super-cluster guard).

Cluster ids are the smallest address id of the cluster, so they change when clusters merge. Only
addresses in clusters of two or more are stored; any other address is its own cluster.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fundtrail.chains.bitcoin import coinjoin
from fundtrail.chains.registry import chain as get_chain
from fundtrail.clustering import account, change, multi_input, unionfind
from fundtrail.clustering.config import ClusterConfig
from fundtrail.clustering.links import Links
from fundtrail.labels.store import address_ids_with_category, labels_version
from fundtrail.store.db import arrow, first, registered, scalar, transaction

I64 = npt.NDArray[np.int64]
Progress = Callable[[str], None]
MULTI_INPUT = "multi_input"
# services whose withdrawals fund many unrelated fresh addresses: never a "same funder"
_SERVICE_CATEGORIES = ("exchange", "bridge", "payment_processor", "mixer")


@dataclass
class ChainReport:
    chain: str
    mode: str  # full | incremental
    reason: str
    txs_processed: int = 0
    deferred: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    merges: dict[str, int] = field(default_factory=dict)
    refusals: dict[str, int] = field(default_factory=dict)
    addresses_changed: int = 0
    clusters: int = 0  # clusters of two or more addresses
    clustered_addresses: int = 0
    largest: int = 0
    watermark: int = -1

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class _State:
    config: str
    watermark: int
    tip_hash: bytes | None
    labels_version: str


def stored_chains(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute("SELECT DISTINCT chain FROM blocks ORDER BY chain").fetchall()
    return [r[0] for r in rows]


def cluster(
    con: duckdb.DuckDBPyConnection,
    cfg: ClusterConfig,
    chains: list[str] | None = None,
    full: bool = False,
    progress: Progress | None = None,
) -> list[ChainReport]:
    """Build or update the clusters of ``chains`` (default: every chain in the store)."""
    return [cluster_chain(con, c, cfg, full, progress) for c in (chains if chains else stored_chains(con))]


def cluster_chain(
    con: duckdb.DuckDBPyConnection,
    chain: str,
    cfg: ClusterConfig,
    full: bool = False,
    progress: Progress | None = None,
) -> ChainReport:
    say = progress or (lambda _m: None)
    family = get_chain(chain).family
    lv = labels_version(con)
    state = _read_state(con, chain)
    mode, reason = _decide(con, chain, family, cfg, state, lv, full)
    after = state.watermark if (mode == "incremental" and state is not None) else -1
    report = ChainReport(chain, mode, reason)
    watermark = _max_tx_id(con, chain, family)
    tip = first(
        con,
        "SELECT height, hash FROM blocks WHERE chain = ? ORDER BY height DESC NULLS LAST LIMIT 1",
        [chain],
    )

    say(f"{chain}: loading clusters")
    n_ids = int(scalar(con, "SELECT coalesce(max(address_id), -1) + 1 FROM addresses") or 0)
    parent = unionfind.new_forest(n_ids)
    if mode == "incremental":
        t = arrow(con, "SELECT address_id, cluster_id FROM clusters WHERE chain = ?", [chain])
        parent[t.column(0).to_numpy()] = t.column(1).to_numpy()
    old_root = parent.copy()

    evidence: list[tuple[str, I64, I64, I64]] = []
    refused: list[tuple[str, I64, I64, I64, I64]] = []
    pending = np.zeros(0, dtype=np.int64)
    capped: list[Links] = []
    if family == "bitcoin":
        say(f"{chain}: reading transactions")
        groups = multi_input.input_groups(con, chain, cfg, after, need_view=bool(cfg.change))
        report.txs_processed = len(groups.processed)
        report.deferred = len(groups.deferred)
        report.excluded = groups.excluded
        pending = groups.deferred
        pos = np.empty(max(len(groups.members) - len(groups.tx_id), 0), np.int64)
        say(f"{chain}: multi-input")
        k = unionfind.union_groups(parent, groups.offsets, groups.members, pos)
        evidence.append(
            (MULTI_INPUT, *unionfind.merged_pairs(groups.offsets, groups.members, groups.tx_id, pos[:k]))
        )
        if cfg.change and groups.view is not None:
            say(f"{chain}: change heuristics")
            cj = coinjoin.detect(groups.view)  # change is never read off a CoinJoin
            pj = change.payjoin_candidates(groups.view, cj) if cfg.payjoin_aware else None
            capped += change.change_links(groups.view, {f"change_{r}" for r in cfg.change}, cj, payjoin=pj)
    else:
        report.txs_processed = int(
            scalar(con, "SELECT count(*) FROM account_txs WHERE chain = ? AND tx_id > ?", [chain, after]) or 0
        )
        say(f"{chain}: account heuristics")
        capped += _account_links(con, chain, cfg, after)

    if capped:
        size = unionfind.sizes(unionfind.roots(parent))
        for links in capped:
            n = len(links)
            o = (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.int64))
            ri, rs = np.empty(n, np.int64), np.empty(n, np.int64)
            k, r = unionfind.union_pairs_capped(
                parent, size, links.a, links.b, links.tx_id, cfg.max_cluster_size, *o, ri, rs
            )
            evidence.append((links.heuristic, o[0][:k], o[1][:k], o[2][:k]))
            idx = ri[:r]
            refused.append((links.heuristic, links.a[idx], links.b[idx], links.tx_id[idx], rs[:r]))

    root = unionfind.roots(parent)
    moved = np.flatnonzero(root != old_root)
    changed = np.union1d(moved, root[moved])  # a new cluster's root may have been a lone address
    report.addresses_changed = len(changed)
    report.merges = {h: len(a) for h, a, _b, _t in evidence if len(a)}
    report.refusals = {h: len(a) for h, a, _b, _t, _s in refused if len(a)}
    report.watermark = watermark

    say(f"{chain}: writing")
    members = pa.table({"address_id": changed, "cluster_id": root[changed]})
    ev = _concat_evidence(evidence)
    rf = _concat_refusals(refused, cfg.max_cluster_size)
    pend = pa.table({"tx_id": pending})
    with (
        registered(con, "_ft_members", members),
        registered(con, "_ft_evidence", ev),
        registered(con, "_ft_refusals", rf),
        registered(con, "_ft_pending", pend),
        transaction(con),
    ):
        if mode == "full":
            for table in ("clusters", "cluster_evidence", "cluster_refusals"):
                con.execute(f"DELETE FROM {table} WHERE chain = ?", [chain])
        con.execute(
            "DELETE FROM clusters WHERE chain = ? AND address_id IN (SELECT address_id FROM _ft_members)",
            [chain],
        )
        con.execute("INSERT INTO clusters SELECT ?, address_id, cluster_id FROM _ft_members", [chain])
        con.execute(
            "INSERT INTO cluster_evidence SELECT ?, a_id, b_id, heuristic, tx_id FROM _ft_evidence", [chain]
        )
        con.execute(
            "INSERT INTO cluster_refusals "
            "SELECT ?, a_id, b_id, heuristic, tx_id, size, max_size FROM _ft_refusals",
            [chain],
        )
        con.execute("DELETE FROM cluster_pending WHERE chain = ?", [chain])
        con.execute("INSERT INTO cluster_pending SELECT ?, tx_id FROM _ft_pending", [chain])
        con.execute("DELETE FROM cluster_state WHERE chain = ?", [chain])
        con.execute(
            "INSERT INTO cluster_state VALUES (?, ?, ?, ?, ?, ?, now())",
            [chain, cfg.key(), watermark, tip[0] if tip else None, tip[1] if tip else None, lv],
        )
    stats = first(
        con,
        """SELECT count(DISTINCT cluster_id), count(*), coalesce(max(n), 0) FROM clusters
           JOIN (SELECT cluster_id AS c, count(*) AS n FROM clusters WHERE chain = $chain GROUP BY 1)
           ON c = cluster_id WHERE chain = $chain""",
        {"chain": chain},
    )
    if stats:
        report.clusters, report.clustered_addresses, report.largest = (int(v) for v in stats)
    return report


def _account_links(con: duckdb.DuckDBPyConnection, chain: str, cfg: ClusterConfig, after: int) -> list[Links]:
    out: list[Links] = []
    if "deposit_address" in cfg.account:
        exchanges = np.array(address_ids_with_category(con, chain, "exchange"), dtype=np.int64)
        if len(exchanges):
            out.append(account.deposit_address_links(con, chain, exchanges, after_tx_id=after))
    services = np.array(
        sorted({i for c in _SERVICE_CATEGORIES for i in address_ids_with_category(con, chain, c)}),
        dtype=np.int64,
    )
    if "same_funder" in cfg.account:
        out.append(account.same_funder_links(con, chain, services, after_tx_id=after))
    if "airdrop_collector" in cfg.account:
        out.append(account.airdrop_collector_links(con, chain, after_tx_id=after))
    return out


def _concat_evidence(parts: list[tuple[str, I64, I64, I64]]) -> pa.Table:
    return pa.table(
        {
            "a_id": np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64),
            "b_id": np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64),
            "heuristic": pa.array([p[0] for p in parts for _ in range(len(p[1]))], pa.string()),
            "tx_id": np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, np.int64),
        }
    )


def _concat_refusals(parts: list[tuple[str, I64, I64, I64, I64]], max_size: int) -> pa.Table:
    n = sum(len(p[1]) for p in parts)
    return pa.table(
        {
            "a_id": np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64),
            "b_id": np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64),
            "heuristic": pa.array([p[0] for p in parts for _ in range(len(p[1]))], pa.string()),
            "tx_id": np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, np.int64),
            "size": np.concatenate([p[4] for p in parts]) if parts else np.zeros(0, np.int64),
            "max_size": np.full(n, max_size, dtype=np.int64),
        }
    )


def _read_state(con: duckdb.DuckDBPyConnection, chain: str) -> _State | None:
    row = first(
        con,
        "SELECT config, tx_watermark, tip_hash, labels_version FROM cluster_state WHERE chain = ?",
        [chain],
    )
    if row is None:
        return None
    return _State(row[0], int(row[1]), None if row[2] is None else bytes(row[2]), row[3])


def _decide(
    con: duckdb.DuckDBPyConnection,
    chain: str,
    family: str,
    cfg: ClusterConfig,
    state: _State | None,
    lv: str,
    full: bool,
) -> tuple[str, str]:
    if full:
        return "full", "asked for (--full)"
    if state is None:
        return "full", "first run on this chain"
    if state.config != cfg.key():
        was = json.loads(state.config)
        now = json.loads(cfg.key())
        diff = sorted(k for k in now if was.get(k) != now[k])
        return "full", f"configuration changed ({', '.join(diff)})"
    if state.tip_hash is not None and not scalar(
        con, "SELECT count(*) FROM blocks WHERE chain = ? AND hash = ?", [chain, state.tip_hash]
    ):
        return "full", "a block the clusters were built on was rolled back"
    if family != "bitcoin" and state.labels_version != lv:
        return "full", "labels changed (the deposit-address heuristic reads them)"
    return "incremental", "new transactions since the last run"


def _max_tx_id(con: duckdb.DuckDBPyConnection, chain: str, family: str) -> int:
    table = "transactions" if family == "bitcoin" else "account_txs"
    return int(scalar(con, f"SELECT coalesce(max(tx_id), -1) FROM {table} WHERE chain = ?", [chain]))
