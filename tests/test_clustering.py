"""Address clustering: GraphSense's reference partition, real mainnet blocks against two independent
union-finds (GraphSense's own and SciPy's), incremental runs equal to a full recompute over random block
orders and splits, evidence chains, the super-cluster guard and the CLI."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fundtrail.chains.bitcoin.address import key_to_address, parse_address, script_for_key
from fundtrail.chains.bitcoin.builder import (
    DUMMY_SIGNATURE,
    ChainBuilder,
    Key,
    OutPoint,
    Tx,
    TxIn,
    TxOut,
    build_block,
    coinbase_tx,
    push,
    regtest_genesis,
)
from fundtrail.chains.bitcoin.decoder import decode_blocks
from fundtrail.chains.bitcoin.network import MAINNET, REGTEST
from fundtrail.chains.registry import chain as get_chain
from fundtrail.clustering import engine, read
from fundtrail.clustering.config import ClusterConfig
from fundtrail.clustering.links import Links
from fundtrail.errors import InvalidInput, NotFound
from fundtrail.store.bitcoin_write import write_blocks
from fundtrail.store.db import connect
from tests.conftest import DATA

SYNTH = DATA / "graphsense-lib" / "synthetic_utxo_cluster"


def write_raw_blocks(con: duckdb.DuckDBPyConnection, raws: list[bytes]) -> None:
    buf = np.frombuffer(b"".join(raws), dtype=np.uint8)
    ends = np.cumsum([len(r) for r in raws]).astype(np.int64)
    starts = np.r_[0, ends[:-1]].astype(np.int64)
    write_blocks(con, decode_blocks(buf, starts, ends, REGTEST), "test")


def partition(con: duckdb.DuckDBPyConnection, chain: str) -> set[frozenset[int]]:
    """The clusters of two or more addresses, as sets of address ids."""
    rows = con.execute("SELECT cluster_id, address_id FROM clusters WHERE chain = ?", [chain]).fetchall()
    by: dict[int, set[int]] = {}
    for c, a in rows:
        by.setdefault(c, set()).add(a)
    return {frozenset(s) for s in by.values()}


# --- GraphSense's synthetic chain and its reference clustering ----------------------------------------


def _synthetic_chain() -> tuple[list[bytes], dict[int, bytes]]:
    """The synthetic chain of GraphSense's clustering tests rebuilt as real regtest blocks: same
    addresses, same values, same spends (its tx hashes are fake, so the txids differ). Returns the raw
    blocks and, per synthetic tx number, our txid."""
    txs = [json.loads(line) for line in (SYNTH / "test_txs.json").read_text().splitlines()]
    fake_keys = [b"\x02" + bytes([i]) * 32 for i in (1, 2)]
    unspent: list[tuple[str, int, OutPoint]] = []
    blocks: list[bytes] = []
    ours: dict[int, bytes] = {}
    prev = regtest_genesis()
    blocks.append(prev.serialize())
    for block_id in sorted({t["blockId"] for t in txs}):
        built: list[Tx] = []
        for t in (x for x in txs if x["blockId"] == block_id):
            outputs = []
            for o in t["outputs"]:
                if len(o["address"]) == 1:
                    script = script_for_key(parse_address(o["address"][0], MAINNET))
                else:  # a bare 1-of-2 multisig output (no address, like GraphSense's pseudo-address)
                    script = b"\x51" + b"".join(push(k) for k in fake_keys) + b"\x52\xae"
                outputs.append(TxOut(o["value"], script))
            if t["coinbase"]:
                tx = coinbase_tx(len(blocks), outputs)
            else:
                ins = []
                for i in t["inputs"]:
                    name = "+".join(i["address"])
                    # the synthetic tx 8 spends tx 5's multisig output as 1,500,000 sat; tx 5 created it
                    # with 150,000: match on the value, else on the address alone (unique there)
                    match = next(
                        (u for u in unspent if u[0] == name and u[1] == i["value"]),
                        next(u for u in unspent if u[0] == name),
                    )
                    unspent.remove(match)
                    ins.append(TxIn(match[2], push(DUMMY_SIGNATURE)))
                tx = Tx(tuple(ins), tuple(outputs))
            for n, o in enumerate(t["outputs"]):
                unspent.append(("+".join(o["address"]), o["value"], tx.outpoint(n)))
            ours[t["txId"]] = tx.txid
            built.append(tx)
        block = build_block(prev.hash, built, t["timestamp"])
        blocks.append(block.serialize())
        prev = block
    return blocks, ours


def _reference(name: str) -> set[frozenset[str]]:
    ids = {
        r["addressId"]: r["address"]
        for r in map(json.loads, (SYNTH / "reference" / "address_ids.json").read_text().splitlines())
    }
    by: dict[int, set[str]] = {}
    for r in map(json.loads, (SYNTH / "reference" / name).read_text().splitlines()):
        if ids[r["addressId"]] != "coinbase":
            by.setdefault(r["clusterId"], set()).add(ids[r["addressId"]])
    return {frozenset(s) for s in by.values() if len(s) > 1}


def _named(con: duckdb.DuckDBPyConnection) -> set[frozenset[str]]:
    keys = dict(con.execute("SELECT address_id, key FROM addresses").fetchall())
    parts = partition(con, "bitcoin-regtest")
    return {frozenset(key_to_address(bytes(keys[a]), MAINNET) for a in c) for c in parts}


def test_graphsense_synthetic_chain_clusters_as_its_reference(tmp_path: Path) -> None:
    raws, txids = _synthetic_chain()
    con = connect(tmp_path / "s.duckdb")
    write_raw_blocks(con, raws)
    # tx 5 is flagged as a CoinJoin in the synthetic data only (its shape is an ordinary payment): our
    # detectors leave it in, so the default run equals GraphSense's clustering *without* exclusion ...
    engine.cluster(con, ClusterConfig(), ["bitcoin-regtest"])
    with_cj = _reference("address_cluster_with_coinjoin.json")
    assert _named(con) == with_cj
    assert len(with_cj) == 3
    # ... and an analyst's exclusion of tx 5 gives its clustering with the CoinJoin excluded
    cfg = ClusterConfig(exclude_txs=(txids[5].hex(),))
    report = engine.cluster(con, cfg, ["bitcoin-regtest"])[0]
    assert report.mode == "full" and "configuration changed" in report.reason
    assert report.excluded == {"analyst": 1}
    assert _named(con) == _reference("address_cluster.json")
    con.close()


# --- real mainnet blocks ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clustered_real(real_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("cl") / "real.duckdb"
    shutil.copy(real_store, path)
    con = connect(path)
    engine.cluster(con, ClusterConfig(), ["bitcoin"])
    con.close()
    yield path


def _input_lists(con: duckdb.DuckDBPyConnection) -> list[list[int]]:
    """Input address lists of the transactions whose inputs are all resolved (the store also holds
    later blocks whose funding transactions it lacks: those are deferred, see docs/clustering.md)."""
    rows = con.execute(
        """SELECT list(address_id ORDER BY n) FILTER (address_id IS NOT NULL) FROM tx_inputs i
           JOIN transactions t USING (chain, tx_id)
           WHERE chain = 'bitcoin' AND NOT t.is_coinbase
           GROUP BY tx_id HAVING bool_and(i.resolved) AND count(i.address_id) > 1"""
    ).fetchall()
    return [list(r[0]) for r in rows]


def test_real_blocks_partition_equals_graphsense_and_scipy(clustered_real: Path) -> None:
    import gs_clustering
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    con = connect(clustered_real, read_only=True)
    ours = partition(con, "bitcoin")
    lists = _input_lists(con)
    n = int(con.execute("SELECT max(address_id) + 1 FROM addresses").fetchall()[0][0])
    assert len(lists) >= 40 and len(ours) >= 20  # blocks 0..438 and later ones: real multi-input spends
    gs = gs_clustering.Clustering(n)
    gs.process_transactions_arrow(pa.array(lists, type=pa.list_(pa.uint32())))
    m = gs.get_mapping_min(True).to_pydict()
    theirs: dict[int, set[int]] = {}
    for a, c in zip(m["address_id"], m["cluster_id"]):
        theirs.setdefault(c, set()).add(a)
    assert ours == {frozenset(s) for s in theirs.values()}
    rows = np.array([x for lst in lists for x in lst[1:]])
    cols = np.array([lst[0] for lst in lists for _ in lst[1:]])
    _, label = connected_components(
        coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)), directed=False
    )
    sp: dict[int, set[int]] = {}
    for a, lab in enumerate(label):
        sp.setdefault(int(lab), set()).add(a)
    assert ours == {frozenset(s) for s in sp.values() if len(s) > 1}
    # cluster ids are the smallest member, as GraphSense's get_mapping_min
    ids = con.execute("SELECT cluster_id, min(address_id) FROM clusters GROUP BY 1").fetchall()
    assert all(c == m for c, m in ids)
    con.close()


def test_explain_cluster_on_real_blocks(clustered_real: Path) -> None:
    con = connect(clustered_real, read_only=True)
    c = get_chain("bitcoin")
    cid, size = con.execute(
        "SELECT cluster_id, count(*) FROM clusters GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 1"
    ).fetchall()[0]
    assert size >= 3
    ids = read.members(con, "bitcoin", cid)
    keys = dict(con.execute("SELECT address_id, key FROM addresses").fetchall())
    a, b = (c.show(bytes(keys[i])) for i in (ids[0], ids[-1]))
    ex = read.explain(con, c, a, b)
    assert ex["linked"] and ex["cluster_id"] == cid
    assert ex["steps"][0]["from"] == a and ex["steps"][-1]["to"] == b
    for s in ex["steps"]:  # every step: both addresses are inputs of the named transaction
        assert s["heuristic"] == "multi_input"
        spenders = {
            r[0]
            for r in con.execute(
                """SELECT a.key FROM tx_inputs i JOIN transactions t USING (chain, tx_id)
                   JOIN addresses a ON a.address_id = i.address_id WHERE t.txid = ?""",
                [bytes.fromhex(s["txid"])],
            ).fetchall()
        }
        assert {c.parse(s["from"]), c.parse(s["to"])} <= {bytes(k) for k in spenders}
    for i in range(len(ex["steps"]) - 1):
        assert ex["steps"][i]["to"] == ex["steps"][i + 1]["from"]
    # two addresses in different clusters are not linked
    other = con.execute(
        "SELECT key FROM addresses WHERE chain = 'bitcoin' AND address_id NOT IN "
        "(SELECT address_id FROM clusters) LIMIT 1"
    ).fetchall()[0][0]
    nope = read.explain(con, c, a, c.show(bytes(other)))
    assert nope["linked"] is False and nope["steps"] == []
    shown = read.cluster(con, c, a)
    assert shown["size"] == size and shown["heuristics"] == {"multi_input": size - 1}
    assert read.cluster(con, c, str(cid))["cluster_id"] == cid
    with pytest.raises(InvalidInput):
        read.cluster(con, c, "not-an-address")
    con.close()


def test_satoshi_block_170_spend_is_not_clustered(clustered_real: Path) -> None:
    """Block 170's transaction spends one input: nothing to merge, the addresses stay apart."""
    con = connect(clustered_real, read_only=True)
    c = get_chain("bitcoin")
    ex = read.explain(con, c, "12cbQLTFMXRnSzktFkuoG3eHoMeFtpTu3S", "1Q2TWHE3GMdB6BZKafqwxXtWAWgFt5Jvm3")
    assert ex["linked"] is False
    con.close()


