"""`fundtrail evaluate`: the pure scores (pairwise clustering against brute force and by hand, tracing fed
the truth itself and constructed results, detection on constructed alerts), then the whole evaluation on
a real regtest store (blocks built, ingested, clustered, traced) through the library and the CLI."""

from __future__ import annotations

import itertools
import json
import random
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fundtrail.chains.bitcoin import script
from fundtrail.chains.bitcoin.builder import COIN, ChainBuilder, Key, Tx, TxOut
from fundtrail.chains.bitcoin.decoder import decode_blocks
from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.chains.registry import CHAINS
from fundtrail.clustering import engine
from fundtrail.clustering.config import ClusterConfig
from fundtrail.errors import CorruptData
from fundtrail.evaluation.clustering import PartitionScore, score_groups, score_partition
from fundtrail.evaluation.detection import Alert, score_detection
from fundtrail.evaluation.inputs import actors, load_truth, owned_addresses
from fundtrail.evaluation.owners import Owners, owners_from_map, owners_from_table
from fundtrail.evaluation.run import evaluate
from fundtrail.evaluation.tracing import LegTrace, score_tracing, traces_from_truth
from fundtrail.labels.store import add_label
from fundtrail.simulate.truth import TruthWriter
from fundtrail.store.bitcoin_write import write_blocks
from fundtrail.store.db import connect
from fundtrail.tracing.engine import TraceRequest, trace
from fundtrail.tracing.model import Limits
from tests.test_cli import run

Row = dict[str, Any]


# --- clustering: pure scores --------------------------------------------------------------------------


def _brute(truth: dict[int, int], predicted: dict[int, int]) -> tuple[int, int, int]:
    """(truth pairs, predicted pairs, true predicted pairs) by enumerating every pair."""
    tp = pp = both = 0
    for a, b in itertools.combinations(sorted(truth), 2):
        same_t, same_p = truth[a] == truth[b], predicted[a] == predicted[b]
        tp += same_t
        pp += same_p
        both += same_t and same_p
    return tp, pp, both


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=0, max_size=40))
def test_pair_counts_equal_brute_force(labels: list[tuple[int, int]]) -> None:
    truth = {i: t for i, (t, _) in enumerate(labels)}
    predicted = {i: p for i, (_, p) in enumerate(labels)}
    s = score_partition(truth, predicted)
    assert (s.truth_pairs, s.predicted_pairs, s.true_pairs) == _brute(truth, predicted)
    assert s.items == len(labels)


def _world_partition(seed: int = 7) -> dict[int, int]:
    """A realistic partition: 3,000 actors, most with 1-10 addresses, a few services with hundreds."""
    rng = random.Random(seed)
    truth: dict[int, int] = {}
    n = 0
    for actor in range(3000):
        size = rng.choice([300, 500, 800]) if actor < 10 else rng.randint(1, 10)
        for _ in range(size):
            truth[n] = actor
            n += 1
    return truth


def test_truth_against_itself_scores_one() -> None:
    truth = _world_partition()
    s = score_partition(truth, truth)
    assert (s.precision, s.recall, s.f1) == (1.0, 1.0, 1.0)
    assert s.truth_pairs == s.predicted_pairs == s.true_pairs > 0
    groups = score_groups(truth, truth, {a: "exchange" if a < 10 else "retail" for a in set(truth.values())})
    assert {g: (x.precision, x.recall, x.f1) for g, x in groups.items()} == {
        "exchange": (1.0, 1.0, 1.0),
        "retail": (1.0, 1.0, 1.0),
    }
    assert groups["exchange"].truth_clusters == 10


def test_shuffled_assignment_scores_low() -> None:
    truth = _world_partition()
    items = list(truth)
    shuffled = items[:]
    random.Random(1234).shuffle(shuffled)
    predicted = {shuffled[i]: truth[items[i]] for i in range(len(items))}  # same cluster sizes
    assert sorted(np.bincount(list(predicted.values()))) == sorted(np.bincount(list(truth.values())))
    s = score_partition(truth, predicted)
    assert len(truth) > 18_000
    assert s.precision < 0.3 and s.recall < 0.3 and s.f1 < 0.3
    assert s.truth_pairs == s.predicted_pairs  # same sizes: same pair counts, only the overlap differs


def test_hand_computed_partitions() -> None:
    # two actors of three addresses, merged into one cluster: 15 predicted pairs, the 6 true ones among them
    s = score_partition({1: "a", 2: "a", 3: "a", 4: "b", 5: "b", 6: "b"}, dict.fromkeys(range(1, 7), 0))
    assert (s.truth_pairs, s.predicted_pairs, s.true_pairs) == (6, 15, 6)
    assert (s.precision, s.recall) == (6 / 15, 1.0)
    assert s.f1 == pytest.approx(2 * 0.4 / 1.4)
    # one actor of four split 2 + 2: precision 1, recall 2/6
    s = score_partition(dict.fromkeys(range(4), 9), {0: 0, 1: 0, 2: 1, 3: 1})
    assert (s.precision, s.recall, s.f1) == (1.0, 1 / 3, 0.5)
    # singletons only: no predicted pair -> precision 1.0 by convention, recall 0, F1 0
    s = score_partition({1: "a", 2: "a", 3: "b"}, {1: 1, 2: 2, 3: 3})
    assert (s.predicted_pairs, s.precision, s.recall, s.f1) == (0, 1.0, 0.0, 0.0)
    # nothing to find and nothing claimed: 1.0 everywhere
    s = score_partition({1: "a", 2: "b"}, {1: 1, 2: 2})
    assert (s.precision, s.recall, s.f1) == (1.0, 1.0, 1.0)
    # items only the prediction has are ignored; an item of the truth without a cluster is a bug
    assert score_partition({1: "a"}, {1: 0, 2: 0}).predicted_pairs == 0
    with pytest.raises(ValueError, match="no predicted cluster"):
        score_partition({1: "a", 2: "a"}, {1: 0})


