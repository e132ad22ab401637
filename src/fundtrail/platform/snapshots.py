"""Case snapshots: a trace or a screening saved in a case with everything needed to run it again.

A snapshot records its **parameters** (a trace: the whole :class:`~fundtrail.tracing.engine.TraceRequest`;
a screening: the chain, the items, the asset and the risk policy's YAML text with its source name, so a
changed policy file or a new fundtrail default cannot change a re-run silently), the **data it ran on**
(the chain's stored tip: height and block hash) and the **result** (the JSON of ``fundtrail trace --json``,
or the list of ``fundtrail screen --json`` results) with its digest.

:func:`rerun_snapshot` runs the same library call again (the functions behind ``fundtrail trace`` and
``fundtrail screen``) and compares the results without their ``as_of`` (the tip, reported separately):
``same`` says whether the answer is unchanged, ``tip_moved`` whether the store's tip differs from the
snapshot's. On unchanged data a re-run gives the same result, byte for byte in canonical JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

from fundtrail.chains.registry import CHAINS
from fundtrail.chains.registry import chain as get_chain
from fundtrail.errors import CorruptData, InvalidInput, NotFound
from fundtrail.platform import audit
from fundtrail.platform.common import JSON, atomic, canonical_json, check_text, iso, iso_of, now, parse_id
from fundtrail.platform.principal import Principal, require
from fundtrail.platform.visibility import access, writable
from fundtrail.screening.policy import DEFAULT_POLICY, parse_policy
from fundtrail.screening.screen import Screener
from fundtrail.store.db import first, scalar
from fundtrail.tracing.engine import TraceRequest, trace
from fundtrail.tracing.model import Limits

KINDS = ("trace", "screen")
MAX_ITEMS = 10_000  # items of one screening snapshot
_LIMIT_KEYS = ("hops", "min_amount", "until", "since", "max_cluster_size")
_TRACE_KEYS = ("chain", "seed", "direction", "policy", "by", "asset", "amount", "start", "limits")


def chain_tip(con: duckdb.DuckDBPyConnection, chain: str) -> JSON:
    """The highest stored block of ``chain``: ``{"chain", "height", "hash"}`` (nulls when none, and for a
    chain fundtrail only has labels of)."""
    c = CHAINS.get(chain)
    row = first(
        con,
        "SELECT height, hash FROM blocks WHERE chain = ? ORDER BY height DESC NULLS LAST LIMIT 1",
        [chain],
    )
    if c is None or row is None:
        return {"chain": chain, "height": None, "hash": None}
    prefix = "" if c.family == "bitcoin" else "0x"
    return {"chain": c.name, "height": row[0], "hash": prefix + bytes(row[1]).hex()}


# --- parameters ------------------------------------------------------------------------------------------


def trace_params(req: TraceRequest) -> JSON:
    """A trace request as JSON (what a snapshot records)."""
    return {
        "chain": req.chain,
        "seed": req.seed,
        "direction": req.direction,
        "policy": req.policy,
        "by": req.by,
        "asset": req.asset,
        "amount": req.amount,
        "start": req.start,
        "limits": {k: getattr(req.limits, k) for k in _LIMIT_KEYS},
    }


def trace_request(params: JSON) -> TraceRequest:
    """The trace request a snapshot recorded, checked strictly."""
    if set(params) != set(_TRACE_KEYS) or not isinstance(params.get("limits"), dict):
        raise CorruptData("snapshot parameters are not a trace request", "the snapshot was changed")
    lim = params["limits"]
    if set(lim) != set(_LIMIT_KEYS):
        raise CorruptData("snapshot trace limits are malformed", "the snapshot was changed")
    return TraceRequest(
        chain=params["chain"],
        seed=params["seed"],
        direction=params["direction"],
        policy=params["policy"],
        limits=Limits(**lim),
        by=params["by"],
        asset=params["asset"],
        amount=params["amount"],
        start=params["start"],
    )


def default_policy_text() -> str:
    return resources.files("fundtrail.screening").joinpath(DEFAULT_POLICY).read_text(encoding="utf-8")


def _screen(con: duckdb.DuckDBPyConnection, params: JSON) -> list[JSON]:
    policy = parse_policy(params["policy_yaml"], params["policy_source"])
    screener = Screener(con, policy, asset=params["asset"])
    results = list(screener.screen_many(params["items"], params["chain"]))
    for r in results:
        if "error" in r:
            raise InvalidInput(f"cannot screen {r['input']!r}: {r['error']}", "drop or fix that item")
    return results


# --- saving ----------------------------------------------------------------------------------------------


def _save(
    con: duckdb.DuckDBPyConnection,
    principal: Principal,
    case_id: int,
    kind: str,
    title: str | None,
    chain: str,
    params: JSON,
    result: Any,
) -> JSON:
    tip = chain_tip(con, chain)
    rd = audit.digest(result)
    with atomic(con):
        sid = int(
            scalar(
                con,
                "SELECT coalesce(max(snapshot_id), 0) + 1 FROM case_snapshots WHERE case_id = ?",
                [case_id],
            )
        )
        t = now()
        con.execute(
            "INSERT INTO case_snapshots VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                case_id,
                sid,
                kind,
                title,
                chain,
                canonical_json(params),
                tip["height"],
                tip["hash"],
                canonical_json(result),
                rd,
                principal.user_name,
                t,
            ],
        )
        con.execute("UPDATE cases SET updated_at = ? WHERE case_id = ?", [t, case_id])
        out = {
            "snapshot_id": sid,
            "case_id": case_id,
            "kind": kind,
            "title": title,
            "chain": chain,
            "params": params,
            "tip": {"height": tip["height"], "hash": tip["hash"]},
            "result_digest": rd,
            "created_by": principal.user_name,
            "created_at": iso_of(t),
            "result": result,
        }
        logged = {k: v for k, v in params.items() if k != "policy_yaml"}
        audit.append(con, principal, f"case.snapshot.{kind}", f"case:{case_id}/snapshot:{sid}", logged, rd)
    return out


def snapshot_trace(
    con: duckdb.DuckDBPyConnection,
    principal: Principal,
    case_id: int | str,
    req: TraceRequest,
    db_path: Path | None = None,
    title: str | None = None,
) -> JSON:
    """Run a trace (as ``fundtrail trace``) and save it in the case with its parameters and tip.
    ``db_path`` lets the tracer use its graph cache beside the store."""
    require(principal, "query")
    name = check_text(title, "snapshot title", 200) if title else None
    acc = writable(con, principal, case_id)
    result = trace(con, req, db_path)
    return _save(
        con, principal, acc.case_id, "trace", name, get_chain(req.chain).name, trace_params(req), result
    )


def snapshot_screen(
    con: duckdb.DuckDBPyConnection,
    principal: Principal,
    case_id: int | str,
    chain: str,
    items: Sequence[str],
    policy_yaml: str | None = None,
    policy_source: str = "snapshot",
    asset: str | None = None,
    title: str | None = None,
) -> JSON:
    """Screen addresses or transactions (as ``fundtrail screen``) and save the results in the case.
    ``policy_yaml``: the risk policy's text (default: the shipped policy), ``policy_source`` its name."""
    require(principal, "screen")
    name = check_text(title, "snapshot title", 200) if title else None
    given = [str(i).strip() for i in items]
    if not given or len(given) > MAX_ITEMS:
        raise InvalidInput(f"{len(given):,} items to screen", f"give 1 to {MAX_ITEMS:,} addresses or txids")
    acc = writable(con, principal, case_id)
    text, source = (
        (policy_yaml, policy_source) if policy_yaml is not None else (default_policy_text(), "default")
    )
    parse_policy(text, source)  # a bad policy is an error before anything runs
    params = {
        "chain": chain.strip(),
        "items": given,
        "asset": asset,
        "policy_yaml": text,
        "policy_source": source,
    }
    result = _screen(con, params)
    return _save(con, principal, acc.case_id, "screen", name, chain.strip(), params, result)


