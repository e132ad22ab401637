"""Screening: is this address (or the counterparties of this transaction) exposed to illicit activity?

A :class:`Screener` is loaded once (a policy and a store connection) and keeps, per chain, a snapshot
(:mod:`fundtrail.screening.snapshot`) of
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
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from fundtrail.chains.registry import CHAINS, PSEUDO_NAMES
from fundtrail.errors import FundtrailError, InvalidInput, NotFound
from fundtrail.labels.addresses import detect, resolve_on
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
from fundtrail.screening.snapshot import (
    ChainView,
    Exposed,
    load_view,
)
from fundtrail.store.db import first

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
            v = self._views[chain] = load_view(self.con, chain, self.asset)
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

    def _exposed(self, v: ChainView, cids: list[int]) -> dict[int, Exposed]:
        """Exposure, findings and evidence of the clusters that have exposure (cached per cluster)."""
        out: dict[int, Exposed] = {}
        for cid, pos in zip(cids, v.exposure.positions(cids)):
            if pos < 0:
                continue
            hit = v.cache.get(cid)
            if hit is None:
                if len(v.cache) >= CACHE_CLUSTERS:
                    v.cache.clear()
                exposure, evidence = v.exposure.of(pos, v.prefix)
                hit = v.cache[cid] = Exposed(exposure, evaluate_exposure(self.policy, exposure), evidence)
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
        self, v: ChainView, text: str, aid: int, cid: int, own: list[JSON], exp: Exposed | None
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
    def _exposure_reason(f: Finding, exp: Exposed | None) -> JSON:
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
