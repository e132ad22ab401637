"""``fundtrail detect`` end to end: run the detectors over each chain of the store and keep their alerts.

Per chain (those of the store, or those asked for), the detectors whose families include the chain's run
on one :class:`~fundtrail.detection.context.StoreContext`: the UTXO view or the account transfers, the
labels and clusters are loaded once and shared (each detector gets its own parameters through
``with_params``). Each detector is timed. Then, in **one transaction** (the caller's, when it has one),
the alerts are stored:

- an alert whose ``dedup_key`` is a stored alert's is *seen again*: that alert's ``last_seen_run`` moves,
  nothing else changes (its status stays, a dismissed alert stays dismissed);
- an alert one of whose ``related_keys()`` is a stored alert's key (the same pattern, grown: a peeling
  chain with more hops) *updates* that alert: it keeps its ``alert_id`` and status and gets the new key,
  transactions, addresses, window, amount, score and explanation. A dismissed alert that grew goes back to
  ``new``, with an event and an audit entry saying why;
- any other alert is *raised*: a new alert, status ``new``, with its creation as its first event.

Within one run, alerts of a detector that fall on the same stored alert, or on each other (one's key is a
prefix key of another's), are merged into the one with the most transactions.

**Incremental runs.** Without ``since_height`` each detector reports, per chain, only patterns with a
transaction above the tip the last run of that detector on that chain saw (the first run: from height 0).
A chain whose tip has not moved since is *up to date* and skipped. ``since_height=0`` rescans everything
(after importing labels, say: exposure jumps depend on them).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from fundtrail.chains.registry import chain as get_chain
from fundtrail.detection import registry
from fundtrail.detection.base import Alert, Detector
from fundtrail.detection.config import Overrides, check_overrides, effective
from fundtrail.detection.context import StoreContext
from fundtrail.detection.prices import DEFAULT_PRICES_USD
from fundtrail.errors import InvalidInput, NotFound
from fundtrail.platform import audit
from fundtrail.platform.common import atomic, canonical_json, next_id
from fundtrail.platform.principal import Principal
from fundtrail.store.chain_state import stored_tip
from fundtrail.store.db import registered, scalar

ProgressFn = Callable[[str, str, int, int], None]  # chain, detector about to run ("" at the end), done, total
SYSTEM_ACTOR = "fundtrail detect"


@dataclass
class DetectorCount:
    """What one detector did on one chain: its alerts and what became of them."""

    chain: str
    detector: str
    since_height: int
    seconds: float = 0.0
    alerts: int = 0  # yielded by the detector
    raised: int = 0  # new alerts
    updated: int = 0  # stored alerts that grew (kept their id and status)
    reopened: int = 0  # of the updated: dismissed alerts sent back to new
    seen: int = 0  # stored alerts found again unchanged
    merged: int = 0  # alerts folded into a larger one of the same run


@dataclass
class ChainRun:
    chain: str
    family: str
    tip: int | None
    status: str  # "run", "up to date", "no detector for this family"
    load_seconds: float = 0.0


@dataclass
class RunReport:
    run_id: int
    started: float  # Unix seconds
    seconds: float
    since_height: int | None
    chains: list[ChainRun] = field(default_factory=list)
    detectors: list[DetectorCount] = field(default_factory=list)

    def totals(self) -> dict[str, int]:
        keys = ("alerts", "raised", "updated", "reopened", "seen", "merged")
        return {k: sum(int(getattr(d, k)) for d in self.detectors) for k in keys}

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "since_height": self.since_height,
            "seconds": round(self.seconds, 3),
            "chains": [asdict(c) | {"load_seconds": round(c.load_seconds, 3)} for c in self.chains],
            "detectors": [asdict(d) | {"seconds": round(d.seconds, 3)} for d in self.detectors],
            "totals": self.totals(),
        }


def store_chains(con: duckdb.DuckDBPyConnection, chains: Sequence[str] | None) -> list[str]:
    """The chains to run on: those given (each must have data in the store), else every chain with
    blocks of known height."""
    have = [
        str(r[0])
        for r in con.execute(
            "SELECT DISTINCT chain FROM blocks WHERE height IS NOT NULL ORDER BY chain"
        ).fetchall()
    ]
    if chains is None:
        return have
    out: list[str] = []
    for c in chains:
        get_chain(c)  # InvalidInput for an unknown chain
        if c not in have:
            raise NotFound(
                f"no {c} data in the store", f"ingest it first (the store has: {', '.join(have) or 'none'})"
            )
        if c not in out:
            out.append(c)
    return out


def last_tips(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], int]:
    """(chain, detector) -> the tip the last run of that detector on that chain saw."""
    out: dict[tuple[str, str], int] = {}
    for (tips,) in con.execute("SELECT tips FROM detector_runs ORDER BY run_id").fetchall():
        for chain, t in json.loads(tips).items():
            for det in t["detectors"]:
                out[(chain, det)] = int(t["tip"])
    return out


def run_detectors(
    con: duckdb.DuckDBPyConnection,
    detectors: Sequence[str] | None = None,
    chains: Sequence[str] | None = None,
    since_height: int | None = None,
    params: Overrides | None = None,
    progress: ProgressFn | None = None,
    prices: Mapping[str, float] | None = None,
    actor: Principal | str = SYSTEM_ACTOR,
) -> RunReport:
    """Run ``detectors`` (names; None: every one) over ``chains`` (None: every chain of the store) from
    ``since_height`` (None: incrementally, module docstring) with parameter overrides ``params``
    (detector -> parameter -> value, checked) and reference ``prices`` (USD per coin), and store the
    alerts in one transaction. ``actor`` is recorded in the audit log (``detect.run``)."""
    if since_height is not None and since_height < 0:
        raise InvalidInput(f"--since {since_height} is negative", "give a block height of 0 or more")
    dets = registry.get(detectors)
    overrides = check_overrides(registry.discover(), params or {}, "parameters")
    names = store_chains(con, chains)
    previous = last_tips(con)
    started = time.time()
    report = RunReport(0, started, 0.0, since_height)
    batches: list[tuple[DetectorCount, list[Alert]]] = []
    tips: dict[str, dict[str, Any]] = {}
    for chain in names:
        family = get_chain(chain).family
        tip = stored_tip(con, chain)
        todo = [d for d in dets if family in d.families]
        since = {
            d.name: since_height if since_height is not None else previous.get((chain, d.name), -1) + 1
            for d in todo
        }
        todo = [d for d in todo if tip is not None and since[d.name] <= tip]
        status = "run" if todo else ("up to date" if any(family in d.families for d in dets) else "")
        cr = ChainRun(chain, family, tip, status or "no detector for this family")
        report.chains.append(cr)
        if not todo:
            continue
        ctx = StoreContext(con, chain, 0, {}, prices or DEFAULT_PRICES_USD)
        t0 = time.perf_counter()
        if family == "bitcoin":
            ctx.utxo_view()
        else:
            ctx.transfers()
        cr.load_seconds = time.perf_counter() - t0
        for i, det in enumerate(todo):
            if progress is not None:
                progress(chain, det.name, i, len(todo))
            count, alerts = _run_one(ctx, det, chain, since[det.name], effective(det, overrides))
            batches.append((count, alerts))
            report.detectors.append(count)
        if progress is not None:
            progress(chain, "", len(todo), len(todo))
        tips[chain] = {"tip": tip, "detectors": [d.name for d in todo]}
    with atomic(con):
        run_id = next_id(con, "detector_runs", "run_id")
        report.run_id = run_id
        for count, alerts in batches:
            _store(con, run_id, count, alerts, actor)
        report.seconds = time.time() - started
        con.execute(
            "INSERT INTO detector_runs VALUES (?, to_timestamp(?), now(), ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                started,
                canonical_json(names),
                canonical_json([d.name for d in dets]),
                since_height,
                canonical_json(tips),
                canonical_json(report.totals()),
                report.seconds,
            ],
        )
        summary = report.as_json()
        audit.append(
            con,
            actor,
            "detect.run",
            f"detector_run:{run_id}",
            {"detectors": [d.name for d in dets], "chains": names, "since_height": since_height},
            audit.digest({k: v for k, v in summary.items() if k != "seconds"}),
        )
    return report


def _run_one(
    ctx: StoreContext, det: Detector, chain: str, since: int, params: dict[str, Any]
) -> tuple[DetectorCount, list[Alert]]:
    c = ctx.with_params(params)
    c.since_height = since
    t0 = time.perf_counter()
    alerts = list(det.run(c))
    count = DetectorCount(chain, det.name, since, time.perf_counter() - t0, len(alerts))
    for a in alerts:  # a detector breaking these rules is a bug of that detector
        if not isinstance(a, Alert) or a.detector != det.name or a.chain != chain:
            raise RuntimeError(f"detector {det.name} yielded {a!r}: not an Alert of {det.name} on {chain}")
    return count, alerts


# --- storing ---------------------------------------------------------------------------------------------

_COLUMNS = (
    "alert_id, dedup_key, detector, typology, chain, severity, score, addresses, txids, entities, "
    "window_start, window_end, amount, asset, explanation, evidence"
)
_TYPES = {"alert_id": pa.int64(), "score": pa.float64(), "window_start": pa.int64(), "window_end": pa.int64()}


def _plain(o: Any) -> Any:
    """NumPy scalars and arrays (what vectorised detectors hold) as plain JSON values."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, set | frozenset):
        return sorted(o)
    raise TypeError(f"{type(o).__name__} is not JSON")