# --- reading and re-running ------------------------------------------------------------------------------


def _row(con: duckdb.DuckDBPyConnection, case_id: int, snapshot_id: int | str) -> tuple[Any, ...]:
    sid = parse_id(snapshot_id, "snapshot id")
    row = first(
        con,
        "SELECT snapshot_id, kind, title, chain, params, tip_height, tip_hash, result, result_digest, "
        "created_by, epoch_us(created_at) FROM case_snapshots WHERE case_id = ? AND snapshot_id = ?",
        [case_id, sid],
    )
    if row is None:
        raise NotFound(f"case {case_id} has no snapshot {sid}", f"see `fundtrail case show {case_id}`")
    return row


def _snapshot(case_id: int, row: tuple[Any, ...]) -> JSON:
    sid, kind, title, chain, params, height, h, result, rd, by, created = row
    return {
        "snapshot_id": int(sid),
        "case_id": case_id,
        "kind": kind,
        "title": title,
        "chain": chain,
        "params": json.loads(params),
        "tip": {"height": height, "hash": h},
        "result_digest": rd,
        "created_by": by,
        "created_at": iso(created),
        "result": json.loads(result),
    }


def get_snapshot(
    con: duckdb.DuckDBPyConnection, principal: Principal, case_id: int | str, snapshot_id: int | str
) -> JSON:
    """A snapshot with its result."""
    acc = access(con, principal, case_id)
    out = _snapshot(acc.case_id, _row(con, acc.case_id, snapshot_id))
    audit.append(
        con,
        principal,
        "case.snapshot.show",
        f"{acc.target}/snapshot:{out['snapshot_id']}",
        {},
        out["result_digest"],
    )
    return out


