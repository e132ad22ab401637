"""Account-chain clustering heuristics (fundtrail.clustering.account) on a real local node (anvil): users
paying deposit addresses that forward to an exchange hot wallet, a Sybil funder, an airdrop with a
collector, and innocent look-alikes; "incremental equals full" over random block orders and batches; and
the deposit heuristic on the real mainnet data of ../shared/data with the GraphSense exchange tagpacks."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fundtrail.clustering.account import (
    HEURISTICS,
    airdrop_collector_links,
    deposit_address_links,
    same_funder_links,
)
from fundtrail.clustering.links import Links
from fundtrail.ingest.ethereum_etl import ingest_ethereum_etl
from fundtrail.ingest.evm_rpc import ingest_evm_rpc
from fundtrail.ingest.jsonrpc import JsonRpcClient, parse_url
from fundtrail.store.account_write import AccountBatch, write_account_batch
from fundtrail.store.db import connect
from tests.anvil import Anvil, calldata, compile_solidity, require_node_tools, running_anvil
from tests.conftest import DATA, ROOT

ETH = 10**18
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

/// Sends `value` to each recipient (internal transfers): how gas is spread over many fresh addresses.
contract Disperse {
    function disperseEther(address payable[] calldata to, uint256 value) external payable {
        for (uint256 i = 0; i < to.length; i++) to[i].transfer(value);
    }
}
"""


@dataclass
class World:
    db: Path
    who: dict[str, bytes]  # role -> address key
    tx: dict[str, bytes] = field(default_factory=dict)  # name -> transaction hash


def _exchange_label(con: duckdb.DuckDBPyConnection, chain: str, key: bytes) -> None:
    con.execute(
        """INSERT INTO labels (label_id, source, chain, address, key, label, category, confidence, first_seen,
                               last_seen, is_cluster_definer, context, created_at, updated_at)
           VALUES ((SELECT coalesce(max(label_id) + 1, 0) FROM labels), 'test', ?, ?, ?,
                   'Test Exchange hot wallet', 'exchange', 100, NULL, NULL, true, NULL, now(), now())""",
        [chain, "0x" + key.hex(), key],
    )


