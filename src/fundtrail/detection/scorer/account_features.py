"""Per-transaction features of an account chain (see :mod:`.features`), from the chain's transfers in
chain order (``ctx.transfers()``, fee transfers excluded): each transfer gets local features (its own, and
its sender's and recipient's as entities), the flow neighbours are found with sorted searches (the
sender's last incoming transfer before it, the recipient's first outgoing one after it), and a
transaction is described by its main transfer (the largest in USD; withdrawals, which belong to no
transaction, only serve as neighbours and entity history)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fundtrail.detection.scorer.features import (
    F64,
    I64,
    FeatureTable,
    category_codes,
    cluster_sizes,
    log10p,
    trailing_zeros,
)

THRESHOLDS_USD = (1_000.0, 3_000.0, 10_000.0)  # reporting thresholds the gap feature measures against
DAY = 86_400
KINDS = ("native", "token", "internal", "withdrawal")

_ENTITY_WORDS = {
    "out_deg": "transfers sent (log10)",
    "in_deg": "transfers received (log10)",
    "counterparties": "distinct counterparties (log10)",
    "age": "age at this transfer (log10 seconds since first seen)",
    "cat": "labelled category group (-1 none; 0 exchange, 1 mixer, 2 risky, 3 bridge/defi, 4 service)",
    "cluster": "cluster size (log10 addresses)",
    "forward_ratio": "value sent over value received (USD, whole history)",
    "mean_out_usd": "mean size of what it sends (log10 USD)",
}
ACCOUNT_WORDS: dict[str, str] = {
    "kind": "transfer kind (0 native, 1 token, 2 internal, 3 withdrawal)",
    "is_stable": "moves a stablecoin",
    "log_usd": "amount (log10 USD at the reference prices)",
    "log_units": "amount (log10 whole units of the asset)",
    "unit_zeros": "trailing zeros of the amount in whole units",
    "threshold_gap": "gap below the next reporting threshold (share of it)",
    **{f"snd_{k}": f"sender's {w}" for k, w in _ENTITY_WORDS.items()},
    **{f"rcv_{k}": f"recipient's {w}" for k, w in _ENTITY_WORDS.items()},
    "snd_in_delay": "time since the sender was last funded (log10 seconds)",
    "rcv_out_delay": "time until the recipient sends on (log10 seconds)",
    "rcv_forward_day": "share of the amount the recipient sends on within a day",
    "n_transfers": "transfers in the transaction",
    "n_assets": "assets the transaction moves",
}
LOCAL = tuple(ACCOUNT_WORDS)
AGGREGATED = (
    "kind",
    "log_usd",
    "unit_zeros",
    "threshold_gap",
    "snd_age",
    "rcv_age",
    "snd_cat",
    "rcv_cat",
    "snd_in_delay",
    "rcv_out_delay",
    "rcv_forward_day",
    "rcv_out_deg",
)
NAMES = (*LOCAL, *(f"{p}_{f}" for p in ("par", "par2", "chi", "chi2") for f in AGGREGATED))


def _ints(col: pa.ChunkedArray, null: int = -1) -> I64:
    return np.asarray(pc.fill_null(pc.cast(col, pa.int64()), null).to_numpy(), dtype=np.int64)


def account_features(ctx: Any) -> FeatureTable:
    t: pa.Table = ctx.transfers()
    m = t.num_rows
    tx_id = _ints(t.column("tx_id"))
    time = _ints(t.column("time")).astype(np.float64)
    frm, to = _ints(t.column("from_id")), _ints(t.column("to_id"))
    dec = _ints(t.column("decimals")).astype(np.float64)
    dec[dec < 0] = np.nan
    raw = np.asarray(pc.cast(t.column("amount"), pa.float64()).to_numpy(), dtype=np.float64)
    units = raw / 10.0**dec
    assets = t.column("asset").to_pylist()
    prices = {a: float(ctx.prices.get(str(a).upper(), np.nan)) for a in set(assets)}
    price = np.array([prices[a] for a in assets], dtype=np.float64)
    usd = units * price
    kind = np.array(
        [KINDS.index(k) if k in KINDS else len(KINDS) for k in t.column("kind").to_pylist()], float
    )

    f: dict[str, F64] = {"kind": kind, "is_stable": (price == 1.0).astype(np.float64)}
    f["log_usd"] = log10p(usd)
    f["log_units"] = log10p(units)
    whole = np.where(np.abs(units - np.round(units)) <= 1e-9 * np.maximum(units, 1.0), np.round(units), 0.5)
    f["unit_zeros"] = trailing_zeros(whole)
    gap = np.full(m, np.nan)
    for thr in sorted(THRESHOLDS_USD, reverse=True):
        gap = np.where(usd < thr, (thr - usd) / thr, gap)
    f["threshold_gap"] = gap

    # entities
    ids = np.concatenate([frm, to])
    n_addr = int(max(ids.max(initial=-1) + 1, len(ctx.cluster_array()), 1))
    frm_i, to_i = np.where(frm >= 0, frm, n_addr), np.where(to >= 0, to, n_addr)  # n_addr: no address
    size = n_addr + 1
    out_deg = np.bincount(frm_i, minlength=size).astype(np.float64)
    in_deg = np.bincount(to_i, minlength=size).astype(np.float64)
    first = np.full(size, np.inf)
    np.minimum.at(first, frm_i, time)
    np.minimum.at(first, to_i, time)
    lo, hi = np.minimum(frm_i, to_i), np.maximum(frm_i, to_i)
    pairs = np.unique(lo * size + hi)
    cp = (np.bincount(pairs // size, minlength=size) + np.bincount(pairs % size, minlength=size)).astype(
        float
    )
    usd0 = np.nan_to_num(usd)
    sent, got = np.bincount(frm_i, usd0, size), np.bincount(to_i, usd0, size)
    mean_out = np.bincount(frm_i, np.nan_to_num(f["log_usd"]), size) / np.maximum(out_deg, 1.0)
    codes = np.append(category_codes(ctx.categories(), n_addr)[:n_addr], -1).astype(np.float64)
    sizes = np.append(cluster_sizes(_pad(ctx.cluster_array(), n_addr)), 1).astype(np.float64)
    for p, who in (("snd", frm_i), ("rcv", to_i)):
        f[f"{p}_out_deg"] = log10p(out_deg[who])
        f[f"{p}_in_deg"] = log10p(in_deg[who])
        f[f"{p}_counterparties"] = log10p(cp[who])
        f[f"{p}_age"] = log10p(time - first[who])
        f[f"{p}_cat"] = codes[who]
        f[f"{p}_cluster"] = np.log10(sizes[who])
        f[f"{p}_forward_ratio"] = np.where(got[who] > 0, sent[who] / np.maximum(got[who], 1e-12), np.nan)
        f[f"{p}_mean_out_usd"] = np.where(out_deg[who] > 0, mean_out[who], np.nan)

    # flow neighbours: parent = the sender's last incoming transfer before this one, child = the
    # recipient's first outgoing transfer after it
    idx = np.arange(m, dtype=np.int64)
    span = m + 1
    order_in = np.lexsort((idx, to_i))
    keys_in = to_i[order_in] * span + idx[order_in]
    pos = np.searchsorted(keys_in, frm_i * span + idx, "left") - 1
    ok = (pos >= 0) & (to_i[order_in[np.maximum(pos, 0)]] == frm_i) & (frm >= 0)
    parent = np.where(ok, order_in[np.maximum(pos, 0)], -1)
    order_out = np.lexsort((idx, frm_i))
    keys_out = frm_i[order_out] * span + idx[order_out]
    cpos = np.searchsorted(keys_out, to_i * span + idx + 1, "left")
    cl = np.minimum(cpos, max(m - 1, 0))
    ok = (cpos < m) & (frm_i[order_out[cl]] == to_i) & (to >= 0)
    child = np.where(ok, order_out[cl], -1)
    f["snd_in_delay"] = log10p(np.where(parent >= 0, time - time[np.maximum(parent, 0)], np.nan))
    f["rcv_out_delay"] = log10p(np.where(child >= 0, time[np.maximum(child, 0)] - time, np.nan))
    tmin = float(time.min()) if m else 0.0
    width = float(time.max() - tmin + DAY + 1) if m else 1.0
    keys_t = frm_i[order_out] * width + (time[order_out] - tmin)
    end = np.searchsorted(keys_t, to_i * width + (time - tmin + DAY), "right")
    cum = np.concatenate([[0.0], np.cumsum(usd0[order_out])])
    fwd = np.where(ok, cum[end] - cum[np.where(ok, cpos, 0)], 0.0)
    f["rcv_forward_day"] = np.where(usd > 0, np.minimum(fwd / np.where(usd > 0, usd, 1.0), 10.0), np.nan)

    # the transaction of each transfer
    in_tx = tx_id >= 0
    uniq, inv, counts = np.unique(tx_id[in_tx], return_inverse=True, return_counts=True)
    f["n_transfers"] = np.ones(m)
    f["n_transfers"][in_tx] = counts[inv]
    asset_id = _ints(t.column("asset_id"))
    ta = np.unique(np.stack([tx_id[in_tx], asset_id[in_tx]], axis=1), axis=0) if in_tx.any() else None
    n_assets = np.ones(m)
    if ta is not None:
        per_tx = np.bincount(np.searchsorted(uniq, ta[:, 0]), minlength=len(uniq)).astype(np.float64)
        n_assets[in_tx] = per_tx[inv]
    f["n_assets"] = n_assets

    local = np.column_stack([f[name] for name in LOCAL])
    agg = np.column_stack([f[name] for name in AGGREGATED])
    parent2 = np.where(parent >= 0, parent[np.maximum(parent, 0)], -1)
    child2 = np.where(child >= 0, child[np.maximum(child, 0)], -1)
    blocks = [local] + [_take(agg, nb) for nb in (parent, parent2, child, child2)]
    X = np.hstack(blocks)

    # one row per transaction: its largest transfer in USD (unknown USD ranks last, then chain order)
    rank = np.where(np.isnan(usd), -1.0, usd)
    sel = idx[in_tx]
    sel = sel[np.lexsort((sel, -rank[sel], tx_id[sel]))]
    firsts = np.r_[True, tx_id[sel][1:] != tx_id[sel][:-1]] if len(sel) else np.zeros(0, bool)
    main = sel[firsts]
    hashes = t.column("tx_hash").take(pa.array(main)).to_pylist()
    return FeatureTable(ctx.chain, "account", tx_id[main], tuple(hashes), NAMES, X[main])


def _take(vals: F64, rows: I64) -> F64:
    out = np.full((len(rows), vals.shape[1]), np.nan)
    ok = rows >= 0
    out[ok] = vals[rows[ok]]
    return out


def _pad(clusters: I64, n: int) -> I64:
    return np.concatenate([clusters, np.full(max(n - len(clusters), 0), -1, np.int64)])[:n]