# --- incremental == full ------------------------------------------------------------------------------


def _random_chain(rng: random.Random, n_blocks: int) -> list[bytes]:
    """A regtest chain whose transactions spend 1-4 random unspent outputs of a small key pool, paying
    1-3 outputs to random keys of the pool (so clusters grow, merge and chain up)."""
    b = ChainBuilder()
    keys = [Key(f"k{i}") for i in range(24)]
    owner: dict[OutPoint, Key] = {}
    for _ in range(n_blocks):
        txs: list[Tx] = []
        pool = [op for op in b.utxos if op in owner]
        rng.shuffle(pool)
        while pool and len(txs) < 4:
            k = min(len(pool), rng.randint(1, 4))
            spends, pool = pool[:k], pool[k:]
            total = sum(b.utxos[op].value for op in spends)
            n_out = rng.randint(1, 3)
            outs = [TxOut(total // (n_out + 1), rng.choice(keys).p2pkh()) for _ in range(n_out)]
            tx = b.spend([(op, owner[op]) for op in spends], outs)
            txs.append(tx)
        miner = rng.choice(keys)
        block = b.add_block(txs, miner=miner)
        for t in block.txs:
            for n, o in enumerate(t.outputs):
                owner[t.outpoint(n)] = next(k for k in keys if k.p2pkh() == o.script_pubkey)
    return b.raw_blocks()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), n_splits=st.integers(1, 5), shuffle=st.booleans())