def exchange_ids(con: duckdb.DuckDBPyConnection, chain: str) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Ids of the addresses labelled ``exchange``, as the cluster engine will pass them."""
    rows = con.execute(
        """SELECT DISTINCT a.address_id FROM labels l JOIN addresses a ON a.chain = l.chain AND a.key = l.key
           WHERE l.chain = ? AND l.category = 'exchange' ORDER BY 1""",
        [chain],
    ).fetchall()
    return np.array([r[0] for r in rows], dtype=np.int64)


ROLES = [
    *("deployer", "hot", "u1", "d1", "u2", "d2", "u3", "d3", "p", "q", "d4", "u5", "d5"),
    *("funder", "s1", "s2", "s3", "s4", "s5", "s6", "w1", "w2", "w3", "w4"),
    *("distributor", "r1", "r2", "r3", "r4", "r5", "r6", "collector", "collector2"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require_node_tools()
    _version, code = compile_solidity(SOURCE)
    with running_anvil(["--accounts", str(len(ROLES))]) as node:
        who = dict(zip(ROLES, node.accounts))
        w = World(tmp_path_factory.mktemp("cluster") / "store.duckdb", who)
        _scenario(node, w, code)
        con = connect(w.db)
        try:
            with JsonRpcClient(parse_url(node.url), tries=1, timeout=30) as client:
                ingest_evm_rpc(con, client, "anvil")
            _exchange_label(con, "anvil", who["hot"])
        finally:
            con.close()
        yield w


def _scenario(node: Anvil, w: World, code: dict[str, bytes]) -> None:
    a = w.who
    token = node.deploy(a["deployer"], code["Token"])
    disperse = node.deploy(a["deployer"], code["Disperse"])
    w.who["token"], w.who["disperse"] = token, disperse

    def mint(to: bytes, amount: int, sender: bytes | None = None) -> bytes:
        return node.send(sender or a["deployer"], token, data=calldata("mint(address,uint256)", to, amount))

    def pay_token(sender: bytes, to: bytes, amount: int) -> bytes:
        return node.send(sender, token, data=calldata("transfer(address,uint256)", to, amount))

    def later(seconds: int) -> None:
        node.rpc("evm_increaseTime", hex(seconds))

    # deposits: users -> deposit addresses -> the hot wallet (ether less a fee kept back; a token exactly)
    node.send(a["u1"], a["d1"], 2 * ETH)
    w.tx["fwd1"] = node.send(a["d1"], a["hot"], 2 * ETH - ETH // 1000)
    node.send(a["u2"], a["d2"], 3 * ETH)
    w.tx["fwd2"] = node.send(a["d2"], a["hot"], 3 * ETH)
    mint(a["u3"], 777)
    pay_token(a["u3"], a["d3"], 777)
    w.tx["fwd3"] = pay_token(a["d3"], a["hot"], 777)
    # look-alikes: a wallet that pays the hot wallet directly and pays others; a forwarding of more than was
    # received; a contract passing ether on to the hot wallet (an internal transfer, not its own signature)
    node.send(a["q"], a["p"], 5 * ETH)
    node.send(a["p"], a["hot"], 2 * ETH)
    node.send(a["p"], a["q"], 1 * ETH)
    node.send(a["u5"], a["d5"], 1 * ETH)
    node.send(a["d5"], a["hot"], 3 * ETH // 2)
    disperse_call = "disperseEther(address[],uint256)"
    node.send(a["u1"], disperse, ETH, calldata(disperse_call, 64, ETH, 1, a["hot"]))
    # a Sybil farm: one funder spreads gas over fresh addresses (one disperse transaction, then one more
    # directly); each one's first transaction is the same call. s5 does something else first.
    fresh = [a["s1"], a["s2"], a["s3"], a["s5"]]
    w.tx["disperse"] = node.send(
        a["funder"], disperse, 4 * ETH // 10, calldata(disperse_call, 64, ETH // 10, len(fresh), *fresh)
    )
    w.tx["fund_s4"] = node.send(a["funder"], a["s4"], ETH // 10)
    for s in ("s1", "s2", "s3", "s4"):
        mint(a[s], 100, sender=a[s])
    node.send(a["s5"], a["q"], ETH // 100)
    # an exchange withdrawal run: the hot wallet funds fresh addresses that all start alike (not one entity)
    for x in ("w1", "w2", "w3", "w4"):
        node.send(a["hot"], a[x], ETH // 10)
    for x in ("w1", "w2", "w3", "w4"):
        mint(a[x], 100, sender=a[x])
    # an airdrop of 1,000 units to six recipients; three forward it to one collector, one to another
    # collector alone, one forwards another amount, one keeps it
    mint(a["distributor"], 6_000)
    for r in ("r1", "r2", "r3", "r4", "r5", "r6"):
        pay_token(a["distributor"], a[r], 1_000)
    for r in ("r1", "r2", "r3"):
        w.tx[f"collect_{r}"] = pay_token(a[r], a["collector"], 1_000)
    pay_token(a["r4"], a["collector2"], 1_000)
    pay_token(a["r5"], a["collector"], 500)
    # too late: a deposit forwarded 13 hours on (the window is 12 h); a burst an hour after the farm's
    node.send(a["u1"], a["d4"], 1 * ETH)
    later(13 * 3600)
    node.send(a["d4"], a["hot"], 1 * ETH)
    node.send(a["funder"], a["s6"], ETH // 10)
    mint(a["s6"], 100, sender=a["s6"])


def ids_of(con: duckdb.DuckDBPyConnection, chain: str) -> dict[bytes, int]:
    return {bytes(k): int(i) for k, i in con.execute(
        "SELECT key, address_id FROM addresses WHERE chain = ?", [chain]).fetchall()}  # fmt: skip


def tx_ids(con: duckdb.DuckDBPyConnection) -> dict[bytes, int]:
    return {bytes(h): int(i) for h, i in con.execute("SELECT hash, tx_id FROM account_txs").fetchall()}


def triples(links: Links) -> set[tuple[int, int, int]]:
    return set(zip(links.a.tolist(), links.b.tolist(), links.tx_id.tolist()))


def run_all(con: duckdb.DuckDBPyConnection, chain: str, after: int, hot: list[bytes]) -> list[Links]:
    """The three heuristics as the tests configure them (an airdrop needs 5 recipients here, not 1,000)."""
    ids = ids_of(con, chain)
    ex = np.array(sorted(ids[k] for k in hot if k in ids), dtype=np.int64)
    return [
        deposit_address_links(con, chain, ex, after),
        same_funder_links(con, chain, ex, after),
        airdrop_collector_links(con, chain, ex, after, min_recipients=5),
    ]


# -- the scenario on a real node ---------------------------------------------------------------------------


def test_deposit_addresses_link_to_the_hot_wallet_only(world: World) -> None:
    con = connect(world.db, read_only=True)
    try:
        ids, txs, a = ids_of(con, "anvil"), tx_ids(con), world.who
        links = deposit_address_links(con, "anvil", exchange_ids(con, "anvil"))
        assert links.heuristic == "deposit_address"
        hot = ids[a["hot"]]
        assert triples(links) == {
            (ids[a["d1"]], hot, txs[world.tx["fwd1"]]),  # ether less 0.001 ETH kept back
            (ids[a["d2"]], hot, txs[world.tx["fwd2"]]),  # ether exactly
            (ids[a["d3"]], hot, txs[world.tx["fwd3"]]),  # a token, exactly
        }
        # looser parameters: d4's forwarding 13 h later joins with a 14 h window; p (received 5, paid 2)
        # and d5 (paid more than it received) never; the disperse contract never (not its own signature)
        wide = deposit_address_links(con, "anvil", exchange_ids(con, "anvil"), max_delay_s=14 * 3600)
        assert {x for x, _h, _t in triples(wide)} == {ids[a[d]] for d in ("d1", "d2", "d3", "d4")}
        strict = deposit_address_links(con, "anvil", exchange_ids(con, "anvil"), max_loss=0)
        assert {x for x, _h, _t in triples(strict)} == {ids[a["d2"]], ids[a["d3"]]}
        assert len(deposit_address_links(con, "anvil", np.zeros(0, np.int64))) == 0
    finally:
        con.close()


def test_same_funder_links_the_sybil_burst_not_exchange_withdrawals(world: World) -> None:
    con = connect(world.db, read_only=True)
    try:
        ids, txs, a = ids_of(con, "anvil"), tx_ids(con), world.who
        ex = exchange_ids(con, "anvil")
        links = same_funder_links(con, "anvil", excluded_funder_ids=ex)
        first3 = sorted(ids[a[s]] for s in ("s1", "s2", "s3"))  # one disperse tx: ordered by address id
        assert triples(links) == {
            (first3[0], first3[1], txs[world.tx["disperse"]]),
            (first3[1], first3[2], txs[world.tx["disperse"]]),
            (first3[2], ids[a["s4"]], txs[world.tx["fund_s4"]]),
        }
        # without the exchange excluded, its withdrawals make a "farm" of w1..w4 (the false positive)
        unguarded = same_funder_links(con, "anvil")
        assert {frozenset(c) for c in components(unguarded)} == {
            frozenset(ids[a[s]] for s in ("s1", "s2", "s3", "s4")),
            frozenset(ids[a[x]] for x in ("w1", "w2", "w3", "w4")),
        }
        # s6, funded an hour later, joins with a wider burst gap; five in a group are too many to ask
        wide = same_funder_links(con, "anvil", excluded_funder_ids=ex, max_gap_s=24 * 3600)
        assert ids[a["s6"]] in {x for pair in triples(wide) for x in pair[:2]}
        assert len(same_funder_links(con, "anvil", excluded_funder_ids=ex, min_group=5)) == 0
    finally:
        con.close()


def test_airdrop_collector(world: World) -> None:
    con = connect(world.db, read_only=True)
    try:
        ids, txs, a = ids_of(con, "anvil"), tx_ids(con), world.who
        ex = exchange_ids(con, "anvil")
        links = airdrop_collector_links(con, "anvil", excluded_collector_ids=ex, min_recipients=5)
        c = ids[a["collector"]]
        assert triples(links) == {(ids[a[r]], c, txs[world.tx[f"collect_{r}"]]) for r in ("r1", "r2", "r3")}
        assert len(airdrop_collector_links(con, "anvil", min_recipients=7)) == 0  # six recipients only
        assert len(airdrop_collector_links(con, "anvil", min_recipients=5, min_aggregations=4)) == 0
        assert len(airdrop_collector_links(con, "anvil")) == 0  # the default asks 1,000 recipients
    finally:
        con.close()


# -- incremental equals full -------------------------------------------------------------------------------


def components(*link_sets: Links) -> list[set[int]]:
    """The partition (sets of two or more ids) a pure-Python union-find makes of the links."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for links in link_sets:
        for x, y in zip(links.a.tolist(), links.b.tolist()):
            parent[find(x)] = find(y)
    groups: dict[int, set[int]] = {}
    for x in list(parent):
        groups.setdefault(find(x), set()).add(x)
    return [g for g in groups.values() if len(g) > 1]


