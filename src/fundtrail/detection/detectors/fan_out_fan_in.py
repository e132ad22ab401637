"""Fan-out / fan-in (smurfing, UTXO): one transaction splits a coin into many fresh addresses whose coins,
after a few single-coin hops, are gathered again by one multi-input transaction.

The rule (docs/detectors/fan_out_fan_in.md): a *fan-out* is a transaction paying at least ``min_width``
outputs to addresses seen for the first time there, which carry at least ``min_split_share`` of its output
value (the coin itself is split, not a batch payment beside a large change). Each of those coins is
followed forward through at most ``max_hops`` transactions with one input and one output (the coin moved
whole to the next address); where it is spent by a transaction with two or more inputs, that transaction
is where it was gathered. A fan-out whose coins are gathered by one transaction within ``window_blocks``,
for at least ``min_gathered_share`` of its fresh outputs (by count) and at least ``min_input_share`` of
that transaction's input value, is reported: the fan-out, the hops and the gathering transaction, the
value split and the window. Every step is a vectorised pass over all candidate coins at once.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fundtrail.detection.base import Alert, DetectContext, Param, merged_params
from fundtrail.detection.utxo_common import (
    I64,
    btc_usd,
    fmt_btc,
    fresh_outputs,
    since_mask,
    spender_rows,
    txid_texts,
    utxo_alert,
)
from fundtrail.store.utxo_view import UtxoView


class FanOutFanIn:
    name = "fan_out_fan_in"
    typology = "fan_out_fan_in"
    families = frozenset({"bitcoin"})
    summary = "a coin split into many fresh addresses and gathered again by one transaction after a few hops"
    params = (
        Param("min_width", 8, "outputs", "fresh-address outputs a fan-out needs"),
        Param(
            "min_split_share",
            0.8,
            "share",
            "share of the fan-out's output value paid to those fresh addresses",
        ),
        Param(
            "max_hops", 3, "transactions", "single-coin hops allowed between the fan-out and the gathering"
        ),
        Param("window_blocks", 100, "blocks", "the gathering is at most this many blocks after the fan-out"),
        Param(
            "min_gathered_share", 0.6, "share", "share of the fan-out's fresh outputs one transaction gathers"
        ),
        Param(
            "min_input_share",
            0.8,
            "share",
            "share of the gathering transaction's input value that comes from the fan-out's coins",
        ),
    )

    def run(self, ctx: DetectContext) -> Iterator[Alert]:
        view: UtxoView = ctx.utxo_view()
        if not len(view):
            return
        p = merged_params(self.params, ctx)
        spender = spender_rows(ctx)
        fresh = fresh_outputs(view)
        n_out = view.n_out
        n_in = view.n_in
        out_tx = np.repeat(np.arange(len(view), dtype=np.int64), n_out)
        width = np.bincount(out_tx[fresh], minlength=len(view))
        fresh_value = np.bincount(
            out_tx[fresh], weights=view.out_value[fresh].astype(np.float64), minlength=len(view)
        )
        all_value = np.bincount(out_tx, weights=view.out_value.astype(np.float64), minlength=len(view))
        fan = np.flatnonzero(
            (width >= int(p["min_width"]))
            & ~view.is_coinbase
            & (fresh_value >= float(p["min_split_share"]) * all_value)
        )
        if not len(fan):
            return
        # every fresh output of every fan-out, followed forward in lock step
        sel = fresh & np.isin(out_tx, fan)
        coin = np.flatnonzero(sel)
        origin = out_tx[coin]
        hops = np.zeros((len(coin), int(p["max_hops"])), np.int64) - 1
        gather = np.full(len(coin), -1, np.int64)
        last = np.full(len(coin), -1, np.int64)  # the output the gathering transaction spends
        cur = coin.copy()
        alive = np.ones(len(coin), np.bool_)
        for k in range(int(p["max_hops"]) + 1):
            s = np.where(alive, spender[cur], -1)
            alive &= s >= 0
            multi = alive & (n_in[np.maximum(s, 0)] >= 2)
            gather[multi] = s[multi]
            last[multi] = cur[multi]
            alive &= ~multi
            whole = alive & (n_out[np.maximum(s, 0)] == 1)
            alive &= whole
            if k == int(p["max_hops"]) or not alive.any():
                break
            hops[alive, k] = s[alive]
            cur = np.where(alive, view.out_off[np.maximum(s, 0)], cur)
        ok = gather >= 0
        ok &= (view.height[np.maximum(gather, 0)] - view.height[origin]) <= int(p["window_blocks"])
        if not ok.any():
            return
        pairs = np.stack([origin[ok], gather[ok]], axis=1)
        uniq, inv, counts = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
        good = counts >= float(p["min_gathered_share"]) * width[uniq[:, 0]]
        got = np.bincount(inv, weights=view.out_value[last[ok]].astype(np.float64), minlength=len(uniq))
        g_rows = uniq[:, 1]
        g_in = np.add.reduceat(np.maximum(view.in_value, 0).astype(np.float64), view.in_off[:-1])[g_rows]
        good &= got >= float(p["min_input_share"]) * g_in
        new = since_mask(ctx, view)
        idx_ok = np.flatnonzero(ok)
        found = []
        for g in np.flatnonzero(good):
            members = idx_ok[inv == g]
            f, t = int(uniq[g, 0]), int(uniq[g, 1])
            hop_rows = hops[members]
            hop_rows = hop_rows[hop_rows >= 0]
            rows = np.unique(np.concatenate([[f, t], hop_rows]))
            if new[rows].any():
                found.append((f, t, members, rows))
        if not found:
            return
        texts = txid_texts(ctx, np.concatenate([r for *_, r in found]))
        for f, t, members, rows in found:
            yield self._alert(ctx, view, f, t, coin[members], rows, int(width[f]), texts)

    def _alert(
        self, ctx: DetectContext, view: UtxoView, f: int, t: int, coins: I64, rows: I64, width: int,
        texts: dict[int, str],
    ) -> Alert:  # fmt: skip
        order = rows[np.argsort(view.tx_id[rows])]
        g_in = int(view.in_value[view.in_off[t] : view.in_off[t + 1]].clip(min=0).sum())
        split_value = int(view.out_value[coins].sum())
        fan_in_addr = [int(a) for a in view.in_addr[view.in_off[f] : view.in_off[f + 1]] if a >= 0]
        g_out = [int(a) for a in view.out_addr[view.out_off[t] : view.out_off[t + 1]] if a >= 0]
        spread = [int(a) for a in view.out_addr[coins]]
        ids = list(dict.fromkeys([*fan_in_addr, *g_out, *spread]))
        shown = ctx.address_texts(ids)
        gathered = len(coins)
        hops = len(rows) - 2
        usd_v = btc_usd(ctx, split_value)
        score = min(
            100.0, 40.0 + 25.0 * gathered / width + 2.0 * min(width, 30) / 3 + 10 * min(1.0, usd_v / 100_000)
        )
        t0, t1 = int(view.time[f]), int(view.time[t])
        explanation = (
            f"One transaction split {fmt_btc(split_value)} (~USD {usd_v:,.0f}) into {width} fresh addresses; "
            f"{gathered} of those coins, each moved whole through its own hops ({hops} transactions in "
            f"all), were gathered again by one {int(view.n_in[t])}-input transaction ({fmt_btc(g_in)} in) "
            f"{max(0, int(view.height[t] - view.height[f]))} blocks later: a split and recombination with no "
            f"business purpose."
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
            window=(t0, t1),
            amount=split_value,
            explanation=explanation,
            evidence={
                "width": width,
                "gathered": gathered,
                "intermediate_transactions": hops,
                "split_value": split_value,
                "gathered_input_value": g_in,
                "fan_out_txid": texts[f],
                "fan_in_txid": texts[t],
            },
        )


DETECTOR = FanOutFanIn()
