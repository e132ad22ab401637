"""Per-transaction features of a UTXO chain (see :mod:`.features`): local features from the
:class:`~fundtrail.store.utxo_view.UtxoView`, plus aggregates over the spending graph (which transaction
each input spends, read once in bulk: the view itself does not carry it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from fundtrail.chains.bitcoin import script as st
from fundtrail.detection.scorer.features import (
    F64,
    GROUP_NAMES,
    I64,
    FeatureTable,
    category_codes,
    cluster_sizes,
    group_max,
    group_min,
    group_sum,
    log10p,
    lookup,
    neighbour_mean_max,
    row_of,
    trailing_zeros,
)
from fundtrail.store.utxo_view import UtxoView

# estimated virtual size per script type (BIP141 weight / 4, typical single-signature spends)
_IN_VBYTES = {st.P2WPKH: 68.0, st.P2PKH: 148.0, st.P2SH: 91.0, st.P2TR: 57.5}
_OUT_VBYTES = {st.P2WPKH: 31.0, st.P2PKH: 34.0, st.P2SH: 32.0, st.P2TR: 43.0, st.P2WSH: 43.0}
ROUND_SAT = 100_000  # an output of a whole multiple of 0.001 BTC counts as round

UTXO_WORDS: dict[str, str] = {
    "n_in": "number of inputs",
    "n_out": "number of outputs",
    "log_in_value": "value spent (log10 satoshi)",
    "log_out_value": "value paid out (log10 satoshi)",
    "log_fee": "fee (log10 satoshi)",
    "fee_rate": "fee rate (satoshi per estimated vbyte)",
    "is_coinbase": "is a coinbase",
    "out_entropy": "evenness of the output values (normalised entropy)",
    "equal_out_share": "share of outputs of one equal value",
    "round_out_share": "share of round outputs (multiples of 0.001 BTC)",
    "max_out_zeros": "most trailing zeros of an output value",
    "largest_out_share": "share of the largest output",
    "fresh_out_share": "share of outputs to never-seen addresses",
    "reused_out_share": "share of outputs to addresses seen before",
    "self_change": "pays back to a spending address",
    "n_in_addresses": "distinct spending addresses",
    "out_type_mismatch": "outputs of another script type than the inputs",
    "log_in_age_min": "age of the youngest coin spent (log10 seconds)",
    "log_in_age_mean": "mean age of the coins spent (log10 seconds)",
    "out_spent_share": "share of outputs already spent",
    "log_spend_delay_min": "time until an output is spent (log10 seconds)",
    "n_parents": "transactions it spends from",
    "n_children": "transactions spending it",
    "log_in_cluster_max": "size of the largest spending cluster (log10 addresses)",
    "log_out_cluster_max": "size of the largest receiving cluster (log10 addresses)",
    "n_in_clusters": "distinct spending clusters",
    **{f"in_{g}_share": f"share of inputs from {g} addresses" for g in GROUP_NAMES},
    **{f"out_{g}_share": f"share of outputs to {g} addresses" for g in GROUP_NAMES},
}
LOCAL = tuple(UTXO_WORDS)
AGGREGATED = (
    "n_in",
    "n_out",
    "log_out_value",
    "fee_rate",
    "out_entropy",
    "equal_out_share",
    "round_out_share",
    "fresh_out_share",
    "log_in_age_min",
    "log_spend_delay_min",
    "in_risky_share",
    "out_exchange_share",
    "in_mixer_share",
)
NAMES = (
    *LOCAL,
    *(f"{p}_{f}" for p in ("par_mean", "par_max", "chi_mean", "chi_max") for f in AGGREGATED),
    *(f"hop2_{f}" for f in AGGREGATED),
)


def _spent_outputs(con: Any, chain: str, view: UtxoView) -> tuple[I64, I64]:
    """Per input of the view: the row of the transaction it spends (-1: not stored or coinbase) and the
    index of the output it spends in the view's output arrays (-1 likewise)."""
    t = con.sql(
        "SELECT prev_tx_id::BIGINT, prev_vout::BIGINT FROM tx_inputs WHERE chain = $chain ORDER BY tx_id, n",
        params={"chain": chain},
    ).to_arrow_table()
    if t.num_rows != len(view.in_addr):
        raise RuntimeError("tx_inputs changed while the view was loaded")
    prev = np.asarray(t.column(0).fill_null(-1).to_numpy(), dtype=np.int64)
    vout = np.asarray(t.column(1).fill_null(-1).to_numpy(), dtype=np.int64)
    row = np.searchsorted(view.tx_id, prev)
    row = np.minimum(row, max(len(view.tx_id) - 1, 0))
    ok = (prev >= 0) & (len(view.tx_id) > 0)
    ok &= view.tx_id[row] == prev
    ok &= (vout >= 0) & (vout < np.where(ok, view.out_off[row + 1] - view.out_off[row], 0))
    prev_row = np.where(ok, row, -1)
    out_idx = np.where(ok, view.out_off[np.where(ok, row, 0)] + vout, -1)
    return prev_row, out_idx


