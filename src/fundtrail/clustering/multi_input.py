"""The multi-input (common-input-ownership) heuristic on Bitcoin: the addresses a transaction spends
from are controlled by one entity, because one wallet signed them all (Nakamoto 2008, section 10;
Reid and Harrigan 2011; Meiklejohn et al. 2013). It is the default heuristic of GraphSense and BlockSci.

It does not hold for coinbases (no inputs), CoinJoins (several owners sign one transaction on purpose)
and PayJoins (BIP78: the receiver adds an input). Detected CoinJoins are excluded by default
(:mod:`fundtrail.chains.bitcoin.coinjoin`), PayJoin candidates when ``payjoin_aware`` is set
(:mod:`fundtrail.clustering.change`), and any txid an analyst lists in ``exclude_txs``.

A transaction is clustered once every one of its inputs is resolved (its funding output is in the
store): whether it is a CoinJoin depends on input values, and a merge cannot be undone. Transactions
still waiting are *deferred* and counted; they are taken up by the run after their funding arrives.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fundtrail.chains.bitcoin import coinjoin
from fundtrail.clustering import change
from fundtrail.clustering.config import ClusterConfig
from fundtrail.store.db import arrow, registered
from fundtrail.store.utxo_view import UtxoView, load_view

I64 = npt.NDArray[np.int64]


@dataclass
class InputGroups:
    """The input address lists of the transactions multi-input may merge, in CSR form."""

    tx_id: I64  # one per group
    offsets: I64  # len(tx_id) + 1
    members: I64  # input address ids
    processed: I64  # every candidate tx taken up (groups or not)
    deferred: I64  # candidates with an unresolved input
    excluded: dict[str, int]  # reason -> transactions left out (coinjoin:<family>, payjoin, analyst)
    view: UtxoView | None  # the processed transactions (for the change heuristics)


def candidates(con: duckdb.DuckDBPyConnection, chain: str, after_tx_id: int) -> tuple[I64, I64, I64]:
    """(ready, inputs per ready tx, deferred): non-coinbase transactions after ``after_tx_id`` or
    deferred last time, split by whether all their inputs are resolved."""
    t = arrow(
        con,
        """WITH c AS (
               SELECT tx_id FROM transactions WHERE chain = $chain AND tx_id > $after AND NOT is_coinbase
               UNION SELECT tx_id FROM cluster_pending WHERE chain = $chain)
           SELECT c.tx_id, coalesce(bool_and(i.resolved), false) AS ready, count(*) AS n_in
           FROM c JOIN tx_inputs i ON i.chain = $chain AND i.tx_id = c.tx_id
           GROUP BY c.tx_id ORDER BY c.tx_id""",
        {"chain": chain, "after": after_tx_id},
    )
    ids = t.column("tx_id").to_numpy().astype(np.int64)
    ready = t.column("ready").to_numpy(zero_copy_only=False).astype(bool)
    n_in = t.column("n_in").to_numpy().astype(np.int64)
    return ids[ready], n_in[ready], ids[~ready]


def input_groups(
    con: duckdb.DuckDBPyConnection, chain: str, cfg: ClusterConfig, after_tx_id: int, need_view: bool
) -> InputGroups:
    """The groups multi-input merges, after the exclusions of ``cfg``; with ``need_view`` also the UTXO
    view of every processed transaction (the change heuristics read it)."""
    ready, n_in, deferred = candidates(con, chain, after_tx_id)
    excluded: dict[str, int] = {}
    view_ids = ready if need_view else ready[n_in >= 2]
    view: UtxoView | None = load_view(con, chain, tx_ids=view_ids) if len(view_ids) else None
    drop = np.zeros(0, dtype=np.int64)
    if view is not None:
        multi = np.isin(view.tx_id, ready[n_in >= 2])
        if cfg.coinjoin_exclusion:
            codes = coinjoin.detect(view)
            codes[~multi] = 0
            for code in np.unique(codes[codes > 0]):
                excluded[f"coinjoin:{coinjoin.FAMILIES[code]}"] = int((codes == code).sum())
            drop = np.r_[drop, view.tx_id[codes > 0]]
        if cfg.payjoin_aware:
            pj = change.payjoin_candidates(view) & multi & ~np.isin(view.tx_id, drop)
            if pj.any():
                excluded["payjoin"] = int(pj.sum())
            drop = np.r_[drop, view.tx_id[pj]]
    if cfg.exclude_txs:
        hit = _tx_ids_of(con, chain, [bytes.fromhex(t) for t in cfg.exclude_txs])
        mask = np.isin(ready, hit) & ~np.isin(ready, drop)
        if mask.any():
            excluded["analyst"] = int(mask.sum())
        drop = np.r_[drop, ready[mask]]
    groups = ready[(n_in >= 2) & ~np.isin(ready, drop)]
    with registered(con, "_ft_groups", pa.table({"tx_id": groups})):
        t = arrow(
            con,
            """SELECT i.tx_id, i.address_id FROM tx_inputs i JOIN _ft_groups g ON i.tx_id = g.tx_id
               WHERE i.chain = ? AND i.address_id IS NOT NULL ORDER BY i.tx_id, i.n""",
            [chain],
        )
    tx = t.column("tx_id").to_numpy().astype(np.int64)
    members = t.column("address_id").to_numpy().astype(np.int64)
    starts = np.flatnonzero(np.r_[True, tx[1:] != tx[:-1]]) if len(tx) else np.zeros(0, dtype=np.int64)
    return InputGroups(
        tx_id=tx[starts],
        offsets=np.r_[starts, len(tx)].astype(np.int64),
        members=members,
        processed=ready,
        deferred=deferred,
        excluded=excluded,
        view=view if need_view else None,
    )


def _tx_ids_of(con: duckdb.DuckDBPyConnection, chain: str, txids: list[bytes]) -> I64:
    rows = con.execute(
        "SELECT tx_id FROM transactions WHERE chain = ? AND txid IN (SELECT unnest(?))", [chain, txids]
    ).fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64)
