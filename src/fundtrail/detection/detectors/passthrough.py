"""Rapid pass-through layering (docs/detectors/passthrough.md): an address that is not a service collects
value from several senders and sends (almost) all of it on within a short time, keeping little balance,
repeatedly or for a large amount. Account chains.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from fundtrail.detection.account_common import F64, I64, AccountArrays, account_arrays, distinct_count
from fundtrail.detection.base import Alert, DetectContext, Param, cluster_ids, make_alert, merged_params

PARAMS = (
    Param("window_seconds", 7_200, "seconds", "longest gap between successive movements of one episode"),
    Param("min_share", 0.9, "share", "outflow of an episode at least this share of its inflow"),
    Param("min_senders", 2, "count", "distinct senders whose value an episode collects"),
    Param("min_recipients", 2, "count", "distinct addresses an episode pays"),
    Param("min_usd", 5_000, "USD", "inflow of one episode that alone makes it reportable"),
    Param("min_episodes", 3, "count", "qualifying episodes of one address that make it reportable"),
    Param("max_service_share", 0.5, "share", "outflow to services above this: a swept deposit address"),
    Param("max_episode_seconds", 21_600, "seconds", "longest episode, first receipt to last payment"),
)


def episodes(a: AccountArrays, window: int) -> tuple[I64, I64, I64, I64, F64, I64, I64]:
    """Per (address, asset), maximal runs of its movements with gaps <= ``window``: returns the movement
    rows sorted (address, asset, chain order), their signed direction (+1 in, -1 out), session id per
    movement, the address of each movement, the signed amounts, the counterparty and the transfer row."""
    n = len(a.frm)
    rows = np.concatenate([np.arange(n), np.arange(n)])
    addr = np.concatenate([a.to, a.frm])
    other = np.concatenate([a.frm, a.to])
    sign = np.concatenate([np.ones(n, np.int64), -np.ones(n, np.int64)])
    asset = np.concatenate([a.asset, a.asset])
    order = np.lexsort((rows, asset, addr))
    rows, addr, other, sign, asset = rows[order], addr[order], other[order], sign[order], asset[order]
    tm = a.time[rows]
    new = np.ones(len(rows), dtype=np.bool_)
    if len(rows):
        new[1:] = (addr[1:] != addr[:-1]) | (asset[1:] != asset[:-1]) | (np.diff(tm) > window)
    session = np.cumsum(new) - 1
    signed = a.amount[rows] * sign
    return rows, sign, session, addr, signed, other, asset


class Passthrough:
    name = "passthrough"
    typology = "fast_cashout"
    families = frozenset({"evm", "tron"})
    params = PARAMS
    summary = "value collected from several senders and sent on within hours, little balance kept"

    def run(self, ctx: DetectContext) -> Iterator[Alert]:
        a = account_arrays(ctx)
        if len(a.frm) == 0:
            return
        p = merged_params(PARAMS, ctx)
        share = float(p["min_share"])
        rows, sign, session, addr, signed, other, asset = episodes(a, int(p["window_seconds"]))
        n_s = int(session[-1]) + 1
        inflow = np.bincount(session, np.where(sign > 0, signed, 0.0), minlength=n_s)
        outflow = -np.bincount(session, np.where(sign < 0, signed, 0.0), minlength=n_s)
        to_svc = np.where((sign < 0) & a.service[other], -signed, 0.0)
        out_svc = np.bincount(session, to_svc, minlength=n_s)
        # balance before each session: running sum over the (address, asset) group
        group_new = np.ones(len(rows), dtype=np.bool_)
        group_new[1:] = (addr[1:] != addr[:-1]) | (asset[1:] != asset[:-1])
        csum = np.cumsum(signed)
        group_start = np.maximum.accumulate(np.where(group_new, np.arange(len(rows)), 0))
        before_row = csum - signed - np.where(group_start > 0, csum[group_start - 1], 0.0)
        first_of = np.flatnonzero(np.r_[True, session[1:] != session[:-1]])
        start_bal = before_row[first_of]
        end_bal = start_bal + inflow - outflow
        s_addr = addr[first_of]
        # distinct senders per session
        ins = sign > 0
        senders = distinct_count(session[ins], other[ins], n_s)
        outs = ~ins
        recipients = distinct_count(session[outs], other[outs], n_s)
        usd_in = np.bincount(session, np.where(ins, a.usd[rows], 0.0), minlength=n_s)
        last_of = np.r_[first_of[1:], len(rows)] - 1
        duration = a.time[rows[last_of]] - a.time[rows[first_of]]
        ok = (
            (inflow > 0)
            & (outflow >= share * inflow)
            & (np.abs(start_bal) <= (1 - share) * inflow)
            & (end_bal <= (1 - share) * inflow)
            & (senders >= int(p["min_senders"]))
            & (recipients >= int(p["min_recipients"]))
            & (out_svc <= float(p["max_service_share"]) * outflow)
            & ~a.service[s_addr]
            & (duration <= int(p["max_episode_seconds"]))
        )
        cand = np.flatnonzero(ok)
        if not len(cand):
            return
        per_addr: dict[int, list[int]] = {}
        for s in cand.tolist():
            per_addr.setdefault(int(s_addr[s]), []).append(s)
        bounds = np.r_[first_of, len(rows)]
        for aid, sess in per_addr.items():
            big = [s for s in sess if usd_in[s] >= float(p["min_usd"])]
            if len(sess) < int(p["min_episodes"]) and not big:
                continue
            chosen = sess if len(sess) >= int(p["min_episodes"]) else big
            mv = np.concatenate([np.arange(bounds[s], bounds[s + 1]) for s in chosen])
            alert = _alert(ctx, a, aid, chosen, mv, rows, sign, other, usd_in, senders, p)
            if alert is not None:
                yield alert


def _alert(
    ctx: DetectContext,
    a: AccountArrays,
    aid: int,
    chosen: list[int],
    mv: I64,
    rows: I64,
    sign: I64,
    other: I64,
    usd_in: Any,
    senders: Any,
    p: dict[str, Any],
) -> Alert | None:
    tr = rows[mv]
    if int(a.height[tr].max()) < ctx.since_height:
        return None
    in_rows, out_rows = tr[sign[mv] > 0], tr[sign[mv] < 0]
    asset = a.assets[int(a.asset[tr[0]])]
    received, sent = a.exact(in_rows), a.exact(out_rows)
    usd = float(usd_in[chosen].sum())
    t0, t1 = int(a.time[tr].min()), int(a.time[tr].max())
    dwell = max(int(a.time[r]) for r in out_rows) - min(int(a.time[r]) for r in in_rows)
    n_senders = int(senders[chosen].max())
    recips = sorted({int(x) for x in other[mv][sign[mv] < 0]})
    score = 45.0 + min(20.0, 10.0 * (len(chosen) - 1)) + min(20.0, 10.0 * np.log10(max(usd, 1.0) / 5_000 + 1))
    score += min(15.0, 3.0 * n_senders)
    score = float(min(100.0, score))
    shown = ctx.address_texts([aid, *recips])
    return make_alert(
        "passthrough",
        "fast_cashout",
        ctx,
        score=score,
        addresses=shown,
        txids=a.hashes(tr),
        window=(t0, t1),
        amount=sent,
        asset=asset,
        explanation=(
            f"{shown[0]} received {received} base units of {asset} (about USD {usd:,.0f}) from "
            f"{n_senders} senders and sent {sent} on to {len(recips)} addresses within "
            f"{dwell / 60:.0f} minutes, in {len(chosen)} episode(s) with gaps under "
            f"{int(p['window_seconds']) // 60} minutes, keeping less than "
            f"{(1 - float(p['min_share'])) * 100:.0f} % of it"
        ),
        entities=cluster_ids(ctx, [aid]),
        evidence={
            "episodes": len(chosen),
            "received": str(received),
            "sent": str(sent),
            "usd_in": round(usd, 2),
            "senders": n_senders,
            "recipients": len(recips),
            "dwell_seconds": dwell,
        },
    )


DETECTOR = Passthrough()
