"""Trade disguise (docs/detectors/trade_disguise.md): young addresses paying each other regular,
invoice-like amounts at a steady cadence, with no other commercial footprint, the money ending at an
exchange. Account chains."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from fundtrail.detection.account_common import I64, AccountArrays, account_arrays, distinct_count
from fundtrail.detection.base import Alert, DetectContext, Param, cluster_ids, make_alert, merged_params

PARAMS = (
    Param("young_seconds", 30 * 86_400, "seconds", "both parties first seen at most this long before"),
    Param("min_transfers", 3, "transfers", "payments from one party to the other"),
    Param("round_units", 10, "whole units", "an invoice-like amount is a multiple of this many coins"),
    Param("max_amount_cv", 0.1, "ratio", "or the amounts vary by at most this coefficient of variation"),
    Param("max_gap_cv", 0.5, "ratio", "coefficient of variation of the gaps between payments (cadence)"),
    Param("max_other", 3, "count", "other counterparties of either party (exchanges not counted)"),
)


class TradeDisguise:
    name = "trade_disguise"
    typology = "trade_disguise"
    families = frozenset({"evm", "tron"})
    params = PARAMS
    summary = "young addresses paying each other regular invoice-like amounts, then cashing out"

    def run(self, ctx: DetectContext) -> Iterator[Alert]:
        a = account_arrays(ctx)
        if len(a.frm) == 0:
            return
        p = merged_params(PARAMS, ctx)
        ok = np.flatnonzero(~a.service[a.frm] & ~a.service[a.to] & (a.frm != a.to))
        order = ok[np.lexsort((ok, a.asset[ok], a.to[ok], a.frm[ok]))]
        f, t, k = a.frm[order], a.to[order], a.asset[order]
        new = np.r_[True, (f[1:] != f[:-1]) | (t[1:] != t[:-1]) | (k[1:] != k[:-1])]
        starts = np.flatnonzero(new)
        ends = np.r_[starts[1:], len(order)]
        big = (ends - starts) >= int(p["min_transfers"])
        others = _counterparties(a, ok)
        pairs: list[tuple[int, int, int, I64]] = []
        for s, e in zip(starts[big].tolist(), ends[big].tolist()):
            rows = order[s:e]
            payer, payee, asset = int(f[s]), int(t[s]), int(k[s])
            if _qualifies(ctx, a, rows, payer, payee, asset, others, p):
                pairs.append((payer, payee, asset, rows))
        yield from _groups(ctx, a, pairs, ok)


def _counterparties(a: AccountArrays, ok: I64) -> I64:
    """Distinct counterparties per address id (either direction, any asset; exchanges and deposit
    addresses not counted)."""
    rows = ok[~(a.exchange_ish(a.to[ok]) | a.exchange_ish(a.frm[ok]))]
    return distinct_count(np.r_[a.frm[rows], a.to[rows]], np.r_[a.to[rows], a.frm[rows]], len(a.service))


def _qualifies(
    ctx: DetectContext,
    a: AccountArrays,
    rows: I64,
    payer: int,
    payee: int,
    asset: int,
    others: I64,
    p: dict[str, Any],
) -> bool:
    t0 = int(a.time[rows[0]])
    young = int(p["young_seconds"])
    if a.first_seen[payer] < t0 - young or a.first_seen[payee] < t0 - young:
        return False
    gaps = np.diff(a.time[rows]).astype(np.float64)
    if len(gaps) < 2 or gaps.mean() <= 0 or gaps.std() > float(p["max_gap_cv"]) * gaps.mean():
        return False
    col = a.table.column("amount")
    dec_col = a.table.column("decimals")
    d = dec_col[int(rows[0])].as_py()
    amounts = [int(col[int(r)].as_py()) for r in rows]
    unit = int(p["round_units"]) * 10 ** int(d) if d is not None else 0
    x = np.array(amounts, dtype=np.float64)
    round_ok = unit > 0 and all(v % unit == 0 for v in amounts)
    if not round_ok and x.std() > float(p["max_amount_cv"]) * x.mean():
        return False
    limit = int(p["max_other"])
    return bool(int(others[payer]) - 1 <= limit and int(others[payee]) - 1 <= limit)


def _groups(
    ctx: DetectContext, a: AccountArrays, pairs: list[tuple[int, int, int, I64]], ok: I64
) -> Iterator[Alert]:
    """Chains of qualifying pairs (the fronts), kept when the money ends at an exchange."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for payer, payee, _, _ in pairs:
        parent[find(payer)] = find(payee)
    groups: dict[int, list[tuple[int, int, int, I64]]] = {}
    for pr in pairs:
        groups.setdefault(find(pr[0]), []).append(pr)
    for members in groups.values():
        fronts = list(dict.fromkeys(x for pr in members for x in pr[:2]))
        asset = members[0][2]
        cash = ok[np.isin(a.frm[ok], fronts) & a.exchange_ish(a.to[ok]) & (a.asset[ok] == asset)]
        if not len(cash):
            continue
        rows = np.concatenate([*(pr[3] for pr in members), cash])
        if int(a.height[rows].max()) < ctx.since_height:
            continue
        yield _alert(ctx, a, members, fronts, rows, cash)


def _alert(
    ctx: DetectContext,
    a: AccountArrays,
    members: list[tuple[int, int, int, I64]],
    fronts: list[int],
    rows: I64,
    cash: I64,
) -> Alert:
    asset = a.assets[members[0][2]]
    invoices = np.concatenate([pr[3] for pr in members])
    invoiced, cashed = a.exact(invoices), a.exact(cash)
    n = len(invoices)
    gaps = [float(np.diff(a.time[pr[3]]).mean()) for pr in members]
    score = float(min(100.0, 65.0 + min(25.0, 3.0 * n) + 10.0 * (len(fronts) - 2)))
    shown = ctx.address_texts(fronts)
    return make_alert(
        "trade_disguise",
        "trade_disguise",
        ctx,
        score=score,
        addresses=shown,
        txids=a.hashes(rows),
        window=(int(a.time[rows].min()), int(a.time[rows].max())),
        amount=invoiced,
        asset=asset,
        explanation=(
            f"{len(fronts)} young addresses with no other commercial counterparty paid each other {n} "
            f"invoice-like amounts of {asset} ({invoiced} base units) about every "
            f"{min(gaps) / 60:.0f}-{max(gaps) / 60:.0f} minutes; {cashed} base units then went to "
            f"exchange deposits in {len(cash)} transfers"
        ),
        entities=cluster_ids(ctx, fronts),
        evidence={"invoices": n, "fronts": len(fronts), "cashed_out": str(cashed), "mean_gap_seconds": gaps},
    )


DETECTOR = TradeDisguise()
