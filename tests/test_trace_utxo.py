"""UTXO taint tracing: exact integer arithmetic, the compact graph built from the store, every policy in
both directions against hand-computed satoshi amounts on real regtest blocks, where traces stop,
conservation as a property over random graphs, and a real trace over mainnet blocks 0..438 checked
against independent SQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fundtrail.chains.bitcoin.builder import ChainBuilder, Key, OutPoint, Tx, TxOut
from fundtrail.chains.bitcoin.decoder import decode_blocks
from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.errors import InvalidInput, NotFound
from fundtrail.ingest.bitcoin_tx import ingest_raw_transactions
from fundtrail.store.bitcoin_write import write_blocks
from fundtrail.store.db import connect
from fundtrail.tracing import utxo_graph as ug
from fundtrail.tracing import utxo_kernels as uk
from fundtrail.tracing.arith import mul_div, split
from fundtrail.tracing.model import (
    DIRECTIONS,
    ENDPOINT_KINDS,
    FEE_ADDRESS,
    NO_ADDRESS,
    POLICIES,
    TOTAL_KEYS,
    Limits,
    Stops,
)
from fundtrail.tracing.utxo_graph import LOOSE_TIME, UtxoGraph
from fundtrail.tracing.utxo_trace import UtxoFlow, trace_utxo

BTC = 100_000_000
CHAIN = "bitcoin-regtest"
NO_STOPS = Stops(np.zeros(0, np.bool_), np.zeros(0, np.bool_))


# --- arithmetic ----------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(data=st.data(), c=st.integers(1, 2**53 - 1))
def test_mul_div_is_exact(data: st.DataObject, c: int) -> None:
    a = data.draw(st.integers(0, c))
    b = data.draw(st.integers(0, c))
    assert mul_div(a, b, c) == a * b // c


def _split_reference(total: int, weights: list[int]) -> list[int]:
    """Largest remainder with Python integers: floors, then +1 by remainder (desc), index (asc)."""
    w = sum(weights)
    if w == 0 or total == 0:
        return [0] * len(weights)
    parts = [total * x // w for x in weights]
    rems = [total * x % w for x in weights]
    for i in sorted(range(len(weights)), key=lambda i: (-rems[i], i))[: total - sum(parts)]:
        parts[i] += 1
    return parts


@settings(max_examples=300, deadline=None)
@given(data=st.data(), weights=st.lists(st.integers(0, 21 * 10**14 // 40), min_size=1, max_size=40))
def test_split_largest_remainder(data: st.DataObject, weights: list[int]) -> None:
    total = data.draw(st.integers(0, sum(weights)))
    parts = split(total, np.array(weights, np.int64)).tolist()
    assert parts == _split_reference(total, weights)
    assert sum(parts) == total
    assert all(0 <= p <= w for p, w in zip(parts, weights))


def test_split_rounding_by_hand() -> None:
    # 7 over three equal weights: 7/3 = 2.33 each -> floors 2,2,2 (6); the one left over goes to the
    # largest remainder, all equal (7*5 mod 15 = 5), so to the lowest index
    assert split(7, np.array([5, 5, 5])).tolist() == [3, 2, 2]
    # 2 over 1,1,1: floors 0; remainders 2,2,2 -> indexes 0 and 1
    assert split(2, np.array([1, 1, 1])).tolist() == [1, 1, 0]
    # 1 sat over 250/140/10 (the example transaction below): shares .625/.35/.025 -> the first
    assert split(1, np.array([250, 140, 10])).tolist() == [1, 0, 0]
    # a zero weight never gets a unit, even as a tie
    assert split(1, np.array([0, 1, 1])).tolist() == [0, 1, 0]
    assert split(0, np.array([0, 0])).tolist() == [0, 0]


# --- the regtest chain of the worked examples ----------------------------------------------------------


@dataclass
class Example:
    """The example chain (values in satoshi):

    block 1-3: coinbases to A, B, C (50 BTC each)
    block 4:   ta: A 50 -> X 3, A2 47          tb: B 50 -> Y 1, B2 49     tc: C 50 -> Z 0.5, C2 49.5
    block 5:   t1: [X 3, Y 1] -> P 2.5, Q 1.4, fee 0.1
    block 6:   t2: [P 2.5, Z 0.5] -> R 2.0, S 0.9999, fee 0.0001     t3: [Q 1.4] -> Q2 1.3999, fee 0.0001
    block 7:   t4: [R 2.0, Q2 1.3999] -> M 3.0, N 0.3998, fee 0.0001  (the two tainted paths merge)
    block 8:   t5: [A2 47] -> K1 10, K2 10, K3 10, K4 16.99999999, fee 1 sat
    """

    con: duckdb.DuckDBPyConnection
    graph: UtxoGraph
    tx: dict[str, int]  # name -> tx_id
    addr: dict[str, int]  # key name -> address id
    time: dict[int, int]  # block height -> block time


def _names(b: ChainBuilder) -> tuple[dict[str, Tx], dict[str, Key]]:
    keys = {k: Key(k) for k in [*"ABCXYZPQRSMN", "A2", "B2", "C2", "Q2", "K1", "K2", "K3", "K4"]}
    txs: dict[str, Tx] = {}
    for name, k in (("cbA", "A"), ("cbB", "B"), ("cbC", "C")):
        txs[name] = b.add_block(miner=keys[k]).txs[0]

    def op(name: str, n: int) -> OutPoint:
        return txs[name].outpoint(n)

    def pay(*outs: tuple[int, str]) -> list[TxOut]:
        return [TxOut(v, keys[k].p2pkh()) for v, k in outs]

    txs["ta"] = b.spend([(op("cbA", 0), keys["A"])], pay((3 * BTC, "X"), (47 * BTC, "A2")))
    txs["tb"] = b.spend([(op("cbB", 0), keys["B"])], pay((1 * BTC, "Y"), (49 * BTC, "B2")))
    txs["tc"] = b.spend([(op("cbC", 0), keys["C"])], pay((50_000_000, "Z"), (4_950_000_000, "C2")))
    b.add_block([txs["ta"], txs["tb"], txs["tc"]])
    txs["t1"] = b.spend(
        [(op("ta", 0), keys["X"]), (op("tb", 0), keys["Y"])], pay((250_000_000, "P"), (140_000_000, "Q"))
    )
    b.add_block([txs["t1"]])
    txs["t2"] = b.spend(
        [(op("t1", 0), keys["P"]), (op("tc", 0), keys["Z"])], pay((200_000_000, "R"), (99_990_000, "S"))
    )
    txs["t3"] = b.spend([(op("t1", 1), keys["Q"])], pay((139_990_000, "Q2")))
    b.add_block([txs["t2"], txs["t3"]])
    txs["t4"] = b.spend(
        [(op("t2", 0), keys["R"]), (op("t3", 0), keys["Q2"])], pay((300_000_000, "M"), (39_980_000, "N"))
    )
    b.add_block([txs["t4"]])
    txs["t5"] = b.spend(
        [(op("ta", 1), keys["A2"])],
        pay((10 * BTC, "K1"), (10 * BTC, "K2"), (10 * BTC, "K3"), (1_699_999_999, "K4")),
    )
    b.add_block([txs["t5"]])
    return txs, keys


def _write(con: duckdb.DuckDBPyConnection, raws: list[bytes]) -> None:
    buf = np.frombuffer(b"".join(raws), dtype=np.uint8)
    ends = np.cumsum([len(r) for r in raws]).astype(np.int64)
    starts = np.r_[0, ends[:-1]].astype(np.int64)
    write_blocks(con, decode_blocks(buf, starts, ends, REGTEST), "test")


def _example(con: duckdb.DuckDBPyConnection, txs: dict[str, Tx], keys: dict[str, Key]) -> Example:
    graph = ug.build(con, CHAIN)
    ids = {name: graph.find_txid(t.txid) for name, t in txs.items() if _stored(graph, t)}
    addr: dict[str, int] = {}
    for name, t in txs.items():
        if name not in ids:
            continue
        for n, o in enumerate(t.outputs):
            owner = next(k for k, key in keys.items() if key.p2pkh() == o.script_pubkey)
            addr[owner] = int(graph.outputs_of(ids[name]).address[n])
    times = dict(con.execute("SELECT height, time FROM blocks WHERE chain = ?", [CHAIN]).fetchall())
    return Example(con, graph, ids, addr, times)


def _stored(graph: UtxoGraph, t: Tx) -> bool:
    try:
        graph.find_txid(t.txid)
    except NotFound:
        return False
    return True


@pytest.fixture(scope="module")
def ex(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Example]:
    b = ChainBuilder()
    txs, keys = _names(b)
    con = connect(tmp_path_factory.mktemp("ex") / "ex.duckdb")
    _write(con, b.raw_blocks())
    yield _example(con, txs, keys)
    con.close()


def _trace(
    ex: Example,
    seeds: list[tuple[str, int]],
    policy: str,
    direction: str = "forward",
    amount: int | None = None,
    limits: Limits | None = None,
    stops: Stops = NO_STOPS,
) -> UtxoFlow:
    flow = trace_utxo(
        ex.graph, [(ex.tx[t], v) for t, v in seeds], amount, policy, direction, limits or Limits(), stops
    )
    assert sum(flow.totals[k] for k in TOTAL_KEYS) == flow.seed_amount + flow.created
    return flow


def _out_taint(ex: Example, flow: UtxoFlow, tx: str) -> dict[str, int]:
    """Taint per receiving key name on the edges of one transaction (fee as 'fee')."""
    names = {v: k for k, v in ex.addr.items()} | {FEE_ADDRESS: "fee"}
    return {names[e.dst]: e.tainted for e in flow.edges if e.tx_id == ex.tx[tx]}


def _in_taint(ex: Example, flow: UtxoFlow, tx: str) -> dict[str, int]:
    """Backward: taint per paying key name on the edges of one transaction."""
    names = {v: k for k, v in ex.addr.items()}
    return {names[e.src]: e.tainted for e in flow.edges if e.tx_id == ex.tx[tx]}


def _ends(ex: Example, flow: UtxoFlow) -> dict[tuple[str, str], int]:
    names = {v: k for k, v in ex.addr.items()} | {FEE_ADDRESS: "fee", NO_ADDRESS: "?"}
    return {(names[e.address_id], e.kind): e.tainted for e in flow.endpoints}


def test_kernel_codes_match_the_model() -> None:
    assert [POLICIES[c] for c in (uk.HAIRCUT, uk.POISON, uk.FIFO, uk.LIFO, uk.TIHO)] == list(POLICIES)
    kinds = (uk.K_SERVICE, uk.K_SUPER, uk.K_UNSPENT, uk.K_BELOW, uk.K_BEYOND, uk.K_FEES, uk.K_ORIGIN)
    assert [ENDPOINT_KINDS[c] for c in kinds] == list(ENDPOINT_KINDS)


def test_graph_from_the_store(ex: Example) -> None:
    g = ex.graph
    assert len(g) == 9 + 8  # 9 coinbases (genesis included), ta tb tc t1 t2 t3 t4 t5
    # topological: every spent output belongs to an earlier transaction
    spender = np.repeat(np.arange(len(g)), np.diff(g.in_off))
    ok = g.in_txo >= 0
    assert (g.out_tx[g.in_txo[ok]] < spender[ok]).all()
    assert (g.in_txo >= 0).all()  # every input of this chain is resolved
    t1 = g.index_of(ex.tx["t1"])
    assert g.in_value[g.in_off[t1] : g.in_off[t1 + 1]].tolist() == [300_000_000, 100_000_000]
    outs = g.outputs_of(ex.tx["t1"])
    assert outs.value.tolist() == [250_000_000, 140_000_000]
    assert outs.spender_tx_id.tolist() == [ex.tx["t2"], ex.tx["t3"]]
    assert g.txo_index(ex.tx["t1"], 1) == int(outs.txo[1])
    assert g.out_spender[g.txo_index(ex.tx["t4"], 0)] == -1  # M is unspent
    assert g.is_coinbase[g.index_of(ex.tx["cbA"])] and not g.is_coinbase[t1]
    with pytest.raises(NotFound):
        g.txo_index(ex.tx["t1"], 2)
    with pytest.raises(NotFound):
        g.index_of(10**9)


def test_graph_caches(ex: Example, tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    ug.clear_cache()
    g1 = ug.load(ex.con, CHAIN, db)
    path = ug.cache_path(db, CHAIN)
    assert path.is_file() and path.parent.name == "store.duckdb.graph"
    assert ug.load(ex.con, CHAIN, db) is g1  # in-process hit
    ug.clear_cache()
    g2 = ug.load(ex.con, CHAIN, db)  # from disk
    assert g2 is not g1 and g2.fingerprint == g1.fingerprint
    for name, arr in g1.arrays().items():
        assert np.array_equal(arr, getattr(g2, name)), name
    # a stale disk cache (another fingerprint) is rebuilt, not used
    ug.save(dataclasses.replace(g1, fingerprint=(0,)), path)
    ug.clear_cache()
    g3 = ug.load(ex.con, CHAIN, db)
    assert g3.fingerprint == ug.fingerprint(ex.con, CHAIN)
    assert ug.read(path, CHAIN) is not None and ug.read(path, CHAIN).fingerprint == g3.fingerprint  # type: ignore[union-attr]


# --- forward, every policy, by hand ---------------------------------------------------------------------


def test_haircut_forward(ex: Example) -> None:
    f = _trace(ex, [("ta", 0)], "haircut")
    assert f.seed_amount == 300_000_000 and f.created == 0
    # t1: taint 3 BTC of 4 BTC in; P = 3 * 2.5/4 = 1.875, Q = 3 * 1.4/4 = 1.05, fee = 3 * 0.1/4 = 0.075
    assert _out_taint(ex, f, "t1") == {"P": 187_500_000, "Q": 105_000_000, "fee": 7_500_000}
    # t2: P's 187,500,000 of 300,000,000 in; R = 187.5e6 * 200e6/300e6 = 125,000,000,
    # S = 187.5e6 * 99.99e6/300e6 = 62,493,750, fee = 187.5e6 * 10,000/300e6 = 6,250 (all exact)
    assert _out_taint(ex, f, "t2") == {"R": 125_000_000, "S": 62_493_750, "fee": 6_250}
    # t3: Q's 105,000,000 of 140,000,000; Q2 = 105e6 * 139.99e6/140e6 = 104,992,500, fee = 7,500
    assert _out_taint(ex, f, "t3") == {"Q2": 104_992_500, "fee": 7_500}
    # t4 (merge): 125,000,000 + 104,992,500 = 229,992,500 of 339,990,000 in.
    #   M: 229,992,500 * 300e6 / 339.99e6 = 202,940,527 rem 225,270,000
    #   N: 229,992,500 * 39.98e6 / 339.99e6 = 27,045,207 rem 222,070,000
    #   fee: 229,992,500 * 10,000 / 339.99e6 = 6,764 rem 232,640,000
    #   floors sum to 229,992,498: the 2 left over go to the largest remainders, fee then M
    assert _out_taint(ex, f, "t4") == {"M": 202_940_528, "N": 27_045_207, "fee": 6_765}
    assert _ends(ex, f) == {
        ("S", "unspent"): 62_493_750,
        ("M", "unspent"): 202_940_528,
        ("N", "unspent"): 27_045_207,
        ("fee", "fees"): 7_500_000 + 6_250 + 7_500 + 6_765,
    }
    assert f.totals == {
        "at_endpoints": 0,
        "unspent": 62_493_750 + 202_940_528 + 27_045_207,
        "fees": 7_520_515,
        "below_threshold": 0,
        "beyond_limits": 0,
    }
    m = next(e for e in f.endpoints if e.address_id == ex.addr["M"])
    # M's representative path: t4 got more taint through t2 (125,000,000) than through t3
    assert m.hops == 3 and m.path == [ex.tx[t] for t in ("ta", "t1", "t2", "t4")]
    edge = next(e for e in f.edges if e.tx_id == ex.tx["t4"] and e.dst == ex.addr["M"])
    assert (edge.src, edge.amount, edge.hop, edge.time) == (ex.addr["R"], 300_000_000, 3, ex.time[7])


def test_poison_forward(ex: Example) -> None:
    f = _trace(ex, [("ta", 0)], "poison")
    # every output and the fee of a transaction with a tainted input: wholly tainted
    assert _out_taint(ex, f, "t1") == {"P": 250_000_000, "Q": 140_000_000, "fee": 10_000_000}
    assert _out_taint(ex, f, "t2") == {"R": 200_000_000, "S": 99_990_000, "fee": 10_000}
    assert _out_taint(ex, f, "t3") == {"Q2": 139_990_000, "fee": 10_000}
    assert _out_taint(ex, f, "t4") == {"M": 300_000_000, "N": 39_980_000, "fee": 10_000}
    # created: t1 pulls in Y's 1 BTC, t2 Z's 0.5 BTC; t3 and t4 spend only tainted outputs
    assert f.created == 100_000_000 + 50_000_000
    assert f.totals["unspent"] == 99_990_000 + 300_000_000 + 39_980_000
    assert f.totals["fees"] == 10_000_000 + 3 * 10_000
    assert f.totals["unspent"] + f.totals["fees"] == 300_000_000 + 150_000_000


def test_fifo_forward(ex: Example) -> None:
    f = _trace(ex, [("ta", 0)], "fifo")
    # t1 line: X's tainted 0..3e8 then Y 3e8..4e8; P takes 0..2.5e8 (all tainted), Q 2.5e8..3.9e8
    # (0.5e8 tainted), fee 3.9e8..4e8 (clean)
    assert _out_taint(ex, f, "t1") == {"P": 250_000_000, "Q": 50_000_000}
    # t2 line: P (wholly tainted) 0..2.5e8, Z 2.5e8..3e8; R 0..2e8 -> 2e8; S 2e8..2.9999e8 -> 0.5e8
    assert _out_taint(ex, f, "t2") == {"R": 200_000_000, "S": 50_000_000}
    # t3: Q's 0.5e8 tainted units sit at its start -> Q2's first 0.5e8
    assert _out_taint(ex, f, "t3") == {"Q2": 50_000_000}
    # t4 line: R tainted 0..2e8, Q2 2e8..3.3999e8 tainted 2e8..2.5e8; M 0..3e8 takes both, N none
    assert _out_taint(ex, f, "t4") == {"M": 250_000_000}
    assert _ends(ex, f) == {("S", "unspent"): 50_000_000, ("M", "unspent"): 250_000_000}
    assert f.totals["fees"] == 0


def test_lifo_forward(ex: Example) -> None:
    f = _trace(ex, [("ta", 0)], "lifo")
    # t1 line reversed: Y 0..1e8 (clean), X 1e8..4e8 (tainted); P 0..2.5e8 -> 1.5e8;
    # Q 2.5e8..3.9e8 -> 1.4e8; fee 3.9e8..4e8 -> 0.1e8
    assert _out_taint(ex, f, "t1") == {"P": 150_000_000, "Q": 140_000_000, "fee": 10_000_000}
    # t2 reversed: Z 0..0.5e8 clean, P 0.5e8..3e8 with its 1.5e8 tainted at its start (0.5e8..2e8);
    # R 0..2e8 -> 1.5e8; S none
    assert _out_taint(ex, f, "t2") == {"R": 150_000_000}
    # t3: Q wholly tainted -> Q2 1.3999e8 and the fee 10,000
    assert _out_taint(ex, f, "t3") == {"Q2": 139_990_000, "fee": 10_000}
    # t4 reversed: Q2 0..1.3999e8 tainted, R 1.3999e8..3.3999e8 tainted for its first 1.5e8
    # (to 2.8999e8); M 0..3e8 -> 1.3999e8 + 1.5e8 = 2.8999e8
    assert _out_taint(ex, f, "t4") == {"M": 289_990_000}
    assert f.totals == {
        "at_endpoints": 0,
        "unspent": 289_990_000,
        "fees": 10_010_000,
        "below_threshold": 0,
        "beyond_limits": 0,
    }


def test_tiho_forward(ex: Example) -> None:
    f = _trace(ex, [("ta", 0)], "tiho")
    # t1: 3e8 fills the highest output P (2.5e8), the rest (0.5e8) the next, Q; the fee nothing
    assert _out_taint(ex, f, "t1") == {"P": 250_000_000, "Q": 50_000_000}
    assert _out_taint(ex, f, "t2") == {"R": 200_000_000, "S": 50_000_000}  # 2.5e8: R full, S the rest
    assert _out_taint(ex, f, "t3") == {"Q2": 50_000_000}
    assert _out_taint(ex, f, "t4") == {"M": 250_000_000}  # 2e8 + 0.5e8 into M (3e8)
    assert f.totals["unspent"] == 300_000_000


def test_rounding_odd_satoshi(ex: Example) -> None:
    # 100 sat of A2 (47 BTC) through t5 [10, 10, 10, 16.99999999 BTC, fee 1 sat]:
    # 100 * 1e9 / 4.7e9 = 21 rem 1.3e9 (three times); 100 * 1,699,999,999 / 4.7e9 = 36 rem 799,999,900;
    # fee 100 * 1 / 4.7e9 = 0 rem 100. Floors: 21+21+21+36 = 99; the 1 left over: largest remainder,
    # a three-way tie -> the lowest index, K1
    f = _trace(ex, [("ta", 1)], "haircut", amount=100)
    assert _out_taint(ex, f, "t5") == {"K1": 22, "K2": 21, "K3": 21, "K4": 36}
    # 1 sat of X through t1: shares .625/.35/.025 -> P
    f = _trace(ex, [("ta", 0)], "haircut", amount=1)
    assert _out_taint(ex, f, "t1") == {"P": 1}
    # fifo: the 100 sat sit at the start of A2 -> the first output; tiho: the highest output, K4
    assert _out_taint(ex, _trace(ex, [("ta", 1)], "fifo", amount=100), "t5") == {"K1": 100}
    assert _out_taint(ex, _trace(ex, [("ta", 1)], "tiho", amount=100), "t5") == {"K4": 100}
    # lifo (one input, so the same line as fifo)
    assert _out_taint(ex, _trace(ex, [("ta", 1)], "lifo", amount=100), "t5") == {"K1": 100}


def test_amount_spread_over_seeds(ex: Example) -> None:
    # 1,000 sat over X (3 BTC) and A2 (47 BTC): 1000*3/50 = 60, 1000*47/50 = 940
    f = _trace(ex, [("ta", 0), ("ta", 1)], "fifo", amount=1_000, limits=Limits(hops=1))
    assert _out_taint(ex, f, "t1") == {"P": 60}
    assert _out_taint(ex, f, "t5") == {"K1": 940}
    with pytest.raises(InvalidInput):
        _trace(ex, [("ta", 0)], "fifo", amount=300_000_001)
    with pytest.raises(InvalidInput):
        _trace(ex, [("ta", 0), ("ta", 0)], "fifo")
    with pytest.raises(InvalidInput):
        _trace(ex, [("ta", 0)], "no-such-policy")
    # overlapping seeds (t1's output is downstream of X) would count value twice
    with pytest.raises(InvalidInput, match="twice"):
        _trace(ex, [("ta", 0), ("t1", 0)], "haircut")


# --- backward, every policy, by hand -------------------------------------------------------------------


def test_backward_one_hop_every_policy(ex: Example) -> None:
    one = Limits(hops=1)
    # P (2.5 BTC of t1, inputs X 3 + Y 1): haircut by input value: X 2.5*3/4, Y 2.5*1/4
    expect_p = {
        "haircut": {"X": 187_500_000, "Y": 62_500_000},
        "poison": {"X": 300_000_000, "Y": 100_000_000},  # created 1.5 BTC
        # outputs on the line: P 0..2.5e8 (tainted), Q 2.5e8..3.9e8, fee; inputs X 0..3e8, Y 3e8..4e8
        "fifo": {"X": 250_000_000},
        # inputs reversed: Y 0..1e8, X 1e8..4e8: P's 0..2.5e8 -> Y 1e8, X 1.5e8
        "lifo": {"Y": 100_000_000, "X": 150_000_000},
        "tiho": {"X": 250_000_000},  # the highest input first
    }
    # Q (1.4 BTC, at 2.5e8..3.9e8 on the line)
    expect_q = {
        "haircut": {"X": 105_000_000, "Y": 35_000_000},
        "poison": {"X": 300_000_000, "Y": 100_000_000},  # created 2.6 BTC
        "fifo": {"X": 50_000_000, "Y": 90_000_000},  # X 0..3e8 holds 2.5e8..3e8, Y 3e8..3.9e8
        "lifo": {"X": 140_000_000},  # Y 0..1e8, X 1e8..4e8 holds all of 2.5e8..3.9e8
        "tiho": {"X": 140_000_000},
    }
    for policy in POLICIES:
        for n, expect, created in ((0, expect_p, 150_000_000), (1, expect_q, 260_000_000)):
            f = _trace(ex, [("t1", n)], policy, "backward", limits=one)
            assert _in_taint(ex, f, "t1") == expect[policy], (policy, n)
            assert f.created == (created if policy == "poison" else 0)
            # funding transactions would be hop 2: the inputs end beyond the limits
            assert {k: v for (k, kind), v in _ends(ex, f).items() if kind == "beyond_limits"} == expect[
                policy
            ]


def test_backward_to_the_coinbases(ex: Example) -> None:
    # haircut from P to the origin: X 1.875 BTC -> ta (one input) -> coinbase A; Y 0.625 -> tb -> B
    f = _trace(ex, [("t1", 0)], "haircut", "backward")
    assert _ends(ex, f) == {("A", "origin"): 187_500_000, ("B", "origin"): 62_500_000}
    assert f.totals["at_endpoints"] == 250_000_000
    a = next(e for e in f.endpoints if e.address_id == ex.addr["A"])
    assert a.hops == 3 and a.path == [ex.tx["t1"], ex.tx["ta"], ex.tx["cbA"]]
    # fifo from M (3 BTC, the first stretch of t4's line):
    #   t4: inputs R 0..2e8, Q2 2e8..3.3999e8 -> R 2e8, Q2 1e8
    #   t2: R (wholly, 0..2e8) against P 0..2.5e8, Z -> P 2e8; t3: Q2's first 1e8 -> Q 1e8
    #   t1 (once, with both): P's 0..2e8 and Q's 2.5e8..3.5e8 against X 0..3e8, Y 3e8..4e8
    #       -> X 2e8 + 0.5e8 = 2.5e8, Y 0.5e8
    #   ta: X's first 2.5e8 -> coinbase A; tb: Y's first 0.5e8 -> coinbase B
    f = _trace(ex, [("t4", 0)], "fifo", "backward")
    assert _in_taint(ex, f, "t4") == {"R": 200_000_000, "Q2": 100_000_000}
    assert _in_taint(ex, f, "t2") == {"P": 200_000_000}
    assert _in_taint(ex, f, "t3") == {"Q": 100_000_000}
    assert _in_taint(ex, f, "t1") == {"X": 250_000_000, "Y": 50_000_000}
    assert _ends(ex, f) == {("A", "origin"): 250_000_000, ("B", "origin"): 50_000_000}
    a = next(e for e in f.endpoints if e.address_id == ex.addr["A"])
    # t1 got more taint from t2 (2e8) than from t3 (1e8): the path runs through t2
    assert a.hops == 5 and a.path == [ex.tx[t] for t in ("t4", "t2", "t1", "ta", "cbA")]
    # tiho from M: t4 -> R (the highest input) 2e8, Q2 1e8; t2 -> P 2e8; t3 -> Q 1e8;
    # t1: 3e8 into X (highest) -> A 3e8
    f = _trace(ex, [("t4", 0)], "tiho", "backward")
    assert _ends(ex, f) == {("A", "origin"): 300_000_000}


# --- where a trace stops --------------------------------------------------------------------------------


def _mask(ex: Example, *names: str) -> np.ndarray:
    m = np.zeros(max(ex.addr.values()) + 1, np.bool_)
    for n in names:
        m[ex.addr[n]] = True
    return m


def test_stop_at_a_service(ex: Example) -> None:
    none = np.zeros(0, np.bool_)
    f = _trace(ex, [("ta", 0)], "haircut", stops=Stops(_mask(ex, "Q"), none))
    assert _ends(ex, f)[("Q", "service")] == 105_000_000
    assert f.totals["at_endpoints"] == 105_000_000
    assert ex.tx["t3"] not in {e.tx_id for e in f.edges}
    # t4 now has R's 125,000,000 only: M 110,297,361 rem 233.61e6, N 14,698,961 rem 249.61e6,
    # fee 3,676 rem 196.76e6; 2 left over -> N, then M
    assert _out_taint(ex, f, "t4") == {"M": 110_297_362, "N": 14_698_962, "fee": 3_676}


def test_stop_at_a_super_cluster(ex: Example) -> None:
    none = np.zeros(0, np.bool_)
    f = _trace(ex, [("ta", 0)], "haircut", stops=Stops(none, _mask(ex, "R")))
    assert _ends(ex, f)[("R", "super_cluster")] == 125_000_000
    # t4 has Q2's 104,992,500 only: M 92,643,165 rem 331.65e6, N 12,346,245 rem 312.45e6, fee 3,088
    assert _out_taint(ex, f, "t4") == {"M": 92_643_166, "N": 12_346_246, "fee": 3_088}
    # backward from M, R's funding tx t2 is not walked: the R input ends as super_cluster
    f = _trace(ex, [("t4", 0)], "fifo", "backward", stops=Stops(none, _mask(ex, "R")))
    assert _ends(ex, f)[("R", "super_cluster")] == 200_000_000


def test_stop_below_min_amount(ex: Example) -> None:
    f = _trace(ex, [("ta", 0)], "haircut", limits=Limits(min_amount=100_000_000))
    ends = _ends(ex, f)
    assert ends[("S", "below_threshold")] == 62_493_750
    assert ends[("N", "below_threshold")] == 27_045_207
    assert ends[("M", "unspent")] == 202_940_528
    assert f.totals["below_threshold"] == 62_493_750 + 27_045_207


def test_stop_after_hops_and_time(ex: Example) -> None:
    f = _trace(ex, [("ta", 0)], "haircut", limits=Limits(hops=1))
    assert _ends(ex, f) == {
        ("P", "beyond_limits"): 187_500_000,
        ("Q", "beyond_limits"): 105_000_000,
        ("fee", "fees"): 7_500_000,
    }
    # until = t1's block time: t1 is followed (not after it), t2 and t3 (block 6) are not
    g = _trace(ex, [("ta", 0)], "haircut", limits=Limits(until=ex.time[5]))
    assert _ends(ex, g) == _ends(ex, f)
    # hops 0: nothing followed, the seed itself is beyond the limits
    h = _trace(ex, [("ta", 0)], "haircut", limits=Limits(hops=0))
    assert _ends(ex, h) == {("X", "beyond_limits"): 300_000_000}
    # backward since = block 6's time: t1 (block 5) is not walked; fifo from M ends at P and Q
    b = _trace(ex, [("t4", 0)], "fifo", "backward", limits=Limits(since=ex.time[6]))
    assert _ends(ex, b) == {("P", "beyond_limits"): 200_000_000, ("Q", "beyond_limits"): 100_000_000}


# --- partial history: unresolved inputs and loose transactions -----------------------------------------


def test_unresolved_inputs_and_loose_transactions(tmp_path: Path) -> None:
    b = ChainBuilder()
    txs, keys = _names(b)
    raws = b.raw_blocks()
    con = connect(tmp_path / "partial.duckdb")
    _write(con, raws[:4] + raws[5:])  # block 4 (ta, tb, tc) is missing: t1's and t2's Z are unresolved
    # a loose transaction spending M, stored outside any block
    b2 = ChainBuilder(list(b.blocks), dict(b.utxos))
    loose = b2.spend([(txs["t4"].outpoint(0), keys["M"])], [TxOut(299_000_000, keys["K1"].p2pkh())])
    ingest_raw_transactions(con, [loose.serialize().hex()], REGTEST)
    ex = _example(con, txs | {"loose": loose}, keys)
    g = ex.graph
    assert g.index_of(ex.tx["loose"]) == len(g) - 1 and g.time[-1] == LOOSE_TIME
    t1 = g.index_of(ex.tx["t1"])
    assert g.in_txo[g.in_off[t1] : g.in_off[t1 + 1]].tolist() == [-1, -1]
    # backward from P: t1's inputs are unknown (value and address); the known inputs are none, so the
    # unknown ones are taken to hold the outputs exactly (3.9 BTC, fee 0), all on the first input
    f = _trace(ex, [("t1", 0)], "haircut", "backward")
    assert _ends(ex, f) == {("?", "origin"): 250_000_000}
    assert f.unknown_input_txs == 1 and any("not stored" in n for n in f.notes)
    assert [e.amount for e in f.edges] == [-1]  # unknown is not zero
    # forward from P through t2, whose Z input is unknown: conserved, and noted
    f = _trace(ex, [("t1", 0)], "haircut", limits=Limits(hops=2))
    assert f.unknown_input_txs == 1 and f.notes
    # the loose spender of M: followed without a time limit (edge time -1: no block) ...
    f = _trace(ex, [("t4", 0)], "fifo")
    assert _ends(ex, f) == {("K1", "unspent"): 299_000_000, ("fee", "fees"): 1_000_000}
    assert {e.time for e in f.edges} == {-1}
    # ... and beyond any `until`, since it has no block time yet
    f = _trace(ex, [("t4", 0)], "fifo", limits=Limits(until=2**62))
    assert _ends(ex, f) == {("M", "beyond_limits"): 300_000_000}
    con.close()


# --- conservation over random graphs --------------------------------------------------------------------


def _random_graph(rng: np.random.Generator) -> UtxoGraph:
    """A random DAG-shaped UTXO graph: coinbases, then transactions spending 1-4 unspent outputs of
    earlier ones (sometimes an unresolved input as well), paying 1-4 outputs (zero values included) and
    a fee; addresses 0..9 or none; non-decreasing times, the last transactions sometimes loose."""
    n = int(rng.integers(2, 30))
    pool: list[int] = []
    out_off, in_off = [0], [0]
    out_value: list[int] = []
    out_addr: list[int] = []
    in_txo: list[int] = []
    in_value: list[int] = []
    in_addr: list[int] = []
    coinbase: list[bool] = []
    spender: list[int] = []
    spos: list[int] = []
    for i in range(n):
        k = int(rng.integers(1, 5))
        is_cb = len(pool) == 0 or rng.random() < 0.1
        known = 0
        if not is_cb:
            picks = [pool.pop(int(rng.integers(len(pool)))) for _ in range(min(k, len(pool)))]
            if rng.random() < 0.15:
                picks.insert(int(rng.integers(len(picks) + 1)), -1)
            for pos, o in enumerate(picks):
                in_txo.append(o)
                in_value.append(out_value[o] if o >= 0 else -1)
                in_addr.append(out_addr[o] if o >= 0 else -1)
                if o >= 0:
                    known += out_value[o]
                    spender[o], spos[o] = i, pos
        total = int(rng.integers(0, 10**6)) if is_cb or -1 in in_txo[in_off[-1] :] else known
        fee = int(rng.integers(0, total // 5 + 1)) if total and rng.random() < 0.7 else 0
        m = int(rng.integers(1, 5))
        cuts = np.sort(rng.integers(0, total - fee + 1, m - 1)) if m > 1 else np.zeros(0, np.int64)
        vals = np.diff(np.r_[0, cuts, total - fee]).tolist()
        for v in vals:
            pool.append(len(out_value))
            out_value.append(int(v))
            out_addr.append(int(rng.integers(-1, 10)))
            spender.append(-1)
            spos.append(-1)
        coinbase.append(is_cb)
        out_off.append(len(out_value))
        in_off.append(len(in_txo))
    times = np.cumsum(rng.integers(0, 3, n)).astype(np.int64) + 1_000
    n_loose = int(rng.integers(0, 3))
    if n_loose:
        times[-n_loose:] = LOOSE_TIME

    def arr(x: list[int]) -> np.ndarray:
        return np.array(x, np.int64)

    return UtxoGraph(
        chain="test",
        fingerprint=(),
        tx_id=np.arange(n, dtype=np.int64) * 3 + 7,
        txid=np.zeros((n, 32), np.uint8),
        time=times,
        is_coinbase=np.array(coinbase, np.bool_),
        out_off=arr(out_off),
        out_value=arr(out_value),
        out_addr=arr(out_addr),
        out_spender=arr(spender),
        out_spender_pos=arr(spos),
        in_off=arr(in_off),
        in_txo=arr(in_txo),
        in_value=arr(in_value),
        in_addr=arr(in_addr),
    )


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    policy=st.sampled_from(POLICIES),
    direction=st.sampled_from(("forward", "backward")),
    hops=st.integers(0, 8),
    min_amount=st.sampled_from((0, 1, 1_000, 100_000)),
    use_time=st.booleans(),
    use_amount=st.booleans(),
)
def test_conservation_on_random_graphs(
    seed: int,
    policy: str,
    direction: str,
    hops: int,
    min_amount: int,
    use_time: bool,
    use_amount: bool,
) -> None:
    rng = np.random.default_rng(seed)
    g = _random_graph(rng)
    first = int(rng.integers(len(g)))
    txs = [first] + ([int(rng.integers(len(g)))] if rng.random() < 0.3 else [])
    seeds = sorted(
        {(int(g.tx_id[t]), int(v)) for t in txs for v in range(int(g.out_off[t + 1] - g.out_off[t]))}
    )
    seeds = seeds[: int(rng.integers(1, len(seeds) + 1))]
    whole = sum(int(g.out_value[g.txo_index(t, v)]) for t, v in seeds)
    amount = int(rng.integers(0, whole + 1)) if use_amount else None
    t_mid = int(np.median(g.time[g.time < LOOSE_TIME])) if (g.time < LOOSE_TIME).any() else 0
    limits = Limits(
        hops=hops,
        min_amount=min_amount,
        until=t_mid if use_time else None,
        since=t_mid if use_time else None,
    )
    stops = Stops(rng.random(int(rng.integers(0, 12))) < 0.15, rng.random(int(rng.integers(0, 12))) < 0.15)
    try:
        flow = trace_utxo(g, seeds, amount, policy, direction, limits, stops)
    except InvalidInput as e:
        assert "twice" in str(e)  # the two seed transactions overlap
        return
    assert flow.seed_amount == (whole if amount is None else amount)
    assert sum(flow.totals[k] for k in TOTAL_KEYS) == flow.seed_amount + flow.created
    assert sum(e.tainted for e in flow.endpoints) == flow.seed_amount + flow.created
    assert flow.created >= 0 and (policy == "poison" or flow.created == 0)
    for edge in flow.edges:
        assert edge.tainted > 0
        if edge.amount >= 0:
            assert edge.tainted <= edge.amount
            if policy == "poison" and direction == "forward":
                assert edge.tainted == edge.amount
        assert 0 <= edge.hop <= max(hops, 1)
    for ep in flow.endpoints:
        assert ep.tainted > 0 and ep.path and ep.hops >= 0
        if direction == "forward":
            assert ep.hops <= hops
    if direction == "backward":
        assert flow.totals["unspent"] == 0 and flow.totals["fees"] == 0


# --- the real chain -------------------------------------------------------------------------------------

BLOCK9_COINBASE = "0437cd7f8525ceed2324359c2d0ba26006d92d856a9c20fa0241106ee5a597c9"
BLOCK170_SPEND = "f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16"


def _sql_spender(con: duckdb.DuckDBPyConnection, tx_id: int, vout: int) -> int:
    row = con.execute(
        "SELECT tx_id FROM tx_inputs WHERE chain = 'bitcoin' AND prev_tx_id = ? AND prev_vout = ?",
        [tx_id, vout],
    ).fetchall()
    assert len(row) == 1
    return int(row[0][0])


def _sql_outputs(con: duckdb.DuckDBPyConnection, tx_id: int) -> list[tuple[int, int]]:
    rows = con.execute(
        "SELECT value, address_id FROM tx_outputs WHERE chain = 'bitcoin' AND tx_id = ? ORDER BY n",
        [tx_id],
    ).fetchall()
    return [(int(v), int(a)) for v, a in rows]


def test_real_trace_from_block_9(real_con: duckdb.DuckDBPyConnection) -> None:
    con = real_con
    graph = ug.build(con, "bitcoin")
    seed = int(
        con.execute(
            "SELECT tx_id FROM transactions WHERE chain = 'bitcoin' AND txid = from_hex(?)", [BLOCK9_COINBASE]
        ).fetchall()[0][0]
    )
    # independent SQL: the first hop (block 170) and the second (the spend of its 40 BTC change)
    hop1 = _sql_spender(con, seed, 0)
    assert graph.txid_hex(graph.index_of(hop1)) == BLOCK170_SPEND
    hop1_in = int(
        con.execute("SELECT input_value FROM transactions WHERE tx_id = ?", [hop1]).fetchall()[0][0]
    )
    hop1_outs = _sql_outputs(con, hop1)
    assert [v for v, _ in hop1_outs] == [10 * BTC, 40 * BTC] and hop1_in == 50 * BTC
    hal = hop1_outs[0][1]
    hop2 = _sql_spender(con, hop1, 1)
    hop2_in = int(
        con.execute("SELECT input_value FROM transactions WHERE tx_id = ?", [hop2]).fetchall()[0][0]
    )
    hop2_outs = _sql_outputs(con, hop2)
    for policy in ("haircut", "fifo"):
        flow = trace_utxo(graph, [(seed, 0)], None, policy, "forward", Limits(hops=100), NO_STOPS)
        assert flow.seed_amount == 50 * BTC
        by_tx: dict[int, list[tuple[int, int]]] = {}
        for e in flow.edges:
            if e.dst != FEE_ADDRESS:
                by_tx.setdefault(e.tx_id, []).append((e.tainted, e.dst))
        # hop 1: the 50 BTC input wholly tainted (its whole value): each output carries 50 * value / 50
        # under haircut; under fifo the line 0..50 BTC is all tainted, so again each output wholly
        assert by_tx[hop1] == [(50 * BTC * v // hop1_in, a) for v, a in hop1_outs]
        # hop 2: the 40 BTC change, wholly tainted, is the only input of its spender
        assert by_tx[hop2] == [(40 * BTC * v // hop2_in, a) for v, a in hop2_outs if v]
        hal_end = next(e for e in flow.endpoints if e.address_id == hal)
        assert (hal_end.kind, hal_end.tainted, hal_end.hops) == ("unspent", 10 * BTC, 1)
        assert hal_end.path == [seed, hop1]
        assert flow.totals["unspent"] + flow.totals["fees"] == 50 * BTC
        assert len({e.tx_id for e in flow.edges}) >= 5  # onward as far as blocks 0..438 go


def test_reused_workspace_is_clean_between_traces(real_store: Path) -> None:
    """Traces reuse one pre-faulted scratch workspace per graph: every trace leaves it all zero, so a
    trace gives the same answer whatever ran before it."""
    from fundtrail.tracing.utxo_trace import _WORKSPACES

    con = connect(real_store, read_only=True)
    graph = ug.build(con, "bitcoin")
    con.close()
    n_addr = int(max(graph.out_addr.max(), graph.in_addr.max())) + 1
    stops = Stops(service=np.zeros(n_addr, np.bool_), super_cluster=np.zeros(n_addr, np.bool_))
    seed_fwd = [(graph.find_txid(BLOCK9_COINBASE), 0)]
    seed_back = [(graph.find_txid(BLOCK170_SPEND), 0)]
    runs = [(p, d) for p in POLICIES for d in DIRECTIONS]
    first = {}
    for p, d in runs:
        f = trace_utxo(graph, seed_fwd if d == "forward" else seed_back, None, p, d, Limits(hops=30), stops)
        first[p, d] = (f.edge_rows.tolist(), f.event_rows.tolist())  # type: ignore[union-attr]
        ws = _WORKSPACES[id(graph)]
        for a in (ws.txo_taint, ws.txo_flag, ws.tx_hop, ws.tx_pred, ws.queued):
            assert not a.any()
    for p, d in reversed(runs):
        f = trace_utxo(graph, seed_fwd if d == "forward" else seed_back, None, p, d, Limits(hops=30), stops)
        assert (f.edge_rows.tolist(), f.event_rows.tolist()) == first[p, d]  # type: ignore[union-attr]
