"""Tracing against the truth: how much of the laundered value a forward trace from each seed follows to
the true cash-out points, and where else it ends.

A *leg* of an operation is what one row of the truth's ``seeds`` starts (several seeds of one leg, chain
and asset are merged). What the platform found for it is a :class:`LegTrace`: the value traced, the taint
that reached each address, and the taint held at the trace's end points. Scoring (:func:`score_tracing`)
is pure, so it can be fed the truth itself (:func:`traces_from_truth`); running the traces against a store
is :func:`fundtrail.evaluation.trace_runs.run_traces`.

- **recovered** = Σ over the leg's true cash-out points of min(taint that reached the address, the truth's
  amount there); **share** = recovered / Σ the truth's amounts. A cash-out point is matched on the leg's
  chain and asset: a cash-out in another asset (after a swap) is expected and never recovered.
- **entity recovered** = Σ over the leg's cash-out owners A (the cash-out points' ``actor_id``: the
  exchange, OTC desk ... where a freezing request goes) of min(T_A, E_A), where E_A = Σ the truth's amounts
  at A's cash-out points of the leg (chain and asset matched as above) and T_A = Σ the taint held at the
  trace's *end points* owned by A (the truth's ``addresses``, compared by key, looked up for the end points
  only: :mod:`fundtrail.evaluation.owners`); **entity_share** = entity recovered / Σ the truth's amounts.
  A trace that passes an exchange's deposit address and ends in its hot wallet (the exchange swept the
  deposit), or ends at any other address of the right exchange, scores here even where ``share`` cannot.
- **false end points**: end points holding taint (the fee sink and outputs without an address aside) that
  are neither a cash-out point of the operation, nor an address of the operation (``operation_addresses``),
  nor an address owned by one of the operation's cash-out owners (the latter are entity-level hits: the
  money ended at the right exchange); their count, and the share of the traced value they hold.

Aggregates (per operation, per typology, overall) keep exact amounts per (chain, asset); a share is the
value-weighted one within an asset, and when value of several assets is aggregated, the mean of the
per-asset shares (amounts of different assets are never added). A share with nothing to divide by is None.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fundtrail.errors import CorruptData, InvalidInput
from fundtrail.evaluation.inputs import amount, required
from fundtrail.evaluation.keys import address_key, address_key_or_none
from fundtrail.evaluation.owners import EndPoint, Owned, Owners

JSON = dict[str, Any]
Row = Mapping[str, Any]
Asset = tuple[str, str]  # (chain, asset)
SAMPLE = 10  # false end points listed per operation


@dataclass(frozen=True)
class LegTrace:
    operation_id: int
    leg: int
    chain: str
    asset: str
    seed: str
    traced: int  # the value the trace followed (its seed amount, plus what poison marked)
    received: Mapping[str, int]  # address -> taint that reached it
    endpoints: Mapping[str, int]  # address -> taint held there where the trace ended
    error: str | None = None  # the trace could not run (the leg is left out of the scores)


@dataclass
class _Amounts:
    expected: int = 0
    recovered: int = 0
    entity_recovered: int = 0
    traced: int = 0
    false_value: int = 0


@dataclass
class Aggregate:
    operations: int = 0
    legs: int = 0
    false_endpoints: int = 0
    amounts: dict[Asset, _Amounts] = field(default_factory=dict)

    def add(self, other: Aggregate) -> None:
        self.operations += other.operations
        self.legs += other.legs
        self.false_endpoints += other.false_endpoints
        for k, a in other.amounts.items():
            mine = self.amounts.setdefault(k, _Amounts())
            mine.expected += a.expected
            mine.recovered += a.recovered
            mine.entity_recovered += a.entity_recovered
            mine.traced += a.traced
            mine.false_value += a.false_value

    @property
    def share(self) -> float | None:
        return _mean([_ratio(a.recovered, a.expected) for a in self.amounts.values()])

    @property
    def entity_share(self) -> float | None:
        return _mean([_ratio(a.entity_recovered, a.expected) for a in self.amounts.values()])

    @property
    def false_endpoint_share(self) -> float | None:
        return _mean([_ratio(a.false_value, a.traced) for a in self.amounts.values()])

    def as_json(self) -> JSON:
        return {
            "operations": self.operations,
            "legs": self.legs,
            "share": self.share,
            "entity_share": self.entity_share,
            "false_endpoints": self.false_endpoints,
            "false_endpoint_share": self.false_endpoint_share,
            "amounts": [
                {
                    "chain": chain,
                    "asset": asset,
                    "expected": a.expected,
                    "recovered": a.recovered,
                    "entity_recovered": a.entity_recovered,
                    "traced": a.traced,
                    "false_endpoint_value": a.false_value,
                    "share": _ratio(a.recovered, a.expected),
                    "entity_share": _ratio(a.entity_recovered, a.expected),
                    "false_endpoint_share": _ratio(a.false_value, a.traced),
                }
                for (chain, asset), a in sorted(self.amounts.items())
            ],
        }


def _ratio(a: int, b: int) -> float | None:
    return None if b == 0 else a / b


def _mean(xs: list[float | None]) -> float | None:
    known = [x for x in xs if x is not None]
    return sum(known) / len(known) if known else None


@dataclass
class OperationScore:
    operation_id: int
    typology: str
    case: str | None
    score: Aggregate
    failed_legs: int = 0
    false_endpoints: list[JSON] = field(default_factory=list)  # the largest, as {chain, address, amount}

    def as_json(self) -> JSON:
        return {
            "operation_id": self.operation_id,
            "typology": self.typology,
            "case": self.case,
            **self.score.as_json(),
            "failed_legs": self.failed_legs,
            "false_endpoint_sample": self.false_endpoints,
        }


@dataclass
class TracingResult:
    overall: Aggregate
    typologies: dict[str, Aggregate]
    operations: list[OperationScore]
    failed: list[JSON]
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> JSON:
        return {
            "overall": self.overall.as_json(),
            "typologies": {t: a.as_json() for t, a in sorted(self.typologies.items())},
            "operations": [o.as_json() for o in self.operations],
            "failed": self.failed,
        }


def _key(chain: str, text: str, table: str) -> bytes:
    try:
        return address_key(chain, text)
    except InvalidInput as exc:
        raise CorruptData(
            f"the truth's {table} address {text!r} is not a {chain} address ({exc.problem})",
            "re-run `fundtrail simulate`",
        ) from None


def _same_asset(a: str, b: str) -> bool:
    return a.strip().casefold() == b.strip().casefold()


def score_tracing(
    operations: Sequence[Row],
    operation_addresses: Sequence[Row],
    cashouts: Sequence[Row],
    traces: Iterable[LegTrace],
    owners: Owners | None = None,
) -> TracingResult:
    """Score what the traces found against the truth's cash-outs (the module docstring's definitions).
    ``owners`` says who owns the trace's end points (:func:`fundtrail.evaluation.owners.owners_from_table`
    or ``owners_from_map``); without it only the cash-out points' own owners (``cashouts.actor_id``) are
    known, so an end point elsewhere never counts for the entity-level score."""
    per_op: dict[int, OperationScore] = {}
    for r in operations:
        required(r, "operations", "operation_id", "typology")
        op = int(r["operation_id"])
        per_op[op] = OperationScore(op, str(r["typology"]), r.get("case"), Aggregate())
    truth = _truth_points(operation_addresses, cashouts)
    points = truth.amounts
    units: dict[Unit, list[LegTrace]] = {}  # the traces of one (operation, leg, chain, asset), merged
    for t in traces:
        units.setdefault((t.operation_id, t.leg, t.chain, t.asset), []).append(t)
    unknown = sorted({u[0] for u in units if u[0] not in per_op} | {o for o, _ in points if o not in per_op})
    if unknown:
        raise CorruptData(
            f"the truth's seeds or cash-outs name operations {unknown[:5]} that are not in its operations",
            "re-run `fundtrail simulate`",
        )
    failed: list[JSON] = [
        {"operation_id": t.operation_id, "leg": t.leg, "chain": t.chain, "seed": t.seed, "error": t.error}
        for ts in units.values()
        for t in ts
        if t.error
    ]
    failed_legs = {(t["operation_id"], t["leg"]) for t in failed}
    for o, _ in failed_legs:
        per_op[o].failed_legs += 1
    legs = {u[:2] for u in units}
    scored = {u: ts for u, ts in units.items() if u[:2] not in failed_legs}
    false_points = _found(scored, truth, owners, per_op)
    elsewhere = _expected(scored, points, per_op)
    for o, fp in false_points.items():
        per_op[o].score.false_endpoints = len(fp)
        biggest = sorted(fp.items(), key=lambda kv: (-kv[1][1], kv[1][0]))[:SAMPLE]
        per_op[o].false_endpoints = [
            {"chain": c, "address": text, "tainted_amount": v} for (c, _), (text, v) in biggest
        ]
    for o, _ in {u[:2] for u in scored}:
        per_op[o].score.legs += 1
    overall = Aggregate()
    typologies: dict[str, Aggregate] = {}
    for s in per_op.values():
        if s.score.legs:
            s.score.operations = 1
            overall.add(s.score)
            typologies.setdefault(s.typology, Aggregate()).add(s.score)
    notes = []
    if elsewhere:
        notes.append(
            f"tracing: {elsewhere} cash-out point(s) are in another asset than their leg's seeds (a swap?): "
            "expected, and never recovered by a trace of the seed's asset"
        )
    no_seed = sorted(leg for leg in points if leg not in legs)
    if no_seed:
        notes.append(f"tracing: {len(no_seed)} operation leg(s) have cash-outs but no seed: not scored")
    if failed:
        notes.append(f"tracing: {len(failed)} seed(s) could not be traced (listed under tracing.failed)")
    untraced = sum(1 for s in per_op.values() if not s.score.legs)
    if untraced:
        notes.append(f"tracing: {untraced} operation(s) have no traced leg: left out of the aggregates")
    return TracingResult(overall, typologies, list(per_op.values()), failed, notes)


Unit = tuple[int, int, str, str]  # (operation, leg, chain, asset)
Points = dict[tuple[int, int], dict[tuple[str, str, bytes], int]]  # leg -> (chain, asset, key) -> amount
Ends = dict[bytes, tuple[str, int]]  # end point key -> (text, taint held there)


@dataclass
class _Truth:
    involved: dict[int, set[tuple[str, bytes]]]  # operation -> its own and its cash-out addresses
    amounts: Points
    owner: Owned  # cash-out address -> its owner (cashouts.actor_id)
    owners: dict[int, set[int]]  # operation -> its cash-out owners


def _truth_points(operation_addresses: Sequence[Row], cashouts: Sequence[Row]) -> _Truth:
    """The operations' addresses and cash-out points (with their amounts and owners)."""
    t = _Truth({}, {}, {}, {})
    for r in operation_addresses:
        required(r, "operation_addresses", "operation_id", "chain", "address")
        c = str(r["chain"])
        t.involved.setdefault(int(r["operation_id"]), set()).add((c, _key(c, str(r["address"]), "operation")))
    for r in cashouts:
        required(r, "cashouts", "operation_id", "leg", "chain", "asset", "address", "actor_id")
        op, c, actor = int(r["operation_id"]), str(r["chain"]), int(r["actor_id"])
        k = _key(c, str(r["address"]), "cash-out")
        t.involved.setdefault(op, set()).add((c, k))
        prev = t.owner.setdefault((c, k), actor)
        if prev != actor:
            raise CorruptData(
                f"the truth's cash-out address {r['address']} ({c}) has two owners, {prev} and {actor}",
                "re-run `fundtrail simulate`",
            )
        t.owners.setdefault(op, set()).add(actor)
        leg = t.amounts.setdefault((op, int(r["leg"])), {})
        p = (c, str(r["asset"]), k)
        leg[p] = leg.get(p, 0) + amount(r, "cashouts")
    return t


