"""Round-tripping (docs/detectors/round_tripping.md): directed cycles of transfers of one asset that leave
an address and come back to it (or to its cluster) through 2-5 other addresses within a window, carrying
most of the value that left. Services (exchanges, bridges, DEXs ...) are never part of a cycle, so a
withdrawal later deposited back is no round trip. Account chains; a compiled depth-first search."""

from __future__ import annotations

from collections.abc import Iterator

import numba as nb
import numpy as np

from fundtrail.detection.account_common import F64, I64, AccountArrays, account_arrays
from fundtrail.detection.base import Alert, DetectContext, Param, cluster_ids, make_alert, merged_params

PARAMS = (
    Param(
        "window_seconds", 30 * 86_400, "seconds", "the cycle closes within this time of its first transfer"
    ),
    Param("min_length", 3, "transfers", "shortest cycle (3: two addresses besides the origin)"),
    Param("max_length", 6, "transfers", "longest cycle searched"),
    Param("min_share", 0.8, "share", "the value back at the origin at least this share of what left"),
    Param(
        "min_hop_share",
        0.95,
        "share",
        "each address on the cycle passes on at least this share of what it got",
    ),
    Param("max_growth", 0.01, "share", "a transfer may exceed the one before it by at most this share"),
    Param("min_usd", 10_000, "USD", "value of the first transfer (unpriced assets: always searched)"),
    Param("max_visits", 20_000, "count", "search budget per starting transfer (bounds hub addresses)"),
)


@nb.njit(cache=True)
def _cycles(
    starts: I64,
    off: I64,
    edge_to: I64,
    edge_row: I64,
    row_time: I64,
    row_amount: F64,
    row_asset: I64,
    row_from: I64,
    row_to: I64,
    group: I64,
    window: int,
    min_len: int,
    max_len: int,
    min_share: float,
    min_hop_share: float,
    max_growth: float,
    max_visits: int,
) -> I64:
    """For each starting transfer row, the rows of the first cycle found back to its sender's group
    (-1 padded to ``max_len``), or all -1."""
    out = np.full((len(starts), max_len), -1, dtype=np.int64)
    path_node = np.empty(max_len + 1, dtype=np.int64)
    path_row = np.empty(max_len, dtype=np.int64)
    ptr = np.empty(max_len + 1, dtype=np.int64)
    for s in range(len(starts)):
        r0 = starts[s]
        origin = row_from[r0]
        g0 = group[origin]
        a0 = row_amount[r0]
        lo = a0 * min_share
        t_end = row_time[r0] + window
        asset = row_asset[r0]
        first = row_to[r0]
        if group[first] == g0:
            continue
        path_node[0] = origin
        path_node[1] = first
        path_row[0] = r0
        depth = 1  # edges on the path
        ptr[1] = -1
        visits = 0
        found = False
        while depth >= 1 and not found and visits < max_visits:
            node = path_node[depth]
            prev_row = path_row[depth - 1]
            if ptr[depth] < 0:  # first edge of node after prev_row: binary search on rows
                a, b = off[node], off[node + 1]
                while a < b:
                    m = (a + b) // 2
                    if edge_row[m] <= prev_row:
                        a = m + 1
                    else:
                        b = m
                ptr[depth] = a
            advanced = False
            while ptr[depth] < off[node + 1]:
                e = ptr[depth]
                ptr[depth] += 1
                visits += 1
                r = edge_row[e]
                if row_time[r] > t_end:
                    ptr[depth] = off[node + 1]
                    break
                if row_asset[r] != asset or row_amount[r] < lo:
                    continue
                prev_amount = row_amount[prev_row]
                if (
                    row_amount[r] > prev_amount * (1.0 + max_growth)
                    or row_amount[r] < prev_amount * min_hop_share
                ):
                    continue
                nxt = edge_to[e]
                if group[nxt] == g0:
                    if depth + 1 >= min_len:
                        path_row[depth] = r
                        for k in range(depth + 1):
                            out[s, k] = path_row[k]
                        found = True
                        break
                    continue
                if depth + 1 >= max_len:
                    continue
                seen = False
                for k in range(1, depth + 1):
                    if path_node[k] == nxt:
                        seen = True
                if seen:
                    continue
                path_row[depth] = r
                depth += 1
                path_node[depth] = nxt
                ptr[depth] = -1
                advanced = True
                break
            if not advanced and not found:
                depth -= 1
    return out


