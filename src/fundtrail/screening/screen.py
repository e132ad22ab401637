"""Screening: is this address (or the counterparties of this transaction) exposed to illicit activity?

A :class:`Screener` is loaded once (a policy and a store connection) and keeps, per chain, a snapshot of
what a screen needs in memory: every stored address key in one sorted NumPy array (length-prefixed
fixed-width bytes, so a lookup is a binary search and a batch of 10,000 one vectorised ``searchsorted``),
its address id and cluster id; the labels of the chain by key, and per cluster its definer and sanctions
labels; the ids of the clusters with exposure, and the chain tip the snapshot was taken at
(``as_of``); and the precomputed exposure of the screened asset (rows of ``exposure`` and
``exposure_evidence`` grouped by cluster, the txids of the evidence), which
:class:`ExposureIndex` turns into the per-cluster shape of
:func:`fundtrail.screening.exposure.exposure_of` on demand (a test checks both agree). A screen is then
a few binary searches and dictionary lookups, with no query.

Rules (docs/screening.md):

* **Sanctions are exact.** An address carrying a ``sanctioned`` label, or in a cluster where any address
  does, is ``severe`` with score 100 whatever else is known; the reason names the list (the label's
  source). Labels are keyed by address, not by activity, so this holds for an address never seen on chain.
* **Unknown is not zero.** An address never seen in the stored data, without labels, is ``unknown``
  (``risk_score`` null) with a reason; so is a seen address when the exposure of its chain and asset has
  not been computed and no label decides.
* **Malformed input is an error** naming the chain's address formats: :class:`InvalidInput` from the
  single calls; in :meth:`Screener.screen_many` an item ``{"input", "error"}`` and the batch goes on.
* A **transaction** is screened through its counterparties (inputs' and outputs' addresses on Bitcoin;
  sender, recipient, created contract and transfer parties on account chains): the worst counterparty
  wins and each reason says which counterparty it comes from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fundtrail.chains.registry import CHAINS, PSEUDO_NAMES, Chain
from fundtrail.errors import FundtrailError, InvalidInput, NotFound
from fundtrail.labels.addresses import RECORDED_CHAINS, detect, resolve_on
from fundtrail.labels.store import labels_for_keys, list_labels
from fundtrail.screening.exposure import new_entry
from fundtrail.screening.policy import (
    SANCTIONS_CATEGORY,
    SANCTIONS_SCORE,
    Finding,
    Policy,
    band_of,
    default_policy,
    evaluate_exposure,
    evaluate_labels,
)
from fundtrail.store.assets import resolve_asset
from fundtrail.store.db import first, scalar

JSON = dict[str, Any]
I64 = npt.NDArray[np.int64]
CHUNK = 10_000  # items per vectorised lookup in screen_many
TXID_LIMIT = 10  # txids per reason (the largest flows first)
COUNTERPARTY_LIMIT = 10  # counterparty clusters per reason
LABEL_LIMIT = 50  # labels per result ("labels_total" says how many there are)
CACHE_CLUSTERS = 100_000  # clusters whose exposure and findings are kept between calls
_TXID = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
# worst first when a transaction's counterparties are combined: an unknown counterparty is not clean
_BAND_ORDER = {"none": 0, "unknown": 1, "low": 2, "medium": 3, "high": 4, "severe": 5}


def looks_like_txid(text: str) -> bool:
    """64 hex digits (0x-prefixed or not): a transaction, never an address on any chain fundtrail knows."""
    return bool(_TXID.match(text.strip()))


# --- the in-memory address index -------------------------------------------------------------------


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
class _Exposed:
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
    cache: dict[int, _Exposed] = field(default_factory=dict)
    exposure_stale: int = 0  # transactions stored after the last exposure run (their flows are missing)

    @property
    def prefix(self) -> str:
        return "" if self.chain is None or self.chain.family == "bitcoin" else "0x"


def _asset(con: duckdb.DuckDBPyConnection, c: Chain, asset: str | None) -> tuple[int | None, str | None]:
    """(asset id, name) screened on chain ``c``: the chain's coin unless a token is named; (None, name)
    when the chain has no stored data yet."""
    ref = resolve_asset(con, c, asset)
    return ref.asset_id, ref.name


def _is_cluster_label(lab: JSON) -> bool:
    return bool(lab["is_cluster_definer"]) or lab["category"] == SANCTIONS_CATEGORY


def _load_view(con: duckdb.DuckDBPyConnection, name: str, asset: str | None) -> ChainView:
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
                    if _is_cluster_label(lab):
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


def _label_reason(f: Finding) -> JSON:
    lab = f.label or {}
    return {
        "rule": f.rule.id,
        "severity": f.rule.severity,
        "score": f.score,
        "scope": "self",
        "category": f.rule.category,
        "direction": None,
        "hops": 0,
        "amount": None,
        "share": f.share,
        "txids": [],
        "counterparty_clusters": [],
        "label": lab.get("label"),
        "source": lab.get("source"),
        "labelled_address": lab.get("address"),
    }


def _sanctions_reasons(labels: list[JSON], address: str | None) -> list[JSON]:
    out: list[JSON] = []
    seen: set[tuple[str, str, str]] = set()
    for lab in labels:
        if lab["category"] != SANCTIONS_CATEGORY:
            continue
        k = (str(lab["source"]), str(lab["label"]), str(lab["address"]))
        if k in seen:
            continue
        seen.add(k)
        own = address is not None and str(lab["address"]).lower() == address.lower()
        out.append(
            {
                "rule": "sanctions",
                "severity": "severe",
                "score": SANCTIONS_SCORE,
                "scope": "self" if own else "cluster",
                "category": SANCTIONS_CATEGORY,
                "direction": None,
                "hops": 0,
                "amount": None,
                "share": None,
                "txids": [],
                "counterparty_clusters": [],
                "list": lab["source"],
                "label": lab["label"],
                "source": lab["source"],
                "labelled_address": lab["address"],
                "detail": (
                    f"on the sanctions list {lab['source']}"
                    if own
                    else f"in a cluster with {lab['address']}, on the sanctions list {lab['source']}"
                ),
            }
        )
    return out


def _note_reason(rule: str, detail: str) -> JSON:
    return {
        "rule": rule,
        "severity": "unknown",
        "score": None,
        "scope": None,
        "category": None,
        "direction": None,
        "hops": None,
        "amount": None,
        "share": None,
        "txids": [],
        "counterparty_clusters": [],
        "detail": detail,
    }


class Screener:
    """Screens addresses and transactions against a policy, on a snapshot of the store.

    ``asset`` picks the asset of account chains (token contract or symbol; default the native coin);
    Bitcoin screens BTC. Call :meth:`refresh` to take a new snapshot after the store changed."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, policy: Policy | None = None, asset: str | None = None
    ) -> None:
        self.con = con
        self.policy = policy or default_policy()
        self.asset = asset
        self._views: dict[str, ChainView] = {}
        self._policy_json = self.policy.as_json()

    def refresh(self) -> None:
        self._views.clear()

    def view(self, chain: str) -> ChainView:
        v = self._views.get(chain)
        if v is None:
            v = self._views[chain] = _load_view(self.con, chain, self.asset)
        return v

    # --- public calls ---

    def screen_address(self, chain: str, text: str) -> JSON:
        """Screen one address (InvalidInput when malformed, naming the chain's formats)."""
        v = self.view(chain)
        return self._screen_addresses(v, [self._parse(v, text)])[0]

    def screen_tx(self, chain: str, txid: str) -> JSON:
        """Screen one transaction through its counterparties (NotFound when not stored)."""
        v = self.view(chain)
        if v.chain is None:
            raise InvalidInput(
                f"fundtrail does not ingest {chain}: its transactions cannot be screened",
                "screen its addresses (against the imported labels) instead",
            )
        parties = self._tx_parties(v, txid)
        keys = list(parties)
        shown = [(v.chain.show(k), k) for k in keys]
        results = self._screen_addresses(v, shown)
        return self._combine(v, txid, [(parties[k], r) for k, r in zip(keys, results)])

    def screen(self, chain: str, text: str) -> JSON:
        """An address or a transaction (64 hex digits), whichever ``text`` is."""
        if looks_like_txid(text) and CHAINS.get(chain) is not None:
            return self.screen_tx(chain, text)
        return self.screen_address(chain, text)

    def screen_many(self, items: Iterable[str], chain: str, chunk: int = CHUNK) -> Iterator[JSON]:
        """Screen many addresses (and transactions) in input order, ``chunk`` at a time with one lookup per
        chunk. A malformed or unknown item gives ``{"input", "error", "exit_code"}`` and the batch goes on."""
        v = self.view(chain)
        batch: list[str] = []
        for item in items:
            batch.append(item)
            if len(batch) >= chunk:
                yield from self._chunk(v, batch)
                batch = []
        if batch:
            yield from self._chunk(v, batch)

    # --- internals ---

    def _chunk(self, v: ChainView, items: list[str]) -> list[JSON]:
        out: list[JSON | None] = [None] * len(items)
        todo: list[tuple[int, tuple[str, bytes | None]]] = []
        for i, text in enumerate(items):
            try:
                if v.chain is not None and looks_like_txid(text):
                    out[i] = self.screen_tx(v.name, text)
                else:
                    todo.append((i, self._parse(v, text)))
            except FundtrailError as exc:
                out[i] = {"input": text, "chain": v.name, "error": exc.line(), "exit_code": exc.exit_code}
        if todo:
            results = self._screen_addresses(v, [p for _, p in todo])
            for (i, _), r in zip(todo, results):
                out[i] = r
        return [r for r in out if r is not None]

    def _parse(self, v: ChainView, text: str) -> tuple[str, bytes | None]:
        """(canonical text, key) of an address of the view's chain; key None on recorded chains."""
        try:
            r = resolve_on(v.name, text, strict=True)
        except InvalidInput as exc:
            s = text.strip()
            formats = v.chain.address_formats if v.chain is not None else "the address as the chain writes it"
            hint = ""
            try:
                other = detect(s)
                if other.chain != v.name:
                    hint = f"; it looks like an address of {other.chain}: add --chain {other.chain}"
            except InvalidInput:
                pass
            raise InvalidInput(
                f"not a {v.name} address: {exc.problem}", f"expected {formats}{hint}"
            ) from None
        return r.address, r.key

    def _exposed(self, v: ChainView, cids: list[int]) -> dict[int, _Exposed]:
        """Exposure, findings and evidence of the clusters that have exposure (cached per cluster)."""
        out: dict[int, _Exposed] = {}
        for cid, pos in zip(cids, v.exposure.positions(cids)):
            if pos < 0:
                continue
            hit = v.cache.get(cid)
            if hit is None:
                if len(v.cache) >= CACHE_CLUSTERS:
                    v.cache.clear()
                exposure, evidence = v.exposure.of(pos, v.prefix)
                hit = v.cache[cid] = _Exposed(exposure, evaluate_exposure(self.policy, exposure), evidence)
            out[cid] = hit
        return out

    def _screen_addresses(self, v: ChainView, parsed: Sequence[tuple[str, bytes | None]]) -> list[JSON]:
        if v.index is None:
            return [
                self._result(v, text, -1, -1, v.labels_by_text.get(text.lower(), []), None)
                for text, _ in parsed
            ]
        keys = [k or b"" for _, k in parsed]
        ids, cids = v.index.lookup(keys)
        exposed = self._exposed(v, [c for c in cids.tolist() if c >= 0])
        out = []
        for (text, key), aid, cid in zip(parsed, ids.tolist(), cids.tolist()):
            own = v.labels_by_key.get(key or b"", [])
            out.append(self._result(v, text, aid, cid, own, exposed.get(cid)))
        return out

    def _result(
        self, v: ChainView, text: str, aid: int, cid: int, own: list[JSON], exp: _Exposed | None
    ) -> JSON:
        labels = own
        if cid >= 0:
            extra = v.cluster_labels.get(cid)
            if extra:
                ids = {lab["label_id"] for lab in own}
                labels = own + [lab for lab in extra if lab["label_id"] not in ids]
        sanctions = _sanctions_reasons(labels, text) if labels else []
        self_findings = evaluate_labels(self.policy, labels) if labels else []
        findings = self_findings + (exp.findings if exp is not None else [])
        reasons: list[JSON] = list(sanctions)
        for f in sorted(findings, key=lambda f: -f.score):
            if f.rule.scope == "self":
                if f.rule.category != SANCTIONS_CATEGORY or not sanctions:
                    reasons.append(_label_reason(f))
            else:
                reasons.append(self._exposure_reason(f, exp))
        score: int | None
        if sanctions:
            score = SANCTIONS_SCORE
        elif findings:
            score = max(f.score for f in findings)
        elif v.chain is None or aid < 0:
            score = None if not labels else 0
        elif not v.exposure_computed:
            score = None
        else:
            score = 0
        notes: list[str] = []
        if v.chain is None:
            notes.append(f"fundtrail does not ingest {v.name}: screened against the imported labels only")
        elif aid < 0:
            notes.append(f"never seen in the stored {v.name} data")
        elif not v.exposure_computed:
            notes.append(f"the exposure of {v.name} ({v.asset}) is not computed: run `fundtrail exposure`")
        if v.exposure_computed and v.exposure_stale:
            notes.append(
                f"the exposure was computed before the last {v.exposure_stale:,} stored {v.name} "
                "transactions: their flows are not reflected; run `fundtrail exposure`"
            )
        if score is None:
            if v.chain is None or aid < 0:
                reasons.append(_note_reason("unknown-address", notes[0]))
            else:
                reasons.append(_note_reason("exposure-not-computed", notes[0]))
        result: JSON = {
            "chain": v.name,
            "address": text,
            "cluster_id": cid if cid >= 0 else None,
            "risk_score": score,
            "severity": "unknown" if score is None else band_of(score),
            "labels": labels[:LABEL_LIMIT],
            "exposure": exp.exposure if exp is not None else {"direct": {}, "indirect": {}},
            "reasons": reasons,
            "as_of": v.as_of,
            "asset": v.asset,
            "seen": aid >= 0,
            "policy": self._policy_json,
        }
        if len(labels) > LABEL_LIMIT:
            result["labels_total"] = len(labels)
        if notes:
            result["notes"] = notes
        return result

    @staticmethod
    def _exposure_reason(f: Finding, exp: _Exposed | None) -> JSON:
        rule = f.rule
        evidence = [
            ev
            for ev in (exp.evidence if exp is not None else [])
            if ev["scope"] == rule.scope
            and ev["direction"] == f.direction
            and ev["category"] == rule.category
        ]
        txids: list[str] = []
        for ev in evidence:
            for t in ev["txids"]:
                if t not in txids:
                    txids.append(t)
        counterparties = list(dict.fromkeys(int(ev["counterparty_cluster"]) for ev in evidence))
        entry = (exp.exposure.get(rule.scope) or {}).get(rule.category) or {} if exp is not None else {}
        hops = entry.get(f"hops_{f.direction}", 1 if rule.scope == "direct" else None)
        reason: JSON = {
            "rule": rule.id,
            "severity": rule.severity,
            "score": f.score,
            "scope": rule.scope,
            "category": rule.category,
            "direction": f.direction,
            "hops": min((int(ev["hops"]) for ev in evidence), default=hops),
            "amount": f.amount,
            "share": f.share,
            "txids": txids[:TXID_LIMIT],
            "counterparty_clusters": counterparties[:COUNTERPARTY_LIMIT],
        }
        if len(txids) > TXID_LIMIT:
            reason["txids_total"] = len(txids)
        return reason

    # --- transactions ---

    def _tx_parties(self, v: ChainView, txid: str) -> dict[bytes, list[str]]:
        """Counterparty keys of a stored transaction, each with its roles."""
        assert v.chain is not None
        s = txid.strip()
        if not looks_like_txid(s):
            raise InvalidInput(f"{s!r} is not a transaction id", "give 64 hex digits")
        h = bytes.fromhex(s.lower().removeprefix("0x"))
        if v.chain.family == "bitcoin":
            if s.lower().startswith("0x"):
                raise InvalidInput(f"{s!r}: a Bitcoin txid has no 0x prefix", "give the 64 hex digits alone")
            row = first(self.con, "SELECT tx_id FROM transactions WHERE chain = ? AND txid = ?", [v.name, h])
            sql = """SELECT p.role, a.key FROM (
                       SELECT 'input' AS role, n, address_id FROM tx_inputs WHERE chain = $c AND tx_id = $t
                       UNION ALL
                       SELECT 'output' AS role, n, address_id FROM tx_outputs WHERE chain = $c AND tx_id = $t
                     ) p JOIN addresses a ON a.chain = $c AND a.address_id = p.address_id
                     ORDER BY p.role, p.n"""
        else:
            row = first(self.con, "SELECT tx_id FROM account_txs WHERE chain = ? AND hash = ?", [v.name, h])
            sql = """SELECT p.role, a.key FROM (
                       SELECT unnest(['from', 'to', 'created']) AS role, 0 AS n,
                              unnest([from_id, to_id, created_id]) AS address_id
                         FROM account_txs WHERE chain = $c AND tx_id = $t
                       UNION ALL SELECT 'transfer_from', row_number() OVER (), from_id FROM transfers
                         WHERE chain = $c AND tx_id = $t AND kind <> 'fee'
                       UNION ALL SELECT 'transfer_to', row_number() OVER (), to_id FROM transfers
                         WHERE chain = $c AND tx_id = $t AND kind <> 'fee'
                     ) p JOIN addresses a ON a.chain = $c AND a.address_id = p.address_id
                     ORDER BY p.role, p.n"""
        if row is None:
            raise NotFound(
                f"transaction {s} is not in the stored {v.name} data", "ingest it first, or check the --chain"
            )
        parties: dict[bytes, list[str]] = {}
        for role, key in self.con.execute(sql, {"c": v.name, "t": int(row[0])}).fetchall():
            k = bytes(key)
            if k in PSEUDO_NAMES:
                continue
            roles = parties.setdefault(k, [])
            if role not in roles:
                roles.append(role)
        return parties

    def _combine(self, v: ChainView, txid: str, parts: list[tuple[list[str], JSON]]) -> JSON:
        """A transaction's result from its counterparties' results: the worst wins."""
        worst: JSON | None = None
        for _, r in parts:
            if worst is None or _rank(r) > _rank(worst):
                worst = r
        reasons: list[JSON] = []
        labels: list[JSON] = []
        seen_labels: set[int] = set()
        for roles, r in parts:
            for reason in r["reasons"]:
                if reason["score"] is not None or worst is None or worst["risk_score"] is None:
                    reasons.append({**reason, "counterparty": r["address"], "roles": roles})
            for lab in r["labels"]:
                if lab["label_id"] not in seen_labels:
                    seen_labels.add(lab["label_id"])
                    labels.append(lab)
        reasons.sort(key=lambda x: -1 if x["score"] is None else -int(x["score"]))
        s = txid.strip().lower()
        shown = s if v.prefix == "" else "0x" + s.removeprefix("0x")
        return {
            "chain": v.name,
            "txid": shown,
            "risk_score": None if worst is None else worst["risk_score"],
            "severity": "unknown" if worst is None else worst["severity"],
            "labels": labels[:LABEL_LIMIT],
            "counterparties": [
                {
                    "address": r["address"],
                    "roles": roles,
                    "cluster_id": r["cluster_id"],
                    "risk_score": r["risk_score"],
                    "severity": r["severity"],
                    "categories": sorted({lab["category"] for lab in r["labels"]}),
                }
                for roles, r in parts
            ],
            "reasons": reasons,
            "as_of": v.as_of,
            "asset": v.asset,
            "policy": self._policy_json,
        }


def _rank(r: JSON) -> tuple[int, int]:
    score = r["risk_score"]
    return (_BAND_ORDER[r["severity"]], -1 if score is None else int(score))