def _end_owners(ends: Mapping[Unit, Ends], truth: _Truth, owners: Owners | None) -> Owned:
    """(chain, key) -> owner of every end point holding taint that has one: a cash-out point's owner from
    the cash-outs, any other end point's from ``owners`` (asked once, for the end points only)."""
    known: Owned = dict(truth.owner)
    if owners is None:
        return known
    wanted: dict[tuple[str, bytes], EndPoint] = {}
    for (_, _, chain, _), pts in ends.items():
        for k, (text, v) in pts.items():
            if v > 0 and (chain, k) not in known:
                wanted.setdefault((chain, k), (chain, k, text))
    if wanted:
        for ck, actor in owners(list(wanted.values())).items():
            known.setdefault(ck, actor)
    return known


def _found(
    units: Mapping[Unit, list[LegTrace]],
    truth: _Truth,
    owners: Owners | None,
    per_op: Mapping[int, OperationScore],
) -> dict[int, dict[tuple[str, bytes], tuple[str, int]]]:
    """Add traced, recovered (address and entity level) and false end-point value per operation; return
    the false end points."""
    ends = {u: _merged_text(u[2], (t.endpoints for t in ts)) for u, ts in units.items()}
    owner = _end_owners(ends, truth, owners)
    false_points: dict[int, dict[tuple[str, bytes], tuple[str, int]]] = {}
    for (o, g, chain, asset), ts in units.items():
        a = per_op[o].score.amounts.setdefault((chain, asset), _Amounts())
        a.traced += sum(t.traced for t in ts)
        received = _merged(chain, (t.received for t in ts))
        expected_at: dict[int, int] = {}  # E_A: the leg's cash-out amounts per owner
        for (c, asset_c, k), v in truth.amounts.get((o, g), {}).items():
            if c == chain and _same_asset(asset_c, asset):
                a.recovered += min(received.get(k, 0), v)
                expected_at[truth.owner[c, k]] = expected_at.get(truth.owner[c, k], 0) + v
        held_by: dict[int, int] = {}  # T_A: taint held at end points per owner
        own, hits = truth.involved.get(o, set()), truth.owners.get(o, set())
        for k, (text, v) in ends[o, g, chain, asset].items():
            if v <= 0:
                continue
            actor = owner.get((chain, k))
            if actor is not None:
                held_by[actor] = held_by.get(actor, 0) + v
            if (chain, k) not in own and actor not in hits:
                a.false_value += v
                fp = false_points.setdefault(o, {})
                fp[chain, k] = (text, fp.get((chain, k), (text, 0))[1] + v)
        a.entity_recovered += sum(min(held_by.get(x, 0), e) for x, e in expected_at.items())
    return false_points


