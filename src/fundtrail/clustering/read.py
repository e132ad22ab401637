"""Reading clusters back: ``show cluster``, the cluster part of ``show address``, ``explain-cluster``.

A cluster carries the labels of its addresses; its *definer* labels (``is_cluster_definer``: a label
that names the entity owning the whole cluster, e.g. an exchange's hot wallet) are its attribution. Two
different definers in one cluster are reported as a conflict — never resolved silently: either the
entities really are one (a merger) or a heuristic merged two entities wrongly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import duckdb

from fundtrail.chains.registry import Chain
from fundtrail.errors import InvalidInput, NotFound
from fundtrail.labels.store import labels_for_address_ids
from fundtrail.store.db import scalar
from fundtrail.store.lookup import address_id

JSON = dict[str, Any]
SAMPLE = 20


def cluster_id_of(con: duckdb.DuckDBPyConnection, chain: str, aid: int) -> int:
    cid = scalar(con, "SELECT cluster_id FROM clusters WHERE chain = ? AND address_id = ?", [chain, aid])
    return aid if cid is None else int(cid)


def members(con: duckdb.DuckDBPyConnection, chain: str, cid: int) -> list[int]:
    rows = con.execute(
        "SELECT address_id FROM clusters WHERE chain = ? AND cluster_id = ? ORDER BY address_id", [chain, cid]
    ).fetchall()
    return [int(r[0]) for r in rows] or [cid]


def _cluster_ref(con: duckdb.DuckDBPyConnection, c: Chain, ref: str) -> int:
    """A cluster named by one of its addresses or by its id."""
    s = ref.strip()
    if s.isdigit():
        aid = int(s)
        known = scalar(
            con, "SELECT count(*) FROM addresses WHERE chain = ? AND address_id = ?", [c.name, aid]
        )
        if not known:
            raise NotFound(f"no {c.name} cluster with id {aid}", "give an address or an id from `cluster`")
        return cluster_id_of(con, c.name, aid)
    try:
        return cluster_id_of(con, c.name, address_id(con, c, s))
    except InvalidInput as exc:
        raise InvalidInput(f"{ref!r} is neither a cluster id nor a {c.name} address", exc.fix) from None


def clustered(con: duckdb.DuckDBPyConnection, chain: str) -> bool:
    return bool(scalar(con, "SELECT count(*) FROM cluster_state WHERE chain = ?", [chain]))


def _not_built(chain: str) -> NotFound:
    return NotFound(f"the {chain} clusters are not built", "run `fundtrail cluster` first")


def cluster(con: duckdb.DuckDBPyConnection, c: Chain, ref: str, sample: int = SAMPLE) -> JSON:
    if not clustered(con, c.name):
        raise _not_built(c.name)
    cid = _cluster_ref(con, c, ref)
    ids = members(con, c.name, cid)
    keys = dict(
        con.execute(
            "SELECT address_id, key FROM addresses WHERE chain = ? AND address_id IN (SELECT unnest(?))",
            [c.name, ids[:sample]],
        ).fetchall()
    )
    labels = _labels(con, c, ids)
    heuristics = dict(
        con.execute(
            """SELECT heuristic, count(*) FROM cluster_evidence e JOIN clusters m
               ON m.chain = e.chain AND m.address_id = e.a_id
               WHERE e.chain = ? AND m.cluster_id = ? GROUP BY 1 ORDER BY 1""",
            [c.name, cid],
        ).fetchall()
    )
    refusals = scalar(
        con,
        """SELECT count(*) FROM cluster_refusals r
           LEFT JOIN clusters ca ON ca.chain = r.chain AND ca.address_id = r.a_id
           LEFT JOIN clusters cb ON cb.chain = r.chain AND cb.address_id = r.b_id
           WHERE r.chain = $c
             AND (coalesce(ca.cluster_id, r.a_id) = $id OR coalesce(cb.cluster_id, r.b_id) = $id)""",
        {"c": c.name, "id": cid},
    )
    return {
        "chain": c.name,
        "cluster_id": cid,
        "size": len(ids),
        "addresses_sample": [c.show(bytes(keys[i])) for i in ids[:sample] if i in keys],
        "labels": labels,
        "categories": sorted({lab["category"] for lab in labels}),
        "definers": [lab for lab in labels if lab["is_cluster_definer"]],
        "heuristics": {h: int(n) for h, n in heuristics.items()},
        "conflicts": conflicts(labels),
        "refused_merges": int(refusals or 0),
    }


def _labels(con: duckdb.DuckDBPyConnection, c: Chain, ids: list[int]) -> list[JSON]:
    by_id = labels_for_address_ids(con, c.name, ids)
    return [lab for i in ids for lab in by_id.get(i, [])]


def conflicts(labels: list[JSON]) -> list[JSON]:
    """Definer labels that name different entities (compared case-insensitively)."""
    names: dict[str, list[JSON]] = {}
    for lab in labels:
        if lab["is_cluster_definer"]:
            names.setdefault(" ".join(str(lab["label"]).casefold().split()), []).append(lab)
    if len(names) < 2:
        return []
    return [
        {
            "kind": "different definers in one cluster",
            "entities": sorted({labs[0]["label"] for labs in names.values()}),
            "labels": [
                {k: lab[k] for k in ("label", "category", "source", "address")}
                for labs in names.values()
                for lab in labs
            ],
        }
    ]


def address_cluster(con: duckdb.DuckDBPyConnection, c: Chain, aid: int) -> JSON | None:
    """The cluster part of ``show address`` (None when the clusters are not built)."""
    if not clustered(con, c.name):
        return None
    cid = cluster_id_of(con, c.name, aid)
    size = scalar(con, "SELECT count(*) FROM clusters WHERE chain = ? AND cluster_id = ?", [c.name, cid])
    labels = _labels(con, c, members(con, c.name, cid))
    return {
        "cluster_id": cid,
        "size": int(size) or 1,
        "definers": _distinct_names(lab["label"] for lab in labels if lab["is_cluster_definer"]),
        "categories": sorted({lab["category"] for lab in labels}),
        "conflicts": conflicts(labels),
    }


def _distinct_names(names: Iterable[str]) -> list[str]:
    """Label names without case or spacing variants (``Binance.com`` and ``binance.com`` are one)."""
    seen: dict[str, str] = {}
    for n in names:
        seen.setdefault(" ".join(n.casefold().split()), n)
    return sorted(seen.values())


def explain(con: duckdb.DuckDBPyConnection, c: Chain, a_text: str, b_text: str) -> JSON:
    """The chain of merges linking two addresses: each step names two addresses, the heuristic and the
    transaction that merged them (the recorded merges of a cluster form a tree, so the path is unique)."""
    if not clustered(con, c.name):
        raise _not_built(c.name)
    a, b = address_id(con, c, a_text), address_id(con, c, b_text)
    ca, cb = cluster_id_of(con, c.name, a), cluster_id_of(con, c.name, b)
    out: JSON = {"chain": c.name, "a": c.show(c.parse(a_text)), "b": c.show(c.parse(b_text))}
    if ca != cb:
        return {**out, "linked": False, "clusters": [ca, cb], "steps": []}
    rows = con.execute(
        """SELECT e.a_id, e.b_id, e.heuristic, e.tx_id FROM cluster_evidence e JOIN clusters m
           ON m.chain = e.chain AND m.address_id = e.a_id WHERE e.chain = ? AND m.cluster_id = ?""",
        [c.name, ca],
    ).fetchall()
    adj: dict[int, list[tuple[int, str, int]]] = {}
    for x, y, h, t in rows:
        adj.setdefault(x, []).append((y, h, t))
        adj.setdefault(y, []).append((x, h, t))
    back: dict[int, tuple[int, str, int]] = {}
    seen, todo = {a}, deque([a])
    while todo and b not in seen:
        x = todo.popleft()
        for y, h, t in adj.get(x, []):
            if y not in seen:
                seen.add(y)
                back[y] = (x, h, t)
                todo.append(y)
    if b not in seen and a != b:
        raise NotFound(
            f"addresses {out['a']} and {out['b']} share cluster {ca} but its evidence is incomplete",
            "rebuild the clusters with `fundtrail cluster --full`",
        )
    path: list[tuple[int, int, str, int]] = []
    node = b
    while node != a:
        prev, h, t = back[node]
        path.append((prev, node, h, t))
        node = prev
    path.reverse()
    return {**out, "linked": True, "cluster_id": ca, "steps": _steps(con, c, path)}


def _steps(con: duckdb.DuckDBPyConnection, c: Chain, path: list[tuple[int, int, str, int]]) -> list[JSON]:
    ids = sorted({x for p in path for x in p[:2]})
    keys = dict(
        con.execute(
            "SELECT address_id, key FROM addresses WHERE chain = ? AND address_id IN (SELECT unnest(?))",
            [c.name, ids],
        ).fetchall()
    )
    tx_ids = sorted({p[3] for p in path})
    if c.family == "bitcoin":
        sql = "SELECT tx_id, txid FROM transactions WHERE chain = ? AND tx_id IN (SELECT unnest(?))"
    else:
        sql = "SELECT tx_id, hash FROM account_txs WHERE chain = ? AND tx_id IN (SELECT unnest(?))"
    hashes = dict(con.execute(sql, [c.name, tx_ids]).fetchall())
    prefix = "" if c.family == "bitcoin" else "0x"
    return [
        {
            "from": c.show(bytes(keys[x])),
            "to": c.show(bytes(keys[y])),
            "heuristic": h,
            "txid": prefix + bytes(hashes[t]).hex() if t in hashes else None,
        }
        for x, y, h, t in path
    ]
