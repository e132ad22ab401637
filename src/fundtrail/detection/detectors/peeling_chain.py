"""Peeling chains (UTXO): a large coin walked through a run of transactions, each with one input and two
outputs, peeling a small part off to a payee and passing the rest on to a fresh address of its own.

The rule (docs/detectors/peeling_chain.md): a transaction is *peel-shaped* when it has exactly one input
(its value known), exactly two outputs with addresses, the smaller one (the peel) is at most
``max_peel_share`` of the input, and the larger one (the continuation) goes to an address seen for the
first time in that transaction. Two peel-shaped transactions are *linked* when the second spends the
first's continuation within ``max_gap_blocks``. A maximal run of at least ``min_hops`` linked
transactions is a chain; one alert per chain, with its txids in order, the peels' destinations (with
their labelled service categories), the total peeled and the window.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from numba import njit

from fundtrail.detection.base import Alert, DetectContext, Param, merged_params
from fundtrail.detection.context import RISK_ORDER
from fundtrail.detection.utxo_common import (
    I64,
    btc_usd,
    category_codes,
    fmt_btc,
    fresh_outputs,
    since_mask,
    spender_rows,
    txid_texts,
    utxo_alert,
)
from fundtrail.store.utxo_view import UtxoView


@njit(cache=True)
def _chains(nxt: Any, has_prev: Any, min_hops: int) -> Any:
    """Chains as (start offsets, member rows) following ``nxt`` from every peel without a predecessor."""
    n = nxt.shape[0]
    members = np.empty(n, np.int64)
    starts = np.empty(n + 1, np.int64)
    m = 0
    c = 0
    for i in range(n):
        if has_prev[i] or nxt[i] == -2:
            continue
        j = i
        length = 0
        while j >= 0 and length < n:
            length += 1
            j = nxt[j]
        if length < min_hops:
            continue
        starts[c] = m
        c += 1
        j = i
        while j >= 0 and m < n:
            members[m] = j
            m += 1
            j = nxt[j]
    starts[c] = m
    return starts[: c + 1], members[:m]


class PeelingChain:
    name = "peeling_chain"
    typology = "peeling_chain"
    families = frozenset({"bitcoin"})
    summary = (
        "runs of one-input, two-output transactions peeling small payments off a coin kept on fresh addresses"
    )
    params = (
        Param("min_hops", 4, "transactions", "shortest chain reported (linked peel-shaped transactions)"),
        Param("max_peel_share", 0.2, "share", "largest peel as a share of the hop's input value"),
        Param("max_gap_blocks", 12, "blocks", "longest wait between two hops of a chain"),
        Param("min_input_sat", 1_000_000, "satoshi", "smallest input a hop may spend (0.01 BTC)"),
        Param(
            "min_service_share",
            0.5,
            "share",
            "a chain is reported when at least this share of its peels reach labelled services or their "
            "deposit addresses ...",
        ),
        Param("min_peeled_share", 0.5, "share", "... or when its peels add up to this share of its start"),
    )

    def run(self, ctx: DetectContext) -> Iterator[Alert]:
        view: UtxoView = ctx.utxo_view()
        if not len(view):
            return
        p = merged_params(self.params, ctx)
        spender = spender_rows(ctx)
        fresh = fresh_outputs(view)
        n_in, n_out = view.n_in, view.n_out
        i0 = view.in_off[:-1]
        o0 = view.out_off[:-1]
        o1 = np.minimum(o0 + 1, max(len(view.out_value) - 1, 0))
        shaped = (~view.is_coinbase) & (n_in == 1) & (n_out == 2)
        rows = np.flatnonzero(shaped)
        in_v = view.in_value[i0[rows]]
        a, b = o0[rows], o1[rows]
        va, vb = view.out_value[a], view.out_value[b]
        big = np.where(va >= vb, a, b)
        small = np.where(va >= vb, b, a)
        ok = (
            (in_v >= int(p["min_input_sat"]))
            & (view.out_addr[a] >= 0)
            & (view.out_addr[b] >= 0)
            & (view.out_value[small] <= float(p["max_peel_share"]) * in_v)
            & fresh[big]
            & (view.out_addr[a] != view.out_addr[b])
        )
        rows, big, small = rows[ok], big[ok], small[ok]
        if not len(rows):
            return
        peel = np.zeros(len(view), np.bool_)
        peel[rows] = True
        big_of = np.full(len(view), -1, np.int64)
        small_of = np.full(len(view), -1, np.int64)
        big_of[rows], small_of[rows] = big, small
        nxt = np.full(len(view), -2, np.int64)  # -2: not a peel
        s = spender[big]
        gap_ok = (view.height[np.maximum(s, 0)] - view.height[rows]) <= int(p["max_gap_blocks"])
        linked = (s >= 0) & peel[np.maximum(s, 0)] & gap_ok
        nxt[rows] = np.where(linked, s, -1)
        has_prev = np.zeros(len(view), np.bool_)
        has_prev[s[linked]] = True
        starts, members = _chains(nxt, has_prev, int(p["min_hops"]))
        new = since_mask(ctx, view)
        chains = [members[starts[k] : starts[k + 1]] for k in range(len(starts) - 1)]
        chains = [c for c in chains if new[c].any()]
        if not chains:
            return
        codes = category_codes(ctx)
        keep = []
        for c in chains:
            pa_ = view.out_addr[small_of[c]]
            svc = float(np.mean(codes[pa_] >= 0))
            peeled = int(view.out_value[small_of[c]].sum())
            start = int(view.in_value[view.in_off[c[0]]])
            if svc >= float(p["min_service_share"]) or peeled >= float(p["min_peeled_share"]) * start:
                keep.append(c)
        if not keep:
            return
        texts = txid_texts(ctx, np.concatenate(keep))
        for c in keep:
            yield self._alert(ctx, view, c, big_of, small_of, texts, int(p["min_hops"]))

    def _alert(
        self, ctx: DetectContext, view: UtxoView, chain: I64, big_of: I64, small_of: I64,
        texts: dict[int, str], min_hops: int,
    ) -> Alert:  # fmt: skip
        peels = small_of[chain]
        peel_addr = [int(x) for x in view.out_addr[peels]]
        peel_val = [int(x) for x in view.out_value[peels]]
        start_value = int(view.in_value[view.in_off[chain[0]]])
        remainder = int(view.out_value[big_of[chain[-1]]])
        total = sum(peel_val)
        head = int(view.out_addr[big_of[chain[0]]])
        shown = ctx.address_texts([head, *peel_addr])
        codes = category_codes(ctx)
        cats = [RISK_ORDER[codes[a]] if 0 <= a < len(codes) and codes[a] >= 0 else None for a in peel_addr]
        services = sum(1 for c in cats if c is not None)
        hops = len(chain)
        usd_total = btc_usd(ctx, total)
        score = min(100.0, 45.0 + 4.0 * (hops - min_hops) + 10.0 * min(1.0, usd_total / 100_000))
        score = min(100.0, score + 15.0 * services / hops)
        t0, t1 = int(view.time[chain[0]]), int(view.time[chain[-1]])
        named = ", ".join(sorted({c for c in cats if c}))
        explanation = (
            f"{hops} consecutive transactions each spend the previous one's larger output (one input, two "
            f"outputs, continuation to a fresh address) and peel off at most a small share: "
            f"{fmt_btc(total)} (~USD {usd_total:,.0f}) peeled to {len(set(peel_addr))} addresses"
            + (f" ({services} of them labelled: {named})" if services else "")
            + f", starting from {fmt_btc(start_value)}, {fmt_btc(remainder)} left at the end, "
            f"over {max(0, t1 - t0) // 60} minutes."
        )
        return utxo_alert(
            self,
            ctx,
            view,
            chain,
            texts,
            score=score,
            addresses=dict.fromkeys(shown),
            entity_ids=[head, *peel_addr],
            amount=total,
            explanation=explanation,
            evidence={
                "hops": hops,
                "start_value": start_value,
                "remainder": remainder,
                "total_peeled": total,
                "peels": [
                    {"address": t, "value": v, "category": c} for t, v, c in zip(shown[1:], peel_val, cats)
                ],
            },
        )


DETECTOR = PeelingChain()
