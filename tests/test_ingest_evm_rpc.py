"""``ingest evm-rpc``: against a real local node (anvil, with an ERC-20 compiled by solc and deployed), and
against the recorded real mainnet answers of ethereum-etl's test resources, replayed by a local server."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import typer

from fundtrail.chains.evm import rpc_decode as rd
from fundtrail.chains.evm.logs import TRANSFER_TOPIC_HEX
from fundtrail.chains.registry import chain
from fundtrail.cli.main import app, main
from fundtrail.errors import CorruptData, InvalidInput, SourceUnavailable
from fundtrail.ingest import evm_rpc
from fundtrail.ingest.evm_rpc import EvmRpcSummary, fetch_token_metadata, ingest_evm_rpc
from fundtrail.ingest.jsonrpc import JsonRpcClient, parse_url
from fundtrail.ingest.progress import Progress
from fundtrail.store import account_read
from fundtrail.store.account_write import FEE_SINK
from fundtrail.store.db import connect
from tests.anvil import Anvil, calldata, compile_solidity, require_node_tools, running_anvil
from tests.conftest import DATA, ROOT
from tests.evm_replay import evm_replay

ETL = DATA / "ethereum-etl"
STREAM = ETL / "test_stream"
MAX = 2**256 - 1
ETH = 10**18

TOKEN_SOURCE = """
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// A minimal ERC-20 for fundtrail's tests (anyone may mint, up to 2^256-1 in all), which also moves ether
/// between contracts so that the node's traces hold internal transfers.
contract TestToken {
    string public name = "Fundtrail Test Token";
    string public symbol = "FTT";
    uint8 public constant decimals = 6;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    address public lastVault;
    event Transfer(address indexed from, address indexed to, uint256 value);

    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        balanceOf[to] += amount;
        emit Transfer(address(0), to, amount);
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        require(balanceOf[msg.sender] >= amount, "balance too low");
        unchecked { balanceOf[msg.sender] -= amount; }
        balanceOf[to] += amount;
        emit Transfer(msg.sender, to, amount);
        return true;
    }

    /// Pays msg.value less `kept` on to `to` (an internal call), then offers `kept` to `refuser`, whose
    /// call reverts: that part stays here.
    function pay(address payable to, address refuser, uint256 kept) external payable {
        (bool ok, ) = to.call{value: msg.value - kept}("");
        require(ok, "payment failed");
        (bool taken, ) = refuser.call{value: kept}("");
        require(!taken, "refuser took it");
    }

    /// Creates a Vault holding msg.value (an internal create with value).
    function spawn() external payable {
        lastVault = address(new Vault{value: msg.value}());
    }
}

contract Vault {
    constructor() payable {}
    function close(address payable to) external { selfdestruct(to); }
}

contract Refuser {
    receive() external payable { revert("no thanks"); }
}
"""


# -- helpers -----------------------------------------------------------------------------------------------


def client(url: str) -> JsonRpcClient:
    """A client as the CLI makes it, with millisecond backoff so retry tests stay fast."""
    return JsonRpcClient(
        parse_url(url, evm_rpc.DEFAULT_PORT),
        backoff=0.001,
        max_backoff=0.002,
        unreachable_fix=evm_rpc.UNREACHABLE_FIX,
    )


def run(db: Path, url: str, chain: str, **kwargs: Any) -> EvmRpcSummary:
    con = connect(db)
    try:
        with client(url) as c:
            return ingest_evm_rpc(con, c, chain, **kwargs)
    finally:
        con.close()


def query(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = connect(db)
    try:
        rows: list[tuple[Any, ...]] = con.execute(sql, params or []).fetchall()
        return rows
    finally:
        con.close()


def counts(db: Path) -> dict[str, int]:
    return {
        t: query(db, f"SELECT count(*) FROM {t}")[0][0]
        for t in ("blocks", "account_txs", "transfers", "addresses", "assets")
    }


def snapshot(db: Path, chain: str) -> dict[str, list[tuple[Any, ...]]]:
    """The store's content for a chain, independent of internal ids and ingest order."""
    a = "LEFT JOIN addresses {0} ON {0}.chain = x.chain AND {0}.address_id = x.{1}"
    m, f, r, c = (
        a.format("m", "miner_id"),
        a.format("f", "from_id"),
        a.format("r", "to_id"),
        a.format("c", "created_id"),
    )
    sqls = {
        "blocks": f"""SELECT height, hex(hash), hex(prev_hash), time, tx_count, size, gas_used,
                             base_fee::VARCHAR, hex(m.key)
                      FROM blocks x {m} WHERE x.chain = ? ORDER BY height""",
        "txs": f"""SELECT b.height, x.position, hex(x.hash), hex(f.key), hex(r.key), hex(c.key),
                          x.value::VARCHAR, x.nonce, x.gas, x.gas_price::VARCHAR, x.gas_used, x.fee::VARCHAR,
                          x.status, x.tx_type, hex(x.method)
                   FROM account_txs x JOIN blocks b ON b.block_id = x.block_id {f} {r} {c}
                   WHERE x.chain = ? ORDER BY 1, 2""",
        "transfers": f"""SELECT b.height, hex(t.hash), x.kind, x.log_index, x.trace_position, hex(s.contract),
                                hex(f.key), hex(r.key), x.amount::VARCHAR
                         FROM transfers x JOIN blocks b ON b.block_id = x.block_id
                         LEFT JOIN account_txs t ON t.tx_id = x.tx_id
                         JOIN assets s ON s.chain = x.chain AND s.asset_id = x.asset_id {f} {r}
                         WHERE x.chain = ? ORDER BY ALL""",
        "assets": "SELECT hex(contract), symbol, decimals, name, metadata_source FROM assets WHERE chain = ? "
        "ORDER BY ALL",
    }
    return {name: query(db, sql, [chain]) for name, sql in sqls.items()}


