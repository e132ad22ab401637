"""Regression tests for bugs found reviewing the tracing engine: address seeds whose outputs are
downstream of each other (change back to the address), `cluster:ID` naming a member, loose outputs of an
address seed with `--start`, cluster-mode merging (unknown amounts, the representative path) and the
`swaps` key of the JSON contract."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from fundtrail.chains.bitcoin.builder import ChainBuilder, TxOut
from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.chains.registry import chain as get_chain
from fundtrail.ingest.bitcoin_tx import ingest_raw_transactions
from fundtrail.store.db import connect
from fundtrail.tracing.engine import TraceRequest, _merge_edges, _merge_endpoints, trace
from fundtrail.tracing.model import POLICIES, TOTAL_KEYS
from tests.test_cli import run
from tests.test_trace_utxo import CHAIN, _names, _write

SATOSHI = "12cbQLTFMXRnSzktFkuoG3eHoMeFtpTu3S"  # block 9's miner; block 170 pays 40 BTC change back to it
BTC = 100_000_000


def _conserved(t: dict) -> None:  # type: ignore[type-arg]
    tot = t["totals"]
    assert sum(tot[k] for k in TOTAL_KEYS) == tot["seed_amount"] + tot.get("created", 0)


@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("policy", POLICIES)
def test_address_seed_with_change_to_itself(real_store: Path, policy: str, direction: str) -> None:
    # the address received 50 BTC (block 9) and, from block 170 on, change of that same value back to
    # itself: tracing the address was refused ("reached by the trace of another seed"); the change is
    # now counted once, so the seed is the 50 BTC the address received from elsewhere
    con = connect(real_store, read_only=True)
    try:
        t = trace(con, TraceRequest("bitcoin", SATOSHI, direction, policy), real_store)
    finally:
        con.close()
    _conserved(t)
    assert t["totals"]["seed_amount"] == 50 * BTC
    assert t["totals"].get("created", 0) == 0
    if direction == "backward":  # all of it was minted by the block-9 coinbase
        assert [(p["address"], p["kind"], p["tainted_amount"]) for p in t["endpoints"]] == [
            (SATOSHI, "origin", 50 * BTC)
        ]


def test_cluster_seed_by_member_id(real_store: Path, tmp_path: Path) -> None:
    # `cluster:ID` with the id of a member (not the cluster's own id) traced that address alone
    db = tmp_path / "clustered.duckdb"
    shutil.copy(real_store, db)
    assert run("cluster", db=db).returncode == 0
    con = duckdb.connect(str(db), read_only=True)
    cid, member = con.execute(
        """SELECT cluster_id, max(address_id) FROM clusters WHERE chain = 'bitcoin'
           GROUP BY 1 HAVING count(*) > 1 ORDER BY count(*) DESC, 1 LIMIT 1"""
    ).fetchone() or (0, 0)
    con.close()
    assert member != cid
    con = connect(db, read_only=True)
    try:
        whole = trace(con, TraceRequest("bitcoin", f"cluster:{cid}"), db)
        by_member = trace(con, TraceRequest("bitcoin", f"cluster:{member}"), db)
    finally:
        con.close()
    assert by_member["totals"] == whole["totals"]


def test_address_seed_start_includes_loose_outputs(tmp_path: Path) -> None:
    # a loose transaction (no block yet) is later than any --start, as it is later than any --until;
    # an address seed with --start forward left its outputs out ("received nothing")
    b = ChainBuilder()
    txs, keys = _names(b)
    con = connect(tmp_path / "loose.duckdb")
    _write(con, b.raw_blocks())
    b2 = ChainBuilder(list(b.blocks), dict(b.utxos))
    loose = b2.spend([(txs["t4"].outpoint(0), keys["M"])], [TxOut(299_000_000, keys["Z"].p2pkh())])
    ingest_raw_transactions(con, [loose.serialize().hex()], REGTEST)
    c = get_chain(CHAIN)
    key = con.execute(
        """SELECT a.key FROM tx_outputs o JOIN addresses a ON a.address_id = o.address_id
           JOIN transactions t ON t.tx_id = o.tx_id WHERE t.txid = ? AND o.n = 0""",
        [loose.txid],
    ).fetchone()
    assert key is not None
    row = con.execute("SELECT max(time) FROM blocks WHERE chain = ?", [CHAIN]).fetchone()
    assert row is not None
    tip = int(row[0])
    t = trace(con, TraceRequest(CHAIN, c.show(bytes(key[0])), start=tip + 1))
    con.close()
    _conserved(t)
    assert t["totals"]["seed_amount"] == 299_000_000
    assert [(p["kind"], p["tainted_amount"]) for p in t["endpoints"]] == [("unspent", 299_000_000)]


def test_cluster_merge_unknown_amount_and_path() -> None:
    # backward, an unresolved input's amount is unknown (None): merging it with another edge of the same
    # transaction and clusters crashed with a TypeError
    e = {"txid": "t", "from": None, "to": "cluster:1", "time": None, "tainted_amount": 5, "hop": 1}
    merged = _merge_edges([{**e, "amount": None}, {**e, "amount": 7}])
    assert merged == [{**e, "amount": None, "tainted_amount": 10}]
    assert _merge_edges([{**e, "amount": 3}, {**e, "amount": 7}])[0]["amount"] == 10
    # the merged end point keeps the path of the member that carried the most taint (the contract),
    # not that of the nearest one
    p = {"cluster_id": 1, "kind": "unspent", "labels": [], "category": None}
    near = {**p, "address": "a", "addresses": ["a"], "tainted_amount": 1, "hops": 1, "path": ["x"]}
    far = {**p, "address": "b", "addresses": ["b"], "tainted_amount": 9, "hops": 3, "path": ["x", "y", "z"]}
    (m,) = _merge_endpoints([near, far])
    assert (m["tainted_amount"], m["hops"], m["path"], m["addresses"]) == (10, 1, ["x", "y", "z"], ["a", "b"])


def test_swaps_key_always_present(real_store: Path) -> None:
    # docs/commands/trace.md lists "swaps" in the JSON contract: it was left out when empty
    con = connect(real_store, read_only=True)
    try:
        t = trace(con, TraceRequest("bitcoin", SATOSHI))
    finally:
        con.close()
    assert t["swaps"] == []
    assert {"chain", "decimals", "limits", "as_of", "totals"} <= t.keys()


def test_account_hops_count_transactions_not_transfers() -> None:
    """A -> router -> B inside one transaction is one hop (and one txid in the path), as --hops says."""
    from tests.test_trace_account import Chain, key, store_of

    c = Chain()
    seed = c.tx(key("S"), key("A"), tokens=((key("S"), key("A"), 100),))
    routed = c.tx(key("A"), key("R"), tokens=((key("A"), key("R"), 100), (key("R"), key("B"), 100)))
    later = c.tx(key("B"), key("C"), tokens=((key("B"), key("C"), 100),))
    store = store_of(c)
    flow, _ = store.trace("haircut", tx=seed, token=True)
    hops = {(e.src, e.dst): e.hop for e in flow.edges}
    ids = store.id
    assert hops[ids("A"), ids("R")] == hops[ids("R"), ids("B")] == 1  # one transaction: one hop
    assert hops[ids("B"), ids("C")] == 2
    (end,) = [p for p in flow.endpoints if p.address_id == ids("C")]
    assert end.path == [store.txs[seed], store.txs[routed], store.txs[later]]  # no repeated txid
    store.con.close()
