"""Mixer and CoinJoin use followed by an exchange deposit (UTXO).

The rule (docs/detectors/mixing.md): a *mixed coin* is an output to a non-mixer address of a transaction
that spends only mixer coins (a custodial mixer paying out), or any output of a CoinJoin
(``chains/bitcoin/coinjoin.py``, the detectors clustering uses). Mixer addresses are those labelled
``mixer`` (or in a definer cluster), the deposit addresses a labelled mixer sweeps, and, with
``mixer_clusters``, every address clustered with one of them. A mixed coin worth at least ``min_usd``
that is deposited whole at an exchange (directly, or after at most ``max_hops`` whole-coin hops) within
``window_blocks`` of the mix is reported; one alert per depositing transaction, with the mix, the hops,
the deposit, and the amount. Exchange addresses are the labelled ones and the deposit addresses an
exchange sweeps into them (``utxo_common.category_codes``).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fundtrail.chains.bitcoin import coinjoin
from fundtrail.detection.base import Alert, DetectContext, Param, merged_params
from fundtrail.detection.context import RISK_ORDER
from fundtrail.detection.utxo_common import (
    I64,
    B,
    btc_usd,
    category_codes,
    fmt_btc,
    since_mask,
    spender_rows,
    txid_texts,
    utxo_alert,
)
from fundtrail.store.utxo_view import UtxoView

MIXER, EXCHANGE = RISK_ORDER.index("mixer"), RISK_ORDER.index("exchange")


def _all_in(view: UtxoView, flag: B) -> B:
    """Per transaction: it has inputs and every one is flagged."""
    n_in = view.n_in
    out = np.zeros(len(view), np.bool_)
    has = n_in > 0
    if has.any():
        out[has] = np.logical_and.reduceat(flag, view.in_off[:-1][has])
    return out


class Mixing:
    name = "mixing"
    typology = "mixing"
    families = frozenset({"bitcoin"})
    summary = "coins out of a mixer or a CoinJoin deposited whole at an exchange shortly after"
    params = (
        Param("window_blocks", 6, "blocks", "longest time from the mix to the exchange deposit"),
        Param("max_hops", 1, "transactions", "whole-coin hops allowed between the mix and the deposit"),
        Param("min_usd", 500.0, "USD", "smallest mixed coin reported (at the reference prices)"),
        Param(
            "min_deposit_share",
            0.9,
            "share",
            "share of the depositing transaction's input paid to the exchange",
        ),
        Param(
            "min_mixed_share",
            0.8,
            "share",
            "share of the depositing transaction's input that is the mixed coin",
        ),
        Param("mixer_clusters", 1, "flag", "1: addresses clustered with a mixer address are the mixer's too"),
    )

    def run(self, ctx: DetectContext) -> Iterator[Alert]:
        view: UtxoView = ctx.utxo_view()
        if not len(view):
            return
        p = merged_params(self.params, ctx)
        codes = category_codes(ctx)
        is_mixer = codes == MIXER
        if int(p["mixer_clusters"]) and is_mixer.any():
            cl = np.asarray(ctx.cluster_array())
            cl = cl[: len(is_mixer)]
            mixed_clusters = np.unique(cl[np.flatnonzero(is_mixer)[np.flatnonzero(is_mixer) < len(cl)]])
            mixed_clusters = mixed_clusters[mixed_clusters >= 0]
            if len(mixed_clusters):
                grow = np.zeros(len(is_mixer), np.bool_)
                grow[: len(cl)] = np.isin(cl, mixed_clusters)
                is_mixer |= grow
        is_exchange = codes == EXCHANGE
        ia, oa = view.in_addr, view.out_addr
        in_mixer = (ia >= 0) & is_mixer[np.maximum(ia, 0)]
        out_mixer = (oa >= 0) & is_mixer[np.maximum(oa, 0)]
        out_ex = (oa >= 0) & is_exchange[np.maximum(oa, 0)]
        payout = _all_in(view, in_mixer) & ~view.is_coinbase
        cj = coinjoin.detect(view) != 0
        out_tx = np.repeat(np.arange(len(view), dtype=np.int64), view.n_out)
        cj_out = np.zeros(len(oa), np.bool_)
        for r in np.flatnonzero(cj):  # the equal (mixed) outputs; CoinJoin change stays linkable
            a, b = int(view.out_off[r]), int(view.out_off[r + 1])
            vals, counts = np.unique(view.out_value[a:b], return_counts=True)
            cj_out[a:b] = view.out_value[a:b] == vals[np.argmax(counts)]
        kind = np.where(payout[out_tx] & ~out_mixer, 1, np.where(cj_out, 2, 0))
        coin = np.flatnonzero((kind > 0) & (oa >= 0))
        min_sat = float(p["min_usd"]) / max(btc_usd(ctx, 100_000_000), 1e-9) * 100_000_000
        coin = coin[view.out_value[coin] >= min_sat]
        if not len(coin):
            return
        spender = spender_rows(ctx)
        n_out, n_in = view.n_out, view.n_in
        mix_tx = out_tx[coin]
        # value paid to exchanges and input value per transaction
        to_ex = np.bincount(
            out_tx[out_ex], weights=view.out_value[out_ex].astype(np.float64), minlength=len(view)
        )
        in_val = np.add.reduceat(np.maximum(view.in_value, 0).astype(np.float64), view.in_off[:-1])
        in_val[n_in == 0] = 0.0
        hops = np.full((len(coin), int(p["max_hops"])), -1, np.int64)
        deposit = np.full(len(coin), -1, np.int64)
        cur = coin.copy()
        alive = np.ones(len(coin), np.bool_)
        for k in range(int(p["max_hops"]) + 1):
            s = np.where(alive, spender[cur], -1)
            alive &= s >= 0
            sv = np.maximum(s, 0)
            alive &= (view.height[sv] - view.height[mix_tx]) <= int(p["window_blocks"])
            dep = alive & (to_ex[sv] >= float(p["min_deposit_share"]) * in_val[sv]) & (to_ex[sv] > 0)
            dep &= view.out_value[coin].astype(np.float64) >= float(p["min_mixed_share"]) * in_val[sv]
            deposit[dep] = s[dep]
            alive &= ~dep & (n_in[sv] == 1) & (n_out[sv] == 1)
            if k == int(p["max_hops"]) or not alive.any():
                break
            hops[alive, k] = s[alive]
            cur = np.where(alive, view.out_off[sv], cur)
        ok = np.flatnonzero(deposit >= 0)
        if not len(ok):
            return
        new = since_mask(ctx, view)
        groups: dict[int, list[int]] = {}
        for j in ok:
            groups.setdefault(int(deposit[j]), []).append(int(j))
        found = []
        for d, members in groups.items():
            js = np.asarray(members, np.int64)
            rows = np.unique(np.concatenate([mix_tx[js], hops[js].ravel(), [d]]))
            rows = rows[rows >= 0]
            if new[rows].any():
                found.append((d, js, rows))
        if not found:
            return
        texts = txid_texts(ctx, np.concatenate([r for *_, r in found]))
        for d, js, rows in found:
            yield self._alert(ctx, view, d, coin[js], kind[coin[js]], rows, out_ex, texts)

    def _alert(
        self, ctx: DetectContext, view: UtxoView, d: int, coins: I64, kinds: I64, rows: I64, out_ex: B,
        texts: dict[int, str],
    ) -> Alert:  # fmt: skip
        order = rows[np.argsort(view.tx_id[rows])]
        amount = int(view.out_value[coins].sum())
        o0, o1 = int(view.out_off[d]), int(view.out_off[d + 1])
        dep_addr = [int(view.out_addr[k]) for k in range(o0, o1) if out_ex[k]]
        deposited = int(sum(int(view.out_value[k]) for k in range(o0, o1) if out_ex[k]))
        mixed_addr = [int(a) for a in view.out_addr[coins]]
        ids = list(dict.fromkeys([*mixed_addr, *dep_addr]))
        shown = ctx.address_texts(ids)
        via = sorted({"a mixer" if k == 1 else "a CoinJoin" for k in kinds.tolist()})
        usd_v = btc_usd(ctx, amount)
        score = min(100.0, 35.0 + 15.0 * np.log10(max(usd_v, 1.0) / 100.0) + 5.0 * (len(coins) - 1))
        score = float(max(0.0, score))
        t0, t1 = int(view.time[order[0]]), int(view.time[order[-1]])
        explanation = (
            f"{len(coins)} coin(s) worth {fmt_btc(amount)} (~USD {usd_v:,.0f}) came out of "
            f"{' and '.join(via)} and were deposited whole at an exchange ({fmt_btc(deposited)} to "
            f"{len(dep_addr)} exchange address(es)) {max(0, t1 - t0) // 60} minutes later."
        )
        return utxo_alert(
            self,
            ctx,
            view,
            order,
            texts,
            score=score,
            addresses=shown,
            entity_ids=ids,
            amount=amount,
            explanation=explanation,
            evidence={
                "via": via,
                "coins": len(coins),
                "mixed_value": amount,
                "deposited": deposited,
                "deposit_txid": texts[d],
            },
        )


DETECTOR = Mixing()