def key_partition(con: duckdb.DuckDBPyConnection, chain: str, *link_sets: Links) -> set[frozenset[bytes]]:
    keys = {i: k for k, i in ids_of(con, chain).items()}
    return {frozenset(keys[i] for i in g) for g in components(*link_sets)}


_EXPORT = {
    "blocks": """SELECT height AS number, hash, prev_hash AS parent_hash, time, tx_count, m.key AS miner,
                        gas_used, base_fee::VARCHAR AS base_fee, size
                 FROM blocks b LEFT JOIN addresses m ON m.chain = b.chain AND m.address_id = b.miner_id
                 WHERE b.chain = $chain""",
    "txs": """SELECT b.height AS block_number, x.position, x.hash, f.key AS "from", r.key AS "to",
                     c.key AS created, x.value::VARCHAR AS value, x.nonce, x.gas,
                     x.gas_price::VARCHAR AS gas_price, x.gas_used, x.fee::VARCHAR AS fee, x.status,
                     x.tx_type, x.method
              FROM account_txs x JOIN blocks b ON b.chain = x.chain AND b.block_id = x.block_id
              JOIN addresses f ON f.chain = x.chain AND f.address_id = x.from_id
              LEFT JOIN addresses r ON r.chain = x.chain AND r.address_id = x.to_id
              LEFT JOIN addresses c ON c.chain = x.chain AND c.address_id = x.created_id
              WHERE x.chain = $chain""",
    "transfers": """SELECT t.tx_hash, b.height AS block_number, t.kind, t.log_index, t.trace_position,
                           s.contract, f.key AS "from", r.key AS "to", t.amount::VARCHAR AS amount
                    FROM transfers t JOIN blocks b ON b.chain = t.chain AND b.block_id = t.block_id
                    JOIN assets s ON s.chain = t.chain AND s.asset_id = t.asset_id
                    JOIN addresses f ON f.chain = t.chain AND f.address_id = t.from_id
                    JOIN addresses r ON r.chain = t.chain AND r.address_id = t.to_id
                    WHERE t.chain = $chain AND t.kind NOT IN ('native', 'fee')""",
}