def test_incremental_equals_full(
    tmp_path_factory: pytest.TempPathFactory, seed: int, n_splits: int, shuffle: bool
) -> None:
    rng = random.Random(seed)
    raws = _random_chain(rng, 14)
    order = raws[1:]
    if shuffle:
        rng.shuffle(order)
    cuts = sorted(rng.sample(range(1, len(order)), min(n_splits, len(order) - 1)))
    d = tmp_path_factory.mktemp("inc")
    inc = connect(d / "inc.duckdb")
    write_raw_blocks(inc, raws[:1])
    for lo, hi in zip([0, *cuts], [*cuts, len(order)]):
        write_raw_blocks(inc, order[lo:hi])
        report = engine.cluster(inc, ClusterConfig(), ["bitcoin-regtest"])[0]
    assert report.deferred == 0
    full = connect(d / "full.duckdb")
    write_raw_blocks(full, raws)
    engine.cluster(full, ClusterConfig(), ["bitcoin-regtest"])

    def named(con: duckdb.DuckDBPyConnection) -> set[frozenset[bytes]]:
        keys = dict(con.execute("SELECT address_id, key FROM addresses").fetchall())
        return {frozenset(bytes(keys[a]) for a in c) for c in partition(con, "bitcoin-regtest")}

    assert named(inc) == named(full)
    # the evidence of each cluster is a spanning tree of it: size - 1 merges
    for con in (inc, full):
        sizes = dict(con.execute("SELECT cluster_id, count(*) FROM clusters GROUP BY 1").fetchall())
        edges = dict(
            con.execute(
                """SELECT m.cluster_id, count(*) FROM cluster_evidence e JOIN clusters m
                   ON m.address_id = e.a_id GROUP BY 1"""
            ).fetchall()
        )
        assert {c: n - 1 for c, n in sizes.items()} == edges
    inc.close()
    full.close()