def _expected(
    units: Mapping[Unit, list[LegTrace]], points: Points, per_op: Mapping[int, OperationScore]
) -> int:
    """Add the expected value of every cash-out of a scored leg (in its own asset); return how many are in
    an asset none of the leg's seeds traced."""
    traced: dict[tuple[int, int], set[Asset]] = {}
    for o, g, c, s in units:
        traced.setdefault((o, g), set()).add((c, s))
    elsewhere = 0
    for leg, pts in points.items():
        if leg not in traced:
            continue
        for (c, asset_c, _k), v in pts.items():
            match = next(
                (ta for ta in sorted(traced[leg]) if ta[0] == c and _same_asset(ta[1], asset_c)), None
            )
            if match is None:
                elsewhere += 1
                match = (c, asset_c)
            per_op[leg[0]].score.amounts.setdefault(match, _Amounts()).expected += v
    return elsewhere


def _merged(chain: str, parts: Iterable[Mapping[str, int]]) -> dict[bytes, int]:
    return {k: v for k, (_, v) in _merged_text(chain, parts).items()}


def _merged_text(chain: str, parts: Iterable[Mapping[str, int]]) -> Ends:
    """Address -> (text as first given, summed amount), addresses compared by key; pseudo-addresses such
    as ``(fees)`` and anything that does not parse are left out."""
    out: dict[bytes, tuple[str, int]] = {}
    for part in parts:
        for text, v in part.items():
            k = address_key_or_none(chain, text)
            if k is None:
                continue
            prev = out.get(k, (text, 0))
            out[k] = (prev[0], prev[1] + int(v))
    return out