def test_groups_by_hand() -> None:
    # exchange {e1,e2,e3}, retail r {r1,r2}, retail s {s1}; clusters {e1,e2,r1} {e3} {r2,s1}
    truth = {"e1": "E", "e2": "E", "e3": "E", "r1": "r", "r2": "r", "s1": "s"}
    predicted = {"e1": 1, "e2": 1, "r1": 1, "e3": 2, "r2": 3, "s1": 3}
    g = score_groups(truth, predicted, {"E": "exchange", "r": "retail", "s": "retail"})
    # exchange: pairs e1e2 e1e3 e2e3, found e1e2; predicted pairs touching it: the 3 of cluster 1
    assert g["exchange"] == PartitionScore(3, 1, 2, 3, 3, 1)
    # retail: true pair r1r2 not found; touching: e1r1 e2r1 (cluster 1) and r2s1 (cluster 3)
    assert g["retail"] == PartitionScore(3, 2, 2, 1, 3, 0)
    assert (g["retail"].precision, g["retail"].recall, g["retail"].f1) == (0.0, 0.0, 0.0)
    overall = score_partition(truth, predicted)
    assert (overall.truth_pairs, overall.predicted_pairs, overall.true_pairs) == (4, 4, 1)


# --- tracing: pure scores -----------------------------------------------------------------------------

REGTEST_CHAIN = "bitcoin-regtest"
SIM = "sim-ethereum"


def btc_address(name: str) -> str:
    return CHAINS[REGTEST_CHAIN].show(bytes([script.P2PKH]) + Key(name).pubkey_hash)


def evm_address(n: int) -> str:
    return "0x" + f"{n:040x}"


def _op(op: int, typology: str, case: str | None = None) -> Row:
    return {"operation_id": op, "typology": typology, "case": case}


def _seed(op: int, leg: int, chain: str, asset: str, value: int, seed: str = "s") -> Row:
    return {
        "operation_id": op,
        "leg": leg,
        "chain": chain,
        "seed": seed,
        "asset": asset,
        "amount": Decimal(value),
    }


def _cashout(op: int, leg: int, chain: str, asset: str, address: str, value: int, actor: int = 99) -> Row:
    return {
        "operation_id": op,
        "leg": leg,
        "chain": chain,
        "asset": asset,
        "address": address,
        "actor_id": actor,
        "txid": "00" * 32,
        "amount": Decimal(value),
    }


def _opaddr(op: int, chain: str, address: str, role: str = "layer") -> Row:
    return {"operation_id": op, "chain": chain, "address": address, "role": role}


D1, D2, BRIDGE, LAYER, INNOCENT = (btc_address(n) for n in ("D1", "D2", "bridge", "layer", "innocent"))
X = evm_address(0xAB)
OPS = [_op(1, "peel_chain"), _op(2, "bridge_hop", "case-a"), _op(3, "peel_chain")]
SEEDS = [
    _seed(1, 0, REGTEST_CHAIN, "BTC", 10 * COIN),
    _seed(2, 0, REGTEST_CHAIN, "BTC", 5 * COIN),
    _seed(2, 1, SIM, "USDT", 300_000_000),
    _seed(3, 0, REGTEST_CHAIN, "BTC", 2 * COIN),
]
CASHOUTS = [
    _cashout(1, 0, REGTEST_CHAIN, "BTC", D1, 6 * COIN),
    _cashout(1, 0, REGTEST_CHAIN, "BTC", D2, 4 * COIN - 10_000),
    _cashout(2, 0, REGTEST_CHAIN, "BTC", BRIDGE, 5 * COIN - 10_000),
    _cashout(2, 1, SIM, "USDT", X, 300_000_000),
    _cashout(3, 0, REGTEST_CHAIN, "BTC", D1, 2 * COIN),
]
OPADDRS = [_opaddr(1, REGTEST_CHAIN, LAYER), _opaddr(2, SIM, evm_address(0xCD))]


@pytest.mark.parametrize("with_owners", [False, True])
def test_tracing_fed_the_truth_scores_one(with_owners: bool) -> None:
    # the perfect tracer scores 1.0 on both shares, with or without an owner lookup of the end points
    owned = {REGTEST_CHAIN: {D1: 99, D2: 99, BRIDGE: 99, LAYER: 5}, SIM: {X: 99}}
    owners = owners_from_map(owned) if with_owners else None
    r = score_tracing(OPS, OPADDRS, CASHOUTS, traces_from_truth(SEEDS, CASHOUTS), owners)
    o = r.overall
    assert (o.share, o.entity_share, o.false_endpoints, o.false_endpoint_share) == (1.0, 1.0, 0, 0.0)
    assert (r.overall.operations, r.overall.legs) == (3, 4)
    assert {
        t: (a.share, a.entity_share, a.false_endpoints, a.operations) for t, a in r.typologies.items()
    } == {
        "bridge_hop": (1.0, 1.0, 0, 1),
        "peel_chain": (1.0, 1.0, 0, 2),
    }
    amounts = r.as_json()["overall"]["amounts"]
    btc_expected = 6 * COIN + 4 * COIN - 10_000 + 5 * COIN - 10_000 + 2 * COIN
    assert [
        (a["chain"], a["asset"], a["expected"], a["recovered"], a["entity_recovered"]) for a in amounts
    ] == [
        (REGTEST_CHAIN, "BTC", btc_expected, btc_expected, btc_expected),
        (SIM, "USDT", 300_000_000, 300_000_000, 300_000_000),
    ]
    assert [(o.score.share, o.score.entity_share) for o in r.operations] == [(1.0, 1.0)] * 3
    assert r.failed == [] and r.notes == []


