"""Structuring (docs/detectors/structuring.md): an address sending many transfers, each just under a
reporting threshold (90-100 % of it), to several recipients within days. The threshold is chosen per
jurisdiction; amounts are valued in USD at the reference prices. Account chains."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from fundtrail.detection.account_common import I64, AccountArrays, account_arrays
from fundtrail.detection.base import Alert, DetectContext, Param, cluster_ids, make_alert, merged_params
from fundtrail.errors import InvalidInput

# jurisdiction -> (threshold in local currency, the currency, the FX parameter giving USD per unit)
JURISDICTIONS: dict[str, tuple[int, str, str]] = {
    "HK": (8_000, "HKD", "usd_per_hkd"),  # travel rule for virtual-asset transfers (AMLO, FATF R.16)
    "US3K": (3_000, "USD", ""),  # funds-transfer recordkeeping (31 CFR 1010.410)
    "US10K": (10_000, "USD", ""),  # currency transaction reports
    "EU": (1_000, "EUR", "usd_per_eur"),  # transfer-of-funds regulation threshold
}

PARAMS = (
    Param("jurisdiction", "HK,US3K,US10K,EU", "list", "reporting thresholds watched: HK, US3K, US10K, EU"),
    Param("usd_per_hkd", 1 / 7.8, "USD per HKD", "exchange rate for the HK threshold"),
    Param("usd_per_eur", 1.08, "USD per EUR", "exchange rate for the EU threshold"),
    Param(
        "band_low", 0.9, "share", "a transfer counts from this share of the threshold up to (not incl.) it"
    ),
    Param("min_transfers", 5, "transfers", "transfers in the band within the window"),
    Param("window_seconds", 7 * 86_400, "seconds", "sliding window the transfers must fall in"),
    Param("min_recipients", 3, "count", "distinct recipients of the transfers in the band"),
    Param("min_band_share", 0.5, "share", "band transfers among all the sender's transfers in their span"),
)


def thresholds_usd(ctx: DetectContext) -> dict[str, float]:
    """The watched jurisdictions' thresholds in USD, refusing unknown names."""
    p = merged_params(PARAMS, ctx)
    raw = str(p["jurisdiction"])
    out: dict[str, float] = {}
    for name in (x.strip().upper() for x in raw.split(",") if x.strip()):
        if name not in JURISDICTIONS:
            raise InvalidInput(
                f"unknown structuring jurisdiction {name!r}",
                f"use a comma-separated list of {', '.join(JURISDICTIONS)}",
            )
        amount, _, fx = JURISDICTIONS[name]
        out[name] = amount * (float(p[fx]) if fx else 1.0)
    if not out:
        raise InvalidInput("no structuring jurisdiction given", f"name one of {', '.join(JURISDICTIONS)}")
    return out


def recurring(a: AccountArrays) -> Any:
    """Transfers whose (sender, recipient, asset, exact amount) occurs more than once: a salary or a
    standing order paid again, which structuring does not look like."""
    n = len(a.frm)
    bits = a.amount.view(np.int64)  # equal floats: equal bits
    order = np.lexsort((bits, a.asset, a.to, a.frm))
    f, t, k, b = a.frm[order], a.to[order], a.asset[order], bits[order]
    same = (f[1:] == f[:-1]) & (t[1:] == t[:-1]) & (k[1:] == k[:-1]) & (b[1:] == b[:-1])
    dup = np.zeros(n, dtype=np.bool_)
    dup[1:] |= same
    dup[:-1] |= same
    out = np.empty(n, dtype=np.bool_)
    out[order] = dup
    return out


