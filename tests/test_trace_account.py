"""Account-chain fund tracing (fundtrail.tracing.account_trace) on real stores: small account graphs
written through the repository's own writer (``write_account_batch``) with every expected taint computed
by hand in the comments, a wei-sized case beyond 2**64, fees, a swap through a labelled DEX, stops and
limits; a hypothesis property (conservation and bounds over random transfer sequences, every policy, both
directions); and one end-to-end case on a real local node (anvil: real transactions, fees and a token,
ingested with ``ingest evm-rpc``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fundtrail.errors import InvalidInput, NotFound
from fundtrail.ingest.evm_rpc import ingest_evm_rpc
from fundtrail.ingest.jsonrpc import JsonRpcClient, parse_url
from fundtrail.store.account_write import (
    BLOCK_SCHEMA,
    TRANSFER_SCHEMA,
    TX_SCHEMA,
    AccountBatch,
    write_account_batch,
)
from fundtrail.store.db import connect
from fundtrail.tracing.account_trace import split, trace_account
from fundtrail.tracing.model import FEE_ADDRESS, POLICIES, TOTAL_KEYS, Limits, RawFlow, Stops
from tests.anvil import calldata, compile_solidity, require_node_tools, running_anvil

CHAIN = "anvil"
ZERO = bytes(20)
TOKEN = b"\xee" * 20
T0 = 1_700_000_000  # block n has time T0 + 10 n


def key(name: str) -> bytes:
    """A 20-byte address key per name (the zero address is ``ZERO``)."""
    return name.encode().ljust(20, b".")


@dataclass
class Chain:
    """Transactions written as one batch: each in a block of its own (block n, time T0 + 10 n)."""

    blocks: list[dict[str, Any]] = field(default_factory=list)
    txs: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)

    def tx(
        self,
        sender: bytes,
        to: bytes,
        value: int = 0,
        fee: int = 0,
        tokens: tuple[tuple[bytes, bytes, int], ...] = (),
        internal: tuple[tuple[bytes, bytes, int], ...] = (),
    ) -> bytes:
        n = len(self.blocks)
        h = n.to_bytes(32, "big")
        self.blocks.append(
            {
                "number": n,
                "hash": b"B" + h[1:],
                "parent_hash": b"B" + (n - 1).to_bytes(32, "big", signed=True)[1:],
                "time": T0 + 10 * n,
                "tx_count": 1,
                "miner": key("miner"),
                "gas_used": 21000,
                "base_fee": "1",
                "size": 500,
            }
        )
        self.txs.append(
            {
                "block_number": n,
                "position": 0,
                "hash": h,
                "from": sender,
                "to": to,
                "created": None,
                "value": str(value),
                "nonce": n,
                "gas": 21000,
                "gas_price": "1",
                "gas_used": 21000,
                "fee": str(fee),
                "status": True,
                "tx_type": 2,
                "method": None,
            }
        )
        for i, (src, dst, amount) in enumerate(tokens):
            self.transfers.append(
                {
                    "tx_hash": h,
                    "block_number": n,
                    "kind": "token",
                    "log_index": i,
                    "trace_position": None,
                    "contract": TOKEN,
                    "from": src,
                    "to": dst,
                    "amount": str(amount),
                }
            )
        for i, (src, dst, amount) in enumerate(internal):
            self.transfers.append(
                {
                    "tx_hash": h,
                    "block_number": n,
                    "kind": "internal",
                    "log_index": None,
                    "trace_position": f"0.{i}",
                    "contract": None,
                    "from": src,
                    "to": dst,
                    "amount": str(amount),
                }
            )
        return h

    def write(self, con: duckdb.DuckDBPyConnection) -> None:
        batch = AccountBatch(
            CHAIN,
            pa.Table.from_pylist(self.blocks, BLOCK_SCHEMA),
            pa.Table.from_pylist(self.txs, TX_SCHEMA),
            pa.Table.from_pylist(self.transfers, TRANSFER_SCHEMA),
            source="test",
        )
        write_account_batch(con, batch)


@dataclass
class Store:
    con: duckdb.DuckDBPyConnection
    ids: dict[bytes, int]
    txs: dict[bytes, int]
    native: int
    token: int | None

    def id(self, name: str) -> int:
        return self.ids[ZERO if name == "0x0" else key(name)]

    def stops(self, service: tuple[str, ...] = (), super_cluster: tuple[str, ...] = ()) -> Stops:
        n = max(self.ids.values()) + 1
        s, c = np.zeros(n, np.bool_), np.zeros(n, np.bool_)
        for x in service:
            s[self.id(x)] = True
        for x in super_cluster:
            c[self.id(x)] = True
        return Stops(s, c)

    def trace(
        self,
        policy: str,
        direction: str = "forward",
        *,
        tx: bytes | None = None,
        addresses: tuple[str, ...] = (),
        amount: int | None = None,
        token: bool = False,
        limits: Limits | None = None,
        stops: Stops | None = None,
        start: int | None = None,
    ) -> tuple[RawFlow, list[dict[str, int]]]:
        asset = self.token if token else self.native
        assert asset is not None
        return trace_account(
            self.con,
            CHAIN,
            asset,
            [self.id(a) for a in addresses] if tx is None else None,
            None if tx is None else self.txs[tx],
            amount,
            policy,
            direction,
            limits or Limits(),
            stops or self.stops(),
            start,
        )

    def ends(self, flow: RawFlow) -> dict[tuple[str, str], int]:
        """End points as {(name, kind): tainted}."""
        names = {
            i: ("0x0" if k == ZERO else k.rstrip(b".").decode(errors="replace")) for k, i in self.ids.items()
        }
        names[FEE_ADDRESS] = "(fees)"
        return {(names[p.address_id], p.kind): p.tainted for p in flow.endpoints}


def store_of(chain: Chain) -> Store:
    con = connect(Path(":memory:"))
    chain.write(con)
    ids = {bytes(k): int(i) for k, i in con.execute("SELECT key, address_id FROM addresses").fetchall()}
    txs = {bytes(h): int(i) for h, i in con.execute("SELECT hash, tx_id FROM account_txs").fetchall()}
    assets = dict(con.execute("SELECT coalesce(contract, ''::BLOB), asset_id FROM assets").fetchall())
    return Store(con, ids, txs, int(assets[b""]), None if TOKEN not in assets else int(assets[TOKEN]))


def flows(store: Store, policy: str, direction: str, **kw: Any) -> dict[tuple[str, str], int]:
    flow, _swaps = store.trace(policy, direction, **kw)
    flow.check()
    return store.ends(flow)


# -- the hand-computed graph -------------------------------------------------------------------------------
#   tx1  M -> A 40 (clean)            tx4  X -> A 50 (clean)
#   tx2  S -> A 60 (the seed tx)      tx5  A -> C 60
#   tx3  A -> B 30                    tx6  B -> D 10
# (no fees here: a zero fee is not a transfer)


@pytest.fixture(scope="module")
def graph() -> Iterator[tuple[Store, dict[str, bytes]]]:
    c = Chain()
    k = key
    tx = {
        "tx1": c.tx(k("M"), k("A"), 40),
        "tx2": c.tx(k("S"), k("A"), 60),
        "tx3": c.tx(k("A"), k("B"), 30),
        "tx4": c.tx(k("X"), k("A"), 50),
        "tx5": c.tx(k("A"), k("C"), 60),
        "tx6": c.tx(k("B"), k("D"), 10),
    }
    store = store_of(c)
    yield store, tx
    store.con.close()


FORWARD_FROM_TX2 = {
    # A holds 100 after tx2: 40 clean (tx1), 60 tainted.
    # tx3: 30 * 60/100 = 18 to B; A 70 (42). tx4: A 120 (42). tx5: 60 * 42/120 = 21 to C; A 60 (21).
    # tx6: B holds 30 (18), sends 10: 10 * 18/30 = 6 to D; B 20 (12). 21 + 12 + 21 + 6 = 60.
    "haircut": {("A", "unspent"): 21, ("B", "unspent"): 12, ("C", "unspent"): 21, ("D", "unspent"): 6},
    # A's whole balance is tainted from tx2 (40 clean marked), and stays so (tx4's 50 marked): created 90.
    # tx3 30 to B, tx5 60 to C, tx6 10 to D; A keeps 60, B 20. 60 + 20 + 60 + 10 = 150 = 60 + 90.
    "poison": {("A", "unspent"): 60, ("B", "unspent"): 20, ("C", "unspent"): 60, ("D", "unspent"): 10},
    # A's lots [40 clean, 60 t]. tx3 takes the oldest: 30 clean (B gets none); A [10 c, 60 t].
    # tx4 appends 50 c. tx5 takes 60: 10 c + 50 t to C; A [10 t, 50 c]. 10 + 50 = 60.
    "fifo": {("A", "unspent"): 10, ("C", "unspent"): 50},
    # A [40 c, 60 t]. tx3 takes the newest: 30 t to B; A [40 c, 30 t]. tx4: [40 c, 30 t, 50 c].
    # tx5 takes 60 newest: 50 c + 10 t to C; A [40 c, 20 t]. tx6: B [30 t] sends 10 t to D. 20+20+10+10.
    "lifo": {("A", "unspent"): 20, ("B", "unspent"): 20, ("C", "unspent"): 10, ("D", "unspent"): 10},
    # taint first: tx3 min(30, 60) = 30 to B; A 70 (30). tx5 min(60, 30) = 30 to C; A 60 (0).
    # tx6: B 30 (30) sends 10 to D; B 20. 20 + 30 + 10 = 60.
    "tiho": {("B", "unspent"): 20, ("C", "unspent"): 30, ("D", "unspent"): 10},
}

BACKWARD_FROM_C = {
    # C received 60, all from A in tx5. Back in time A held 120 just after tx5 (60 of interest).
    # tx4 (X -> A 50): 50 * 60/120 = 25 to X; A 70 (35). tx3 (A sent 30): A 100 (35) before it.
    # tx2 (S -> A 60): 60 * 35/100 = 21 to S; A 40 (14). tx1 (M -> A 40): the rest, 14, to M.
    # X, S and M received nothing before: the start of the stored history. 25 + 21 + 14 = 60.
    # (The same as colouring A's lots forward: A = M40 S60; tx3 takes 12 + 18; + X50; tx5 takes half.)
    "haircut": {("M", "origin"): 14, ("S", "origin"): 21, ("X", "origin"): 25},
    # everything A ever received is of interest: X 50, S 60, M 40 = 150 = 60 + created 90 (A's 60 left
    # after tx5 and the 30 it sent to B in tx3, marked).
    "poison": {("M", "origin"): 40, ("S", "origin"): 60, ("X", "origin"): 50},
    # backward fifo: A's balance back in time as lots [60 clean (what it kept), 60 interest].
    # tx4 takes the oldest: 50 clean (X none); tx3 adds 30 clean: [10 c, 60 i, 30 c];
    # tx2 takes 60: 10 c + 50 i to S; tx1 takes 40: 10 i + 30 c to M. Forward FIFO agrees: A = [M40, S60],
    # tx3 takes M30, + X50, tx5 takes M10 + S50.
    "fifo": {("M", "origin"): 10, ("S", "origin"): 50},
    # backward lifo: [60 c, 60 i]; tx4 takes the newest: 50 i to X; [60 c, 10 i]; tx3: [60 c, 10 i, 30 c];
    # tx2 takes 60: 30 c + 10 i + 20 c: 10 to S. Forward LIFO agrees: tx5 took X50 + S10.
    "lifo": {("S", "origin"): 10, ("X", "origin"): 50},
    # interest first: tx4 min(50, 60) = 50 to X; A 70 (10); tx3: A 100 (10); tx2 min(60, 10) = 10 to S.
    "tiho": {("S", "origin"): 10, ("X", "origin"): 50},
}


@pytest.mark.parametrize("policy", POLICIES)
def test_forward_from_a_transaction(graph: tuple[Store, dict[str, bytes]], policy: str) -> None:
    store, tx = graph
    flow, swaps = store.trace(policy, tx=tx["tx2"])
    assert store.ends(flow) == FORWARD_FROM_TX2[policy]
    assert flow.seed_amount == 60 and not swaps
    assert flow.created == (90 if policy == "poison" else 0)
    assert sum(flow.totals.values()) == 60 + flow.created
    assert flow.totals["unspent"] == 60 + flow.created


@pytest.mark.parametrize("policy", POLICIES)
def test_backward_from_an_address(graph: tuple[Store, dict[str, bytes]], policy: str) -> None:
    store, _tx = graph
    flow, _ = store.trace(policy, "backward", addresses=("C",))
    assert store.ends(flow) == BACKWARD_FROM_C[policy]
    assert flow.seed_amount == 60 and flow.created == (90 if policy == "poison" else 0)
    assert flow.totals["at_endpoints"] == 60 + flow.created  # origins are end points


def test_edges_and_paths(graph: tuple[Store, dict[str, bytes]]) -> None:
    store, tx = graph
    flow, _ = store.trace("haircut", tx=tx["tx2"])
    t = store.txs
    edges = {(e.tx_id, e.amount, e.tainted, e.hop) for e in flow.edges}
    assert edges == {(t[tx["tx3"]], 30, 18, 1), (t[tx["tx5"]], 60, 21, 1), (t[tx["tx6"]], 10, 6, 2)}
    by = {store.ends(RawFlow(0, endpoints=[p])).popitem()[0][0]: p for p in flow.endpoints}
    assert by["D"].path == [t[tx["tx2"]], t[tx["tx3"]], t[tx["tx6"]]] and by["D"].hops == 2
    assert by["A"].path == [t[tx["tx2"]]] and by["A"].hops == 0
    e = next(e for e in flow.edges if e.tx_id == t[tx["tx6"]])
    assert (e.src, e.dst, e.time) == (store.id("B"), store.id("D"), T0 + 50)
    back, _ = store.trace("haircut", "backward", addresses=("C",))  # edges keep the money's direction
    assert {(e.src, e.dst, e.tainted) for e in back.edges} == {
        (store.id("A"), store.id("C"), 60),
        (store.id("X"), store.id("A"), 25),
        (store.id("S"), store.id("A"), 21),
        (store.id("M"), store.id("A"), 14),
    }


def test_address_seeds_and_start_time(graph: tuple[Store, dict[str, bytes]]) -> None:
    store, _tx = graph
    # forward from A at the end of tx2's block (time T0 + 10): its balance 100 plus what it receives after
    # (tx4's 50): all of A is tainted, so every transfer is: B 30, C 60, D 10 (B's 30 all tainted);
    # A keeps 60, B 20. Seed 150.
    flow, _ = store.trace("haircut", addresses=("A",), start=T0 + 10)
    assert flow.seed_amount == 150
    assert store.ends(flow) == {("A", "unspent"): 60, ("B", "unspent"): 20, ("C", "unspent"): 60,
                                ("D", "unspent"): 10}  # fmt: skip
    # capped at 50: A holds 100 (50 t); tx3 30 * 50/100 = 15 to B, A 70 (35); tx4 adds 50 clean (the cap
    # is used up), A 120 (35); tx5 60 * 35/120 = 17.5 -> 18 (half up) to C, A 60 (17);
    # tx6 B 30 (15) sends 10: 5 to D, B 20 (10). 17 + 10 + 18 + 5 = 50.
    flow, _ = store.trace("haircut", addresses=("A",), start=T0 + 10, amount=50)
    assert flow.seed_amount == 50
    assert store.ends(flow) == {("A", "unspent"): 17, ("B", "unspent"): 10, ("C", "unspent"): 18,
                                ("D", "unspent"): 5}  # fmt: skip
    # no start time: everything A received (40 + 60 + 50 = 150), forward the same as above
    assert store.trace("haircut", addresses=("A",))[0].seed_amount == 150
    # backward from A at the end of tx3's block (T0 + 20): what it received up to then, 40 + 60 = 100
    # (its balance 70 plus the 30 it sent before): back to S 60 and M 40 under every policy
    for policy in POLICIES:
        flow, _ = store.trace(policy, "backward", addresses=("A",), start=T0 + 20)
        assert flow.seed_amount == 100
        assert store.ends(flow) == {("M", "origin"): 40, ("S", "origin"): 60}
    # a cluster seed {B, C} backward: 30 + 60 received, 10 of which... all from A, back to M, S, X
    flow, _ = store.trace("fifo", "backward", addresses=("B", "C"))
    assert flow.seed_amount == 90 and sum(flow.totals.values()) == 90


def test_backward_from_a_transaction(graph: tuple[Store, dict[str, bytes]]) -> None:
    store, tx = graph
    # backward from tx5: the sender A lost 60; A held 120 just before tx5 (its balance after tx4) - the same
    # walk as backward from C
    for policy in POLICIES:
        flow, _ = store.trace(policy, "backward", tx=tx["tx5"])
        assert store.ends(flow) == BACKWARD_FROM_C[policy]


def test_stops_and_limits(graph: tuple[Store, dict[str, bytes]]) -> None:
    store, tx = graph
    # haircut forward from tx2 as above: B 18 (tx3), C 21 (tx5), D 6 (tx6, hop 2)
    one_hop = flows(store, "haircut", "forward", tx=tx["tx2"], limits=Limits(hops=1))
    assert one_hop == {("A", "unspent"): 21, ("B", "unspent"): 12, ("C", "unspent"): 21,
                       ("D", "beyond_limits"): 6}  # fmt: skip
    # min 20: B's 18 is below it (B not followed, so tx6 carries nothing); C's 21 is followed
    small = flows(store, "haircut", "forward", tx=tx["tx2"], limits=Limits(min_amount=20))
    assert small == {("A", "unspent"): 21, ("B", "below_threshold"): 18, ("C", "unspent"): 21}
    # C a service, D in a super-cluster
    stopped = flows(store, "haircut", "forward", tx=tx["tx2"], stops=store.stops(("C",), ("D",)))
    assert stopped == {("A", "unspent"): 21, ("B", "unspent"): 12, ("C", "service"): 21,
                       ("D", "super_cluster"): 6}  # fmt: skip
    # until the end of tx4's block: tx5 and tx6 move taint after it
    until = flows(store, "haircut", "forward", tx=tx["tx2"], limits=Limits(until=T0 + 30))
    assert until == {("A", "unspent"): 21, ("B", "unspent"): 12, ("C", "beyond_limits"): 21,
                     ("D", "beyond_limits"): 6}  # fmt: skip
    # backward since tx2's time: tx1 (M) is before it: M's 14 ends beyond the limits
    since = flows(store, "haircut", "backward", addresses=("C",), limits=Limits(since=T0 + 10))
    assert since == {("M", "beyond_limits"): 14, ("S", "origin"): 21, ("X", "origin"): 25}
    # a seed transaction paying a service ends there at once
    flow, _ = store.trace("haircut", tx=tx["tx5"], stops=store.stops(("C",)))
    assert store.ends(flow) == {("C", "service"): 60}


def test_bad_requests(graph: tuple[Store, dict[str, bytes]]) -> None:
    store, tx = graph
    with pytest.raises(InvalidInput):
        store.trace("nope", tx=tx["tx2"])
    with pytest.raises(InvalidInput):
        store.trace("fifo", "sideways", tx=tx["tx2"])
    with pytest.raises(InvalidInput):
        trace_account(store.con, CHAIN, store.native, None, None, None, "fifo", "forward", Limits(),
                      store.stops(), None)  # fmt: skip
    with pytest.raises(NotFound):
        trace_account(store.con, CHAIN, store.native, None, 10**9, None, "fifo", "forward", Limits(),
                      store.stops(), None)  # fmt: skip


# -- fees, wei beyond 2**64, a token with mint and burn, a swap ------------------------------------------

E = 10**24  # a million ether in wei: far beyond 2**64 (1.8e19)
FEE = 3 * 10**15


@pytest.fixture(scope="module")
def wei() -> Iterator[tuple[Store, dict[str, bytes]]]:
    c = Chain()
    k = key
    tx = {
        "fund": c.tx(k("M"), k("A"), E + 1),  # clean
        "seed": c.tx(k("S"), k("A"), 2 * E - 1),  # A: 3E, 2E - 1 tainted
        "pay": c.tx(k("A"), k("B"), 3 * 10**21, fee=FEE),
        "dust": c.tx(k("B"), k("D"), 1),
        "rest": c.tx(k("B"), k("C"), 3 * 10**21 - 1),
        # the token: minted from 0x0 to A, A -> B 400, B burns 100, B -> exchange 300
        "mint": c.tx(k("A"), TOKEN, tokens=((ZERO, k("A"), 1000),)),
        "t2": c.tx(k("A"), TOKEN, tokens=((k("A"), k("B"), 400),)),
        "burn": c.tx(k("B"), TOKEN, tokens=((k("B"), ZERO, 100),)),
        "t4": c.tx(k("B"), TOKEN, tokens=((k("B"), k("Ex"), 300),)),
        # a swap: C pays 2e21 wei to the DEX, which pays C 250 tokens in the same transaction (its
        # token balance came from the exchange in an earlier, clean, transfer)
        "stock": c.tx(k("Ex"), TOKEN, tokens=((k("Ex"), k("Dex"), 250),)),
        "swap": c.tx(k("C"), k("Dex"), 2 * 10**21, tokens=((k("Dex"), k("C"), 250),)),
    }
    store = store_of(c)
    yield store, tx
    store.con.close()


def test_wei_beyond_2_64_and_fees(wei: tuple[Store, dict[str, bytes]]) -> None:
    store, tx = wei
    flow, _ = store.trace("haircut", tx=tx["seed"])
    # A holds 3E with 2E - 1 tainted. "pay": the fee first: 3e15 * (2E - 1)/3E = 2e15 - 1e-9 -> 2e15
    # (nearest); A 3E - 3e15 with 2E - 1 - 2e15 tainted. Then 3e21 * (2E - 1 - 2e15)/(3E - 3e15)
    # = 2e21 - 3e21/(3E - 3e15) = 2e21 - 0.000000001... -> 2e21 to B; A keeps 2E - 1 - 2e15 - 2e21.
    # B 3e21 (2e21): "dust" 1 wei * 2/3 -> 1 (half up, rounded to nearest); B 3e21 - 1 (2e21 - 1);
    # "rest": all of it, 2e21 - 1 to C. C pays 2e21 of its 3e21 - 1 (2e21 - 1) to the DEX in "swap":
    # 2e21 * (2e21 - 1)/(3e21 - 1) = 1.333...e21 -> 1333333333333333333333 (the remainder is below half)
    swap_taint = (2 * 10**21 * (2 * 10**21 - 1) * 2 + (3 * 10**21 - 1)) // (2 * (3 * 10**21 - 1))
    assert swap_taint == 1_333_333_333_333_333_333_333
    assert store.ends(flow) == {
        ("(fees)", "fees"): 2 * 10**15,
        ("A", "unspent"): 2 * E - 1 - 2 * 10**15 - 2 * 10**21,
        ("D", "unspent"): 1,
        ("C", "unspent"): 2 * 10**21 - 1 - swap_taint,
        ("Dex", "unspent"): swap_taint,
    }
    assert flow.totals["fees"] == 2 * 10**15 and flow.seed_amount == 2 * E - 1
    fee_edge = next(e for e in flow.edges if e.dst == FEE_ADDRESS)
    assert (fee_edge.src, fee_edge.amount, fee_edge.tainted) == (store.id("A"), FEE, 2 * 10**15)
    # float arithmetic would have lost these units: 2E - 1 is not a double
    assert float(2 * E - 1) == float(2 * E)


def test_swap_through_a_labelled_dex(wei: tuple[Store, dict[str, bytes]]) -> None:
    store, tx = wei
    flow, swaps = store.trace("tiho", tx=tx["seed"], stops=store.stops(("Dex",)))
    # tiho: the fee takes 3e15 taint, B 3e21 taint, D 1, C 3e21 - 1, the DEX min(2e21, 3e21 - 1) = 2e21
    assert store.ends(flow)[("Dex", "service")] == 2 * 10**21
    want = {"tx_id": store.txs[tx["swap"]], "endpoint_address_id": store.id("Dex"),
            "asset_out_id": store.token, "amount_out": 250, "recipient_id": store.id("C")}  # fmt: skip
    assert swaps == [want]


@pytest.mark.parametrize("policy", POLICIES)
def test_token_mint_and_burn(wei: tuple[Store, dict[str, bytes]], policy: str) -> None:
    store, tx = wei
    ex = store.stops(("Ex",))
    # forward from the mint: A gains 1000; A -> B 400 (all tainted, A's only balance); B burns 100 (it sits
    # at the zero address: unspent there); B -> exchange 300; A keeps 600. The same under every policy.
    flow, _ = store.trace(policy, tx=tx["mint"], token=True, stops=ex)
    assert store.ends(flow) == {("A", "unspent"): 600, ("0x0", "unspent"): 100, ("Ex", "service"): 300}
    # backward from the exchange's 300 (received before it stocked the DEX; no start time: everything it
    # received): B -> A -> the mint. Haircut: B 300 (300) back in time, + 100 burnt = 400 (300); A 1000
    # (300) just after t2; the mint gives it all. fifo: B [300 i, 100 c] -> A [600 c, 300 i, 100 c] -> mint.
    flow, _ = store.trace(policy, "backward", addresses=("Ex",), token=True)
    # poison: B's 100 (burnt after it received) and A's 600 (kept) are marked too: 300 + 700 at the mint
    assert store.ends(flow) == {("0x0", "origin"): 300 + (700 if policy == "poison" else 0)}
    assert flow.created == (700 if policy == "poison" else 0)


# -- conservation over random histories --------------------------------------------------------------------

NAMES = ("A", "B", "C", "D", "E", "F")


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[int, int, int, int, int]]:
    n = draw(st.integers(1, 14))
    amount = st.one_of(st.integers(0, 100), st.integers(0, 2**80))
    return [
        (draw(st.integers(0, 5)), draw(st.integers(0, 5)), draw(amount), draw(st.sampled_from([0, 0, 3])),
         draw(st.integers(0, 2)))
        for _ in range(n)
    ]  # fmt: skip


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    history=histories(),
    seed=st.integers(0, 10**6),
    service=st.sets(st.sampled_from(NAMES), max_size=2),
    cap=st.one_of(st.none(), st.integers(0, 300)),
)
def test_conservation_property(
    history: list[tuple[int, int, int, int, int]], seed: int, service: set[str], cap: int | None
) -> None:
    """Random transfer sequences (native with fees, internal transfers, tokens; balances may go
    "negative" as a store starting mid-chain shows them): every policy, both directions, address and
    transaction seeds: the parts add up to seed + created, every edge carries at most its amount, the
    seed never exceeds its cap."""
    c = Chain()
    hashes = []
    for s, r, amount, fee, shape in history:
        src, dst = key(NAMES[s]), key(NAMES[r])
        if shape == 0:
            hashes.append(c.tx(src, dst, amount, fee))
        elif shape == 1:
            hashes.append(c.tx(src, key("Hub"), amount, fee, internal=((key("Hub"), dst, amount // 2),)))
        else:
            hashes.append(c.tx(src, TOKEN, 0, fee, tokens=((src, dst, amount), (ZERO, src, amount // 3))))
    store = store_of(c)
    try:
        stops = store.stops(tuple(x for x in service if key(x) in store.ids))
        pick = hashes[seed % len(hashes)]
        who = NAMES[seed % 6]
        if key(who) not in store.ids:
            who = NAMES[history[0][0]]
        for token in (False, True):
            if token and store.token is None:
                continue
            for policy in POLICIES:
                for direction in ("forward", "backward"):
                    for kw in ({"tx": pick}, {"addresses": (who,), "start": T0 + 10 * (seed % 5)}):
                        flow, _ = store.trace(
                            policy,
                            direction,
                            token=token,
                            amount=cap,
                            stops=stops,
                            limits=Limits(hops=seed % 4 + 1),
                            **kw,
                        )
                        flow.check()
                        assert set(flow.totals) == set(TOTAL_KEYS)
                        assert all(v >= 0 for v in flow.totals.values())
                        assert all(0 < e.tainted <= e.amount or e.amount == 0 for e in flow.edges)
                        assert all(p.tainted > 0 for p in flow.endpoints)
                        if cap is not None:
                            assert flow.seed_amount <= cap
                        if policy != "poison":
                            assert flow.created == 0
    finally:
        store.con.close()


def test_split_is_exact() -> None:
    assert split(10, [1, 1, 1]) == [4, 3, 3]  # 3.33 each: the leftover unit to the first
    assert split(2**70 + 1, [2**70, 2**70]) == [2**69 + 1, 2**69]
    assert split(0, [0, 0]) == [0, 0]


# -- end to end on a real node -----------------------------------------------------------------------------

SOURCE = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

contract Token {
    mapping(address => uint256) public balanceOf;
    event Transfer(address indexed from, address indexed to, uint256 value);
    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }
    function transfer(address to, uint256 amount) external returns (bool) {
        require(balanceOf[msg.sender] >= amount, "balance too low");
        balanceOf[msg.sender] -= amount;
        balanceOf[to] += amount;
        emit Transfer(msg.sender, to, amount);
        return true;
    }
}

/// A toy DEX: pays one token per 0.001 ether sent, in the same transaction.
contract Dex {
    Token public token;
    constructor(Token t) { token = t; }
    function swap() external payable { token.transfer(msg.sender, msg.value / 1e15); }
}
"""
ETH = 10**18


