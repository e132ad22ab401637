"""Detection against the truth: precision, recall and F1 of alerts per typology.

An *alert* names a detector, the typology it claims, a chain, and the transactions and addresses it
flags (:class:`Alert`, or anything with those attributes). Matching is independent of any storage:

- an operation is **detected** when an alert of its typology shares a transaction id or an address with
  it (``operation_txs``, ``operation_addresses``; on the same chain);
- an alert is a **true positive** when it matches some operation of its typology.

Per typology: precision = true alerts / alerts, recall = detected operations / operations, F1 their
harmonic mean (0.0 when both are 0). A ratio with nothing to divide by is None (no alerts of a
typology: precision unknown; no operations: recall unknown) and so is an F1 built on one: never a
made-up 0 or 1. ``overall`` is the micro average (every alert and every operation counted once).
Transaction ids compare as lower-case hex without ``0x``, addresses by their key (:mod:`.keys`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fundtrail.evaluation.inputs import required
from fundtrail.evaluation.keys import address_key_or_none, txid_key

JSON = dict[str, Any]
Row = Mapping[str, Any]


class AlertLike(Protocol):
    @property
    def typology(self) -> str: ...
    @property
    def chain(self) -> str: ...
    @property
    def txids(self) -> Iterable[str]: ...
    @property
    def addresses(self) -> Iterable[str]: ...


@dataclass(frozen=True)
class Alert:
    detector: str
    typology: str
    chain: str
    txids: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()


def _ratio(a: int, b: int) -> float | None:
    return None if b == 0 else a / b


@dataclass(frozen=True)
class TypologyScore:
    operations: int
    detected: int
    alerts: int
    true_alerts: int

    @property
    def precision(self) -> float | None:
        return _ratio(self.true_alerts, self.alerts)

    @property
    def recall(self) -> float | None:
        return _ratio(self.detected, self.operations)

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 0.0 if p + r == 0 else 2 * p * r / (p + r)

    def as_json(self) -> JSON:
        return {
            "operations": self.operations,
            "detected": self.detected,
            "alerts": self.alerts,
            "true_alerts": self.true_alerts,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


@dataclass(frozen=True)
class DetectionResult:
    typologies: dict[str, TypologyScore]
    overall: TypologyScore

    def as_json(self) -> JSON:
        return {
            "overall": self.overall.as_json(),
            "typologies": {t: s.as_json() for t, s in sorted(self.typologies.items())},
        }


Mark = tuple[str, str, str, Any]  # (typology, chain, "tx" | "address", txid or address key)


def score_detection(
    operations: Sequence[Row],
    operation_txs: Sequence[Row],
    operation_addresses: Sequence[Row],
    alerts: Iterable[AlertLike],
) -> DetectionResult:
    """Match ``alerts`` to the truth's operations and score them per typology (module docstring)."""
    typology: dict[int, str] = {}
    for r in operations:
        required(r, "operations", "operation_id", "typology")
        typology[int(r["operation_id"])] = str(r["typology"])
    marks: dict[Mark, set[int]] = {}
    for r in operation_txs:
        required(r, "operation_txs", "operation_id", "chain", "txid")
        op = int(r["operation_id"])
        if op in typology:
            marks.setdefault((typology[op], str(r["chain"]), "tx", txid_key(str(r["txid"]))), set()).add(op)
    for r in operation_addresses:
        required(r, "operation_addresses", "operation_id", "chain", "address")
        op, chain = int(r["operation_id"]), str(r["chain"])
        key = address_key_or_none(chain, str(r["address"]))
        if op in typology and key is not None:
            marks.setdefault((typology[op], chain, "address", key), set()).add(op)
    detected: set[int] = set()
    alerts_of: dict[str, int] = {}
    true_of: dict[str, int] = {}
    for a in alerts:
        t, c = a.typology, a.chain
        found: set[int] = set()
        for txid in a.txids:
            found |= marks.get((t, c, "tx", txid_key(txid)), set())
        for text in a.addresses:
            key = address_key_or_none(c, text)
            if key is not None:
                found |= marks.get((t, c, "address", key), set())
        alerts_of[t] = alerts_of.get(t, 0) + 1
        if found:
            true_of[t] = true_of.get(t, 0) + 1
            detected |= found
    ops_of: dict[str, list[int]] = {}
    for op, t in typology.items():
        ops_of.setdefault(t, []).append(op)
    scores = {
        t: TypologyScore(
            len(ops_of.get(t, [])),
            sum(1 for op in ops_of.get(t, []) if op in detected),
            alerts_of.get(t, 0),
            true_of.get(t, 0),
        )
        for t in sorted(set(ops_of) | set(alerts_of))
    }
    overall = TypologyScore(len(typology), len(detected), sum(alerts_of.values()), sum(true_of.values()))
    return DetectionResult(scores, overall)