def utxo_features(ctx: Any) -> FeatureTable:
    view: UtxoView = ctx.utxo_view()
    n = len(view)
    in_row, out_row = row_of(view.in_off), row_of(view.out_off)
    n_in, n_out = view.n_in.astype(np.float64), view.n_out.astype(np.float64)
    prev_row, spent_out = _spent_outputs(ctx.con, ctx.chain, view)
    f: dict[str, F64] = {"n_in": n_in, "n_out": n_out}
    coinbase = view.is_coinbase
    f["n_in"] = np.where(coinbase, 0.0, n_in)

    # values and fee
    in_known = group_sum(in_row, (view.in_value < 0).astype(np.float64), n) == 0
    in_total = group_sum(in_row, np.maximum(view.in_value, 0).astype(np.float64), n)
    out_val = view.out_value.astype(np.float64)
    out_total = group_sum(out_row, out_val, n)
    in_total = np.where(in_known & ~coinbase, in_total, np.nan)
    f["log_in_value"] = log10p(in_total)
    f["log_out_value"] = log10p(out_total)
    fee = in_total - out_total
    f["log_fee"] = log10p(fee)
    ivb = np.vectorize(lambda t: _IN_VBYTES.get(int(t), 68.0), otypes=[np.float64])
    ovb = np.vectorize(lambda t: _OUT_VBYTES.get(int(t), 31.0), otypes=[np.float64])
    in_vb = _by_code(view.in_type.astype(np.int64), ivb)
    out_vb = _by_code(view.out_type.astype(np.int64), ovb)
    vbytes = 10.5 + group_sum(in_row, in_vb, n) + group_sum(out_row, out_vb, n)
    f["fee_rate"] = np.where(fee >= 0, fee / vbytes, np.nan)
    f["is_coinbase"] = coinbase.astype(np.float64)

    # output shape
    share = out_val / np.maximum(out_total[out_row], 1.0)
    plogp = np.where(share > 0, -share * np.log(np.where(share > 0, share, 1.0)), 0.0)
    ent = group_sum(out_row, plogp, n)
    f["out_entropy"] = np.where(n_out > 1, ent / np.log(np.maximum(n_out, 2.0)), 0.0)
    f["equal_out_share"] = _max_equal(out_row, view.out_value, n) / np.maximum(n_out, 1.0)
    f["round_out_share"] = group_sum(
        out_row, ((view.out_value > 0) & (view.out_value % ROUND_SAT == 0)).astype(np.float64), n
    ) / np.maximum(n_out, 1.0)
    f["max_out_zeros"] = group_max(out_row, trailing_zeros(out_val), n, 0.0)
    f["largest_out_share"] = group_max(out_row, share, n, 0.0)

    # addresses
    txid_of_out = view.tx_id[out_row]
    has_addr = view.out_addr >= 0
    fresh = has_addr & (view.first_seen_out == txid_of_out)
    reused = has_addr & (view.first_seen_out >= 0) & (view.first_seen_out < txid_of_out)
    f["fresh_out_share"] = group_sum(out_row, fresh.astype(np.float64), n) / np.maximum(n_out, 1.0)
    f["reused_out_share"] = group_sum(out_row, reused.astype(np.float64), n) / np.maximum(n_out, 1.0)
    f["self_change"] = _self_change(in_row, view.in_addr, out_row, view.out_addr, n)
    f["n_in_addresses"] = _distinct(in_row, view.in_addr, n)
    in_t = group_max(in_row, view.in_type.astype(np.float64), n)
    f["out_type_mismatch"] = group_sum(
        out_row, ((view.out_type != in_t[out_row]) & ~np.isnan(in_t[out_row])).astype(np.float64), n
    ) / np.maximum(n_out, 1.0)

    # time: age of the coins spent, delay until the outputs are spent
    tm = np.where(view.time >= 0, view.time, -1).astype(np.float64)
    tm[tm < 0] = np.nan
    linked = prev_row >= 0
    age = np.full(len(prev_row), np.nan)
    age[linked] = np.maximum(tm[in_row[linked]] - tm[prev_row[linked]], 0.0)
    f["log_in_age_min"] = log10p(group_min(in_row, age, n))
    age_sum = group_sum(in_row, np.nan_to_num(age), n)
    age_cnt = group_sum(in_row, (~np.isnan(age)).astype(np.float64), n)
    f["log_in_age_mean"] = log10p(np.where(age_cnt > 0, age_sum / np.maximum(age_cnt, 1), np.nan))
    spender = np.full(len(view.out_addr), -1, np.int64)
    spender[spent_out[linked]] = in_row[linked]
    spent = spender >= 0
    f["out_spent_share"] = group_sum(out_row, spent.astype(np.float64), n) / np.maximum(n_out, 1.0)
    delay = np.full(len(spender), np.nan)
    delay[spent] = np.maximum(tm[spender[spent]] - tm[out_row[spent]], 0.0)
    f["log_spend_delay_min"] = log10p(group_min(out_row, delay, n))

    # the spending graph (distinct parent -> child pairs)
    src, dst = prev_row[linked], in_row[linked]
    if len(src):
        pairs = np.unique(src * n + dst)
        src, dst = pairs // n, pairs % n
    f["n_parents"] = np.bincount(dst, minlength=n).astype(np.float64)
    f["n_children"] = np.bincount(src, minlength=n).astype(np.float64)

    # counterparties: labelled categories and cluster sizes
    clusters = ctx.cluster_array()
    n_addr = int(max(len(clusters), view.in_addr.max(initial=-1) + 1, view.out_addr.max(initial=-1) + 1))
    codes = category_codes(ctx.categories(), n_addr)
    in_code, out_code = lookup(codes, view.in_addr, -1), lookup(codes, view.out_addr, -1)
    n_in_pos = np.maximum(n_in, 1.0)
    for g, name in enumerate(GROUP_NAMES):
        f[f"in_{name}_share"] = group_sum(in_row, (in_code == g).astype(np.float64), n) / n_in_pos
        f[f"out_{name}_share"] = group_sum(out_row, (out_code == g).astype(np.float64), n) / np.maximum(
            n_out, 1.0
        )
    sizes = cluster_sizes(clusters)
    in_size = np.where(view.in_addr >= 0, lookup(sizes, view.in_addr, 1), 0).astype(np.float64)
    out_size = np.where(view.out_addr >= 0, lookup(sizes, view.out_addr, 1), 0).astype(np.float64)
    f["log_in_cluster_max"] = np.log10(np.maximum(group_max(in_row, in_size, n, 0.0), 1.0))
    f["log_out_cluster_max"] = np.log10(np.maximum(group_max(out_row, out_size, n, 0.0), 1.0))
    cl = lookup(clusters, view.in_addr, -1)
    in_entity = np.where(cl >= 0, cl, -2 - view.in_addr)  # an address without a cluster is its own entity
    f["n_in_clusters"] = _distinct(in_row, np.where(view.in_addr >= 0, in_entity, -1), n)

    local = np.column_stack([f[name] for name in LOCAL])
    agg = np.column_stack([f[name] for name in AGGREGATED])
    par_mean, par_max = neighbour_mean_max(src, dst, agg, n)
    chi_mean, chi_max = neighbour_mean_max(dst, src, agg, n)
    und_src, und_dst = np.concatenate([src, dst]), np.concatenate([dst, src])
    hop1, _ = neighbour_mean_max(und_src, und_dst, agg, n)
    hop2, _ = neighbour_mean_max(und_src, und_dst, hop1, n)
    X = np.hstack([local, par_mean, par_max, chi_mean, chi_max, hop2])
    return FeatureTable(ctx.chain, "utxo", view.tx_id.copy(), _txids(ctx, view.tx_id), NAMES, X)


