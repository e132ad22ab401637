"""What screening one chain reads, loaded once into memory (:class:`ChainView`): every stored address key
in one sorted array (length-prefixed fixed-width bytes: a lookup is a binary search, a batch one
vectorised ``searchsorted``) with its address id and cluster id (:class:`AddressIndex`); the chain's
labels by key and each cluster's definer and sanctions labels; the precomputed exposure of the screened
asset grouped by cluster (:class:`ExposureIndex`, the shape of
:func:`fundtrail.screening.exposure.exposure_of`); and the tip it was taken at (``as_of``). The rules
that turn these into an answer are in :mod:`fundtrail.screening.screen`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fundtrail.chains.registry import CHAINS, Chain
from fundtrail.errors import InvalidInput
from fundtrail.labels.addresses import RECORDED_CHAINS
from fundtrail.labels.store import labels_for_keys, list_labels
from fundtrail.screening.exposure import new_entry
from fundtrail.screening.policy import (
    SANCTIONS_CATEGORY,
    Finding,
)
from fundtrail.store.assets import resolve_asset
from fundtrail.store.db import first, scalar

JSON = dict[str, Any]
I64 = npt.NDArray[np.int64]


def _prefixed_matrix(col: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.uint8]:
    """Binary values as rows of ``[length, bytes..., 0 padding]`` (uint8 matrix), one vectorised copy per
    distinct length (a slice and a reshape when the rows of that length are contiguous)."""
    arr = pc.cast(col, pa.large_binary())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if n == 0:
        return np.zeros((0, 2), np.uint8)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    lens = np.diff(offsets)
    if int(lens.max()) > 254:
        raise ValueError("address keys longer than 254 bytes")
    mat = np.zeros((n, int(lens.max()) + 1), np.uint8)
    mat[:, 0] = lens
    for length in np.unique(lens).tolist():
        if length == 0:
            continue
        rows = np.flatnonzero(lens == length)
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        if hi - lo == len(rows):
            mat[lo:hi, 1 : length + 1] = data[offsets[lo] : offsets[hi]].reshape(-1, length)
        else:
            mat[rows, 1 : length + 1] = data[offsets[rows][:, None] + np.arange(length)]
    return mat


@dataclass
class AddressIndex:
    """Every stored address key of one chain, sorted, with its address id and cluster id."""

    keys: npt.NDArray[np.bytes_]  # S<width>: one length byte, then the key, NUL-padded
    ids: I64
    cluster_ids: I64

    @property
    def width(self) -> int:
        return int(self.keys.dtype.itemsize)

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, chain: str) -> AddressIndex:
        t = con.sql(
            """SELECT a.key, a.address_id, coalesce(c.cluster_id, a.address_id) AS cluster_id
               FROM addresses a LEFT JOIN clusters c ON c.chain = a.chain AND c.address_id = a.address_id
               WHERE a.chain = $chain ORDER BY octet_length(a.key), a.key""",
            params={"chain": chain},
        ).to_arrow_table()
        mat = _prefixed_matrix(t.column("key"))
        keys = np.ascontiguousarray(mat).view(f"S{mat.shape[1]}").ravel()
        ids = t.column("address_id").to_numpy().astype(np.int64)
        cids = t.column("cluster_id").to_numpy().astype(np.int64)
        if len(keys) > 1 and not bool(np.all(keys[1:] >= keys[:-1])):  # NumPy's order is the one searched
            order = np.argsort(keys, kind="stable")
            keys, ids, cids = keys[order], ids[order], cids[order]
        return cls(keys, ids, cids)

    def lookup(self, keys: list[bytes]) -> tuple[I64, I64]:
        """(address ids, cluster ids) of ``keys``; -1 where a key is not stored."""
        n = len(keys)
        ids = np.full(n, -1, np.int64)
        cids = np.full(n, -1, np.int64)
        w = self.width
        fit = [i for i, k in enumerate(keys) if len(k) < w]
        if not fit or len(self.keys) == 0:
            return ids, cids
        q = np.array([bytes([len(keys[i])]) + keys[i] for i in fit], dtype=f"S{w}")
        pos = np.searchsorted(self.keys, q)
        pos_c = np.minimum(pos, len(self.keys) - 1)
        hit = self.keys[pos_c] == q
        where = np.asarray(fit, np.int64)[hit]
        ids[where] = self.ids[pos_c[hit]]
        cids[where] = self.cluster_ids[pos_c[hit]]
        return ids, cids


# --- the in-memory exposure -----------------------------------------------------------------------


@dataclass
class ExposureIndex:
    """The stored exposure of one (chain, asset), grouped by cluster: rows and evidence as Python lists
    in cluster order with NumPy offsets, and the txids (display bytes) of every evidence tx id."""

    cluster_ids: I64  # sorted, unique: the clusters with exposure rows
    row_bounds: I64  # rows of cluster_ids[i]: rows[row_bounds[i]:row_bounds[i + 1]]
    rows: list[tuple[str, str, str, str, float, int]]  # scope, direction, category, amount, share, hops
    ev_lo: I64  # evidence of cluster_ids[i]: evidence[ev_lo[i]:ev_hi[i]]
    ev_hi: I64
    evidence: list[
        tuple[str, str, str, int, str, int, tuple[int, ...]]
    ]  # ... counterparty, amount, hops, tx ids
    tx_ids: I64  # sorted
    txids: list[bytes]  # aligned with tx_ids

    @classmethod
    def empty(cls) -> ExposureIndex:
        z = np.zeros(0, np.int64)
        return cls(z, np.zeros(1, np.int64), [], z, z, [], z, [])

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, chain: Chain, asset_id: int) -> ExposureIndex:
        p = {"c": chain.name, "a": asset_id}
        e = con.sql(
            """SELECT cluster_id, scope, direction, category, amount::VARCHAR AS amount, share, hops
               FROM exposure WHERE chain = $c AND asset_id = $a
               ORDER BY cluster_id, scope, category, direction""",
            params=p,
        ).to_arrow_table()
        v = con.sql(
            # the text alias must not shadow ``amount`` in ORDER BY: "9" sorts above "10" as text
            """SELECT cluster_id, scope, direction, category, counterparty_id, amount::VARCHAR AS amount_text,
                      hops, tx_ids
               FROM exposure_evidence WHERE chain = $c AND asset_id = $a
               ORDER BY cluster_id, scope, direction, category, amount DESC, counterparty_id""",
            params=p,
        ).to_arrow_table()
        table, col = ("transactions", "txid") if chain.family == "bitcoin" else ("account_txs", "hash")
        t = con.sql(
            f"""SELECT t.tx_id, t.{col} AS h FROM {table} t
                SEMI JOIN (SELECT unnest(tx_ids) AS tx_id FROM exposure_evidence
                           WHERE chain = $c AND asset_id = $a) q ON q.tx_id = t.tx_id
                WHERE t.chain = $c ORDER BY t.tx_id""",
            params=p,
        ).to_arrow_table()
        e_cid = e.column("cluster_id").to_numpy().astype(np.int64)
        v_cid = v.column("cluster_id").to_numpy().astype(np.int64)
        cids = np.unique(e_cid)
        rows = list(zip(*(e.column(k).to_pylist() for k in e.column_names[1:])))
        cols = [v.column(k).to_pylist() for k in v.column_names[1:]]
        cols[-1] = [tuple(x) for x in cols[-1]]  # tuples of ints: the garbage collector stops tracking them
        evidence = list(zip(*cols))
        return cls(
            cids,
            np.append(np.searchsorted(e_cid, cids), len(e_cid)).astype(np.int64),
            rows,
            np.searchsorted(v_cid, cids, "left").astype(np.int64),
            np.searchsorted(v_cid, cids, "right").astype(np.int64),
            evidence,
            t.column("tx_id").to_numpy().astype(np.int64),
            [bytes(x) for x in t.column("h").to_pylist()],
        )

    def __len__(self) -> int:
        return len(self.cluster_ids)

    def positions(self, cids: list[int]) -> list[int]:
        """The position of each cluster id in :attr:`cluster_ids`, -1 when it has no exposure."""
        if not cids or not len(self.cluster_ids):
            return [-1] * len(cids)
        arr = np.asarray(cids, np.int64)
        pos = np.minimum(np.searchsorted(self.cluster_ids, arr), len(self.cluster_ids) - 1)
        out: list[int] = np.where(self.cluster_ids[pos] == arr, pos, -1).tolist()
        return out

    def of(self, i: int, prefix: str) -> tuple[JSON, list[JSON]]:
        """(``{"direct", "indirect"}``, evidence) of the cluster at position ``i``, in the shape of
        ``exposure_of`` (evidence entries also carry ``txids``: display hex)."""
        exposure: JSON = {"direct": {}, "indirect": {}}
        for scope, direction, cat, amount, share, hops in self.rows[
            self.row_bounds[i] : self.row_bounds[i + 1]
        ]:
            entry = exposure[scope].setdefault(cat, new_entry(scope))
            entry[direction] = int(amount)
            entry[f"share_{direction}"] = float(share)
            if scope == "indirect":
                entry[f"hops_{direction}"] = int(hops)
        lo, hi = int(self.ev_lo[i]), int(self.ev_hi[i])
        evidence: list[JSON] = []
        for scope, direction, cat, cp, amount, hops, tx_ids in self.evidence[lo:hi]:
            evidence.append(
                {
                    "scope": scope,
                    "direction": direction,
                    "category": cat,
                    "counterparty_cluster": int(cp),
                    "amount": int(amount),
                    "hops": int(hops),
                    "tx_ids": [int(t) for t in tx_ids],
                    "txids": self.hex_txids(tx_ids, prefix),
                }
            )
        return exposure, evidence

    def hex_txids(self, tx_ids: Sequence[int], prefix: str) -> list[str]:
        if not tx_ids or not len(self.tx_ids):
            return []
        arr = np.asarray(tx_ids, np.int64)
        pos = np.minimum(np.searchsorted(self.tx_ids, arr), len(self.tx_ids) - 1)
        return [
            prefix + self.txids[p].hex()
            for p, ok in zip(pos.tolist(), (self.tx_ids[pos] == arr).tolist())
            if ok
        ]


# --- one chain's snapshot ----------------------------------------------------------------------------


@dataclass
class Exposed:
    exposure: JSON  # {"direct": {...}, "indirect": {...}}
    findings: list[Finding]
    evidence: list[JSON]


@dataclass
class ChainView:
    """What screening one chain needs, loaded once (a snapshot of the store at ``as_of``)."""

    name: str
    chain: Chain | None  # None: a chain fundtrail records labels for but does not ingest
    index: AddressIndex | None
    labels_by_key: dict[bytes, list[JSON]]
    labels_by_text: dict[str, list[JSON]]  # recorded chains: by lower-case address text
    cluster_labels: dict[int, list[JSON]]  # definer and sanctions labels of each cluster's members
    asset_id: int | None
    asset: str | None
    exposure_computed: bool
    exposure: ExposureIndex
    as_of: JSON
    cache: dict[int, Exposed] = field(default_factory=dict)
    exposure_stale: int = 0  # transactions stored after the last exposure run (their flows are missing)

    @property
    def prefix(self) -> str:
        return "" if self.chain is None or self.chain.family == "bitcoin" else "0x"


def _asset(con: duckdb.DuckDBPyConnection, c: Chain, asset: str | None) -> tuple[int | None, str | None]:
    """(asset id, name) screened on chain ``c``: the chain's coin unless a token is named; (None, name)
    when the chain has no stored data yet."""
    ref = resolve_asset(con, c, asset)
    return ref.asset_id, ref.name


def is_cluster_label(lab: JSON) -> bool:
    return bool(lab["is_cluster_definer"]) or lab["category"] == SANCTIONS_CATEGORY


def load_view(con: duckdb.DuckDBPyConnection, name: str, asset: str | None) -> ChainView:
    c = CHAINS.get(name)
    if c is None:
        labs = list_labels(con, chain=name, limit=10**9).labels
        if not labs and name not in RECORDED_CHAINS:
            raise InvalidInput(
                f"unknown chain {name!r}",
                f"use one of {', '.join(CHAINS)}, or a chain with imported labels",
            )
        by_text: dict[str, list[JSON]] = {}
        for lab in labs:
            by_text.setdefault(str(lab["address"]).lower(), []).append(lab)
        none: JSON = {"height": None, "block_hash": None}
        return ChainView(name, None, None, {}, by_text, {}, None, None, False, ExposureIndex.empty(), none)
    index = AddressIndex.load(con, name)
    keys = [
        bytes(r[0])
        for r in con.execute(
            "SELECT DISTINCT key FROM labels WHERE chain = ? AND key IS NOT NULL", [name]
        ).fetchall()
    ]
    by_key = labels_for_keys(con, name, keys)
    cluster_labels: dict[int, list[JSON]] = {}
    if keys:
        _, cids = index.lookup(keys)
        for k, cid in zip(keys, cids.tolist()):
            if cid >= 0:
                for lab in by_key.get(k, []):
                    if is_cluster_label(lab):
                        cluster_labels.setdefault(int(cid), []).append(lab)
    asset_id, asset_name = _asset(con, c, asset)
    computed = asset_id is not None and bool(
        first(con, "SELECT 1 FROM exposure_state WHERE chain = ? AND asset_id = ?", [name, asset_id])
    )
    exposure = ExposureIndex.load(con, c, asset_id) if computed and asset_id is not None else None
    stale = 0
    if computed:
        table = "transactions" if c.family == "bitcoin" else "account_txs"
        stale = int(
            scalar(
                con,
                f"""SELECT count(*) FROM {table} WHERE chain = $c AND tx_id >
                    (SELECT max(tx_watermark) FROM exposure_state WHERE chain = $c AND asset_id = $a)""",
                {"c": name, "a": asset_id},
            )
            or 0
        )
    tip = first(
        con, "SELECT height, hash FROM blocks WHERE chain = ? ORDER BY height DESC NULLS LAST LIMIT 1", [name]
    )
    prefix = "" if c.family == "bitcoin" else "0x"
    as_of: JSON = {
        "height": None if tip is None or tip[0] is None else int(tip[0]),
        "block_hash": None if tip is None else prefix + bytes(tip[1]).hex(),
    }
    return ChainView(
        name,
        c,
        index,
        by_key,
        {},
        cluster_labels,
        asset_id,
        asset_name,
        computed,
        exposure or ExposureIndex.empty(),
        as_of,
        exposure_stale=stale,
    )


# --- results ---------------------------------------------------------------------------------------