def transfers(db: Path, chain: str) -> list[tuple[bytes, bytes, bytes | None, str, int, bytes | None]]:
    """(from key, to key, token contract or None for the native coin, kind, amount, tx hash)."""
    rows = query(
        db,
        """SELECT f.key, r.key, s.contract, x.kind, x.amount::VARCHAR, t.hash FROM transfers x
           JOIN addresses f ON f.chain = x.chain AND f.address_id = x.from_id
           JOIN addresses r ON r.chain = x.chain AND r.address_id = x.to_id
           JOIN assets s ON s.chain = x.chain AND s.asset_id = x.asset_id
           LEFT JOIN account_txs t ON t.tx_id = x.tx_id
           WHERE x.chain = ?""",
        [chain],
    )
    return [
        (bytes(f), bytes(r), None if c is None else bytes(c), k, int(v), None if h is None else bytes(h))
        for f, r, c, k, v, h in rows
    ]


def net_flows(db: Path, chain: str) -> dict[tuple[bytes, bytes | None], int]:
    """Received less sent, per (address, asset), from the store's transfers."""
    net: dict[tuple[bytes, bytes | None], int] = defaultdict(int)
    for sender, recipient, contract, _kind, amount, _tx in transfers(db, chain):
        net[(sender, contract)] -= amount
        net[(recipient, contract)] += amount
    return net


# -- a real node: anvil ------------------------------------------------------------------------------------


@dataclass
class Scenario:
    node: Anvil
    db: Path
    summary: EvmRpcSummary
    token: bytes = b""
    refuser: bytes = b""
    vault: bytes = b""
    failed: list[bytes] = field(default_factory=list)  # hashes of the reverted transactions
    sent: list[bytes] = field(default_factory=list)  # every transaction sent


@pytest.fixture(scope="module")
def solc_code() -> dict[str, bytes]:
    require_node_tools()  # skips or fails as the node tools are absent or not installed
    version, code = compile_solidity(TOKEN_SOURCE)
    assert version.startswith("0.8.37")
    return code