def _by_code(codes: I64, fn: Any) -> F64:
    uniq, inv = np.unique(codes, return_inverse=True)
    return np.asarray(fn(uniq), dtype=np.float64)[inv] if len(uniq) else np.zeros(0)


def _max_equal(row: I64, values: I64, n: int) -> F64:
    """Per transaction, how many of its outputs share the most common value."""
    if len(row) == 0:
        return np.zeros(n)
    order = np.lexsort((values, row))
    r, v = row[order], values[order]
    new = np.r_[True, (r[1:] != r[:-1]) | (v[1:] != v[:-1])]
    starts = np.flatnonzero(new)
    runs = np.diff(np.r_[starts, len(r)]).astype(np.float64)
    return group_max(r[starts], runs, n, 0.0)


def _distinct(row: I64, ids: I64, n: int) -> F64:
    """Distinct ids per row (-1, unknown, is not counted)."""
    keep = ids != -1
    if not keep.any():
        return np.zeros(n)
    pairs = np.unique(np.stack([row[keep], ids[keep]], axis=1), axis=0)
    return np.bincount(pairs[:, 0], minlength=n).astype(np.float64)


def _self_change(in_row: I64, in_addr: I64, out_row: I64, out_addr: I64, n: int) -> F64:
    a = np.unique(np.stack([in_row, in_addr], axis=1)[in_addr >= 0], axis=0)
    b = np.unique(np.stack([out_row, out_addr], axis=1)[out_addr >= 0], axis=0)
    out = np.zeros(n)
    if len(a) and len(b):
        both = np.concatenate([a, b])
        u, counts = np.unique(both, axis=0, return_counts=True)
        out[u[counts > 1, 0]] = 1.0
    return out


def _txids(ctx: Any, tx_ids: I64) -> tuple[str, ...]:
    t = ctx.con.sql(
        "SELECT lower(hex(txid)) FROM transactions WHERE chain = $chain ORDER BY tx_id",
        params={"chain": ctx.chain},
    ).to_arrow_table()
    texts: list[str] = t.column(0).to_pylist()
    if len(texts) != len(tx_ids):
        raise RuntimeError("transactions changed while the view was loaded")
    return tuple(texts)