def _json(obj: Any) -> str:
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_plain
    )


def _row(alert_id: int, a: Alert) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "dedup_key": a.dedup_key,
        "detector": a.detector,
        "typology": a.typology,
        "chain": a.chain,
        "severity": a.severity,
        "score": float(a.score),
        "addresses": _json([str(x) for x in a.addresses]),
        "txids": _json([str(x) for x in a.txids]),
        "entities": _json([int(e) for e in a.entities]),
        "window_start": int(a.window_start),
        "window_end": int(a.window_end),
        "amount": None if a.amount is None else str(int(a.amount)),
        "asset": a.asset,
        "explanation": a.explanation,
        "evidence": _json(dict(a.evidence)),
    }


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> pa.Table:
    return pa.table({c: pa.array([r[c] for r in rows], type=_TYPES.get(c, pa.string())) for c in columns})


def _match(
    alerts: list[Alert], by_key: dict[str, tuple[int, str]], count: DetectorCount
) -> tuple[dict[int, tuple[Alert, bool]], list[Alert]]:
    """Stored alert id -> (the alert that falls on it, whether it grew), and the alerts to raise."""
    matched: dict[int, tuple[Alert, bool]] = {}
    fresh: list[Alert] = []
    for a in sorted(alerts, key=lambda x: -len(x.txids)):  # the largest of a family first
        hit = by_key.get(a.dedup_key)
        grew = False
        if hit is None:
            hit = next((by_key[k] for k in a.related_keys() if k in by_key), None)
            grew = hit is not None
        if hit is None:
            fresh.append(a)
        elif hit[0] in matched:
            count.merged += 1
        else:
            matched[hit[0]] = (a, grew)
    claimed: set[str] = set()
    raise_: list[Alert] = []
    for a in fresh:
        if a.dedup_key in claimed:
            count.merged += 1
            continue
        claimed.add(a.dedup_key)
        claimed.update(a.related_keys())
        raise_.append(a)
    return matched, raise_