def test_tracing_a_shuffled_answer_scores_low() -> None:
    # 200 operations, each cashed out at its own address; the answer sends each operation's value to the
    # cash-out point of another operation (a fixed permutation): only fixed points of it are recovered
    n = 200
    rng = random.Random(5)
    ops = [_op(i, "peel_chain") for i in range(n)]
    values = [rng.randint(1, 50) * COIN for _ in range(n)]
    # every operation cashes out at its own exchange (actor 1000 + i)
    cash = [
        _cashout(i, 0, REGTEST_CHAIN, "BTC", btc_address(f"cash{i}"), values[i], 1000 + i) for i in range(n)
    ]
    seeds = [_seed(i, 0, REGTEST_CHAIN, "BTC", values[i]) for i in range(n)]
    truth_traces = traces_from_truth(seeds, cash)
    perm = list(range(n))
    rng.shuffle(perm)
    shuffled = [
        LegTrace(
            i,
            0,
            REGTEST_CHAIN,
            "BTC",
            "s",
            values[i],
            truth_traces[perm[i]].received,
            truth_traces[perm[i]].endpoints,
        )
        for i in range(n)
    ]
    r = score_tracing(ops, [], cash, shuffled)
    fixed = [i for i in range(n) if perm[i] == i]
    assert r.overall.share == sum(values[i] for i in fixed) / sum(values)
    assert r.overall.share < 0.3
    assert r.overall.entity_share == r.overall.share  # another operation's exchange is the wrong one
    assert r.overall.false_endpoints == n - len(fixed)
    # the same answer when all 200 cash out at one exchange (actor 99): every trace ends at the right
    # exchange, the entity-level score counts what ended there up to each operation's own amount, and no
    # end point is false; the address-level share does not change
    one = [{**c, "actor_id": 99} for c in cash]
    r = score_tracing(ops, [], one, shuffled)
    assert r.overall.share == sum(values[i] for i in fixed) / sum(values)
    assert r.overall.entity_share == sum(min(values[i], values[perm[i]]) for i in range(n)) / sum(values)
    assert 0.5 < r.overall.entity_share < 1.0
    assert r.overall.false_endpoints == 0


def test_half_the_value_to_an_innocent_address() -> None:
    ops, cash = [_op(1, "theft")], [_cashout(1, 0, REGTEST_CHAIN, "BTC", D1, 10 * COIN)]
    half = {D1: 5 * COIN, INNOCENT: 5 * COIN}
    trace = LegTrace(1, 0, REGTEST_CHAIN, "BTC", "s", 10 * COIN, half, half)
    r = score_tracing(ops, [], cash, [trace])
    assert (r.overall.share, r.overall.false_endpoints, r.overall.false_endpoint_share) == (0.5, 1, 0.5)
    assert r.overall.entity_share == 0.5
    op = r.as_json()["operations"][0]
    assert op["false_endpoint_sample"] == [
        {"chain": REGTEST_CHAIN, "address": INNOCENT, "tainted_amount": 5 * COIN}
    ]
    assert op["amounts"] == [
        {
            "chain": REGTEST_CHAIN,
            "asset": "BTC",
            "expected": 10 * COIN,
            "recovered": 5 * COIN,
            "entity_recovered": 5 * COIN,
            "traced": 10 * COIN,
            "false_endpoint_value": 5 * COIN,
            "share": 0.5,
            "entity_share": 0.5,
            "false_endpoint_share": 0.5,
        }
    ]


def test_capped_recovery_own_addresses_pseudo_addresses_and_assets() -> None:
    # op 1: 12 BTC reached D1 (truth: 6) and nothing D2 (truth 3.9999): recovered 6 of 9.9999; what is left
    # unspent at the operation's own layer address and the fees are not false end points
    t1 = LegTrace(
        1,
        0,
        REGTEST_CHAIN,
        "BTC",
        "s",
        10 * COIN,
        {D1: 12 * COIN, "(fees)": 1000, LAYER: 3 * COIN},
        {D1: 7 * COIN, LAYER: 3 * COIN - 1000, "(fees)": 1000},
    )
    # op 2: the BTC leg fully recovered; the USDT leg half, the rest held by an innocent address; the trace
    # shows addresses EIP-55 checksummed, the truth in lower case
    usdt = {CHAINS[SIM].show(bytes.fromhex(X[2:])): 150_000_000, CHAINS[SIM].show(b"\x01" * 20): 150_000_000}
    t2 = LegTrace(
        2, 0, REGTEST_CHAIN, "BTC", "s", 5 * COIN, {BRIDGE: 5 * COIN - 10_000}, {BRIDGE: 5 * COIN - 10_000}
    )
    t3 = LegTrace(2, 1, SIM, "usdt", "s", 300_000_000, usdt, usdt)
    # op 3: the trace could not run
    t4 = LegTrace(
        3, 0, REGTEST_CHAIN, "BTC", "s", 0, {}, {}, "transaction 00 is not in the store: ingest it first"
    )
    r = score_tracing(OPS, OPADDRS, CASHOUTS, [t1, t2, t3, t4])
    by_op = {o.operation_id: o for o in r.operations}
    assert by_op[1].score.share == 6 * COIN / (10 * COIN - 10_000)
    # entity level: D1 and D2 are both actor 99's; 7 BTC held at D1 count against their 9.9999
    assert by_op[1].score.entity_share == 7 * COIN / (10 * COIN - 10_000)
    assert (by_op[1].score.false_endpoints, by_op[1].score.false_endpoint_share) == (0, 0.0)
    assert by_op[2].score.share == (1.0 + 0.5) / 2  # mean over the two assets, never BTC + USDT
    assert by_op[2].score.false_endpoints == 1
    assert by_op[2].score.false_endpoint_share == (0.0 + 0.5) / 2
    assert by_op[2].score.entity_share == (1.0 + 0.5) / 2
    assert (by_op[3].score.legs, by_op[3].failed_legs, by_op[3].score.share) == (0, 1, None)
    assert r.failed == [
        {
            "operation_id": 3,
            "leg": 0,
            "chain": REGTEST_CHAIN,
            "seed": "s",
            "error": "transaction 00 is not in the store: ingest it first",
        }
    ]
    assert r.notes == [
        "tracing: 1 seed(s) could not be traced (listed under tracing.failed)",
        "tracing: 1 operation(s) have no traced leg: left out of the aggregates",
    ]
    btc = next(a for a in r.as_json()["overall"]["amounts"] if a["asset"] == "BTC")
    assert (btc["expected"], btc["recovered"]) == (15 * COIN - 20_000, 11 * COIN - 10_000)
    assert r.typologies["peel_chain"].operations == 1  # op 3 is left out


