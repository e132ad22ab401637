"""Rapid pass-through layering (docs/detectors/passthrough.md): an address that is not a service collects
value from several senders and sends (almost) all of it on within a short time, keeping little balance,
repeatedly or for a large amount. Account chains.

This module also holds the columnar view of an account chain's transfers that the account detectors of
this package share (:func:`account_arrays`): NumPy columns built once per loaded transfers table.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fundtrail.detection.base import Alert, DetectContext, Param, severity_for

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]

# categories a detector treats as services (an address of one is not a suspect of its own)
SERVICES = frozenset(
    {"exchange", "bridge", "defi", "payment_processor", "mixer", "gambling", "miner", "merchant"}
)


@dataclass(frozen=True)
class AccountArrays:
    """The transfers of an account chain that moved value in a transaction (``amount > 0``, not a
    beacon withdrawal), as NumPy columns in chain order, plus per-address facts."""

    table: pa.Table  # the rows kept, for exact amounts and hashes
    frm: I64
    to: I64
    time: I64
    height: I64
    tx_id: I64
    asset: I64  # code into ``assets``
    assets: tuple[str, ...]
    amount: F64  # base units (float: for ratios and bands only; alerts report exact sums)
    usd: F64  # USD at the reference prices, NaN where the asset has no price
    service: B  # per address id: a labelled service (SERVICES)
    exchange: B  # per address id: category exchange
    deposit_like: B  # per address id: not a service, sends only to exchanges (a deposit address)
    first_seen: I64  # per address id: time of its first transfer (either side, any asset); -1 never

    def exact(self, rows: Iterable[int]) -> int:
        col = self.table.column("amount")
        return sum(int(col[int(i)].as_py()) for i in rows)

    def hashes(self, rows: Iterable[int]) -> tuple[str, ...]:
        col = self.table.column("tx_hash")
        seen: dict[str, None] = {}
        for i in sorted(int(r) for r in rows):
            seen[str(col[i].as_py())] = None
        return tuple(seen)

    def exchange_ish(self, ids: Any) -> Any:
        """Exchange addresses and deposit addresses that forward to exchanges."""
        return self.exchange[ids] | self.deposit_like[ids]


_CACHE: dict[int, tuple[pa.Table, AccountArrays]] = {}


def account_arrays(ctx: DetectContext) -> AccountArrays:
    """The columnar transfers of ``ctx``'s chain, built once per loaded table (shared by detectors)."""
    raw: pa.Table = ctx.transfers()
    hit = _CACHE.get(id(raw))
    if hit is not None and hit[0] is raw:
        return hit[1]
    arr = _build(ctx, raw)
    _CACHE.clear()
    _CACHE[id(raw)] = (raw, arr)
    return arr