def _store(
    con: duckdb.DuckDBPyConnection,
    run_id: int,
    count: DetectorCount,
    alerts: list[Alert],
    actor: Principal | str,
) -> None:
    rows = con.execute(
        "SELECT alert_id, dedup_key, status, json_array_length(txids) FROM alerts "
        "WHERE chain = ? AND detector = ?",
        [count.chain, count.detector],
    ).fetchall()
    by_key = {str(k): (int(i), str(s)) for i, k, s, _ in rows}
    sizes = {int(i): int(n) for i, _, _, n in rows}
    status_of = {int(i): str(s) for i, _, s, _ in rows}
    matched, fresh = _match(alerts, by_key, count)
    who = actor.user_name if isinstance(actor, Principal) else actor
    uid = actor.user_id if isinstance(actor, Principal) else None
    events: list[dict[str, Any]] = []
    pending: list[audit.Pending] = []
    seen = [i for i, (_, grew) in matched.items() if not grew]
    count.seen = len(seen)
    if seen:
        con.execute(
            "UPDATE alerts SET last_seen_run = ? WHERE alert_id IN (SELECT unnest(?))", [run_id, seen]
        )
    grown: list[dict[str, Any]] = []
    for alert_id, (a, grew) in matched.items():
        if not grew:
            continue
        status = status_of[alert_id]
        row = _row(alert_id, a)
        row["status"], row["status_reason"] = status, None
        if status == "dismissed":
            reason = (
                f"reopened by detect run {run_id}: the pattern grew from {sizes[alert_id]} to "
                f"{len(a.txids)} transactions"
            )
            row["status"], row["status_reason"] = "new", reason
            seq = _next_seq(con, alert_id)
            events.append(_event(alert_id, seq, uid, who, "dismissed", "new", reason))
            params = {"from": "dismissed", "to": "new", "reason": reason, "run_id": run_id}
            pending.append((actor, "alert.status", f"alert:{alert_id}", params, audit.digest(row)))
            count.reopened += 1
        grown.append(row)
    count.updated = len(grown)
    if grown:
        cols = [*_COLUMNS.split(", "), "status", "status_reason"]
        sets = ", ".join(
            f"{c} = g.{c}"
            for c in cols
            if c not in ("alert_id", "detector", "chain", "status_reason", "status")
        )
        with registered(con, f"_grown_{uuid.uuid4().hex}", _table(grown, cols)) as view:
            con.execute(
                f"""UPDATE alerts SET {sets}, last_seen_run = {int(run_id)}, updated_at = now(),
                       status = g.status,
                       status_reason = CASE WHEN g.status_reason IS NULL THEN alerts.status_reason
                                            ELSE g.status_reason END
                    FROM {view} g WHERE alerts.alert_id = g.alert_id"""
            )
    if fresh:
        first_id = next_id(con, "alerts", "alert_id")
        new_rows = [_row(first_id + k, a) for k, a in enumerate(fresh)]
        reason = f"raised by detect run {run_id}"
        events += [_event(r["alert_id"], 1, uid, who, None, "new", reason) for r in new_rows]
        with registered(con, f"_new_{uuid.uuid4().hex}", _table(new_rows, _COLUMNS.split(", "))) as view:
            con.execute(
                f"""INSERT INTO alerts SELECT {_COLUMNS}, 'new', NULL, {int(run_id)}, {int(run_id)},
                    now(), now() FROM {view} ORDER BY alert_id"""
            )
    count.raised = len(fresh)
    if events:
        cols = ["alert_id", "seq", "user_id", "who", "from_status", "to_status", "reason"]
        table = pa.table(
            {
                c: pa.array(
                    [e[c] for e in events],
                    type=pa.int64() if c in ("alert_id", "seq", "user_id") else pa.string(),
                )
                for c in cols
            }
        )
        with registered(con, f"_events_{uuid.uuid4().hex}", table) as view:
            con.execute(
                f"""INSERT INTO alert_events
                    (alert_id, seq, user_id, who, changed_at, from_status, to_status, reason)
                    SELECT alert_id, seq, user_id, who, now(), from_status, to_status, reason FROM {view}"""
            )
    if pending:
        audit.append_many(con, pending)


def _next_seq(con: duckdb.DuckDBPyConnection, alert_id: int) -> int:
    return int(
        scalar(con, "SELECT coalesce(max(seq), 0) + 1 FROM alert_events WHERE alert_id = ?", [alert_id])
    )


def _event(
    alert_id: int, seq: int, uid: int | None, who: str, old: str | None, new: str, reason: str | None
) -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "seq": seq,
        "user_id": uid,
        "who": who,
        "from_status": old,
        "to_status": new,
        "reason": reason,
    }