# the entity-level world: exchange Ex (actor 10) with deposit addresses and a hot wallet, exchange Ey (11),
# the perpetrator (12) and an innocent user (13); Ex's USDT addresses are lower case in the truth
EX, EY, PERP, USER = 10, 11, 12, 13
DEP, DEP2, DEP3, DEP4, HOT, OTHER, Y_DEP, Y_HOT, HOP, USER_A = (
    btc_address(n) for n in ("dep", "dep2", "dep3", "dep4", "hot", "other", "ydep", "yhot", "hop", "user")
)
E_DEP, E_HOT = evm_address(0xDE9), evm_address(0x7E57AB1E)
ENTITY_ADDRESSES = [
    *((REGTEST_CHAIN, a, EX) for a in (DEP, DEP2, DEP3, DEP4, HOT, OTHER)),
    *((REGTEST_CHAIN, a, EY) for a in (Y_DEP, Y_HOT)),
    (REGTEST_CHAIN, HOP, PERP),
    (REGTEST_CHAIN, USER_A, USER),
    (SIM, E_DEP, EX),
    (SIM, E_HOT, EX),
]


def _entity_owners(tmp_path: Path, how: str) -> Owners:
    """The owner lookup over a truth written to disk: its Arrow table, or the dict built for clustering."""
    w = TruthWriter(tmp_path / "truth")
    for aid, kind in ((EX, "exchange"), (EY, "exchange"), (PERP, "scammer"), (USER, "retail")):
        w.add("actors", aid, f"actor {aid}", kind, "service", False)
    w.extend("addresses", [(c, a, actor, "deposit") for c, a, actor in ENTITY_ADDRESSES])
    w.close()
    truth = load_truth(tmp_path)
    if how == "table":
        return owners_from_table(truth.table("addresses"))
    return owners_from_map(owned_addresses(truth, actors(truth)))


@pytest.mark.parametrize("how", ["table", "map"])
def test_entity_level_tracing(tmp_path: Path, how: str) -> None:
    ops = [_op(i, "peel_chain") for i in (1, 2, 3, 4)] + [_op(5, "chain_hop")]
    cash = [
        _cashout(1, 0, REGTEST_CHAIN, "BTC", DEP, 10 * COIN, EX),
        _cashout(2, 0, REGTEST_CHAIN, "BTC", DEP2, 4 * COIN, EX),
        _cashout(3, 0, REGTEST_CHAIN, "BTC", DEP3, 3 * COIN, EX),
        _cashout(4, 0, REGTEST_CHAIN, "BTC", DEP4, 2 * COIN, EX),
        _cashout(4, 0, REGTEST_CHAIN, "BTC", Y_DEP, 6 * COIN, EY),
        _cashout(5, 0, SIM, "USDT", E_DEP, 700_000_000, EX),
    ]
    opaddrs = [_opaddr(o, REGTEST_CHAIN, HOP) for o in (1, 2, 3, 4)]
    hot = CHAINS[SIM].show(bytes.fromhex(E_HOT[2:]))
    assert hot != E_HOT  # EIP-55 mixed case
    traces = [
        # 1: through the deposit address into Ex's hot wallet (Ex swept it), ending there
        LegTrace(
            1, 0, REGTEST_CHAIN, "BTC", "s", 10 * COIN,
            {HOP: 10 * COIN, DEP: 10 * COIN, HOT: 10 * COIN}, {HOT: 10 * COIN},
        ),
        # 2: at another address of the right exchange, never through the deposit address
        LegTrace(
            2, 0, REGTEST_CHAIN, "BTC", "s", 4 * COIN, {HOP: 4 * COIN, OTHER: 4 * COIN}, {OTHER: 4 * COIN}
        ),
        # 3: at the other exchange: wrong entity, a false end point
        LegTrace(3, 0, REGTEST_CHAIN, "BTC", "s", 3 * COIN, {Y_HOT: 3 * COIN}, {Y_HOT: 3 * COIN}),
        # 4: more than Ex's 2 BTC at Ex (capped at 2), 1 of Ey's 6 at Ey, 1 at an innocent user (false)
        LegTrace(
            4, 0, REGTEST_CHAIN, "BTC", "s", 8 * COIN,
            {HOT: 6 * COIN, Y_HOT: COIN, USER_A: COIN}, {HOT: 6 * COIN, Y_HOT: COIN, USER_A: COIN},
        ),
        # 5: USDT ending at Ex's hot wallet, shown EIP-55 by the trace, lower case in the truth
        LegTrace(5, 0, SIM, "USDT", "s", 700_000_000, {hot: 699_000_000}, {hot: 699_000_000}),
    ]  # fmt: skip
    r = score_tracing(ops, opaddrs, cash, traces, _entity_owners(tmp_path, how))
    got = {
        o.operation_id: (
            o.score.share,
            o.score.entity_share,
            o.score.false_endpoints,
            o.score.false_endpoint_share,
        )
        for o in r.operations
    }
    assert got == {
        1: (1.0, 1.0, 0, 0.0),
        2: (0.0, 1.0, 0, 0.0),
        3: (0.0, 0.0, 1, 1.0),
        4: (0.0, (2 + 1) / 8, 1, 1 / 8),
        5: (0.0, 699_000_000 / 700_000_000, 0, 0.0),
    }
    by_op = {o.operation_id: o.as_json() for o in r.operations}
    assert by_op[3]["false_endpoint_sample"] == [
        {"chain": REGTEST_CHAIN, "address": Y_HOT, "tainted_amount": 3 * COIN}
    ]
    assert by_op[4]["false_endpoint_sample"] == [
        {"chain": REGTEST_CHAIN, "address": USER_A, "tainted_amount": COIN}
    ]
    btc, usdt = r.as_json()["overall"]["amounts"]
    assert (btc["expected"], btc["recovered"], btc["entity_recovered"], btc["false_endpoint_value"]) == (
        25 * COIN, 10 * COIN, (10 + 4 + 2 + 1) * COIN, 4 * COIN,
    )  # fmt: skip
    assert (btc["share"], btc["entity_share"]) == (10 / 25, 17 / 25)
    assert (usdt["recovered"], usdt["entity_recovered"], usdt["entity_share"]) == (0, 699_000_000, 699 / 700)
    assert r.overall.entity_share == (17 / 25 + 699 / 700) / 2
    assert r.typologies["peel_chain"].entity_share == 17 / 25


