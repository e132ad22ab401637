"""The columnar view of an account chain's transfers that the account detectors (``detection/detectors/``)
share (:func:`account_arrays`): NumPy columns built once per loaded transfers table, with per-address
facts (services, exchanges, deposit addresses, first seen). Kept outside ``detectors/``: the registry
takes every module there for a detector.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fundtrail.detection.base import DetectContext

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
    cats = ctx.categories()
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
