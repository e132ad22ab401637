"""The bulk helpers the UTXO detectors (``detection/detectors/``) share: the spender of every output of a
:class:`~fundtrail.store.utxo_view.UtxoView`, display txids, address category codes (with the deposit
addresses services sweep), fresh outputs, the ``since_height`` mask, BTC amounts, and the construction
of their alerts. Each bulk read is done once per view and cached while the view lives (every detector
of a run shares it). Kept outside ``detectors/``: the registry takes every module there for a detector.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fundtrail.detection.base import Alert, DetectContext, cluster_ids, make_alert
from fundtrail.detection.context import RISK_ORDER
from fundtrail.detection.prices import usd
from fundtrail.store.db import registered
from fundtrail.store.utxo_view import UtxoView

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
SAT_PER_BTC = 100_000_000


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


def category_codes(ctx: DetectContext) -> npt.NDArray[np.int8]:
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


def btc_usd(ctx: DetectContext, sat: int) -> float:
    v = usd("BTC", sat, 8, ctx.prices)
    return 0.0 if v is None else v


def fmt_btc(sat: int) -> str:
    return f"{sat / SAT_PER_BTC:,.8f} BTC"


class Named(Protocol):
    name: str
    typology: str


def utxo_alert(
    detector: Named,
    ctx: DetectContext,
    view: UtxoView,
    rows: Sequence[int] | I64,
    texts: Mapping[int, str],
    *,
    score: float,
    addresses: Iterable[str],
    entity_ids: Iterable[int],
    amount: int,
    explanation: str,
    evidence: Mapping[str, Any],
    window: tuple[int, int] | None = None,
) -> Alert:
    """The alert of a UTXO detector over the view rows ``rows`` (in the order their txids are listed,
    display txids from ``texts``): amounts in BTC, the window from the first to the last row's time
    unless ``window`` is given, the entities the clusters of ``entity_ids``."""
    t0, t1 = window if window is not None else (int(view.time[rows[0]]), int(view.time[rows[-1]]))
    return make_alert(
        detector.name,
        detector.typology,
        ctx,
        score=score,
        addresses=addresses,
        txids=(texts[int(r)] for r in rows),
        window=(t0, t1),
        amount=amount,
        asset="BTC",
        explanation=explanation,
        entities=cluster_ids(ctx, entity_ids),
        evidence=evidence,
    )