def test_rollback_forces_a_full_recompute(tmp_path: Path) -> None:
    from fundtrail.store.bitcoin_write import rollback_above

    raws = _random_chain(random.Random(7), 10)
    con = connect(tmp_path / "r.duckdb")
    write_raw_blocks(con, raws)
    assert engine.cluster(con, ClusterConfig(), ["bitcoin-regtest"])[0].mode == "full"
    assert engine.cluster(con, ClusterConfig(), ["bitcoin-regtest"])[0].mode == "incremental"
    rollback_above(con, "bitcoin-regtest", 6)
    r = engine.cluster(con, ClusterConfig(), ["bitcoin-regtest"])[0]
    assert r.mode == "full" and "rolled back" in r.reason
    fresh = connect(tmp_path / "f.duckdb")
    write_raw_blocks(fresh, raws[:7])
    engine.cluster(fresh, ClusterConfig(), ["bitcoin-regtest"])
    keys = dict(con.execute("SELECT address_id, key FROM addresses").fetchall())
    fkeys = dict(fresh.execute("SELECT address_id, key FROM addresses").fetchall())
    assert {frozenset(bytes(keys[a]) for a in c) for c in partition(con, "bitcoin-regtest")} == {
        frozenset(bytes(fkeys[a]) for a in c) for c in partition(fresh, "bitcoin-regtest")
    }


# --- the super-cluster guard --------------------------------------------------------------------------


def test_capped_merges_are_refused_and_reported(tmp_path: Path) -> None:
    from fundtrail.clustering import unionfind

    parent = unionfind.new_forest(10)
    size = np.ones(10, dtype=np.int64)
    a = np.array([0, 2, 0, 5], dtype=np.int64)
    b = np.array([1, 3, 2, 6], dtype=np.int64)
    tx = np.array([100, 101, 102, 103], dtype=np.int64)
    out = [np.empty(4, np.int64) for _ in range(5)]
    k, r = unionfind.union_pairs_capped(parent, size, a, b, tx, 3, *out)
    assert (k, r) == (3, 1)  # {0,1} + {2,3} would make 4 > 3: refused
    assert list(out[3][:r]) == [2] and list(out[4][:r]) == [4]
    root = unionfind.roots(parent)
    assert root[1] == 0 and root[3] == 2 and root[6] == 5 and root[2] != root[0]
    links = Links("change_one_time", a, b, tx)
    assert len(links) == 4


def test_show_cluster_and_config_errors(clustered_real: Path, tmp_path: Path) -> None:
    con = connect(tmp_path / "empty.duckdb")
    with pytest.raises(NotFound, match="cluster"):
        read.cluster(con, get_chain("bitcoin"), "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa")
    con.close()
    with pytest.raises(InvalidInput, match="unknown change heuristic"):
        ClusterConfig(change=("psychic",))
    bad = tmp_path / "bad.toml"
    bad.write_text("[clustering]\nchange = 'one_time'\n")
    from fundtrail.clustering.config import load

    with pytest.raises(InvalidInput, match="list of strings"):
        load(bad)
    bad.write_text("[clustering]\nmax_size = 3\n")
    with pytest.raises(InvalidInput, match="unknown \\[clustering\\] key"):
        load(bad)
    good = tmp_path / "good.toml"
    good.write_text('[clustering]\nchange = ["one_time", "optimal"]\nmax_cluster_size = 500\n')
    cfg = load(good)
    assert cfg.change == ("one_time", "optimal") and cfg.max_cluster_size == 500
