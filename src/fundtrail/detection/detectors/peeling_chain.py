"""Peeling chains (UTXO): a large coin walked through a run of transactions, each with one input and two
outputs, peeling a small part off to a payee and passing the rest on to a fresh address of its own.

The rule (docs/detectors/peeling_chain.md): a transaction is *peel-shaped* when it has exactly one input
(its value known), exactly two outputs with addresses, the smaller one (the peel) is at most
``max_peel_share`` of the input, and the larger one (the continuation) goes to an address seen for the
first time in that transaction. Two peel-shaped transactions are *linked* when the second spends the
first's continuation within ``max_gap_blocks``. A maximal run of at least ``min_hops`` linked
transactions is a chain; one alert per chain, with its txids in order, the peels' destinations (with
their labelled service categories), the total peeled and the window.

This module also holds the bulk helpers the other UTXO detectors share (the spender of every output of
a :class:`~fundtrail.store.utxo_view.UtxoView`, and display txids), loaded once per view.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from numba import njit

from fundtrail.detection.base import Alert, DetectContext, Param, severity_for
from fundtrail.detection.context import RISK_ORDER
from fundtrail.detection.prices import usd
from fundtrail.store.db import registered
from fundtrail.store.utxo_view import UtxoView

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
SAT_PER_BTC = 100_000_000

# --- shared bulk helpers (UTXO) ------------------------------------------------------------------------


class BulkContext(DetectContext, Protocol):
    """The bulk reads of ``StoreContext`` the vectorised detectors use beyond ``DetectContext``."""

    prices: Mapping[str, float]

    def address_texts(self, ids: Iterable[int]) -> list[str]: ...
    def categories(self) -> Mapping[int, str]: ...
    def cluster_array(self) -> I64: ...


def as_bulk(ctx: DetectContext) -> BulkContext:
    """``ctx`` as a :class:`BulkContext` (``StoreContext`` is one)."""
    for attr in ("address_texts", "categories", "cluster_array"):
        if not hasattr(ctx, attr):
            raise TypeError(f"the detection context lacks {attr}(): use detection.context.StoreContext")
    return cast(BulkContext, ctx)


def _forget(cache: dict[int, Any], key: int) -> Any:
    return lambda _ref: cache.pop(key, None)


_SPENDERS: dict[int, tuple[weakref.ref[UtxoView], I64]] = {}


def spender_rows(ctx: DetectContext) -> I64:
    """Per output of ``ctx.utxo_view()``: the view row of the transaction spending it, -1 while unspent
    (or spent by a transaction the view does not hold). One bulk query per view, cached while the view
    lives (every detector of a run shares it)."""
    view: UtxoView = ctx.utxo_view()
    hit = _SPENDERS.get(id(view))
    if hit is not None and hit[0]() is view:
        return hit[1]
    t = ctx.con.sql(
        """SELECT prev_tx_id, prev_vout, min(tx_id) AS spender FROM tx_inputs
           WHERE chain = $chain AND prev_tx_id IS NOT NULL GROUP BY prev_tx_id, prev_vout""",
        params={"chain": ctx.chain},
    ).to_arrow_table()
    out = np.full(len(view.out_addr), -1, np.int64)
    if t.num_rows and len(view):
        prev = np.asarray(t["prev_tx_id"].to_numpy(), np.int64)
        vout = np.asarray(t["prev_vout"].to_numpy(), np.int64)
        sp = np.asarray(t["spender"].to_numpy(), np.int64)
        prow = _rows_of(view.tx_id, prev)
        srow = _rows_of(view.tx_id, sp)
        ok = (prow >= 0) & (srow >= 0)
        prow, vout, srow = prow[ok], vout[ok], srow[ok]
        ok = vout < view.out_off[prow + 1] - view.out_off[prow]
        out[view.out_off[prow[ok]] + vout[ok]] = srow[ok]
    _SPENDERS[id(view)] = (weakref.ref(view, _forget(_SPENDERS, id(view))), out)
    return out


def _rows_of(sorted_ids: I64, ids: I64) -> I64:
    """Rows of ``ids`` in the sorted array ``sorted_ids``, -1 where absent."""
    k = np.searchsorted(sorted_ids, ids)
    k = np.minimum(k, max(len(sorted_ids) - 1, 0))
    found = (sorted_ids[k] == ids) if len(sorted_ids) else np.zeros(len(ids), np.bool_)
    return np.where(found, k, -1).astype(np.int64)


def txid_texts(ctx: DetectContext, rows: Sequence[int] | I64) -> dict[int, str]:
    """Display txids (lower-case hex) of view rows, in one bulk query."""
    view: UtxoView = ctx.utxo_view()
    ids = np.unique(view.tx_id[np.asarray(rows, np.int64)]) if len(rows) else np.zeros(0, np.int64)
    if not len(ids):
        return {}
    with registered(ctx.con, "_ft_det_txids", pa.table({"tx_id": ids})):
        got = ctx.con.execute(
            """SELECT tx_id, lower(hex(txid)) FROM transactions
               WHERE chain = ? AND tx_id IN (SELECT tx_id FROM _ft_det_txids)""",
            [ctx.chain],
        ).fetchall()
    by_id = {int(a): str(b) for a, b in got}
    return {int(r): by_id.get(int(view.tx_id[r]), "") for r in np.asarray(rows, np.int64)}


_CATS: dict[int, tuple[weakref.ref[UtxoView], npt.NDArray[np.int8]]] = {}


def category_codes(ctx: BulkContext) -> npt.NDArray[np.int8]:
    """Per address id: the index in ``RISK_ORDER`` of its category, -1 for none. Labelled addresses (and
    their definer clusters) keep their own category (``ctx.categories()``); an unlabelled address whose
    coins are swept by a transaction paying only labelled addresses of one service category (and
    spending none) is that service's deposit address and gets its category: how an exchange's
    unlabelled deposit addresses are recognised (the exchange sweeps them into its labelled hot
    wallet). Cached while the view lives."""
    view: UtxoView = ctx.utxo_view()
    hit = _CATS.get(id(view))
    if hit is not None and hit[0]() is view:
        return hit[1]
    n_addr = int(max(view.out_addr.max(initial=-1), view.in_addr.max(initial=-1))) + 1
    code = np.full(n_addr, -1, np.int8)
    rank = {c: i for i, c in enumerate(RISK_ORDER)}
    for a, c in ctx.categories().items():
        if 0 <= a < n_addr:
            code[a] = rank[c]
    if len(view):
        oa = view.out_addr
        oc = np.where(oa >= 0, code[np.maximum(oa, 0)], -1).astype(np.int64)
        n_out = np.diff(view.out_off)
        has = n_out > 0
        first = np.zeros(len(view), np.int64)
        first[has] = oc[view.out_off[:-1][has]]
        same = oc == np.repeat(first, n_out)
        all_same = np.logical_and.reduceat(same, view.out_off[:-1][has]) if has.any() else same[:0]
        sweep_to = np.full(len(view), -1, np.int64)
        sweep_to[has] = np.where(all_same & (first[has] >= 0), first[has], -1)
        ia = view.in_addr
        ic = np.where(ia >= 0, code[np.maximum(ia, 0)], -1)
        labelled_in = np.zeros(len(view), np.bool_)
        n_in = np.diff(view.in_off)
        hin = n_in > 0
        if hin.any():
            labelled_in[hin] = np.logical_or.reduceat(ic >= 0, view.in_off[:-1][hin])
        sweep_to[labelled_in] = -1
        tgt = np.repeat(sweep_to, n_in)
        pick = (tgt >= 0) & (ia >= 0) & (ic < 0)
        code[ia[pick]] = tgt[pick].astype(np.int8)
    _CATS[id(view)] = (weakref.ref(view, _forget(_CATS, id(view))), code)
    return code


def fresh_outputs(view: UtxoView) -> B:
    """Per output: its address is seen for the first time in this transaction."""
    own = np.repeat(view.tx_id, np.diff(view.out_off))
    fresh: B = (view.out_addr >= 0) & (view.first_seen_out == own)
    return fresh


def since_mask(ctx: DetectContext, view: UtxoView) -> B:
    """Per transaction: mined at or after ``ctx.since_height`` (loose transactions count as new)."""
    m: B = (view.height >= ctx.since_height) | (view.height < 0)
    return m


def btc_usd(ctx: BulkContext, sat: int) -> float:
    v = usd("BTC", sat, 8, ctx.prices)
    return 0.0 if v is None else v


def fmt_btc(sat: int) -> str:
    return f"{sat / SAT_PER_BTC:,.8f} BTC"


# --- the detector ---------------------------------------------------------------------------------------


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
        yield from self._run(as_bulk(ctx))

    def _run(self, ctx: BulkContext) -> Iterator[Alert]:
        view: UtxoView = ctx.utxo_view()
        if not len(view):
            return
        p = {x.name: x.default for x in self.params} | dict(ctx.params)
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
        self, ctx: BulkContext, view: UtxoView, chain: I64, big_of: I64, small_of: I64,
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
        return Alert(
            detector=self.name,
            typology=self.typology,
            chain=ctx.chain,
            severity=severity_for(score),
            score=round(float(score), 1),
            addresses=tuple(dict.fromkeys(shown)),
            txids=tuple(texts[int(r)] for r in chain),
            window_start=t0,
            window_end=t1,
            amount=total,
            asset="BTC",
            explanation=explanation,
            entities=tuple(
                sorted({e for e in (ctx.cluster_of(a) for a in [head, *peel_addr]) if e is not None})
            ),
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