def test_entity_level_needs_the_owners(tmp_path: Path) -> None:
    # without an owner lookup only the cash-out points' own owners are known: the hot wallet is nobody's
    cash = [_cashout(1, 0, REGTEST_CHAIN, "BTC", DEP, 10 * COIN, EX)]
    t = LegTrace(
        1, 0, REGTEST_CHAIN, "BTC", "s", 10 * COIN, {DEP: 10 * COIN, HOT: 10 * COIN}, {HOT: 10 * COIN}
    )
    r = score_tracing([_op(1, "peel_chain")], [], cash, [t])
    assert (r.overall.share, r.overall.entity_share, r.overall.false_endpoints) == (1.0, 0.0, 1)
    # both lookups find the same owners, by key, for the end points asked only
    points = [
        (REGTEST_CHAIN, CHAINS[REGTEST_CHAIN].parse(HOT), HOT),
        (SIM, bytes.fromhex(E_HOT[2:]), CHAINS[SIM].show(bytes.fromhex(E_HOT[2:]))),
        (REGTEST_CHAIN, CHAINS[REGTEST_CHAIN].parse(INNOCENT), INNOCENT),
        (SIM, b"\x01" * 20, evm_address(0x01)),
    ]
    want = {(REGTEST_CHAIN, CHAINS[REGTEST_CHAIN].parse(HOT)): EX, (SIM, bytes.fromhex(E_HOT[2:])): EX}
    for how in ("table", "map"):
        lookup = _entity_owners(tmp_path / how, how)
        assert lookup(points) == want and lookup([]) == {}


def test_entity_level_truth_errors_are_corrupt_data(tmp_path: Path) -> None:
    # one cash-out address given to two owners; a truth address the lookup finds that does not parse
    cash = [
        _cashout(1, 0, REGTEST_CHAIN, "BTC", DEP, 1, EX),
        _cashout(1, 0, REGTEST_CHAIN, "BTC", DEP, 1, EY),
    ]
    with pytest.raises(CorruptData, match="has two owners, 10 and 11"):
        score_tracing([_op(1, "peel_chain")], [], cash, [])
    good = CHAINS[SIM].show(bytes.fromhex(E_HOT[2:]))
    bad = good[:2] + good[2:].swapcase()  # mixed case with a wrong EIP-55 checksum
    w = TruthWriter(tmp_path / "truth")
    w.add("actors", EX, "Ex", "exchange", "service", False)
    w.add("addresses", REGTEST_CHAIN, good, EX, "hot")  # an EVM text under regtest: skipped, not parsed
    w.add("addresses", SIM, bad, EX, "hot")
    w.close()
    lookup = owners_from_table(load_truth(tmp_path).table("addresses"))
    with pytest.raises(CorruptData, match="is not a sim-ethereum address"):
        lookup([(SIM, bytes.fromhex(E_HOT[2:]), good)])