@pytest.fixture(scope="module")
def per_block(world: World) -> dict[int, dict[str, pa.Table]]:
    """The stored chain, cut back into one source batch per block (native and fee transfers are derived
    again by the writer)."""
    con = connect(world.db, read_only=True)
    try:
        tables = {
            name: con.sql(sql, params={"chain": "anvil"}).to_arrow_table() for name, sql in _EXPORT.items()
        }
    finally:
        con.close()
    out: dict[int, dict[str, pa.Table]] = {}
    for height in tables["blocks"]["number"].to_pylist():
        out[height] = {
            name: t.filter(pc.equal(t["number" if name == "blocks" else "block_number"], height))
            for name, t in tables.items()
        }
    return out


@pytest.fixture(scope="module")
def full_partition(world: World) -> set[frozenset[bytes]]:
    con = connect(world.db, read_only=True)
    try:
        return key_partition(con, "anvil", *run_all(con, "anvil", -1, [world.who["hot"]]))
    finally:
        con.close()


def test_full_partition_is_the_scenario(world: World, full_partition: set[frozenset[bytes]]) -> None:
    a = world.who
    assert full_partition == {
        frozenset(a[x] for x in ("hot", "d1", "d2", "d3")),
        frozenset(a[x] for x in ("s1", "s2", "s3", "s4")),
        frozenset(a[x] for x in ("r1", "r2", "r3", "collector")),
    }


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), shuffle=st.booleans(), batches=st.integers(2, 8))
def test_incremental_equals_full(
    world: World,
    per_block: dict[int, dict[str, pa.Table]],
    full_partition: set[frozenset[bytes]],
    seed: int,
    shuffle: bool,
    batches: int,
) -> None:
    """Blocks written in random batches (in chain order, or shuffled: a receipt may then arrive after its
    forwarding), the links of each batch found with after_tx_id = the highest tx id before it: their
    union-find partition equals one full run's."""
    rng = random.Random(seed)
    heights = sorted(per_block)
    if shuffle:
        rng.shuffle(heights)
    cuts = sorted(rng.sample(range(1, len(heights)), batches - 1))
    groups = [heights[i:j] for i, j in zip([0, *cuts], [*cuts, len(heights)])]
    con = connect(Path(":memory:"))
    try:
        found: list[Links] = []
        for group in groups:
            before = int(con.execute("SELECT coalesce(max(tx_id), -1) FROM account_txs").fetchall()[0][0])
            parts = [per_block[h] for h in group]
            batch = AccountBatch(
                "anvil",
                *(pa.concat_tables([p[n] for p in parts]) for n in ("blocks", "txs", "transfers")),
                source="test",
            )
            write_account_batch(con, batch)
            found += run_all(con, "anvil", before, [world.who["hot"]])
        assert key_partition(con, "anvil", *found) == full_partition
        assert key_partition(con, "anvil", *run_all(con, "anvil", -1, [world.who["hot"]])) == full_partition
    finally:
        con.close()