def traces_from_truth(seeds: Sequence[Row], cashouts: Sequence[Row]) -> list[LegTrace]:
    """The traces a perfect tracer would return: every seed's value reaching exactly its leg's cash-out
    points (of its chain and asset) and ending there (with the first seed of a leg, when it has several):
    it scores 1.0 on ``share`` and ``entity_share`` with no false end point."""
    by_leg: dict[tuple[int, int, str], list[Row]] = {}
    for c in cashouts:
        required(c, "cashouts", "operation_id", "leg", "chain", "asset", "address")
        by_leg.setdefault((int(c["operation_id"]), int(c["leg"]), str(c["chain"])), []).append(c)
    out: list[LegTrace] = []
    given: set[Unit] = set()
    for s in seeds:
        required(s, "seeds", "operation_id", "leg", "chain", "seed", "asset")
        unit = (int(s["operation_id"]), int(s["leg"]), str(s["chain"]), str(s["asset"]))
        found: dict[str, int] = {}
        if unit not in given:
            given.add(unit)
            for c in by_leg.get(unit[:3], []):
                if _same_asset(str(c["asset"]), unit[3]):
                    found[str(c["address"])] = found.get(str(c["address"]), 0) + amount(c, "cashouts")
        out.append(LegTrace(*unit, str(s["seed"]), amount(s, "seeds"), found, found))
    return out
