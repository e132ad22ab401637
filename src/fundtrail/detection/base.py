"""What every typology detector is and returns: the :class:`Detector` protocol, its documented
:class:`Param` (with units), the :class:`Alert` it raises, and the :class:`DetectContext` it reads.

A detector is a module of ``fundtrail.detection.detectors`` exposing ``DETECTOR`` (an object with the
protocol's attributes). It reads the chain through the context (never row by row: the UTXO view and
the account transfers are loaded once per chain and run, in bulk), and yields alerts. It never writes:
the engine (``detection/engine.py``) deduplicates and stores the alerts.

An alert is identified across runs by its ``dedup_key``: the detector, the chain, and the sorted
transactions (or, for an alert about addresses without transactions, the sorted addresses) it rests on.
A later run that finds the same pattern again, possibly grown (a peeling chain with more hops), updates
the alert whose key it shares with any of its ``related_keys`` instead of raising a new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

SEVERITIES = ("low", "medium", "high", "critical")


@dataclass(frozen=True)
class Param:
    """A detector parameter: its name, default, unit (``satoshi``, ``USD``, ``seconds``, ``blocks``,
    ``transactions``, ``share``, ``count`` ...) and what it controls."""

    name: str
    default: float | int | str
    unit: str
    help: str


@dataclass(frozen=True)
class Alert:
    detector: str
    typology: str
    chain: str
    severity: str  # one of SEVERITIES
    score: float  # 0-100: how strongly the pattern matched (the detector documents how it is computed)
    addresses: tuple[str, ...]  # as fundtrail shows them, most relevant first
    txids: tuple[str, ...]  # display hex (UTXO) or 0x-hash (account), in time order
    window_start: int  # Unix seconds of the first transaction
    window_end: int  # Unix seconds of the last transaction
    amount: int | None  # base units of ``asset`` the pattern moved; None when unknown
    asset: str | None  # symbol (BTC, ETH, USDT ...) or None
    explanation: str  # plain language: why it fired, with the figures
    entities: tuple[int, ...] = ()  # cluster ids involved, where the store has clusters
    evidence: Mapping[str, Any] = field(default_factory=dict)  # detector-specific figures (JSON-able)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity {self.severity!r} is not one of {SEVERITIES}")
        if not 0.0 <= self.score <= 100.0:
            raise ValueError(f"score {self.score} is outside 0-100")
        if not self.txids and not self.addresses:
            raise ValueError("an alert rests on transactions or addresses")

    @property
    def dedup_key(self) -> str:
        basis = sorted(self.txids) if self.txids else sorted(self.addresses)
        return _key(self.detector, self.chain, basis)

    def related_keys(self) -> list[str]:
        """Keys of the same pattern seen earlier with fewer transactions: every prefix of the time-ordered
        transactions of length >= 2 (a growing peeling chain or smurfing run keeps its alert)."""
        if len(self.txids) < 3:
            return []
        return [_key(self.detector, self.chain, sorted(self.txids[:k])) for k in range(2, len(self.txids))]


def _key(detector: str, chain: str, basis: Iterable[str]) -> str:
    h = hashlib.sha256(f"{detector}\x00{chain}\x00".encode())
    for b in basis:
        h.update(b.encode())
        h.update(b"\x00")
    return h.hexdigest()


def severity_for(score: float) -> str:
    """The default score bands: < 40 low, < 65 medium, < 85 high, else critical."""
    if score >= 85:
        return "critical"
    if score >= 65:
        return "high"
    if score >= 40:
        return "medium"
    return "low"


def merged_params(params: Iterable[Param], ctx: DetectContext) -> dict[str, Any]:
    """A detector's parameter values: the defaults of ``params`` overridden by the user's (``ctx.params``)."""
    return {x.name: x.default for x in params} | dict(ctx.params)


def cluster_ids(ctx: DetectContext, address_ids: Iterable[int]) -> tuple[int, ...]:
    """The distinct cluster ids of ``address_ids``, sorted (addresses without a cluster left out)."""
    return tuple(sorted({c for c in (ctx.cluster_of(a) for a in address_ids) if c is not None}))


def make_alert(
    detector: str,
    typology: str,
    ctx: DetectContext,
    *,
    score: float,
    addresses: Iterable[str],
    txids: Iterable[str],
    window: tuple[int, int],
    amount: int | None,
    asset: str | None,
    explanation: str,
    entities: tuple[int, ...],
    evidence: Mapping[str, Any],
) -> Alert:
    """An :class:`Alert` on ``ctx``'s chain: the severity from the score's band, the score rounded to one
    decimal."""
    return Alert(
        detector=detector,
        typology=typology,
        chain=ctx.chain,
        severity=severity_for(score),
        score=round(float(score), 1),
        addresses=tuple(addresses),
        txids=tuple(txids),
        window_start=window[0],
        window_end=window[1],
        amount=amount,
        asset=asset,
        explanation=explanation,
        entities=entities,
        evidence=evidence,
    )


class DetectContext(Protocol):
    """What a detector reads (the engine's implementation: ``detection/context.py``)."""

    con: Any  # the DuckDB connection (read-only use)
    chain: str
    family: str  # bitcoin, evm, tron
    since_height: int  # only patterns with a transaction at or after this height are reported
    params: Mapping[str, Any]  # this detector's parameters: defaults overridden by the user's

    def utxo_view(self) -> Any:
        """The chain's UtxoView (store/utxo_view.py), loaded once per run (UTXO chains)."""

    def transfers(self) -> Any:
        """The chain's transfers as an Arrow table, loaded once per run (account chains): ``tx_id``,
        ``tx_hash`` (0x text), ``height``, ``time``, ``position``, ``kind``, ``asset`` (symbol or
        ``asset:<id>``), ``decimals``, ``from_id``, ``to_id``, ``amount`` (decimal128(38,0), exact)."""

    prices: Mapping[str, float]  # USD per whole coin, by symbol (detection/prices.py)

    def address_text(self, address_id: int) -> str:
        """An address id as fundtrail shows it."""

    def address_texts(self, ids: Iterable[int]) -> list[str]:
        """Many address ids as fundtrail shows them (one query)."""

    def categories(self) -> Mapping[int, str]:
        """Every categorised address id -> its most specific risk/service category."""

    def cluster_array(self) -> Any:
        """Cluster id per address id (-1: none), a NumPy int64 array."""

    def service_category(self, address_id: int) -> str | None:
        """The attribution category of the address or its cluster when it is a labelled service or a
        risky category (exchange, mixer, bridge, defi, sanctioned, ...), else None."""

    def cluster_of(self, address_id: int) -> int | None:
        """The address's cluster id, None when it has none."""

    def usd_value(self, asset: str, amount: int) -> float | None:
        """The USD value of ``amount`` base units of ``asset`` at the configured reference prices
        (detection/prices.py), None when the asset has no price."""


class Detector(Protocol):
    name: str  # the module name, e.g. "peeling_chain"
    typology: str  # the simulator's typology it targets (docs/simulator.md), e.g. "peeling_chain"
    families: frozenset[str]  # chain families it runs on
    params: tuple[Param, ...]
    summary: str  # one line for `fundtrail detect --list` and the docs

    def run(self, ctx: DetectContext) -> Iterable[Alert]: ...
