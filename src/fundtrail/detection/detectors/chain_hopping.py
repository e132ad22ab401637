"""Chain hopping (docs/detectors/chain_hopping.md): value that crosses a bridge (or is swapped at a DEX)
into a fresh address which passes it on through fresh addresses to an exchange within hours; on a UTXO
chain, the payment into the bridge whose counterpart payout on an account chain behaves so (matched by
time and by value at the reference prices)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from fundtrail.chains.registry import chain as get_chain
from fundtrail.detection.account_common import I64, AccountArrays, account_arrays
from fundtrail.detection.base import Alert, DetectContext, Param, cluster_ids, make_alert, merged_params

PARAMS = (
    Param("fresh_seconds", 3_600, "seconds", "an address first seen at most this long before it is fresh"),
    Param("hop_seconds", 21_600, "seconds", "each hop passes the value on within this time"),
    Param("min_share", 0.9, "share", "each hop (and the cash-out) carries at least this share"),
    Param("min_hops", 1, "hops", "fresh addresses between the payout and the exchange"),
    Param("max_hops", 6, "hops", "longest path followed"),
    Param("match_seconds", 10_800, "seconds", "bridge payout at most this long after the UTXO deposit"),
    Param("bridge_fee", 0.003, "share", "the bridge's fee: payout = deposit x (1 - fee) at reference prices"),
    Param("value_tolerance", 0.005, "share", "deposit (less the fee) and payout differ by at most this"),
)


@dataclass(frozen=True)
class Payout:
    """A bridge payout (or DEX swap output) into a fresh address that went on to an exchange."""

    source: str  # bridge or defi
    rows: I64  # payout, hops, cash-outs (transfer rows)
    path: list[int]  # landing address, then each hop's address
    usd: float
    time: int


def payouts(ctx: DetectContext) -> tuple[AccountArrays, list[Payout]]:
    a = account_arrays(ctx)
    p = merged_params(PARAMS, ctx)
    if len(a.frm) == 0:
        return a, []
    cats = ctx.categories()
    kind = np.zeros(len(a.service), dtype=np.int8)  # 1 bridge, 2 defi
    for aid, cat in cats.items():
        if aid < len(kind) and cat in ("bridge", "defi"):
            kind[aid] = 1 if cat == "bridge" else 2
    src = kind[a.frm]
    cand = np.flatnonzero((src > 0) & ~a.service[a.to])
    into_defi = {(int(t), int(f)) for t, f in zip(a.tx_id[kind[a.to] == 2], a.frm[kind[a.to] == 2])}
    fresh = int(p["fresh_seconds"])
    order = np.lexsort((np.arange(len(a.frm)), a.frm))
    sorted_from = a.frm[order]
    out: list[Payout] = []
    for r in cand.tolist():
        landing = int(a.to[r])
        if src[r] == 2 and (int(a.tx_id[r]), landing) not in into_defi:
            continue  # not a swap by the receiver
        if a.first_seen[landing] < a.time[r] - fresh:
            continue
        found = _follow(a, r, landing, order, sorted_from, p)
        if found is not None:
            rows, path = found
            usd = float(a.usd[r]) if np.isfinite(a.usd[r]) else 0.0
            out.append(Payout("bridge" if src[r] == 1 else "defi", rows, path, usd, int(a.time[r])))
    return a, out


def _follow(
    a: AccountArrays, r: int, landing: int, order: I64, sorted_from: I64, p: dict[str, Any]
) -> tuple[I64, list[int]] | None:
    share, horizon, fresh = float(p["min_share"]), int(p["hop_seconds"]), int(p["fresh_seconds"])
    rows, path = [r], [landing]
    node, after, got = landing, r, float(a.amount[r])
    for _ in range(int(p["max_hops"]) + 1):
        lo, hi = np.searchsorted(sorted_from, [node, node + 1])
        outs = order[lo:hi]
        outs = outs[
            (outs > after) & (a.asset[outs] == a.asset[r]) & (a.time[outs] <= a.time[after] + horizon)
        ]
        if not len(outs):
            return None
        ex = a.exchange_ish(a.to[outs])
        if ex.any() and a.amount[outs[ex]].sum() >= share * got:
            if len(path) - 1 < int(p["min_hops"]):
                return None
            return np.array([*rows, *outs[ex].tolist()], dtype=np.int64), path
        best = outs[np.argmax(a.amount[outs])]
        nxt = int(a.to[best])
        if (
            a.amount[best] < share * got
            or a.service[nxt]
            or a.first_seen[nxt] < a.time[best] - fresh
            or nxt in path
        ):
            return None
        rows.append(int(best))
        path.append(nxt)
        node, after, got = nxt, int(best), float(a.amount[best])
    return None


class ChainHopping:
    name = "chain_hopping"
    typology = "chain_hopping"
    families = frozenset({"bitcoin", "evm", "tron"})
    params = PARAMS
    summary = "value bridged or swapped into fresh addresses that hurry it to an exchange"

    def run(self, ctx: DetectContext) -> Iterator[Alert]:
        if ctx.family == "bitcoin":
            yield from _utxo(ctx)
            return
        a, found = payouts(ctx)
        for po in found:
            if int(a.height[po.rows].max()) < ctx.since_height:
                continue
            yield _account_alert(ctx, a, po)


def _account_alert(ctx: DetectContext, a: AccountArrays, po: Payout) -> Alert:
    asset = a.assets[int(a.asset[po.rows[0]])]
    amount = int(a.table.column("amount")[int(po.rows[0])].as_py())
    hops = len(po.path) - 1
    cash = po.rows[len(po.path) :]
    score = float(
        min(100.0, 55.0 + 8.0 * hops + 5.0 * len(cash) + min(10.0, np.log10(po.usd / 1_000 + 1) * 5))
    )
    shown = ctx.address_texts(po.path)
    t0, t1 = int(a.time[po.rows].min()), int(a.time[po.rows].max())
    what = "bridge payout" if po.source == "bridge" else "DEX swap output"
    return make_alert(
        "chain_hopping",
        "chain_hopping",
        ctx,
        score=score,
        addresses=shown,
        txids=a.hashes(po.rows),
        window=(t0, t1),
        amount=amount,
        asset=asset,
        explanation=(
            f"a {what} of {amount} base units of {asset} (about USD {po.usd:,.0f}) reached the fresh "
            f"address {shown[0]}, went on through {hops} more fresh address(es) and reached "
            f"{len(cash)} exchange deposit(s) within {(t1 - t0) / 60:.0f} minutes"
        ),
        entities=cluster_ids(ctx, po.path),
        evidence={"source": po.source, "hops": hops, "cashouts": len(cash), "usd": round(po.usd, 2)},
    )


def _utxo(ctx: DetectContext) -> Iterator[Alert]:
    """The UTXO leg: payments into the bridge matched to suspicious payouts on the store's account
    chains."""
    from fundtrail.detection.context import StoreContext

    rows = ctx.con.execute("SELECT DISTINCT chain FROM transfers").fetchall()
    wanted: list[Payout] = []
    for (name,) in rows:
        if get_chain(str(name)).family == "bitcoin":
            continue
        other = StoreContext(ctx.con, str(name), 0, ctx.params, ctx.prices)
        wanted += [po for po in payouts(other)[1] if po.source == "bridge"]
    if not wanted:
        return
    v = ctx.utxo_view()
    if len(v) == 0:
        return
    usd_per_sat = (ctx.usd_value("BTC", 10**8) or 0.0) / 1e8
    out_tx = np.repeat(np.arange(len(v)), np.diff(v.out_off))
    out_time = v.time[out_tx]
    cats = ctx.categories()
    cl = np.asarray(ctx.cluster_array(), dtype=np.int64)
    bridge_ids = [aid for aid, c in cats.items() if c == "bridge"]
    bridge_cl = {int(cl[b]) for b in bridge_ids if b < len(cl) and cl[b] >= 0}
    p = merged_params(PARAMS, ctx)
    tol, window, fee = float(p["value_tolerance"]), int(p["match_seconds"]), float(p["bridge_fee"])
    addr = v.out_addr
    in_bridge = np.isin(addr, bridge_ids)
    if bridge_cl and len(cl):
        safe = np.clip(addr, 0, len(cl) - 1)
        in_bridge |= (addr >= 0) & (addr < len(cl)) & np.isin(cl[safe], list(bridge_cl))
    fresh = v.first_seen_out == v.tx_id[out_tx]
    cand = np.flatnonzero((in_bridge | fresh) & (addr >= 0))
    order = cand[np.argsort(out_time[cand], kind="stable")]
    times = out_time[order]
    used: set[int] = set()
    for po in wanted:
        lo, hi = np.searchsorted(times, [po.time - window, po.time], side="left")
        near = order[lo:hi]
        if not len(near):
            continue
        usd = v.out_value[near] * usd_per_sat * (1.0 - fee)
        miss = np.abs(usd - po.usd)
        ok = miss <= tol * usd
        if not ok.any():
            continue
        good = near[ok][np.lexsort((miss[ok], ~in_bridge[near[ok]]))]  # bridge-labelled, then closest
        o = int(good[0])
        if o in used or int(v.height[out_tx[o]]) < ctx.since_height:
            continue
        used.add(o)
        yield _utxo_alert(ctx, v, o, int(out_tx[o]), bool(in_bridge[o]), po)


def _utxo_alert(ctx: DetectContext, v: Any, o: int, i: int, labelled: bool, po: Payout) -> Alert:
    txid = ctx.con.execute(
        "SELECT lower(hex(txid)) FROM transactions WHERE chain = ? AND tx_id = ?",
        [ctx.chain, int(v.tx_id[i])],
    ).fetchone()
    ins = [int(x) for x in v.in_addr[v.in_off[i] : v.in_off[i + 1]] if x >= 0]
    shown = ctx.address_texts([int(v.out_addr[o]), *dict.fromkeys(ins)])
    score = float(min(100.0, 60.0 + (15.0 if labelled else 0.0) + 5.0 * (len(po.path) - 1)))
    sats = int(v.out_value[o])
    return make_alert(
        "chain_hopping",
        "chain_hopping",
        ctx,
        score=score,
        addresses=shown,
        txids=(str(txid[0]),) if txid else (),
        window=(int(v.time[i]), po.time),
        amount=sats,
        asset="BTC",
        explanation=(
            f"{sats} sat (about USD {po.usd:,.0f}) paid to "
            f"{'the bridge' if labelled else 'a fresh address'} {shown[0]} match, within "
            f"{(po.time - int(v.time[i])) / 60:.0f} minutes and by value, a bridge payout on another "
            f"chain that went through {len(po.path) - 1} fresh address(es) to an exchange"
        ),
        entities=cluster_ids(ctx, ins),
        evidence={
            "labelled_bridge": labelled,
            "payout_usd": round(po.usd, 2),
            "hops_after": len(po.path) - 1,
        },
    )


DETECTOR = ChainHopping()