class RoundTripping:
    name = "round_tripping"
    typology = "round_tripping"
    families = frozenset({"evm", "tron"})
    params = PARAMS
    summary = "value that leaves an address and returns to it through other addresses within days"

    def run(self, ctx: DetectContext) -> Iterator[Alert]:
        a = account_arrays(ctx)
        if len(a.frm) == 0:
            return
        p = merged_params(PARAMS, ctx)
        ok = ~a.service[a.frm] & ~a.service[a.to] & (a.frm != a.to)
        rows = np.flatnonzero(ok)
        big = ~(a.usd[rows] < float(p["min_usd"]))  # NaN (no price) counts as big
        starts = rows[big]
        if not len(rows):
            return
        n_addr = len(a.service)
        cl = np.asarray(ctx.cluster_array(), dtype=np.int64)
        group = np.arange(n_addr, dtype=np.int64)
        if len(cl):
            m = min(len(cl), n_addr)
            c = cl[:m]
            group[:m] = np.where(c >= 0, c + n_addr, group[:m])  # cluster ids apart from address ids
        order = rows[np.lexsort((rows, a.frm[rows]))]
        off = np.zeros(n_addr + 1, dtype=np.int64)
        np.add.at(off, a.frm[order] + 1, 1)
        off = np.cumsum(off)
        found = _cycles(
            starts.astype(np.int64),
            off,
            a.to[order],
            order.astype(np.int64),
            a.time,
            a.amount,
            a.asset,
            a.frm,
            a.to,
            group,
            int(p["window_seconds"]),
            int(p["min_length"]),
            int(p["max_length"]),
            float(p["min_share"]),
            float(p["min_hop_share"]),
            float(p["max_growth"]),
            int(p["max_visits"]),
        )
        seen: set[tuple[int, ...]] = set()
        for s in np.flatnonzero(found[:, 0] >= 0).tolist():
            cyc = found[s][found[s] >= 0]
            key = tuple(sorted(int(r) for r in cyc))
            if key in seen:
                continue
            seen.add(key)
            alert = _alert(ctx, a, cyc)
            if alert is not None:
                yield alert


def _alert(ctx: DetectContext, a: AccountArrays, cyc: I64) -> Alert | None:
    if int(a.height[cyc].max()) < ctx.since_height:
        return None
    asset = a.assets[int(a.asset[cyc[0]])]
    col = a.table.column("amount")
    amounts = [int(col[int(r)].as_py()) for r in cyc]
    left, back = amounts[0], amounts[-1]
    nodes = [int(a.frm[r]) for r in cyc]
    shown = ctx.address_texts(nodes + ([int(a.to[cyc[-1]])] if a.to[cyc[-1]] != nodes[0] else []))
    share = back / left if left else 0.0
    t0, t1 = int(a.time[cyc[0]]), int(a.time[cyc[-1]])
    usd = float(a.usd[cyc[0]]) if np.isfinite(a.usd[cyc[0]]) else 0.0
    score = 50.0 + 25.0 * min(1.0, max(0.0, (share - 0.8) / 0.2)) + min(15.0, 5.0 * np.log10(usd / 1_000 + 1))
    score += 10.0 if t1 - t0 <= 86_400 else 0.0
    score = float(min(100.0, score))
    return make_alert(
        "round_tripping",
        "round_tripping",
        ctx,
        score=score,
        addresses=shown,
        txids=a.hashes(cyc),
        window=(t0, t1),
        amount=left,
        asset=asset,
        explanation=(
            f"{shown[0]} sent {left} base units of {asset} (about USD {usd:,.0f}) through "
            f"{len(cyc) - 1} other addresses and got {back} ({share * 100:.1f} %) back within "
            f"{(t1 - t0) / 3600:.1f} hours: a cycle with no service on it"
        ),
        entities=cluster_ids(ctx, nodes),
        evidence={
            "length": len(cyc),
            "amounts": [str(x) for x in amounts],
            "returned_share": round(share, 4),
            "seconds": t1 - t0,
        },
    )


DETECTOR = RoundTripping()