class Structuring:
    name = "structuring"
    typology = "structuring"
    families = frozenset({"evm", "tron"})
    params = PARAMS
    summary = "many transfers just under a reporting threshold to several recipients within days"

    def run(self, ctx: DetectContext) -> Iterator[Alert]:
        a = account_arrays(ctx)
        if len(a.frm) == 0:
            return
        limits = thresholds_usd(ctx)
        p = merged_params(PARAMS, ctx)
        low = float(p["band_low"])
        need = int(p["min_transfers"])
        window = int(p["window_seconds"])
        base = ~a.service[a.frm] & ~recurring(a) & np.isfinite(a.usd)
        best: dict[int, tuple[int, str, I64]] = {}  # sender -> (count, jurisdiction, rows)
        for name, limit in limits.items():
            rows = np.flatnonzero(base & (a.usd >= low * limit) & (a.usd < limit))
            for sender, picked in _runs(a, rows, need, window):
                if len(picked) > best.get(sender, (0, "", picked))[0]:
                    best[sender] = (len(picked), name, picked)
        by_sender = np.lexsort((a.time, a.frm))
        senders_sorted = a.frm[by_sender]
        for sender, (_, name, picked) in sorted(best.items()):
            lo, hi = np.searchsorted(senders_sorted, [sender, sender + 1])
            times = a.time[by_sender[lo:hi]]
            t0, t1 = int(a.time[picked].min()), int(a.time[picked].max())
            span = int(np.searchsorted(times, t1, side="right") - np.searchsorted(times, t0))
            if len(picked) < float(p["min_band_share"]) * span:
                continue
            alert = _alert(ctx, a, sender, name, limits[name], picked, int(p["min_recipients"]))
            if alert is not None:
                yield alert


def _runs(a: AccountArrays, rows: I64, need: int, window: int) -> Iterator[tuple[int, I64]]:
    """Per sender, its band transfers that lie in some window holding >= ``need`` of them."""
    if len(rows) < need:
        return
    order = np.lexsort((rows, a.frm[rows]))
    rows = rows[order]
    snd, tm = a.frm[rows], a.time[rows]
    rel = tm - tm.min()
    key = (snd.astype(np.int64) << 32) | rel
    end = np.searchsorted(key, key + window, side="right")
    count = end - np.arange(len(rows))
    hit = count >= need
    if not hit.any():
        return
    cover = np.zeros(len(rows) + 1, dtype=np.int64)
    np.add.at(cover, np.flatnonzero(hit), 1)
    np.add.at(cover, end[hit], -1)
    inside = np.cumsum(cover)[:-1] > 0
    for s in np.unique(snd[inside]).tolist():
        yield int(s), rows[inside & (snd == s)]


def _alert(
    ctx: DetectContext, a: AccountArrays, sender: int, name: str, limit: float, rows: I64, min_recipients: int
) -> Alert | None:
    recips = list(dict.fromkeys(int(x) for x in a.to[rows]))
    if len(recips) < min_recipients or int(a.height[rows].max()) < ctx.since_height:
        return None
    asset = a.assets[int(a.asset[rows[0]])]
    total = a.exact(rows)
    ratios = a.usd[rows] / limit
    to_exchanges = int(np.count_nonzero(a.exchange_ish(a.to[rows])))
    amount, cur, _ = JURISDICTIONS[name]
    score = 45.0 + min(25.0, 2.5 * (len(rows) - 5)) + min(15.0, 1.5 * len(recips))
    score += 15.0 * to_exchanges / len(rows)
    score = float(min(100.0, score))
    shown = ctx.address_texts([sender, *recips])
    t0, t1 = int(a.time[rows].min()), int(a.time[rows].max())
    return make_alert(
        "structuring",
        "structuring",
        ctx,
        score=score,
        addresses=shown,
        txids=a.hashes(rows),
        window=(t0, t1),
        amount=total,
        asset=asset,
        explanation=(
            f"{shown[0]} sent {len(rows)} transfers of {asset} each worth "
            f"{ratios.min() * 100:.1f}-{ratios.max() * 100:.1f} % of the {name} reporting threshold "
            f"({cur} {amount:,} = USD {limit:,.0f}) to {len(recips)} recipients "
            f"({to_exchanges} of the transfers to exchange deposits) within {(t1 - t0) / 3600:.1f} hours"
        ),
        entities=cluster_ids(ctx, [sender]),
        evidence={
            "jurisdiction": name,
            "threshold_usd": round(limit, 2),
            "transfers": len(rows),
            "recipients": len(recips),
            "to_exchanges": to_exchanges,
            "share_of_threshold": [round(float(r), 4) for r in ratios],
        },
    )


DETECTOR = Structuring()