@pytest.fixture(scope="module")
def scenario(solc_code: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """Deploy the token, move tokens and ether (a 2^256-1 mint and transfer, a reverted transfer, a plain
    ether transfer, internal calls, a create with value, a selfdestruct, ether sent to a contract that
    refuses it), then ingest the whole chain."""
    with running_anvil() as node:
        a, b, c, d, e, f = node.accounts[:6]
        s = Scenario(node, tmp_path_factory.mktemp("anvil") / "store.duckdb", EvmRpcSummary("anvil"))

        def send(
            sender: bytes, to: bytes | None = None, value: int = 0, data: bytes = b"", gas: int | None = None
        ) -> dict[str, Any]:
            h = node.send(sender, to, value, data, gas)
            s.sent.append(h)
            r = node.receipt(h)
            if r["status"] == "0x0":
                s.failed.append(h)
            return r

        s.token = bytes.fromhex(send(a, data=solc_code["TestToken"])["contractAddress"][2:])
        s.refuser = bytes.fromhex(send(a, data=solc_code["Refuser"])["contractAddress"][2:])
        send(a, s.token, data=calldata("mint(address,uint256)", b, MAX))
        send(b, s.token, data=calldata("transfer(address,uint256)", c, MAX))
        send(c, s.token, data=calldata("transfer(address,uint256)", d, 12_345_678))
        assert (
            send(c, s.token, data=calldata("transfer(address,uint256)", e, MAX), gas=100_000)["status"]
            == "0x0"
        )
        send(a, e, value=3 * ETH // 2)
        send(a, s.token, value=ETH, data=calldata("pay(address,address,uint256)", f, s.refuser, ETH // 4))
        send(a, s.token, value=ETH // 2, data=calldata("spawn()"))
        s.vault = node.call(s.token, calldata("lastVault()"))[12:]
        send(b, s.vault, data=calldata("close(address)", e))
        assert send(a, s.refuser, value=2 * ETH, gas=60_000)["status"] == "0x0"
        s.summary = run(s.db, node.url, "anvil")
        yield s


def test_anvil_round_trip_balances_exact(scenario: Scenario) -> None:
    """Per address, ether and token received less sent in the store equal the node's own balances."""
    s, node = scenario, scenario.node
    assert node.tip() == 11 and len(s.sent) == 11 and len(s.failed) == 2
    assert (s.summary.blocks, s.summary.txs, s.summary.stored_tip, s.summary.node_tip) == (12, 11, 11, 11)
    net = net_flows(s.db, "anvil")
    ether_holders = [*node.accounts[:6], s.token, s.refuser, s.vault]
    for holder in ether_holders:
        assert net[(holder, None)] == node.balance(holder) - node.balance(holder, 0), holder.hex()
    assert node.balance(s.token) == ETH // 4 and node.balance(s.vault) == 0  # kept; selfdestructed
    for holder in node.accounts[:6]:
        balance = int.from_bytes(node.call(s.token, calldata("balanceOf(address)", holder)), "big")
        assert net[(holder, s.token)] == balance, holder.hex()
    supply = int.from_bytes(node.call(s.token, calldata("totalSupply()")), "big")
    assert supply == MAX and net[(bytes(20), s.token)] == -MAX  # minted from the zero address
    # every fee paid is the node's gasUsed x effectiveGasPrice, to the fee sink
    fees = {tx: amount for _f, to, _c, kind, amount, tx in transfers(s.db, "anvil") if kind == "fee"}
    assert all(to == FEE_SINK for _f, to, _c, kind, _a, _t in transfers(s.db, "anvil") if kind == "fee")
    for h in s.sent:
        r = node.receipt(h)
        assert fees[h] == int(r["gasUsed"], 16) * int(r["effectiveGasPrice"], 16)


def test_anvil_show_address_balances(scenario: Scenario) -> None:
    """``show address`` (fundtrail.store.account_read) gives the node's balances too, per asset."""
    s, node = scenario, scenario.node
    con = connect(s.db, read_only=True)
    try:
        for holder in node.accounts[2:4]:  # C: 2^256-1 less 12,345,678 FTT; D: 12,345,678 FTT
            shown = account_read.address(con, chain("anvil"), "0x" + holder.hex())["assets"]
            ftt = int.from_bytes(node.call(s.token, calldata("balanceOf(address)", holder)), "big")
            assert shown["FTT"]["balance"] == ftt and shown["FTT"]["decimals"] == 6
            ether = shown["ETH"]["balance"] if "ETH" in shown else 0  # D never moved ether (nor paid fees)
            assert ether == node.balance(holder) - node.balance(holder, 0)
    finally:
        con.close()


def test_anvil_failed_transactions_move_nothing_but_their_fee(scenario: Scenario) -> None:
    s = scenario
    rows = query(
        s.db,
        "SELECT hash, status, value::VARCHAR, gas_used FROM account_txs WHERE chain = 'anvil' AND NOT status",
    )
    assert {bytes(r[0]) for r in rows} == set(s.failed)
    assert sorted(int(r[2]) for r in rows) == [0, 2 * ETH]  # the ether sent to the refusing contract
    kinds = defaultdict(list)
    for _f, _t, _c, kind, amount, tx in transfers(s.db, "anvil"):
        if tx in s.failed:
            kinds[tx].append((kind, amount))
    for h in s.failed:
        r = s.node.receipt(h)
        assert kinds[h] == [("fee", int(r["gasUsed"], 16) * int(r["effectiveGasPrice"], 16))]
    assert query(s.db, "SELECT count(*) FROM account_txs WHERE status IS NULL") == [(0,)]


def test_anvil_uint256_max_is_stored_exactly(scenario: Scenario) -> None:
    rows = query(
        scenario.db,
        "SELECT amount::VARCHAR FROM transfers WHERE kind = 'token' AND amount = ?::BIGNUM",
        [str(MAX)],
    )
    assert [r[0] for r in rows] == [str(MAX), str(MAX)]  # the mint and the transfer of all of it


def test_anvil_token_metadata_from_the_contract(scenario: Scenario) -> None:
    s = scenario
    assert query(
        s.db, "SELECT symbol, decimals, name, metadata_source FROM assets WHERE contract = ?", [s.token]
    ) == [("FTT", 6, "Fundtrail Test Token", "contract")]
    assert (s.summary.tokens_asked, s.summary.tokens_described) == (1, 1)
    assert query(s.db, "SELECT symbol, decimals, metadata_source FROM assets WHERE contract IS NULL") == [
        ("ETH", 18, "native")
    ]


def test_anvil_internal_transfers_from_trace_block(scenario: Scenario) -> None:
    s, (a, _b, _c, _d, e, f) = scenario, scenario.node.accounts[:6]
    assert s.summary.traces == "trace_block" and s.summary.receipts == "eth_getBlockReceipts"
    internal = sorted(
        (sender, to, amount)
        for sender, to, _c, kind, amount, _t in transfers(s.db, "anvil")
        if kind == "internal"
    )
    assert internal == sorted(
        [(s.token, f, 3 * ETH // 4), (s.token, s.vault, ETH // 2), (s.vault, e, ETH // 2)]
    )
    assert s.summary.internal_transfers == 3 and s.summary.token_transfers == 3
    positions = query(s.db, "SELECT trace_position FROM transfers WHERE kind = 'internal' ORDER BY 1")
    assert [p[0] for p in positions] == ["0", "0", "0"]
    methods = query(
        s.db, "SELECT hex(method) FROM account_txs WHERE to_id IS NULL OR value > 0 ORDER BY tx_id"
    )
    assert [m[0] for m in methods][:2] == [None, None]  # contract creations: no method
    created = query(s.db, "SELECT count(*) FROM account_txs WHERE to_id IS NULL AND created_id IS NOT NULL")
    assert created == [(2,)]
    assert (a, s.token) in {(x[0], x[1]) for x in transfers(s.db, "anvil") if x[3] == "native"}


def test_anvil_second_run_changes_nothing(scenario: Scenario) -> None:
    s = scenario
    before = counts(s.db)
    again = run(s.db, s.node.url, "anvil")
    assert (again.blocks, again.fetched, again.start_height, again.stored_tip) == (0, 0, 12, 11)
    assert counts(s.db) == before
    rerun = run(s.db, s.node.url, "anvil", start=0, batch_size=5)
    assert (rerun.blocks, rerun.fetched, rerun.skipped) == (0, 0, 12)
    assert counts(s.db) == before


def test_anvil_resume_equals_one_run(scenario: Scenario, tmp_path: Path) -> None:
    db = tmp_path / "resumed.duckdb"
    first = run(db, scenario.node.url, "anvil", stop=4, batch_size=3)
    assert (first.blocks, first.stored_tip) == (5, 4)
    second = run(db, scenario.node.url, "anvil", batch_size=3)
    assert (second.start_height, second.blocks, second.stored_tip) == (5, 7, 11)
    assert snapshot(db, "anvil") == snapshot(scenario.db, "anvil")


def test_anvil_fallbacks_give_the_same_store(scenario: Scenario, tmp_path: Path) -> None:
    """Through a proxy refusing trace_block and eth_getBlockReceipts (as geth without the trace API, or an
    older node): debug_traceBlockByNumber (callTracer) and per-transaction receipts give the same store."""
    db = tmp_path / "geth-like.duckdb"
    with evm_replay(upstream=scenario.node.url, refuse={"trace_block", "eth_getBlockReceipts"}) as proxy:
        s = run(db, proxy.url, "anvil", batch_size=4)
    assert (s.traces, s.receipts, s.internal_transfers, s.traces_unreadable) == (
        "debug_traceBlockByNumber",
        "eth_getTransactionReceipt",
        3,
        0,
    )
    # tried once: one request for the first batch's 3 blocks with transactions, then never again
    assert proxy.calls["eth_getTransactionReceipt"] == 11 and proxy.calls["eth_getBlockReceipts"] == 3
    assert snapshot(db, "anvil") == snapshot(scenario.db, "anvil")


def test_anvil_without_traces_says_so(
    scenario: Scenario, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "no-traces.duckdb"
    with evm_replay(upstream=scenario.node.url, refuse={"trace_block", "debug_traceBlockByNumber"}) as proxy:
        monkeypatch.setattr(
            sys,
            "argv",
            [
                "fundtrail",
                "--db",
                str(db),
                "ingest",
                "evm-rpc",
                "--url",
                proxy.url,
                "--chain",
                "anvil",
                "--batch-size",
                "4",
            ],
        )
        with pytest.raises(SystemExit) as done:
            main()
    assert done.value.code == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "stored 12 anvil blocks" in err and "traces: unavailable" in err and "internal transfers" in err
    assert query(db, "SELECT count(*) FROM transfers WHERE kind = 'internal'") == [(0,)]
    full = snapshot(scenario.db, "anvil")
    assert snapshot(db, "anvil")["txs"] == full["txs"]
    assert [t for t in full["transfers"] if t[2] != "internal"] == snapshot(db, "anvil")["transfers"]


def test_anvil_follow_picks_up_new_blocks(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with running_anvil() as node:
        a, b = node.accounts[:2]
        node.send(a, b, value=ETH)
        polls: list[float] = []

        def sleep(seconds: float) -> None:  # while the job waits, the node mines a block
            polls.append(seconds)
            node.send(a, b, value=len(polls))

        s = run(db, node.url, "anvil", follow=True, stop=4, poll_seconds=0.01, sleep=sleep)
    assert polls == [0.01, 0.01, 0.01]
    assert (s.blocks, s.txs, s.stored_tip, s.node_tip) == (5, 4, 4, 4)


def test_anvil_reorg_equals_a_fresh_ingest(solc_code: dict[str, bytes], tmp_path: Path) -> None:
    """evm_snapshot, mine blocks with transactions, ingest, evm_revert, mine other blocks, ingest again:
    the store equals a fresh ingest of the node's chain."""
    db, fresh = tmp_path / "s.duckdb", tmp_path / "fresh.duckdb"
    with running_anvil() as node:
        a, b, c = node.accounts[:3]
        token = node.deploy(a, solc_code["TestToken"])
        node.send(a, token, data=calldata("mint(address,uint256)", b, 1_000))
        snap_id = node.rpc("evm_snapshot")
        for k in range(4):
            node.send(b, token, data=calldata("transfer(address,uint256)", c, 10 + k))
            node.send(a, c, value=ETH + k)
        first = run(db, node.url, "anvil", batch_size=3)
        assert (first.blocks, first.stored_tip) == (11, 10)
        assert node.rpc("evm_revert", snap_id) is True
        assert node.tip() == 2
        node.send(b, token, data=calldata("transfer(address,uint256)", a, 7))
        node.rpc("anvil_mine", hex(9))  # empty blocks: the new chain is longer
        events: list[Progress] = []
        second = run(db, node.url, "anvil", batch_size=3, progress=events.append)
        assert (second.reorgs, second.rolled_back, second.start_height, second.stored_tip) == (1, 8, 3, 12)
        assert any(e.note.startswith("reorg: rolled back 8 blocks above height 2") for e in events)
        run(fresh, node.url, "anvil")
    assert snapshot(db, "anvil") == snapshot(fresh, "anvil")
    net = net_flows(db, "anvil")
    assert net[(c, token)] == 0 and net[(a, token)] == 7  # the reorged-out transfers are gone


# -- recorded real answers (ethereum-etl's test resources), replayed ------------------------------------


def expected(path: Path) -> list[dict[str, Any]]:
    """An ethereum-etl output file: CSV, or JSON lines."""
    with path.open() as fh:
        if path.suffix == ".csv":
            return list(csv.DictReader(fh))
        return [json.loads(line) for line in fh if line.strip()]


def _int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _key(value: Any) -> str | None:
    return None if value in (None, "") else str(value)[2:].lower()


def stored_blocks(db: Path) -> dict[int, tuple[Any, ...]]:
    rows = query(
        db,
        "SELECT height, lower(hex(hash)), lower(hex(prev_hash)), time, tx_count, size, gas_used, "
        "base_fee::VARCHAR, lower(hex(m.key)) FROM blocks b LEFT JOIN addresses m "
        "ON m.chain = b.chain AND m.address_id = b.miner_id",
    )
    return {r[0]: r for r in rows}


def check_blocks(db: Path, rows: list[dict[str, Any]]) -> None:
    got = stored_blocks(db)
    assert len(got) == len(rows)
    for e in rows:
        n = int(e["number"])
        base_fee = _int(e.get("base_fee_per_gas"))
        assert got[n] == (
            n,
            _key(e["hash"]),
            _key(e["parent_hash"]),
            int(e["timestamp"]),
            int(e["transaction_count"]),
            int(e["size"]),
            int(e["gas_used"]),
            None if base_fee is None else str(base_fee),
            _key(e["miner"]),
        ), n


def stored_txs(db: Path) -> dict[str, tuple[Any, ...]]:
    rows = query(
        db,
        """SELECT lower(hex(x.hash)), b.height, x.position, lower(hex(f.key)), lower(hex(r.key)),
                  lower(hex(c.key)), x.value::VARCHAR, x.nonce, x.gas, x.gas_price::VARCHAR, x.gas_used,
                  x.fee::VARCHAR, x.status, x.tx_type, lower(hex(x.method))
           FROM account_txs x JOIN blocks b ON b.block_id = x.block_id
           JOIN addresses f ON f.chain = x.chain AND f.address_id = x.from_id
           LEFT JOIN addresses r ON r.chain = x.chain AND r.address_id = x.to_id
           LEFT JOIN addresses c ON c.chain = x.chain AND c.address_id = x.created_id""",
    )
    return {r[0]: r[1:] for r in rows}


def check_txs(db: Path, rows: list[dict[str, Any]], receipts: dict[str, dict[str, Any]]) -> None:
    """Transactions as ethereum-etl exported them; gas used, status, created contract and fee from the
    receipt fields (of the transactions export, or of a receipts export)."""
    got = stored_txs(db)
    assert len(got) == len(rows)
    for e in rows:
        r = receipts[e["hash"]]
        price = _int(r.get("effective_gas_price", r.get("receipt_effective_gas_price"))) or int(
            e["gas_price"]
        )
        gas_used = int(r.get("gas_used", r.get("receipt_gas_used")))
        status = _int(r.get("status", r.get("receipt_status")))
        created = r.get("contract_address", r.get("receipt_contract_address"))
        text = e["input"][2:]
        method = text[:8] if e["to_address"] and len(text) >= 8 else None
        assert got[_key(e["hash"])] == (
            int(e["block_number"]),
            int(e["transaction_index"]),
            _key(e["from_address"]),
            _key(e["to_address"]),
            _key(created),
            str(e["value"]),
            int(e["nonce"]),
            int(e["gas"]),
            str(price),
            gas_used,
            str(gas_used * price),
            None if status is None else status == 1,
            _int(e["transaction_type"]) or 0,
            method,
        ), e["hash"]


def stored_token_transfers(db: Path) -> list[tuple[Any, ...]]:
    return sorted(
        (
            _key("0x" + t.hex()) if t else None,
            _key("0x" + c.hex()) if c else None,
            _key("0x" + f.hex()),
            _key("0x" + r.hex()),
            a,
        )
        for f, r, c, k, a, t in transfers(db, "ethereum")
        if k == "token"
    )


def check_token_transfers(db: Path, rows: list[dict[str, Any]]) -> None:
    want = sorted(
        (
            _key(e["transaction_hash"]),
            _key(e["token_address"]),
            _key(e["from_address"]),
            _key(e["to_address"]),
            int(e["value"]),
        )
        for e in rows
    )
    assert stored_token_transfers(db) == want
    logs = query(
        db,
        "SELECT lower(hex(t.hash)), x.log_index FROM transfers x JOIN account_txs t "
        "ON t.tx_id = x.tx_id WHERE x.kind = 'token'",
    )
    assert sorted(logs) == sorted((_key(e["transaction_hash"]), int(e["log_index"])) for e in rows)


@pytest.mark.parametrize("block_receipts", [False, True])
def test_replay_stream_blocks_1755634_1755635(tmp_path: Path, block_receipts: bool) -> None:
    """Two mainnet blocks of 2016 (pre-Byzantium receipts: no status) with a token transfer, from recorded
    eth_getBlockByNumber and eth_getTransactionReceipt answers (eth_getBlockReceipts assembled from them
    in the second run)."""
    d = STREAM / "blocks_1755634_1755635"
    db = tmp_path / "s.duckdb"
    with evm_replay([d], chain_id=1, tip=1755635, block_receipts=block_receipts) as node:
        s = run(db, node.url, "ethereum", start=1755634)
    assert (s.blocks, s.txs, s.token_transfers, s.stored_tip, s.fetched) == (2, 2, 1, 1755635, 2)
    assert s.receipts == ("eth_getBlockReceipts" if block_receipts else "eth_getTransactionReceipt")
    assert s.traces == "unavailable"  # none recorded: the replay answers -32601, as a node without them
    check_blocks(db, expected(d / "expected_blocks.json"))
    txs = expected(d / "expected_transactions.json")
    check_txs(db, txs, {t["hash"]: t for t in txs})
    check_token_transfers(db, expected(d / "expected_token_transfers.json"))
    # the token (TheDAO) is not in the registry and no eth_call answer was recorded: metadata stays null
    assert (s.tokens_asked, s.tokens_described) == (1, 0)
    assert query(db, "SELECT symbol, decimals, metadata_source FROM assets WHERE contract IS NOT NULL") == [
        (None, None, "unknown")
    ]
    assert node.calls["eth_call"] == 3
    native = [(f.hex(), r.hex(), a) for f, r, c, k, a, _ in transfers(db, "ethereum") if k == "native"]
    assert native == [
        (
            "3763e6e1228bfeab94191c856412d1bb0a8e6996",
            "ec1ebac9da3430213281c80fa6d46378341a96ae",
            405738107000000000,
        )
    ]


def test_replay_block_483920_with_receipts_and_logs(tmp_path: Path) -> None:
    """Block 483,920: recorded block and four receipts; compared with ethereum-etl's blocks, transactions,
    receipts and token-transfer exports of the same block."""
    blocks_dir = ETL / "test_export_blocks_job" / "block_with_logs"
    receipts_dir = ETL / "test_export_receipts_job" / "receipts_with_logs"
    db = tmp_path / "s.duckdb"
    with evm_replay([blocks_dir, receipts_dir], chain_id=1, tip=483920) as node:
        s = run(db, node.url, "ethereum", start=483920)
    assert (s.blocks, s.txs, s.token_transfers, s.transfer_logs_skipped) == (1, 4, 2, 0)
    check_blocks(db, expected(blocks_dir / "expected_blocks.csv"))
    receipts = {r["transaction_hash"]: r for r in expected(receipts_dir / "expected_receipts.csv")}
    check_txs(db, expected(blocks_dir / "expected_transactions.csv"), receipts)
    transfers_dir = ETL / "test_export_token_transfers_job" / "block_with_transfers"
    check_token_transfers(db, expected(transfers_dir / "expected_token_transfers.csv"))
    assert node.calls["eth_getTransactionReceipt"] == 4


def test_replay_genesis(tmp_path: Path) -> None:
    d = ETL / "test_export_blocks_job" / "block_without_transactions"
    db = tmp_path / "s.duckdb"
    with evm_replay([d], chain_id=1, tip=0) as node:
        s = run(db, node.url, "ethereum")
    assert (s.start_height, s.blocks, s.txs, s.receipts, s.traces) == (0, 1, 0, "none needed", "not checked")
    check_blocks(db, expected(d / "expected_blocks.csv"))


def test_decode_blocks_47218_47219_like_ethereum_etl() -> None:
    """Full-transaction blocks (no receipts recorded: decoded, not ingested) against ethereum-etl's export."""
    d = ETL / "test_export_blocks_job" / "blocks_with_transactions"
    want = {e["hash"]: e for e in expected(d / "expected_transactions.csv")}
    blocks = {e["hash"]: e for e in expected(d / "expected_blocks.csv")}
    seen = 0
    for height in (47218, 47219):
        answer = json.loads((d / f"web3_response.eth_getBlockByNumber_{hex(height)}_true.json").read_text())
        b = rd.parse_block(answer["result"], height, full=True)
        e = blocks["0x" + b.hash.hex()]
        assert (b.number, b.parent_hash.hex(), b.time, len(b.txs), b.gas_used, b.size, b.miner) == (
            int(e["number"]),
            e["parent_hash"][2:],
            int(e["timestamp"]),
            int(e["transaction_count"]),
            int(e["gas_used"]),
            int(e["size"]),
            bytes.fromhex(e["miner"][2:]),
        )
        for t in b.txs:
            x = want["0x" + t.hash.hex()]
            assert (
                t.position,
                t.sender.hex(),
                t.to.hex() if t.to else None,
                t.value,
                t.nonce,
                t.gas,
                t.gas_price,
                t.tx_type,
                t.method,
            ) == (
                int(x["transaction_index"]),
                x["from_address"][2:],
                _key(x["to_address"]),
                int(x["value"]),
                int(x["nonce"]),
                int(x["gas"]),
                int(x["gas_price"]),
                int(x["transaction_type"]),
                None,
            )
            seen += 1
    assert seen == len(want) == 4


def _trace_files() -> list[tuple[Path, int, list[dict[str, Any]]]]:
    """(trace_block answer, block number, ethereum-etl's traces of it) for every recorded trace_block."""
    out = []
    for path in sorted(ETL.glob("*/*/web3_response.trace_block_*.json")):
        height = int(path.name.split("_")[-1].removesuffix(".json"), 16)
        exp = path.parent / "expected_traces.csv"
        out.append((path, height, expected(exp if exp.exists() else path.parent / "expected_traces.json")))
    return out


def _etl_internal(rows: list[dict[str, Any]]) -> list[tuple[str, str, str, str, int]]:
    """Internal value transfers by ethereum-etl's own trace fields: below the top level, status 1, value
    above 0, a call of call_type call, a create or a suicide."""
    out = []
    for r in rows:
        path = r["trace_address"]
        path = path if isinstance(path, list) else [int(p) for p in path.split(",") if p != ""]
        kind, call_type = r["trace_type"], r["call_type"] or None
        if not path or _int(r["status"]) != 1 or not _int(r["value"]):
            continue
        if (kind == "call" and call_type == "call") or kind in ("create", "suicide"):
            out.append(
                (
                    _key(r["transaction_hash"]) or "",
                    ".".join(map(str, path)),
                    _key(r["from_address"]) or "",
                    _key(r["to_address"]) or "",
                    int(r["value"]),
                )
            )
    return sorted(out)


def test_parity_traces_like_ethereum_etl() -> None:
    files = _trace_files()
    assert len(files) == 7
    found = 0
    for path, height, rows in files:
        answer = json.loads(path.read_text())["result"]
        block_hash = next((bytes.fromhex(t["blockHash"][2:]) for t in answer if t.get("blockHash")), b"")
        got = sorted(
            (t.tx_hash.hex(), t.position, t.sender.hex(), t.recipient.hex(), t.value)
            for t in rd.parity_internal(answer, height, block_hash)
        )
        assert got == _etl_internal(rows), path
        found += len(got)
    assert found == 1  # the selfdestruct of block 1,011,973 (0.05 ETH back to its creator)
    suicide = ETL / "test_export_traces_job" / "block_with_suicide" / "web3_response.trace_block_0xf7105.json"
    answer = json.loads(suicide.read_text())["result"]
    [t] = rd.parity_internal(answer, 1011973, bytes.fromhex(answer[0]["blockHash"][2:]))
    assert (t.position, t.sender.hex()[:8], t.recipient.hex()[:8], t.value) == (
        "0",
        "474faa50",
        "83973747",
        5 * 10**16,
    )


def test_geth_traces_agree_with_parity_traces() -> None:
    """The same five blocks traced by geth (callTracer) and by Parity: the same internal transfers, except
    the old geth's SELFDESTRUCT frame, which states neither beneficiary nor value: counted as unreadable."""
    unreadable_total = 0
    for path in sorted(
        (ETL / "test_extract_geth_traces_job").glob("*/web3_response.debug_traceBlockByNumber_*")
    ):
        height = int(path.name.split("_")[3], 16)
        parity_path = (
            ETL
            / "test_export_traces_job"
            / path.parent.name
            / f"web3_response.trace_block_{hex(height)}.json"
        )
        # block 1 (no transactions) was traced by geth only
        parity = json.loads(parity_path.read_text())["result"] if parity_path.exists() else []
        tx_hashes = [
            bytes.fromhex(t["transactionHash"][2:])
            for t in parity
            if t.get("transactionHash") and t["traceAddress"] == []
        ]
        block_hash = next((bytes.fromhex(t["blockHash"][2:]) for t in parity if t.get("blockHash")), b"")
        geth, unreadable = rd.geth_internal(json.loads(path.read_text())["result"], height, tx_hashes)
        unreadable_total += unreadable
        want = rd.parity_internal(parity, height, block_hash)
        assert geth == ([] if unreadable else want), path
    assert unreadable_total == 1


@pytest.mark.parametrize(
    ("directory", "contract", "want"),
    [
        (STREAM / "blocks_2112234_2112234", "dbdacfc9eb9d42559ac1efbdb40460c728139e6a", ("", 0, "")),
        (
            ETL / "test_export_tokens_job" / "token_with_alternative_return_type",
            "86fa049857e0209aa7d9e616f7eb3b3b78ecfdb0",
            ("EOS", 18, ""),
        ),  # bytes32 symbol, as MKR/EOS have
        (
            ETL / "test_export_tokens_job" / "token_with_invalid_data",
            "f763be8b3263c268e9789abfb3934564a7b80054",
            ("ETH", 18, "ETH"),
        ),  # string padded with NUL bytes
    ],
)
def test_token_metadata_from_recorded_eth_call(directory: Path, contract: str, want: tuple[Any, ...]) -> None:
    with evm_replay([directory]) as node, client(node.url) as c:
        [m] = fetch_token_metadata(c, [bytes.fromhex(contract)])
    assert (m.symbol, m.decimals, m.name) == want
    exp = directory / "expected_tokens.csv"
    row = expected(exp if exp.exists() else directory / "expected_tokens.json")[0]
    assert (m.symbol, m.decimals, m.name) == (row["symbol"], int(row["decimals"]), row["name"])
    assert node.calls["eth_call"] == 3


def test_token_metadata_never_guessed() -> None:
    with evm_replay([STREAM / "blocks_2112234_2112234"]) as node, client(node.url) as c:
        [m] = fetch_token_metadata(c, [bytes(20)])  # no answer recorded: the node answers errors
    assert (m.symbol, m.decimals, m.name) == (None, None, None)
    word = "0x" + "00" * 31
    assert [
        rd.decode_decimals(x)
        for x in (
            word + "12",
            word + "ff",
            "0x" + "00" * 30 + "0100",
            "0x",
            "0x12",
            word + "1200",
            None,
            "zz",
        )
    ] == [18, 255, None, None, None, None, None, None]
    text = "0x" + (32).to_bytes(32, "big").hex() + (3).to_bytes(32, "big").hex() + b"USD".hex().ljust(64, "0")
    assert [
        rd.decode_text(x)
        for x in (text, text[:-2], "0x" + "ff" * 32, "0x" + b"A\x01B".hex().ljust(64, "0"), "0x")
    ] == ["USD", None, None, None, None]


def test_unknown_chain_id_is_named(tmp_path: Path) -> None:
    with evm_replay([STREAM / "blocks_2112234_2112234"]) as node, pytest.raises(InvalidInput) as e:
        run(tmp_path / "s.duckdb", node.url, "ethereum")  # its recorded eth_chainId answer is 0x1234
    assert e.value.line().startswith(
        f"the node at http://127.0.0.1:{node.port} serves chain id 4660, not ethereum (1)"
    )
    assert "check --url; fundtrail knows chain ids ethereum 1, bsc 56" in e.value.line()


def test_wrong_chain_names_the_right_one(tmp_path: Path) -> None:
    with (
        evm_replay([STREAM / "blocks_1755634_1755635"], chain_id=56) as node,
        pytest.raises(InvalidInput) as e,
    ):
        run(tmp_path / "s.duckdb", node.url, "ethereum")
    assert e.value.line().endswith("serves chain id 56 (bsc), not ethereum (1): pass --chain bsc")
    assert node.calls == {"eth_chainId": 1}


def test_retries_transient_failures(tmp_path: Path) -> None:
    with evm_replay([STREAM / "blocks_1755634_1755635"], chain_id=1, tip=1755635) as node:
        node.fail_next(503, 502, 429)
        s = run(tmp_path / "s.duckdb", node.url, "ethereum", start=1755634)
    assert (s.blocks, s.retries) == (2, 3)


def test_unreachable_node(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SourceUnavailable) as e:
        run(tmp_path / "s.duckdb", f"http://u:topsecret@127.0.0.1:{port}", "ethereum")
    line = e.value.line()
    assert line.startswith(f"cannot reach the node at http://127.0.0.1:{port}: ") and "(5 tries)" in line
    assert line.endswith(evm_rpc.UNREACHABLE_FIX) and "topsecret" not in line


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("gasUsed", "0xzz", "block 1755635: gasUsed is '0xzz', not a hex quantity"),
        ("timestamp", "1466669562", "block 1755635: timestamp is '1466669562', not a hex quantity"),
        ("hash", "0x1234", "block 1755635: hash is '0x1234', not 32 bytes of hex"),
        ("miner", "0xA027231F42C80CA4125B5CB962A21CD4F812E88", "block 1755635: miner is"),
        ("transactions.1.value", None, "block 1755635: transactions[1].value is None, not a hex quantity"),
        ("transactions.0.from", "0x12", "block 1755635: transactions[0].from is '0x12', not 20 bytes of hex"),
        ("number", "0x1ac9f4", "asked for block 1755635, the node answered block 1755636"),
    ],
)
def test_malformed_answers_are_corrupt_data(tmp_path: Path, field: str, value: Any, message: str) -> None:
    d = STREAM / "blocks_1755634_1755635"
    name = "web3_response.eth_getblockbynumber_0x1ac9f3_true.json"
    block = json.loads((d / "web3_response.eth_getBlockByNumber_0x1ac9f3_true.json").read_text())["result"]
    target: Any = block
    *path, last = field.split(".")
    for part in path:
        target = target[int(part) if part.isdigit() else part]
    target[last] = value
    db = tmp_path / "s.duckdb"
    with evm_replay([d], chain_id=1, tip=1755635) as node:
        node.overrides[name] = block
        with pytest.raises(CorruptData) as e:
            run(db, node.url, "ethereum", start=1755634)
    assert e.value.line().startswith(message)
    assert "nothing of this batch was stored" in e.value.line()
    assert counts(db)["blocks"] == 0


# -- the command ---------------------------------------------------------------------------------------


def fundtrail(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from fundtrail.cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


def test_cli_ingests_and_errors_are_one_line(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    d = STREAM / "blocks_1755634_1755635"
    unknown = fundtrail("--db", str(db), "ingest", "evm-rpc", "--url", "http://127.0.0.1:1", "--chain", "eth")
    assert unknown.returncode == 2 and not db.exists()
    assert unknown.stderr.strip() == (
        "error: --chain 'eth' is not an EVM chain fundtrail knows: use one of "
        "ethereum, bsc, polygon, arbitrum, optimism, base, avalanche, anvil"
    )
    bad_url = fundtrail(
        "--db", str(db), "ingest", "evm-rpc", "--url", "http://u:hunter2@host:x", "--chain", "bsc"
    )
    assert bad_url.returncode == 2 and "hunter2" not in bad_url.stderr and not db.exists()
    assert bad_url.stderr.startswith("error: --url 'http://u:***@host:x'")
    args = ["--db", str(db), "ingest", "evm-rpc", "--url", "http://127.0.0.1:1", "--chain", "base"]
    backwards = fundtrail(*args, "--from", "9", "--to", "3")
    assert backwards.returncode == 2 and not db.exists()
    assert backwards.stderr.strip() == "error: --to 3 is below --from 9: give --to >= --from"
    with evm_replay([d], chain_id=56, tip=1755635) as node:
        wrong = fundtrail("--db", str(db), "ingest", "evm-rpc", "--url", node.url, "--chain", "ethereum")
    assert wrong.returncode == 2 and wrong.stderr.strip().endswith("pass --chain bsc")
    with evm_replay([d], chain_id=1, tip=1755635) as node:
        node.overrides["web3_response.eth_getblockbynumber_0x1ac9f3_true.json"] = {"number": "0x1ac9f3"}
        corrupt = fundtrail(
            "--db",
            str(db),
            "ingest",
            "evm-rpc",
            "--url",
            node.url,
            "--chain",
            "ethereum",
            "--from",
            "1755634",
        )
        node.overrides.clear()
        ok = fundtrail(
            "--db",
            str(db),
            "ingest",
            "evm-rpc",
            "--url",
            node.url,
            "--chain",
            "ethereum",
            "--from",
            "1755634",
            "--batch-size",
            "1",
        )
    assert corrupt.returncode == 4
    assert corrupt.stderr.strip().startswith("error: block 1755635: transactions is None, not a list")
    for done in (
        unknown,
        bad_url,
        backwards,
        wrong,
        corrupt,
    ):  # (the progress bar, gone, may leave an empty line)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert ok.returncode == 0, ok.stderr
    out = " ".join(ok.stderr.split())
    assert "stored 2 ethereum blocks (0 already stored), 2 txs" in out and "1 token" in out
    assert "receipts: eth_getTransactionReceipt; traces: unavailable" in out


def test_cli_unreachable_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fundtrail.cli import ingest_evm_rpc

    monkeypatch.setattr(ingest_evm_rpc, "connect_node", client)  # the same client, with millisecond backoff
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = tmp_path / "cli.duckdb"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "fundtrail",
            "--db",
            str(db),
            "ingest",
            "evm-rpc",
            "--url",
            f"http://alice:pw@127.0.0.1:{port}",
            "--chain",
            "polygon",
        ],
    )
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 5
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pw" not in err
    assert err.startswith(f"error: cannot reach the node at http://127.0.0.1:{port}: ")
    assert err.endswith("(5 tries): check --url and that the node serves JSON-RPC over HTTP (geth: --http)")


def test_command_options_are_documented() -> None:
    group: Any = typer.main.get_command(app)
    command = group.commands["ingest"].commands["evm-rpc"]
    page = (ROOT / "docs" / "commands" / "ingest-evm-rpc.md").read_text()
    assert "fundtrail ingest evm-rpc" in page
    options = [o for p in command.params for o in p.opts if o.startswith("--")]
    assert {"--url", "--chain", "--from", "--to", "--follow", "--batch-size", "--poll-seconds"} == set(
        options
    )
    for option in options:
        assert f"`{option}" in page, option


def _rebuilt_answers(d: Path) -> dict[str, Any]:
    """eth_getBlockByNumber and eth_getTransactionReceipt answers rebuilt, field for field, from
    ethereum-etl's export of the same blocks (no raw answers were recorded for them)."""
    logs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for log in expected(d / "expected_logs.json"):
        logs[log["transaction_hash"]].append(
            {
                "address": log["address"],
                "topics": log["topics"],
                "data": log["data"],
                "logIndex": hex(log["log_index"]),
            }
        )
    txs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    out: dict[str, Any] = {}
    for t in expected(d / "expected_transactions.json"):
        txs[t["block_number"]].append(
            {
                "hash": t["hash"],
                "transactionIndex": hex(t["transaction_index"]),
                "from": t["from_address"],
                "to": t["to_address"],
                "value": hex(t["value"]),
                "nonce": hex(t["nonce"]),
                "gas": hex(t["gas"]),
                "gasPrice": hex(t["gas_price"]),
                "type": hex(t["transaction_type"]),
                "input": t["input"],
            }
        )
        out[f"web3_response.eth_gettransactionreceipt_{t['hash']}.json"] = {
            "transactionHash": t["hash"],
            "blockHash": t["block_hash"],
            "status": hex(t["receipt_status"]),
            "gasUsed": hex(t["receipt_gas_used"]),
            "effectiveGasPrice": hex(t["receipt_effective_gas_price"]),
            "contractAddress": t["receipt_contract_address"],
            "logs": logs[t["hash"]],
        }
    for b in expected(d / "expected_blocks.json"):
        out[f"web3_response.eth_getblockbynumber_{hex(b['number'])}_true.json"] = {
            "number": hex(b["number"]),
            "hash": b["hash"],
            "parentHash": b["parent_hash"],
            "timestamp": hex(b["timestamp"]),
            "miner": b["miner"],
            "gasUsed": hex(b["gas_used"]),
            "baseFeePerGas": hex(b["base_fee_per_gas"]),
            "size": hex(b["size"]),
            "transactions": sorted(txs[b["number"]], key=lambda t: int(t["transactionIndex"], 16)),
            "withdrawals": [
                {
                    "index": hex(w["index"]),
                    "validatorIndex": hex(w["validator_index"]),
                    "address": w["address"],
                    "amount": hex(w["amount"]),
                }
                for w in b["withdrawals"]
            ],
        }
    return out


def test_post_merge_blocks_17173049_17173050(tmp_path: Path) -> None:
    """Two post-merge blocks (EIP-1559 fees, beacon withdrawals, 298 transactions, 681 logs), answered by
    the replay from their ethereum-etl export: fees, statuses, token transfers and withdrawals as exported."""
    d = STREAM / "blocks_17173049_17173050"
    db = tmp_path / "s.duckdb"
    with evm_replay(chain_id=1, tip=17173050) as node:
        node.overrides.update(_rebuilt_answers(d))
        node.recorded_methods |= {"eth_getblockbynumber", "eth_gettransactionreceipt"}
        s = run(db, node.url, "ethereum", start=17173049)
    logs = expected(d / "expected_logs.json")
    standard = {
        (x["transaction_hash"], x["log_index"])
        for x in logs
        if len(x["topics"]) == 3 and x["topics"][0] == TRANSFER_TOPIC_HEX and len(x["data"]) == 66
    }
    odd = sum(1 for x in logs if x["topics"] and x["topics"][0] == TRANSFER_TOPIC_HEX) - len(standard)
    assert (s.blocks, s.txs, s.token_transfers, s.transfer_logs_skipped, s.withdrawals) == (
        2,
        298,
        282,
        odd,
        32,
    )
    check_blocks(db, expected(d / "expected_blocks.json"))
    txs = expected(d / "expected_transactions.json")
    check_txs(db, txs, {t["hash"]: t for t in txs})
    check_token_transfers(
        db,
        [
            t
            for t in expected(d / "expected_token_transfers.json")
            if (t["transaction_hash"], t["log_index"]) in standard
        ],
    )
    want = sorted(
        (str(w["index"]), _key(w["address"]), w["amount"] * 10**9)
        for b in expected(d / "expected_blocks.json")
        for w in b["withdrawals"]
    )
    got = query(
        db,
        "SELECT x.trace_position, lower(hex(r.key)), x.amount::VARCHAR, x.tx_id, hex(f.key) "
        "FROM transfers x JOIN addresses r ON r.address_id = x.to_id "
        "JOIN addresses f ON f.address_id = x.from_id WHERE kind = 'withdrawal'",
    )
    assert sorted((p, a, int(v)) for p, a, v, _t, _f in got) == want
    assert {(t, f) for *_x, t, f in got} == {(None, b"beacon".hex().upper())}
    failed = sum(1 for t in txs if t["receipt_status"] == 0)
    assert query(db, "SELECT count(*) FROM account_txs WHERE NOT status") == [(failed,)]
