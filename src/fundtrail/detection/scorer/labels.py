"""Training labels from a simulated world's truth, mapped to the store's ids in bulk.

- a **transaction** is illicit when it is one of the world's ``operation_txs`` (every step of a
  laundering operation: the theft, peels, hops, gas top-ups, cash-outs ...);
- an **address** (and so an entity) is illicit when the truth's actor owning it is illicit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fundtrail.errors import InvalidInput
from fundtrail.evaluation.keys import address_key_or_none
from fundtrail.simulate.truth import Truth
from fundtrail.store.db import registered

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


def truth_txids(truth: Truth, chain: str) -> list[str]:
    """The operation transaction ids of ``chain`` (lower-case hex; 0x-prefixed on account chains)."""
    t = truth.table("operation_txs")
    sel = t.filter(pc.equal(t.column("chain"), chain))
    return sorted({str(x).lower() for x in sel.column("txid").to_pylist() if x is not None})


def illicit_tx_ids(con: Any, truth: Truth, chain: str, family: str) -> I64:
    """Store ``tx_id`` of every operation transaction of ``chain`` that the store holds (sorted)."""
    txids = truth_txids(truth, chain)
    if family == "bitcoin":
        table = pa.table({"txid": pa.array([bytes.fromhex(x) for x in txids], pa.binary())})
        sql = "SELECT t.tx_id FROM transactions t JOIN _ft_truth s ON t.txid = s.txid WHERE t.chain = $chain"
    else:
        table = pa.table(
            {"txid": pa.array([bytes.fromhex(x.removeprefix("0x")) for x in txids], pa.binary())}
        )
        sql = "SELECT t.tx_id FROM account_txs t JOIN _ft_truth s ON t.hash = s.txid WHERE t.chain = $chain"
    with registered(con, "_ft_truth", table):
        got = con.sql(sql, params={"chain": chain}).to_arrow_table()
    return np.unique(np.asarray(got.column(0).to_numpy(), dtype=np.int64))


def transaction_labels(con: Any, truth: Truth, chain: str, family: str, tx_id: I64) -> B:
    """Per row of ``tx_id``: is it an operation transaction? Refuses a world whose operations on
    ``chain`` are not in the store (the wrong store or world)."""
    illicit = illicit_tx_ids(con, truth, chain, family)
    if len(truth_txids(truth, chain)) and not len(illicit):
        raise InvalidInput(
            f"none of the truth's {chain} operation transactions is in the store",
            "pass the --db store that holds this world (ingest it first)",
        )
    return np.isin(tx_id, illicit)


def illicit_address_ids(con: Any, truth: Truth, chain: str) -> I64:
    """Store ``address_id`` of every address of ``chain`` owned by an illicit actor (sorted)."""
    actors = truth.table("actors")
    bad = set(actors.filter(pc.equal(actors.column("illicit"), True)).column("actor_id").to_pylist())
    addrs = truth.table("addresses")
    sel = addrs.filter(pc.equal(addrs.column("chain"), chain))
    keys: list[bytes] = []
    for text, actor in zip(sel.column("address").to_pylist(), sel.column("actor_id").to_pylist()):
        if actor in bad:
            key = address_key_or_none(chain, str(text))
            if key is not None:
                keys.append(key)
    with registered(con, "_ft_truth_keys", pa.table({"key": pa.array(keys, pa.binary())})):
        got = con.sql(
            "SELECT a.address_id FROM addresses a JOIN _ft_truth_keys k ON a.key = k.key WHERE a.chain = $c",
            params={"c": chain},
        ).to_arrow_table()
    return np.unique(np.asarray(got.column(0).to_numpy(), dtype=np.int64))


def world_chains(con: Any, truth: Truth) -> list[str]:
    """Chains with laundering transactions in ``truth`` that the store holds blocks of."""
    t = truth.table("operation_txs")
    in_truth = {str(c) for c in pc.unique(t.column("chain")).to_pylist() if c is not None}
    stored = {str(r[0]) for r in con.execute("SELECT DISTINCT chain FROM blocks").fetchall()}
    chains = sorted(in_truth & stored)
    if not chains:
        raise InvalidInput(
            "the store holds none of the chains this world's operations run on",
            "pass the --db store the world was ingested into",
        )
    return chains
