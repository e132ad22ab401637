"""Clustering against the truth: pairwise precision and recall of entities.

**Scoring** (:func:`score_partition`) compares two partitions of the same items — the truth's (an item's
owner) and the platform's (its cluster) — over *pairs* of items: a pair is *true* when both items have
the same owner, *predicted* when both are in one cluster. Precision = true predicted pairs / predicted
pairs, recall = true predicted pairs / true pairs, F1 their harmonic mean. The counts come from the
contingency table in O(n): true pairs = Σ C(a, 2) over owners (rows), predicted pairs = Σ C(b, 2) over
clusters (columns), true predicted pairs = Σ C(n, 2) over the cells (owner, cluster). Pair counts are
exact ints; only the ratios are floats.

Conventions, where a ratio has no denominator:
- a prediction with no predicted pair (only singletons) has **precision 1.0** (it asserts nothing false),
  so a singleton-only prediction scores precision 1.0, recall 0.0 and F1 0.0 whenever the truth has a
  pair at all (every owner with one address: recall 1.0 too, and F1 1.0: nothing was to be found);
- a truth with no pair (every owner has one item) has **recall 1.0**;
- F1 is 0.0 when precision and recall are both 0.

Per group of owners (:func:`score_groups`, e.g. per actor kind: exchanges, mixers ...): recall over the
pairs of that group's owners, precision over the predicted pairs that touch at least one of the group's
items (a cluster of b items, k of them the group's, holds C(b, 2) - C(b - k, 2) such pairs), so merging an
exchange with a retail user lowers the exchange's precision and the retail user's.

**The store side** (:func:`score_store`): for each chain of the truth's ``addresses``, every address is
looked up in the store (parsed strictly, as :mod:`fundtrail.store.lookup` does, in bulk) and given its
cluster (``clusters``; an address without a cluster row is its own singleton, as
:mod:`fundtrail.clustering.read` reads it). Addresses never seen on chain are counted and left out.
Clusters are per chain, so the overall score sums the chains' contingency tables: owners and clusters are
(chain, actor) and (chain, cluster), and an actor's addresses on two chains are never a pair.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import duckdb
import pyarrow as pa

from fundtrail.clustering.read import clustered
from fundtrail.errors import CorruptData, InvalidInput
from fundtrail.evaluation.inputs import Actor
from fundtrail.evaluation.keys import address_key, known_chain
from fundtrail.store.db import registered, scalar

K = TypeVar("K", bound=Hashable)
JSON = dict[str, Any]


def pairs(n: int) -> int:
    return n * (n - 1) // 2


@dataclass(frozen=True)
class PartitionScore:
    items: int
    truth_clusters: int  # owners (entities)
    predicted_clusters: int
    truth_pairs: int
    predicted_pairs: int
    true_pairs: int  # predicted pairs that are true

    @property
    def precision(self) -> float:
        return 1.0 if self.predicted_pairs == 0 else self.true_pairs / self.predicted_pairs

    @property
    def recall(self) -> float:
        return 1.0 if self.truth_pairs == 0 else self.true_pairs / self.truth_pairs

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    def as_json(self) -> JSON:
        return {
            "addresses": self.items,
            "entities": self.truth_clusters,
            "clusters": self.predicted_clusters,
            "truth_pairs": self.truth_pairs,
            "predicted_pairs": self.predicted_pairs,
            "true_pairs": self.true_pairs,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


@dataclass
class _Table:
    """The contingency table of two partitions: cell, row (owner) and column (cluster) sizes."""

    cells: Counter[tuple[Hashable, Hashable]]
    rows: Counter[Hashable]
    cols: Counter[Hashable]


def _table(truth: Mapping[K, Hashable], predicted: Mapping[K, Hashable]) -> _Table:
    cells: Counter[tuple[Hashable, Hashable]] = Counter()
    for item, owner in truth.items():
        try:
            cells[owner, predicted[item]] += 1
        except KeyError:
            raise ValueError(f"item {item!r} of the truth has no predicted cluster") from None
    rows: Counter[Hashable] = Counter()
    cols: Counter[Hashable] = Counter()
    for (t, p), n in cells.items():
        rows[t] += n
        cols[p] += n
    return _Table(cells, rows, cols)


def score_partition(truth: Mapping[K, Hashable], predicted: Mapping[K, Hashable]) -> PartitionScore:
    """Pairwise scores of ``predicted`` (item -> cluster) against ``truth`` (item -> owner), over the
    items of ``truth`` (each must be in ``predicted``; items only ``predicted`` has are ignored)."""
    return _score(_table(truth, predicted))


def _score(t: _Table) -> PartitionScore:
    return PartitionScore(
        items=sum(t.rows.values()),
        truth_clusters=len(t.rows),
        predicted_clusters=len(t.cols),
        truth_pairs=sum(pairs(n) for n in t.rows.values()),
        predicted_pairs=sum(pairs(n) for n in t.cols.values()),
        true_pairs=sum(pairs(n) for n in t.cells.values()),
    )


def score_groups(
    truth: Mapping[K, Hashable], predicted: Mapping[K, Hashable], group_of: Mapping[Hashable, str]
) -> dict[str, PartitionScore]:
    """Scores per group of owners (``group_of``: owner -> group), as the module docstring defines them."""
    return _score_groups(_table(truth, predicted), group_of)


def _score_groups(t: _Table, group_of: Mapping[Hashable, str]) -> dict[str, PartitionScore]:
    items: Counter[str] = Counter()
    owners: Counter[str] = Counter()
    truth_pairs: Counter[str] = Counter()
    true_pairs: Counter[str] = Counter()
    touching: dict[str, Counter[Hashable]] = {}  # group -> cluster -> the group's items in it
    for owner, n in t.rows.items():
        g = group_of[owner]
        items[g] += n
        owners[g] += 1
        truth_pairs[g] += pairs(n)
    for (owner, cluster), n in t.cells.items():
        g = group_of[owner]
        true_pairs[g] += pairs(n)
        touching.setdefault(g, Counter())[cluster] += n
    out: dict[str, PartitionScore] = {}
    for g in sorted(items):
        clusters = touching[g]
        predicted_pairs = sum(pairs(t.cols[c]) - pairs(t.cols[c] - k) for c, k in clusters.items())
        out[g] = PartitionScore(
            items[g], owners[g], len(clusters), truth_pairs[g], predicted_pairs, true_pairs[g]
        )
    return out


# --- the store side -----------------------------------------------------------------------------------


@dataclass
class ChainClustering:
    chain: str
    addresses: int  # in the truth
    status: str  # scored | unknown chain | not ingested | not clustered
    unseen: int = 0  # truth addresses the store never saw
    score: PartitionScore | None = None

    def as_json(self) -> JSON:
        return {
            "chain": self.chain,
            "status": self.status,
            "truth_addresses": self.addresses,
            "unseen": self.unseen,
            **({"score": self.score.as_json()} if self.score else {"score": None}),
        }


@dataclass
class ClusteringResult:
    chains: list[ChainClustering]
    overall: PartitionScore | None
    kinds: dict[str, PartitionScore]
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> JSON:
        return {
            "overall": None if self.overall is None else self.overall.as_json(),
            "chains": [c.as_json() for c in self.chains],
            "kinds": {k: s.as_json() for k, s in self.kinds.items()},
        }


def score_store(
    con: duckdb.DuckDBPyConnection, owned: Mapping[str, Mapping[str, int]], actors: Mapping[int, Actor]
) -> ClusteringResult:
    """Score the store's clusters against the truth's owners (``owned``: chain -> address -> actor)."""
    truth: dict[tuple[str, int], tuple[str, int]] = {}  # (chain, i) -> (chain, actor)
    predicted: dict[tuple[str, int], tuple[str, int]] = {}  # (chain, i) -> (chain, cluster id)
    chains: list[ChainClustering] = []
    notes: list[str] = []
    for chain in sorted(owned):
        addrs = owned[chain]
        cc = ChainClustering(chain, len(addrs), "scored")
        chains.append(cc)
        if not known_chain(chain):
            cc.status = "unknown chain"
            notes.append(
                f"clustering: chain {chain} is not one fundtrail ingests: its addresses are left out"
            )
            continue
        if not scalar(con, "SELECT count(*) FROM addresses WHERE chain = ?", [chain]):
            cc.status = "not ingested"
            notes.append(f"clustering: the store holds no {chain} data: ingest it to score its clusters")
            continue
        if not clustered(con, chain):
            cc.status = "not clustered"
            notes.append(f"clustering: the {chain} clusters are not built: run `fundtrail cluster` first")
            continue
        owners, clusters = _chain_partition(con, chain, addrs)
        cc.unseen = len(addrs) - len(owners)
        cc.score = score_partition(owners, clusters)
        for i, actor in owners.items():
            truth[chain, i] = (chain, actor)
            predicted[chain, i] = (chain, clusters[i])
    if not truth:
        return ClusteringResult(chains, None, {}, notes)
    table = _table(truth, predicted)
    kinds = _score_groups(table, {owner: actors[owner[1]].kind for owner in set(truth.values())})
    return ClusteringResult(chains, _score(table), kinds, notes)


def _chain_partition(
    con: duckdb.DuckDBPyConnection, chain: str, addrs: Mapping[str, int]
) -> tuple[dict[int, int], dict[int, int]]:
    """(i -> actor, i -> cluster id) for the truth addresses the store holds (i: the store's address id)."""
    owner_of: dict[bytes, int] = {}
    for text, actor in addrs.items():
        try:
            key = address_key(chain, text)
        except InvalidInput as exc:
            raise CorruptData(
                f"the truth's address {text!r} is not a {chain} address ({exc.problem})",
                "re-run `fundtrail simulate`",
            ) from None
        prev = owner_of.setdefault(key, actor)
        if prev != actor:
            raise CorruptData(
                f"the truth gives {chain} address {text} to two actors, {prev} and {actor}",
                "re-run `fundtrail simulate`",
            )
    keys = list(owner_of)
    q = pa.table({"key": pa.array(keys, pa.binary()), "i": pa.array(range(len(keys)), pa.int64())})
    with registered(con, "_eval_truth_keys", q) as view:
        rows = con.execute(
            f"""SELECT q.i, a.address_id, coalesce(c.cluster_id, a.address_id) FROM {view} q
                JOIN addresses a ON a.chain = $chain AND a.key = q.key
                LEFT JOIN clusters c ON c.chain = $chain AND c.address_id = a.address_id""",
            {"chain": chain},
        ).fetchall()
    owners = {int(aid): owner_of[keys[i]] for i, aid, _ in rows}
    clusters = {int(aid): int(cid) for _, aid, cid in rows}
    return owners, clusters
