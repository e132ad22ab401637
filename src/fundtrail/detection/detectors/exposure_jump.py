"""Exposure jumps (UTXO and account chains): an entity with a clean history suddenly receives a large share
of its incoming value from a high-risk counterparty.

The rule (docs/detectors/exposure_jump.md): an entity is a cluster, or an address without one. Its
*receipts* are the transactions paying it (change, where the entity also spends, is not a receipt).
A receipt's risky part is the share of the paying transaction's input value (UTXO) or the transfer
(account) that comes from an address in one of the ``categories`` (its own label or its cluster's
definer label). An entity that (1) carries no category itself (services such as exchanges, and
already-labelled risky entities, are excluded), (2) had at least ``min_history`` receipts, none risky,
before its first risky receipt, and (3) received, in the ``window_seconds`` starting at that receipt, at
least ``min_share`` of its received value from risky counterparts, is reported once. Values are compared
in satoshi on UTXO chains and in USD at the reference prices on account chains (assets without a price
are left out).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow.compute as pc
from numba import njit

from fundtrail.detection.base import Alert, DetectContext, Param, make_alert, merged_params
from fundtrail.detection.context import RISK_ORDER
from fundtrail.detection.utxo_common import category_codes, txid_texts

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
DEFAULT_CATEGORIES = "sanctioned,terrorist_financing,ransomware,darknet_market,hack,stolen_funds,scam,mixer"


@njit(cache=True)
def _jumps(ent: Any, t: Any, val: Any, risky: Any, min_hist: int, min_share: float, window: int) -> Any:
    """Over receipts sorted by (entity, time): per reported entity (first receipt row, first risky
    row, end row of the window (exclusive), risky value, total value in the window)."""
    n = ent.shape[0]
    out = np.empty((n, 3), np.int64)
    sums = np.empty((n, 2), np.float64)
    m = 0
    i = 0
    while i < n:
        j = i
        while j < n and ent[j] == ent[i]:
            j += 1
        k = i
        while k < j and risky[k] <= 0.0:
            k += 1
        if k < j and k - i >= min_hist:
            e = k
            rs = 0.0
            ts = 0.0
            while e < j and t[e] < t[k] + window:
                rs += risky[e]
                ts += val[e]
                e += 1
            if ts > 0 and rs >= min_share * ts:
                out[m, 0], out[m, 1], out[m, 2] = i, k, e
                sums[m, 0], sums[m, 1] = rs, ts
                m += 1
        i = j
    return out[:m], sums[:m]


class ExposureJump:
    name = "exposure_jump"
    typology = "exposure_jump"  # no simulator typology embeds a clean entity's jump (docs/detectors)
    families = frozenset({"bitcoin", "evm", "tron"})
    summary = "a clean entity suddenly receiving a large share of its value from a high-risk counterparty"
    params = (
        Param("min_history", 10, "transactions", "clean receipts the entity had before the first risky one"),
        Param("min_share", 0.2, "share", "risky share of the value received in the window"),
        Param("window_seconds", 604_800, "seconds", "the window from the first risky receipt (7 days)"),
        Param("categories", DEFAULT_CATEGORIES, "list", "high-risk categories, comma-separated"),
    )

    def run(self, ctx: DetectContext) -> Iterator[Alert]:
        p = merged_params(self.params, ctx)
        cats = {c.strip() for c in str(p["categories"]).split(",") if c.strip()}
        if ctx.family == "bitcoin":
            yield from self._utxo(ctx, p, cats)
        else:
            yield from self._account(ctx, p, cats)

    # shared ----------------------------------------------------------------------------------------------
    def _entities(self, ctx: DetectContext, addr: I64) -> I64:
        cl = np.asarray(ctx.cluster_array())
        ent = addr.copy()
        inside = (addr >= 0) & (addr < len(cl))
        ent[inside] = np.where(cl[addr[inside]] >= 0, cl[addr[inside]], addr[inside])
        return ent

    def _categorised_entities(self, ctx: DetectContext) -> I64:
        ids = np.fromiter(ctx.categories().keys(), np.int64)
        return np.unique(self._entities(ctx, ids)) if len(ids) else ids

    def _find(
        self, ctx: DetectContext, p: dict[str, Any], ent: I64, t: I64, h: I64, val: F64, risky: F64
    ) -> tuple[I64, F64, I64]:
        keep = ~np.isin(ent, self._categorised_entities(ctx))
        ent, t, h, val, risky = ent[keep], t[keep], h[keep], val[keep], risky[keep]
        order = np.lexsort((t, ent))
        idx, sums = _jumps(
            ent[order], t[order], val[order], risky[order],
            int(p["min_history"]), float(p["min_share"]), int(p["window_seconds"]),
        )  # fmt: skip
        if len(idx):
            ok = h[order][idx[:, 1]] >= ctx.since_height
            ok |= h[order][idx[:, 1]] < 0
            idx, sums = idx[ok], sums[ok]
        return idx, sums, np.flatnonzero(keep)[order]

    # UTXO -------------------------------------------------------------------------------------------------
    def _utxo(self, ctx: DetectContext, p: dict[str, Any], cats: set[str]) -> Iterator[Alert]:
        view = ctx.utxo_view()
        if not len(view):
            return
        codes = category_codes(ctx)
        risky_code = np.array([c in cats for c in RISK_ORDER] + [False], np.bool_)  # index -1: none
        ia, oa = view.in_addr, view.out_addr
        in_risky = (ia >= 0) & risky_code[codes[np.maximum(ia, 0)]] & (codes[np.maximum(ia, 0)] >= 0)
        iv = np.maximum(view.in_value, 0).astype(np.float64)
        n_in = view.n_in
        tot = np.zeros(len(view))
        rv = np.zeros(len(view))
        has = n_in > 0
        tot[has] = np.add.reduceat(iv, view.in_off[:-1][has])
        rv[has] = np.add.reduceat(np.where(in_risky, iv, 0.0), view.in_off[:-1][has])
        share = np.divide(rv, tot, out=np.zeros(len(view)), where=tot > 0)
        out_tx = np.repeat(np.arange(len(view), dtype=np.int64), view.n_out)
        in_tx = np.repeat(np.arange(len(view), dtype=np.int64), n_in)
        ok = (oa >= 0) & ~view.is_coinbase[out_tx]
        o = np.flatnonzero(ok)
        ent = self._entities(ctx, oa[o])
        in_ent = self._entities(ctx, ia[ia >= 0])
        nb = np.int64(max(int(ent.max(initial=0)), int(in_ent.max(initial=0))) + 1)
        spent_keys = np.unique(in_tx[ia >= 0] * nb + in_ent)
        change = np.isin(out_tx[o] * nb + ent, spent_keys)
        o, ent = o[~change], ent[~change]
        # one receipt per (entity, transaction)
        key = out_tx[o] * nb + ent
        uk, first, inv = np.unique(key, return_index=True, return_inverse=True)
        val = np.bincount(inv.reshape(-1), weights=view.out_value[o].astype(np.float64), minlength=len(uk))
        rows = out_tx[o][first]
        e = ent[first]
        risky = val * share[rows]
        idx, sums, order = self._find(
            ctx, p, e, view.time[rows], view.height[rows], val.astype(np.float64), risky.astype(np.float64)
        )
        if not len(idx):
            return
        sel_rows = [rows[order[a:c]] for _, a, c in idx]
        texts = txid_texts(ctx, np.concatenate(sel_rows))
        for (i0, a, _c), (rs, ts), win in zip(idx, sums, sel_rows):
            entity = int(e[order[a]])
            risky_rows = win[share[win] > 0]
            parts = [ia[view.in_off[r] : view.in_off[r + 1]] for r in risky_rows]
            flags = [in_risky[view.in_off[r] : view.in_off[r + 1]] for r in risky_rows]
            senders = np.unique(np.concatenate([x[f] for x, f in zip(parts, flags)]))
            recv = np.unique(oa[o][np.isin(rows[inv.reshape(-1)], win) & (ent == entity)])
            amount = 0
            for r in risky_rows:  # exact: each paying output's value times the risky input share, floored
                ks = np.arange(view.out_off[r], view.out_off[r + 1])
                got = int(view.out_value[ks][np.isin(oa[ks], recv)].sum())
                amount += got * int(rv[r]) // max(int(tot[r]), 1)
            sender_cats = sorted({RISK_ORDER[codes[s]] for s in senders})
            yield self._alert(
                ctx, entity, a - i0, rs / ts, [texts[int(r)] for r in win],
                ctx.address_texts([*recv.tolist()[:20], *senders.tolist()]), sender_cats,
                int(view.time[win[0]]), int(view.time[win[-1]]), amount, "BTC",
            )  # fmt: skip

    # account ----------------------------------------------------------------------------------------------
    def _account(self, ctx: DetectContext, p: dict[str, Any], cats: set[str]) -> Iterator[Alert]:
        tr = ctx.transfers()
        if not tr.num_rows:
            return
        tr = tr.filter(pc.and_(pc.is_valid(tr["to_id"]), pc.is_valid(tr["from_id"])))
        frm = np.asarray(tr["from_id"].to_numpy(zero_copy_only=False), np.int64)
        to = np.asarray(tr["to_id"].to_numpy(zero_copy_only=False), np.int64)
        assets = tr["asset"].to_pylist()
        dec = tr["decimals"].to_pylist()
        amounts = [int(x) for x in tr["amount"].to_pylist()]
        prices = ctx.prices
        usd = np.array(
            [a * float(prices.get(s.upper(), 0.0)) / 10 ** (d or 0) if d is not None else 0.0
             for a, s, d in zip(amounts, assets, dec)]
        )  # fmt: skip
        catmap = ctx.categories()
        risky_from = np.array([catmap.get(int(f)) in cats for f in frm], np.bool_)
        e_to, e_from = self._entities(ctx, to), self._entities(ctx, frm)
        ok = (e_to != e_from) & (usd > 0)
        r = np.flatnonzero(ok)
        t = np.asarray(tr["time"].to_numpy(zero_copy_only=False), np.int64)
        h = np.asarray(tr["height"].to_numpy(zero_copy_only=False), np.int64)
        risky = np.where(risky_from[r], usd[r], 0.0)
        idx, sums, order = self._find(ctx, p, e_to[r], t[r], h[r], usd[r], risky)
        hashes = tr["tx_hash"].to_pylist()
        for (i0, a, c), (rs, ts) in zip(idx, sums):
            win = r[order[a:c]]
            bad = win[risky_from[win]]
            asset_set = {assets[k] for k in bad}
            amount = sum(amounts[k] for k in bad) if len(asset_set) == 1 else None
            sender_cats = sorted({str(catmap.get(int(frm[k]))) for k in bad})
            receivers = list(dict.fromkeys(int(x) for x in to[win]))[:20]
            ids = [*receivers, *dict.fromkeys(int(x) for x in frm[bad])]
            yield self._alert(
                ctx, int(e_to[win[0]]), a - i0, rs / ts, list(dict.fromkeys(hashes[k] for k in win)),
                ctx.address_texts(ids), sender_cats, int(t[win[0]]), int(t[win[-1]]), amount,
                next(iter(asset_set)) if amount is not None else None,
            )  # fmt: skip

    def _alert(
        self, ctx: DetectContext, entity: int, history: int, share: float, txids: list[str],
        addresses: list[str], sender_cats: list[str], t0: int, t1: int, amount: int | None,
        asset: str | None,
    ) -> Alert:  # fmt: skip
        score = min(100.0, 40.0 + 50.0 * share + (10.0 if "sanctioned" in sender_cats else 0.0))
        what = f"{amount:,} base units of {asset}" if amount is not None else "value in several assets"
        return make_alert(
            self.name,
            self.typology,
            ctx,
            score=score,
            addresses=dict.fromkeys(addresses),
            txids=dict.fromkeys(txids),
            window=(t0, t1),
            amount=amount,
            asset=asset,
            explanation=(
                f"After {history} receipts with no high-risk counterparty, this entity received "
                f"{share:.0%} of its incoming value in the next window from {', '.join(sender_cats)} "
                f"addresses ({what} from them)."
            ),
            entities=(entity,) if ctx.cluster_of(entity) is not None else (),
            evidence={
                "clean_receipts_before": int(history),
                "risky_share": round(float(share), 4),
                "categories": sender_cats,
            },
        )


DETECTOR = ExposureJump()
