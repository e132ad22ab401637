"""Dusting (UTXO): one transaction paying many tiny outputs to addresses that already have a history, so
that the owners' later spends of the dust, merged with their other coins, reveal which addresses belong
together (the tracking succeeded).

The rule (docs/detectors/dusting.md): a transaction with at least ``min_outputs`` outputs worth more than
``dust_limit_sat`` (Bitcoin Core's dust limit: below it the outputs would not relay) and at most
``max_dust_sat``, paid to distinct addresses that received before (targets), where those dust outputs
are at least ``min_dust_share`` of its outputs. Evidence: how many of the dust outputs were later spent
together with other coins (a multi-input spend); the score grows with the targets and that share.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from fundtrail.detection.base import Alert, DetectContext, Param, merged_params
from fundtrail.detection.utxo_common import since_mask, spender_rows, txid_texts, utxo_alert
from fundtrail.store.utxo_view import UtxoView


class Dusting:
    name = "dusting"
    typology = "dusting"  # the simulator embeds no dusting: alerts are not scored against a typology
    families = frozenset({"bitcoin"})
    summary = "many tiny outputs to addresses with a history, whose later merged spends reveal their owners"
    params = (
        Param(
            "min_outputs",
            10,
            "outputs",
            "dust outputs (to distinct addresses with history) a transaction needs",
        ),
        Param("max_dust_sat", 1_000, "satoshi", "largest output counted as dust"),
        Param("dust_limit_sat", 546, "satoshi", "outputs at or below this do not relay: not counted"),
        Param("min_dust_share", 0.8, "share", "share of the transaction's outputs that must be dust"),
    )

    def run(self, ctx: DetectContext) -> Iterator[Alert]:
        view: UtxoView = ctx.utxo_view()
        if not len(view):
            return
        p = merged_params(self.params, ctx)
        n_out = view.n_out
        out_tx = np.repeat(np.arange(len(view), dtype=np.int64), n_out)
        v = view.out_value
        own = view.tx_id[out_tx]
        dust = (
            (v > int(p["dust_limit_sat"]))
            & (v <= int(p["max_dust_sat"]))
            & (view.out_addr >= 0)
            & (view.first_seen_out >= 0)
            & (view.first_seen_out < own)
        )
        count = np.bincount(out_tx[dust], minlength=len(view))
        cand = (count >= int(p["min_outputs"])) & (count >= float(p["min_dust_share"]) * n_out)
        cand &= ~view.is_coinbase & since_mask(ctx, view)
        rows = np.flatnonzero(cand)
        if not len(rows):
            return
        spender = spender_rows(ctx)
        n_in = view.n_in
        texts = txid_texts(ctx, rows)
        for r in rows:
            a, b = int(view.out_off[r]), int(view.out_off[r + 1])
            k = np.arange(a, b)[dust[a:b]]
            targets = np.unique(view.out_addr[k])
            if len(targets) < int(p["min_outputs"]):
                continue
            s = spender[k]
            merged_rows = np.unique(s[(s >= 0) & (n_in[np.maximum(s, 0)] >= 2)])
            merged = int(np.sum((s >= 0) & (n_in[np.maximum(s, 0)] >= 2)))
            share = merged / len(k)
            score = min(100.0, 35.0 + 10.0 * np.log2(len(targets) / int(p["min_outputs"]) + 1) + 40.0 * share)
            senders = [int(x) for x in view.in_addr[view.in_off[r] : view.in_off[r + 1]] if x >= 0]
            ids = list(dict.fromkeys([*senders, *targets.tolist()]))
            more = txid_texts(ctx, merged_rows) if len(merged_rows) else {}
            tx_rows = [int(r), *(int(m) for m in merged_rows[np.argsort(view.tx_id[merged_rows])])]
            total = int(v[k].sum())
            t1 = int(view.time[merged_rows].max()) if len(merged_rows) else int(view.time[r])
            yield utxo_alert(
                self,
                ctx,
                view,
                tx_rows,
                {**more, int(r): texts[int(r)]},
                score=score,
                addresses=ctx.address_texts(ids),
                entity_ids=ids,
                window=(int(view.time[r]), max(t1, int(view.time[r]))),
                amount=total,
                explanation=(
                    f"One transaction paid {len(k)} dust outputs ({int(p['dust_limit_sat']) + 1}-"
                    f"{int(p['max_dust_sat'])} sat, {total:,} sat in all) to {len(targets)} addresses that "
                    f"already had a history; {merged} of them were later spent together with other coins "
                    f"(in {len(merged_rows)} transactions), which links those coins' addresses for whoever "
                    f"sent the dust."
                ),
                evidence={
                    "dust_outputs": len(k),
                    "targets": len(targets),
                    "merged_spends": merged,
                    "merged_share": round(share, 4),
                    "dust_value": total,
                },
            )


DETECTOR = Dusting()