def _build(ctx: DetectContext, raw: pa.Table) -> AccountArrays:
    amount_f = pc.cast(raw.column("amount"), pa.float64()).to_numpy(zero_copy_only=False)
    has_tx = pc.is_valid(raw.column("tx_id")).to_numpy(zero_copy_only=False)
    keep = np.flatnonzero(has_tx & (amount_f > 0))
    t = raw.take(pa.array(keep))
    amount = amount_f[keep]
    enc = pc.dictionary_encode(t.column("asset")).combine_chunks()
    assets = tuple(str(a) for a in enc.dictionary.to_pylist())
    code = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    dec = t.column("decimals").to_numpy(zero_copy_only=False)
    factor = np.full(len(assets), np.nan)
    for k, a in enumerate(assets):
        rows = np.flatnonzero(code == k)
        d = dec[rows[0]] if len(rows) else None
        if d is None or (isinstance(d, float) and np.isnan(d)):
            continue
        v = ctx.usd_value(a, 10 ** int(d))
        if v is not None:
            factor[k] = v / 10 ** int(d)
    frm = t.column("from_id").to_numpy(zero_copy_only=False).astype(np.int64)
    to = t.column("to_id").to_numpy(zero_copy_only=False).astype(np.int64)
    tm = t.column("time").to_numpy(zero_copy_only=False).astype(np.int64)
    cats = categories(ctx)
    n_addr = int(max(frm.max(initial=-1), to.max(initial=-1), max(cats, default=-1))) + 1
    service = np.zeros(n_addr, dtype=np.bool_)
    exchange = np.zeros(n_addr, dtype=np.bool_)
    for aid, cat in cats.items():
        if aid < n_addr:
            service[aid] = cat in SERVICES
            exchange[aid] = cat == "exchange"
    out_n = np.bincount(frm, minlength=n_addr)
    out_ex = np.bincount(frm[exchange[to]], minlength=n_addr)
    deposit_like = (out_n > 0) & (out_ex == out_n) & ~service
    first = np.full(n_addr, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, frm, tm)
    np.minimum.at(first, to, tm)
    first[first == np.iinfo(np.int64).max] = -1
    return AccountArrays(
        table=t,
        frm=frm,
        to=to,
        time=tm,
        height=t.column("height").to_numpy(zero_copy_only=False).astype(np.int64),
        tx_id=t.column("tx_id").to_numpy(zero_copy_only=False).astype(np.int64),
        asset=code,
        assets=assets,
        amount=amount,
        usd=amount * factor[code] if len(code) else np.zeros(0),
        service=service,
        exchange=exchange,
        deposit_like=deposit_like,
        first_seen=first,
    )


def distinct_count(x: I64, y: I64, n: int) -> I64:
    """Per value of ``x`` (0..n-1), how many distinct ``y`` it is paired with (one lexsort, no Python)."""
    if not len(x):
        return np.zeros(n, dtype=np.int64)
    order = np.lexsort((y, x))
    xs, ys = x[order], y[order]
    new = np.r_[True, (xs[1:] != xs[:-1]) | (ys[1:] != ys[:-1])]
    return np.bincount(xs[new], minlength=n).astype(np.int64)


def texts(ctx: DetectContext, ids: Iterable[int]) -> list[str]:
    """Address texts in bulk where the context offers it (StoreContext.address_texts)."""
    bulk = getattr(ctx, "address_texts", None)
    want = [int(i) for i in ids]
    return list(bulk(want)) if bulk is not None else [ctx.address_text(i) for i in want]


def categories(ctx: DetectContext) -> Mapping[int, str]:
    """Every categorised address id where the context offers it (StoreContext.categories)."""
    get = getattr(ctx, "categories", None)
    return dict(get()) if get is not None else {}


def clusters(ctx: DetectContext) -> I64:
    """Cluster id per address id (-1 none) where the context offers it (StoreContext.cluster_array)."""
    get = getattr(ctx, "cluster_array", None)
    return np.asarray(get(), dtype=np.int64) if get is not None else np.full(0, -1, dtype=np.int64)


def param(ctx: DetectContext, params: tuple[Param, ...], name: str) -> Any:
    """A parameter's value: the user's, else the default."""
    for p in params:
        if p.name == name:
            return ctx.params.get(name, p.default)
    raise KeyError(name)


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
        p = {q.name: param(ctx, PARAMS, q.name) for q in PARAMS}
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
    shown = texts(ctx, [aid, *recips])
    return Alert(
        detector="passthrough",
        typology="fast_cashout",
        chain=ctx.chain,
        severity=severity_for(score),
        score=round(score, 1),
        addresses=tuple(shown),
        txids=a.hashes(tr),
        window_start=t0,
        window_end=t1,
        amount=sent,
        asset=asset,
        explanation=(
            f"{shown[0]} received {received} base units of {asset} (about USD {usd:,.0f}) from "
            f"{n_senders} senders and sent {sent} on to {len(recips)} addresses within "
            f"{dwell / 60:.0f} minutes, in {len(chosen)} episode(s) with gaps under "
            f"{int(p['window_seconds']) // 60} minutes, keeping less than "
            f"{(1 - float(p['min_share'])) * 100:.0f} % of it"
        ),
        entities=tuple(sorted({c for c in (ctx.cluster_of(aid),) if c is not None})),
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