def comparable(kind: str, result: Any) -> Any:
    """A result without what names the data it ran on (``as_of``): what a re-run must reproduce."""
    if kind == "trace" and isinstance(result, dict):
        return {k: v for k, v in result.items() if k != "as_of"}
    if kind == "screen" and isinstance(result, list):
        return [{k: v for k, v in r.items() if k != "as_of"} if isinstance(r, dict) else r for r in result]
    return result


def rerun_snapshot(
    con: duckdb.DuckDBPyConnection,
    principal: Principal,
    case_id: int | str,
    snapshot_id: int | str,
    db_path: Path | None = None,
) -> JSON:
    """Run a snapshot's trace or screening again with its recorded parameters and compare:
    ``{"snapshot_id", "kind", "same", "saved_digest", "rerun_digest", "saved_tip", "current_tip",
    "tip_moved", "differences", "result"}`` (digests of the results without ``as_of``)."""
    acc = access(con, principal, case_id)
    row = _row(con, acc.case_id, snapshot_id)
    snap = _snapshot(acc.case_id, row)
    kind, params = snap["kind"], snap["params"]
    if kind == "trace":
        require(principal, "query")
        new: Any = trace(con, trace_request(params), db_path)
    elif kind == "screen":
        require(principal, "screen")
        new = _screen(con, params)
    else:
        raise CorruptData(
            f"snapshot {snap['snapshot_id']} has unknown kind {kind!r}", "the snapshot was changed"
        )
    old_c, new_c = comparable(kind, snap["result"]), comparable(kind, new)
    current = chain_tip(con, snap["chain"])
    saved_tip = {"chain": snap["chain"], **snap["tip"]}
    out = {
        "snapshot_id": snap["snapshot_id"],
        "case_id": acc.case_id,
        "kind": kind,
        "same": canonical_json(old_c) == canonical_json(new_c),
        "saved_digest": audit.digest(old_c),
        "rerun_digest": audit.digest(new_c),
        "saved_tip": saved_tip,
        "current_tip": current,
        "tip_moved": (saved_tip["height"], saved_tip["hash"]) != (current["height"], current["hash"]),
        "differences": _differences(old_c, new_c),
        "result": new,
    }
    audit.append(
        con,
        principal,
        "case.snapshot.rerun",
        f"{acc.target}/snapshot:{snap['snapshot_id']}",
        {"same": out["same"], "tip_moved": out["tip_moved"]},
        audit.digest(new),
    )
    return out


def _differences(old: Any, new: Any) -> list[str]:
    """Which top-level fields (a trace) or items (a screening) differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        return sorted(
            k for k in set(old) | set(new) if canonical_json(old.get(k)) != canonical_json(new.get(k))
        )
    if isinstance(old, list) and isinstance(new, list):
        n = max(len(old), len(new))
        return [
            f"item {i}"
            for i in range(n)
            if i >= len(old) or i >= len(new) or canonical_json(old[i]) != canonical_json(new[i])
        ]
    return [] if canonical_json(old) == canonical_json(new) else ["result"]