def haircut(tainted: int, amount: int, balance: int) -> int:
    """The haircut share of one transfer: tainted * amount / balance rounded to the nearest (half up)."""
    return tainted if amount >= balance else (2 * tainted * amount + balance) // (2 * balance)


def test_end_to_end_on_anvil(tmp_path: Path) -> None:
    """Real transactions with real fees, a real token and a DEX contract, ingested by ``ingest evm-rpc``:
    stolen ether from S reaches A; A pays B (who also holds clean ether from C), B swaps at the labelled
    DEX, A deposits at the labelled exchange, B deposits the tokens it got from the swap."""
    require_node_tools()
    _version, code = compile_solidity(SOURCE)
    with running_anvil(["--accounts", "8"]) as node:
        s, a, b, c, ex, deployer = node.accounts[:6]
        token = node.deploy(deployer, code["Token"])
        dex = node.deploy(deployer, code["Dex"] + token.rjust(32, b"\0"))
        node.send(deployer, token, data=calldata("mint(address,uint256)", dex, 10**6))

        def fee(h: bytes) -> int:
            r = node.receipt(h)
            return int(r["gasUsed"], 16) * int(r["effectiveGasPrice"], 16)

        seed = node.send(s, a, 5 * ETH)
        node.send(c, b, 3 * ETH)
        fa1 = fee(node.send(a, b, 2 * ETH))
        swap = node.send(b, dex, ETH, calldata("swap()"))
        fb = fee(swap)
        fa2 = fee(node.send(a, ex, ETH))
        fb2 = fee(node.send(b, token, data=calldata("transfer(address,uint256)", ex, 400)))
        con = connect(tmp_path / "e2e.duckdb")
        try:
            with JsonRpcClient(parse_url(node.url), tries=1, timeout=30) as client:
                ingest_evm_rpc(con, client, "anvil")
            ids = {
                bytes(k): int(i) for k, i in con.execute("SELECT key, address_id FROM addresses").fetchall()
            }
            txs = {bytes(h): int(i) for h, i in con.execute("SELECT hash, tx_id FROM account_txs").fetchall()}
            assets = dict(con.execute("SELECT coalesce(contract, ''::BLOB), asset_id FROM assets").fetchall())
            n = max(ids.values()) + 1
            service = np.zeros(n, np.bool_)
            service[[ids[dex], ids[ex]]] = True
            st_ = Stops(service, np.zeros(n, np.bool_))
            flow, swaps = trace_account(con, "anvil", int(assets[b""]), None, txs[seed], None, "haircut",
                                        "forward", Limits(), st_, None)  # fmt: skip
            tok, _ = trace_account(con, "anvil", int(assets[token]), None, txs[swap], None, "fifo",
                                   "forward", Limits(), st_, None)  # fmt: skip
        finally:
            con.close()
    # A's stored history starts with the 5 ether (its genesis funds are no transfer): all of A is tainted.
    # A -> B: the fee fa1 (tainted) first, then 2 ether, all tainted; A keeps 3 ether - fa1.
    # B holds 3 clean (from C) + 2 tainted = 5 ether: its swap fee fb carries haircut(2, fb, 5);
    # then 1 ether to the DEX carries haircut(2 - that, 1, 5 - fb); B keeps the rest.
    # A -> exchange: fee fa2 and 1 ether, all tainted; A keeps 2 ether - fa1 - fa2.
    # B's token transfer costs a fee fb2 in ether too: haircut(what B has left tainted, fb2, 4 - fb).
    tf = haircut(2 * ETH, fb, 5 * ETH)
    ts = haircut(2 * ETH - tf, ETH, 5 * ETH - fb)
    tf2 = haircut(2 * ETH - tf - ts, fb2, 4 * ETH - fb)
    names = {ids[a]: "A", ids[b]: "B", ids[dex]: "Dex", ids[ex]: "Ex", FEE_ADDRESS: "(fees)"}
    got = {(names[p.address_id], p.kind): p.tainted for p in flow.endpoints}
    assert got == {
        ("(fees)", "fees"): fa1 + tf + fa2 + tf2,
        ("A", "unspent"): 2 * ETH - fa1 - fa2,
        ("B", "unspent"): 2 * ETH - tf - ts - tf2,
        ("Dex", "service"): ts,
        ("Ex", "service"): ETH,
    }
    assert flow.seed_amount == 5 * ETH and 0 < tf < fb and 0.39 * ETH < ts < 0.41 * ETH
    # the swap: 1 ether in, 1,000 tokens (1e18 / 1e15) out to B in the same transaction
    assert swaps == [{"tx_id": txs[swap], "endpoint_address_id": ids[dex], "asset_out_id": int(assets[token]),
                      "amount_out": 1000, "recipient_id": ids[b]}]  # fmt: skip
    # the tokens B got from the swap: 400 to the exchange, 600 left
    assert {(names[p.address_id], p.kind): p.tainted for p in tok.endpoints} == {
        ("Ex", "service"): 400,
        ("B", "unspent"): 600,
    }