def test_tracing_truth_errors_are_corrupt_data() -> None:
    with pytest.raises(CorruptData, match="not a bitcoin-regtest address"):
        score_tracing(
            OPS, [], [_cashout(1, 0, REGTEST_CHAIN, "BTC", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", 1)], []
        )
    bad = _cashout(1, 0, REGTEST_CHAIN, "BTC", D1, 1)
    bad["amount"] = None
    with pytest.raises(CorruptData, match="cashouts table has no amount"):
        score_tracing(OPS, [], [bad], [])
    with pytest.raises(CorruptData, match=r"operations \[7\]"):
        score_tracing(OPS, [], [_cashout(7, 0, REGTEST_CHAIN, "BTC", D1, 1)], [])


# --- detection: pure scores ---------------------------------------------------------------------------


def test_detection_scores_on_constructed_alerts() -> None:
    ops = [_op(1, "mixing"), _op(2, "mixing"), _op(3, "peel_chain"), _op(4, "smurfing")]
    txs = [
        {"operation_id": 1, "chain": REGTEST_CHAIN, "txid": "aa" * 32, "step": 0, "role": "mix"},
        {"operation_id": 1, "chain": REGTEST_CHAIN, "txid": "bb" * 32, "step": 1, "role": "mix"},
        {"operation_id": 2, "chain": REGTEST_CHAIN, "txid": "cc" * 32, "step": 0, "role": "mix"},
        {"operation_id": 3, "chain": SIM, "txid": "0x" + "dd" * 32, "step": 0, "role": "peel"},
        {"operation_id": 4, "chain": REGTEST_CHAIN, "txid": "ee" * 32, "step": 0, "role": "split"},
    ]
    addrs = [_opaddr(1, REGTEST_CHAIN, D1), _opaddr(3, SIM, X)]
    alerts = [
        Alert("mixer-detector", "mixing", REGTEST_CHAIN, txids=("AA" * 32,)),  # op 1 (txid case-insensitive)
        Alert("mixer-detector", "mixing", REGTEST_CHAIN, addresses=(D1,)),  # op 1 again
        Alert("mixer-detector", "mixing", SIM, txids=("dd" * 32,)),  # op 3's tx, but op 3 is a peel chain
        Alert(
            "peel", "peel_chain", SIM, addresses=(CHAINS[SIM].show(bytes.fromhex(X[2:])),)
        ),  # op 3 (EIP-55)
        Alert("sanctions", "sanctions_evasion", REGTEST_CHAIN, txids=("ff" * 32,)),  # no such operation
        Alert("mixer-detector", "mixing", SIM, txids=("aa" * 32,)),  # op 1's txid on another chain
    ]
    r = score_detection(ops, txs, addrs, alerts)
    got = {t: (s.operations, s.detected, s.alerts, s.true_alerts) for t, s in r.typologies.items()}
    assert got == {
        "mixing": (2, 1, 4, 2),
        "peel_chain": (1, 1, 1, 1),
        "sanctions_evasion": (0, 0, 1, 0),
        "smurfing": (1, 0, 0, 0),
    }
    m = r.typologies["mixing"]
    assert (m.precision, m.recall, m.f1) == (0.5, 0.5, 0.5)
    assert (r.typologies["peel_chain"].f1, r.typologies["sanctions_evasion"].precision) == (1.0, 0.0)
    # undefined ratios stay unknown, never a fake 0 or 1
    assert (r.typologies["sanctions_evasion"].recall, r.typologies["sanctions_evasion"].f1) == (None, None)
    assert (r.typologies["smurfing"].precision, r.typologies["smurfing"].recall) == (None, 0.0)
    assert r.typologies["smurfing"].f1 is None
    o = r.overall
    assert (o.operations, o.detected, o.alerts, o.true_alerts) == (4, 2, 6, 3)
    assert (o.precision, o.recall, o.f1) == (0.5, 0.5, 0.5)
    assert r.as_json()["typologies"]["mixing"] == {
        "operations": 2,
        "detected": 1,
        "alerts": 4,
        "true_alerts": 2,
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
    }


# --- end to end on a real regtest store ---------------------------------------------------------------

NAMES = ("V", "V2", "T", "L1", "D", "G", "E1", "H", "E9", "R", "R2", "R3", "R5", "M2", "miner")
ACTORS = [  # (actor_id, name, kind, role, illicit)
    (1, "victim", "retail", "victim", False),
    (2, "scammer", "scammer", "criminal", True),
    (3, "SimExchange", "exchange", "service", False),
    (4, "gambler site", "gambling", "service", False),
    (5, "retail user", "retail", "user", False),
    (6, "shop", "merchant", "service", False),
    (7, "miner", "miner", "service", False),
]
OWNER = {
    "V": 1, "V2": 1, "T": 2, "L1": 2, "D": 3, "E1": 3, "H": 3, "E9": 3, "G": 4,
    "R": 5, "R2": 5, "R5": 5, "R3": 6, "M2": 6, "miner": 7,
}  # fmt: skip
THIEF_ETH = evm_address(0x5CA)
BRIDGE_SEED = "0x" + "ab" * 32


@dataclass
class World:
    store: Path
    out: Path  # the simulation's --out directory (truth in out/truth)
    txs: dict[str, Tx]
    addr: dict[str, str]


def _build_chain() -> tuple[ChainBuilder, dict[str, Tx]]:
    """The regtest world (satoshi): a scam, two hops to an exchange deposit, the exchange's sweep, and
    unrelated activity including a PayJoin-like payment that joins a retail user's and a shop's inputs.

    block 1-3  coinbases to V (victim), E1 (exchange hot wallet), R (retail user): 50 BTC each
    block 4    scam:  V 50 -> T 20 (the scammer), V2 29.9999 (victim's change)
    block 5    hop1:  T 20 -> L1 19.9999
    block 6    hop2:  L1 19.9999 -> D 15 (exchange deposit), G 4.9998 (a gambling site)
               pay:   R 50 -> R3 1 (shop), R2 48.9999
    block 7    sweep: D 15 + E1 50 -> H 64.9997 (multi-input: D and E1 merge)
               join:  R2 48.9999 + R3 1 -> M2 2 (shop), R5 47.9998 (multi-input: R2 and R3 merge, wrongly)
    """
    b = ChainBuilder()
    k = {n: Key(n) for n in NAMES}

    def pay(*outs: tuple[int, str]) -> list[TxOut]:
        return [TxOut(v, k[n].p2pkh()) for v, n in outs]

    t: dict[str, Tx] = {}
    t["cbV"], t["cbE"], t["cbR"] = (b.add_block(miner=k[n]).txs[0] for n in ("V", "E1", "R"))
    t["scam"] = b.spend([(t["cbV"].outpoint(0), k["V"])], pay((20 * COIN, "T"), (30 * COIN - 10_000, "V2")))
    b.add_block([t["scam"]])
    t["hop1"] = b.spend([(t["scam"].outpoint(0), k["T"])], pay((20 * COIN - 10_000, "L1")))
    b.add_block([t["hop1"]])
    t["hop2"] = b.spend([(t["hop1"].outpoint(0), k["L1"])], pay((15 * COIN, "D"), (5 * COIN - 20_000, "G")))
    t["pay"] = b.spend([(t["cbR"].outpoint(0), k["R"])], pay((COIN, "R3"), (49 * COIN - 10_000, "R2")))
    b.add_block([t["hop2"], t["pay"]])
    t["sweep"] = b.spend(
        [(t["hop2"].outpoint(0), k["D"]), (t["cbE"].outpoint(0), k["E1"])], pay((65 * COIN - 30_000, "H"))
    )
    t["join"] = b.spend(
        [(t["pay"].outpoint(1), k["R2"]), (t["pay"].outpoint(0), k["R3"])],
        pay((2 * COIN, "M2"), (48 * COIN - 20_000, "R5")),
    )
    b.add_block([t["sweep"], t["join"]])
    return b, t


def _write_truth(out: Path, t: dict[str, Tx], addr: dict[str, str]) -> None:
    w = TruthWriter(out / "truth")
    w.extend("actors", ACTORS)
    w.extend("addresses", [(REGTEST_CHAIN, addr[n], OWNER[n], "receive") for n in NAMES])
    w.add("addresses", SIM, THIEF_ETH, 2, "receive")
    w.add("operations", 1, "scam", "case-1", 2, 0, 0, Decimal(20 * COIN), "BTC", REGTEST_CHAIN, "a scam")
    w.add("operations", 2, "bridge", None, 2, 0, 0, Decimal(10**18), "ETH", SIM, "never ingested")
    for step, (name, role) in enumerate((("scam", "theft"), ("hop1", "layer"), ("hop2", "cashout"))):
        w.add("operation_txs", 1, REGTEST_CHAIN, t[name].txid.hex(), step, role)
    for name, role in (("V", "victim"), ("T", "perpetrator"), ("L1", "layer"), ("D", "cashout")):
        w.add("operation_addresses", 1, REGTEST_CHAIN, addr[name], role)
    w.add("seeds", 1, 0, REGTEST_CHAIN, f"{t['scam'].txid.hex()}:0", "BTC", Decimal(20 * COIN))
    w.add("seeds", 2, 0, SIM, BRIDGE_SEED, "ETH", Decimal(10**18))
    w.add("cashouts", 1, 0, REGTEST_CHAIN, "BTC", addr["D"], 3, t["hop2"].txid.hex(), Decimal(15 * COIN))
    w.close()
    (out / "truth" / "manifest.json").write_text(json.dumps({"scenario": "test-world", "seed": 1}))


def _make_world(root: Path, labelled: str) -> World:
    """The regtest world in a clustered store, with the exchange's label on address ``labelled``."""
    b, t = _build_chain()
    addr = {n: btc_address(n) for n in NAMES}
    store = root / "world.duckdb"
    con = connect(store)
    raws = b.raw_blocks()
    buf = np.frombuffer(b"".join(raws), dtype=np.uint8)
    ends = np.cumsum([len(r) for r in raws]).astype(np.int64)
    starts = np.r_[0, ends[:-1]].astype(np.int64)
    write_blocks(con, decode_blocks(buf, starts, ends, REGTEST), "test")
    add_label(con, REGTEST_CHAIN, addr[labelled], "SimExchange", "exchange", is_cluster_definer=True)
    engine.cluster(con, ClusterConfig(), [REGTEST_CHAIN])
    con.close()
    _write_truth(root / "sim", t, addr)
    return World(store, root / "sim", t, addr)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return _make_world(tmp_path_factory.mktemp("evaluate"), "E1")


@pytest.fixture(scope="module")
def swept_world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The same world with only the exchange's hot wallet H labelled: the cluster {D, E1} is not known to
    be the exchange's, so a trace runs through the deposit address D and the sweep into H."""
    return _make_world(tmp_path_factory.mktemp("evaluate-swept"), "H")


def _evaluate(w: World, policy: str = "haircut", hops: int = 30) -> dict[str, Any]:
    con = connect(w.store, read_only=True)
    try:
        return evaluate(con, load_truth(w.out), policy, hops, w.store)
    finally:
        con.close()


def test_end_to_end_clustering(world: World) -> None:
    c = _evaluate(world)["clustering"]
    # clusters: {D, E1} (the sweep) and {R2, R3} (the join, a wrong merge); everything else alone.
    # truth pairs among the 14 seen addresses: victim 1, scammer 1, exchange {D,E1,H} 3, retail {R,R2,R5} 3,
    # shop {R3,M2} 1 = 9; predicted pairs 2, of which (D, E1) is true
    regtest = {
        "chain": REGTEST_CHAIN,
        "status": "scored",
        "truth_addresses": 15,
        "unseen": 1,  # E9
        "score": {
            "addresses": 14,
            "entities": 7,
            "clusters": 12,
            "truth_pairs": 9,
            "predicted_pairs": 2,
            "true_pairs": 1,
            "precision": 0.5,
            "recall": 1 / 9,
            "f1": pytest.approx(2 / 11),
        },
    }
    sim = {"chain": SIM, "status": "not ingested", "truth_addresses": 1, "unseen": 0, "score": None}
    assert c["chains"] == [regtest, sim]
    assert c["overall"] == regtest["score"]
    kinds = {
        k: (s["addresses"], s["truth_pairs"], s["predicted_pairs"], s["true_pairs"])
        for k, s in c["kinds"].items()
    }
    assert kinds == {
        "exchange": (3, 3, 1, 1),
        "gambling": (1, 0, 0, 0),
        "merchant": (2, 1, 1, 0),
        "miner": (1, 0, 0, 0),
        "retail": (5, 4, 1, 0),
        "scammer": (2, 1, 0, 0),
    }
    ex = c["kinds"]["exchange"]
    assert (ex["precision"], ex["recall"], ex["clusters"]) == (1.0, 1 / 3, 2)
    sc = c["kinds"]["scammer"]
    assert (sc["precision"], sc["recall"], sc["f1"]) == (1.0, 0.0, 0.0)  # nothing claimed, nothing found


def test_end_to_end_tracing(world: World) -> None:
    r = _evaluate(world)
    tr = r["tracing"]
    # the trace stops at D (in the exchange's cluster, whose definer label is an exchange): 15 BTC reach
    # the true cash-out; the 4.9998 BTC paid to the gambling site G end there, unspent: a false end point
    op1 = tr["operations"][0]
    assert (op1["operation_id"], op1["typology"], op1["case"], op1["legs"]) == (1, "scam", "case-1", 1)
    assert op1["amounts"] == [
        {
            "chain": REGTEST_CHAIN,
            "asset": "BTC",
            "expected": 15 * COIN,
            "recovered": 15 * COIN,
            "entity_recovered": 15 * COIN,  # held at D, the exchange's
            "traced": 20 * COIN,
            "false_endpoint_value": 5 * COIN - 20_000,
            "share": 1.0,
            "entity_share": 1.0,
            "false_endpoint_share": (5 * COIN - 20_000) / (20 * COIN),
        }
    ]
    assert op1["false_endpoint_sample"] == [
        {"chain": REGTEST_CHAIN, "address": world.addr["G"], "tainted_amount": 5 * COIN - 20_000}
    ]
    assert (op1["share"], op1["entity_share"], op1["false_endpoints"]) == (1.0, 1.0, 1)
    op2 = tr["operations"][1]
    assert (op2["operation_id"], op2["legs"], op2["failed_legs"], op2["share"]) == (2, 0, 1, None)
    assert tr["failed"] == [
        {
            "operation_id": 2,
            "leg": 0,
            "chain": SIM,
            "seed": BRIDGE_SEED,
            "error": "no sim-ethereum data in the store: ingest it first",
        }
    ]
    assert (tr["policy"], tr["hops"], tr["seeds"]) == ("haircut", 30, 2)
    assert tr["overall"]["share"] == tr["overall"]["entity_share"] == 1.0 and tr["overall"]["operations"] == 1
    assert set(tr["typologies"]) == {"scam"}
    assert r["detection"] is None
    assert r["truth"] == {
        "path": str(world.out / "truth"),
        "scenario": "test-world",
        "seed": 1,
        "rows": {
            "actors": 7,
            "addresses": 16,
            "operations": 2,
            "operation_txs": 3,
            "operation_addresses": 4,
            "seeds": 2,
            "cashouts": 1,
        },
    }
    assert r["notes"] == [
        f"clustering: the store holds no {SIM} data: ingest it to score its clusters",
        "tracing: 1 seed(s) could not be traced (listed under tracing.failed)",
        "tracing: 1 operation(s) have no traced leg: left out of the aggregates",
        "detection: not available: the store has no alerts on the world's chains (run `fundtrail detect` "
        "first), so there is nothing to score per typology",
    ]


def test_end_to_end_sweep_into_the_hot_wallet(swept_world: World) -> None:
    # the trace passes the deposit address D (15 BTC received: share 1.0) and follows the sweep into the
    # labelled hot wallet H, where it ends: an end point of the right exchange, so no false end point; the
    # exchange's hot wallet holds the 15 BTC less the haircut's part of the sweep's fee
    w = swept_world
    r = _evaluate(w)
    op1 = r["tracing"]["operations"][0]
    con = connect(w.store, read_only=True)
    try:
        seed = f"{w.txs['scam'].txid.hex()}:0"
        req = TraceRequest(chain=REGTEST_CHAIN, seed=seed, policy="haircut", limits=Limits(hops=30))
        ends = {p["address"]: int(p["tainted_amount"]) for p in trace(con, req, w.store)["endpoints"]}
    finally:
        con.close()
    fee_taint = 15 * COIN * 30_000 // (65 * COIN)  # D's 15 of the sweep's 65 BTC in, 30,000 sat fee
    assert ends[w.addr["H"]] in (15 * COIN - fee_taint, 15 * COIN - fee_taint - 1)
    a = op1["amounts"][0]
    assert (a["expected"], a["recovered"], a["entity_recovered"]) == (15 * COIN, 15 * COIN, ends[w.addr["H"]])
    assert (op1["share"], op1["entity_share"]) == (1.0, ends[w.addr["H"]] / (15 * COIN))
    assert op1["false_endpoints"] == 1  # G only (H counted as false before the entity-level measure)
    assert op1["false_endpoint_sample"] == [
        {"chain": REGTEST_CHAIN, "address": w.addr["G"], "tainted_amount": 5 * COIN - 20_000}
    ]
    assert a["false_endpoint_value"] == 5 * COIN - 20_000
    t = run("evaluate", "--truth", str(w.out), db=w.store)
    assert t.returncode == 0, t.stderr
    assert "entity share" in t.stdout
    assert f"{ends[w.addr['H']]:,}" in t.stdout  # at cash-out owners, in the traced-value table


def test_end_to_end_hop_limit(world: World) -> None:
    # one hop: the value stops at the layer address L1 (an address of the operation, not a false end point)
    op1 = _evaluate(world, hops=1)["tracing"]["operations"][0]
    assert (op1["share"], op1["false_endpoints"], op1["false_endpoint_share"]) == (0.0, 0, 0.0)
    assert op1["entity_share"] == 0.0  # L1 is the scammer's, not the exchange's
    assert op1["amounts"][0]["traced"] == 20 * COIN and op1["amounts"][0]["recovered"] == 0


def test_cli_json_and_table(world: World) -> None:
    r = run("evaluate", "--truth", str(world.out), "--json", db=world.store)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == _evaluate(world)
    t = run("evaluate", "--truth", str(world.out / "truth"), "--policy", "fifo", db=world.store)
    assert t.returncode == 0, t.stderr
    for text in (
        "Clustering (pairwise)",
        "not ingested",
        "0.500",
        "0.111",
        "Tracing (fifo, 30 hops, 2 seeds)",
    ):
        assert text in t.stdout
    assert "note: detection: not available" in t.stdout
    assert (
        f"not traced: operation 2 leg 0 ({SIM} {BRIDGE_SEED}): no sim-ethereum data in the store" in t.stdout
    )


def test_cli_errors_are_one_line(world: World, tmp_path: Path) -> None:
    r = run("evaluate", "--truth", str(tmp_path / "nowhere"), db=world.store)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"error: {tmp_path / 'nowhere'} is not a simulated world's output or truth directory: pass the --out "
        "directory of `fundtrail simulate` (or its truth/ folder)"
    )
    bad = tmp_path / "bad"
    (bad / "truth").mkdir(parents=True)
    for f in (world.out / "truth").iterdir():
        (bad / "truth" / f.name).write_bytes(f.read_bytes())
    (bad / "truth" / "seeds.parquet").write_bytes(b"not parquet")
    r = run("evaluate", "--truth", str(bad), db=world.store)
    assert r.returncode == 4 and r.stderr.count("\n") == 1
    assert r.stderr.startswith(f"error: {bad / 'truth' / 'seeds.parquet'} is not a readable Parquet file")
    (bad / "truth" / "seeds.parquet").write_bytes((world.out / "truth" / "seeds.parquet").read_bytes())
    (bad / "truth" / "manifest.json").write_text("{oops")
    r = run("evaluate", "--truth", str(bad), db=world.store)
    assert (
        r.returncode == 4
        and r.stderr.startswith("error: the truth's manifest.json")
        and r.stderr.count("\n") == 1
    )
    for args, msg in (
        (
            ("--policy", "magic"),
            "error: unknown --policy 'magic': use one of haircut, poison, fifo, lifo, tiho",
        ),
        (("--hops", "-1"), "error: --hops -1 is negative: give 0 or more hops"),
    ):
        r = run("evaluate", "--truth", str(world.out), *args, db=world.store)
        assert (r.returncode, r.stderr.strip()) == (2, msg)


def test_truth_contradictions_are_corrupt_data(tmp_path: Path) -> None:
    w = TruthWriter(tmp_path / "truth")
    w.add("actors", 1, "a", "retail", "user", False)
    w.add("addresses", REGTEST_CHAIN, btc_address("x"), 1, "receive")
    w.add("addresses", REGTEST_CHAIN, btc_address("x"), 2, "receive")
    w.close()
    truth = load_truth(tmp_path)
    with pytest.raises(CorruptData, match="belongs to actor 2, not in the actors"):
        owned_addresses(truth, actors(truth))