# -- real data ---------------------------------------------------------------------------------------------

TAGPACKS = DATA / "labels" / "graphsense-tagpacks" / "packs"
STREAM = DATA / "ethereum-etl" / "test_stream" / "blocks_17173049_17173050"
GS = DATA / "graphsense-lib" / "eth_tokens_block15000000"


def exchange_keys() -> set[bytes]:
    """ETH addresses of the GraphSense exchange tagpacks (reserve/hot wallets and Etherscan's exchange
    label cloud)."""
    keys: set[bytes] = set()
    packs = [p for p in sorted(TAGPACKS.glob("exchange-wallets-*.yaml")) if "bitmex" not in p.name]
    for path in [*packs, TAGPACKS / "etherscan-wordcloud-exchange.yaml"]:  # bitmex's pack is BTC only
        doc = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
        for tag in doc["tags"]:
            if tag.get("currency", doc.get("currency")) == "ETH":
                keys.add(bytes.fromhex(tag["address"].lower().removeprefix("0x")))
    return keys


@pytest.mark.parametrize(
    ("name", "files", "extra", "want"),
    [
        # two post-merge blocks: 20 labelled exchange addresses appear, 3 token transfers reach them
        ("stream", (STREAM / "expected_blocks.json", STREAM / "expected_transactions.json"),
         {"logs": STREAM / "expected_logs.json"}, (20, 3, 0)),
        # GraphSense's token sample (blocks 15,000,000-4 and early blocks): 149 token transfers to 24
        ("graphsense", (GS / "blocks.csv", GS / "transactions.csv"),
         {"logs": GS / "logs.json", "allow_missing_transactions": True}, (24, 149, 0)),
    ],
)  # fmt: skip
def test_deposit_heuristic_on_real_mainnet_data(
    tmp_path: Path, name: str, files: tuple[Path, Path], extra: dict[str, Any], want: tuple[int, int, int]
) -> None:
    """Real blocks with the real exchange labels: the data is too short (a few consecutive blocks) to hold
    a receipt and its forwarding, so no deposit address is found, and none is invented: every sender to a
    labelled exchange here received nothing in the stored range."""
    assert exchange_keys() and (ROOT / "pyproject.toml").exists()
    con = connect(tmp_path / f"{name}.duckdb")
    try:
        ingest_ethereum_etl(con, "ethereum", *files, **extra)
        stored = ids_of(con, "ethereum")
        present = sorted(k for k in exchange_keys() if k in stored)
        for k in present:
            _exchange_label(con, "ethereum", k)
        ex = exchange_ids(con, "ethereum")
        to_exchange = con.execute(
            "SELECT count(*) FROM transfers WHERE kind IN ('native', 'token') "
            "AND to_id IN (SELECT unnest(?))",
            [ex.tolist()],
        ).fetchall()[0][0]
        links = deposit_address_links(con, "ethereum", ex)
        assert (len(ex), to_exchange, len(links)) == want
        senders_who_received = con.execute(
            """SELECT count(DISTINCT s.from_id) FROM transfers s JOIN transfers r ON r.to_id = s.from_id
               WHERE s.to_id IN (SELECT unnest(?)) AND r.kind <> 'fee'""",
            [ex.tolist()],
        ).fetchall()[0][0]
        assert senders_who_received == 0
    finally:
        con.close()


def test_heuristics_are_documented() -> None:
    page = (ROOT / "docs" / "heuristics" / "account.md").read_text()
    for name, h in HEURISTICS.items():
        assert f"`{name}`" in page and h.reference
    for constant in ("DEPOSIT_MAX_DELAY_S", "FUNDER_MAX_GAP_S", "AIRDROP_MIN_RECIPIENTS"):
        assert constant in page
