"""``ingest tron`` against the local java-tron look-alike (tests/tron_server.py), built from the real TRON
data of graphsense-lib: the 2,172 real TRX transfers of 2018 with their fees, the 1,001 real block headers
56,804,500..56,805,500 with their 4,957 real internal transactions, and constructed TRC-20 transfers of the
real USDT/USDC/WTRX contracts. Expected figures are computed here from the data files, not by fundtrail."""

from __future__ import annotations

import copy
import hashlib
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from fundtrail.chains.tron.address import tron_address
from fundtrail.chains.tron.decode import InfoMismatch, block_rows, parse_block, parse_header, parse_infos
from fundtrail.cli.main import app
from fundtrail.errors import CorruptData, InvalidInput, SourceUnavailable
from fundtrail.ingest.progress import Progress
from fundtrail.ingest.tron_http import (
    UNREACHABLE_FIX,
    TronClient,
    TronIngestSummary,
    connect_node,
    ingest_tron,
)
from fundtrail.store.account_write import FEE_SINK
from fundtrail.store.db import connect
from tests.conftest import ROOT
from tests.tron_server import (
    FIRST_2023,
    LAST_2023,
    UINT256_MAX,
    Chain,
    Chain2023,
    TronNode,
    b64,
    block,
    chain_2018,
    chain_2023,
    fees_2018,
    headers_2023,
    info,
    internal_tx,
    tokens_2023,
    traces_2023,
    transaction,
    transactions_2018,
    tron_node,
)

USDT_T = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


def base58check(payload: bytes) -> str:
    """Written out here (not bip-utils) so the address round trip is checked independently."""
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n, out = int.from_bytes(data, "big"), ""
    while n:
        n, r = divmod(n, 58)
        out = B58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def key(body: bytes) -> bytes:
    return b"\x41" + body


def client(url: str, api_key: str | None = None, tries: int = 5) -> TronClient:
    """A client as the CLI makes it, with millisecond backoff so retry tests stay fast."""
    return connect_node(url, api_key, backoff=0.001, max_backoff=0.002, tries=tries)


def run(db: Path, url: str, api_key: str | None = None, **kwargs: Any) -> TronIngestSummary:
    con = connect(db)
    try:
        with client(url, api_key) as c:
            return ingest_tron(con, c, **kwargs)
    finally:
        con.close()


def query(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = connect(db)
    try:
        rows: list[tuple[Any, ...]] = con.execute(sql, params or []).fetchall()
        return rows
    finally:
        con.close()


ADDR = "LEFT JOIN addresses {a} ON {a}.chain = x.chain AND {a}.address_id = x.{col}"


def snap(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The store's TRON content, independent of internal ids and ingest order."""
    sqls = {
        "blocks": "SELECT height, hex(hash), hex(prev_hash), time, tx_count, hex(m.key) FROM blocks x "
        f"{ADDR.format(a='m', col='miner_id')} WHERE x.chain = 'tron' ORDER BY height",
        "txs": "SELECT hex(x.hash), b.height, x.position, hex(f.key), hex(r.key), hex(c.key), "
        "x.value::VARCHAR, x.fee::VARCHAR, x.status, x.tx_type, hex(x.method), x.gas, x.gas_used "
        f"FROM account_txs x JOIN blocks b ON b.block_id = x.block_id {ADDR.format(a='f', col='from_id')} "
        f"{ADDR.format(a='r', col='to_id')} {ADDR.format(a='c', col='created_id')} "
        "WHERE x.chain = 'tron' ORDER BY 2, 3",
        "transfers": "SELECT hex(t.hash), b.height, x.kind, x.log_index, x.trace_position, hex(s.contract), "
        "hex(f.key), hex(r.key), x.amount::VARCHAR FROM transfers x JOIN blocks b ON b.block_id = x.block_id "
        "LEFT JOIN account_txs t ON t.tx_id = x.tx_id JOIN assets s ON s.chain = x.chain AND "
        f"s.asset_id = x.asset_id {ADDR.format(a='f', col='from_id')} {ADDR.format(a='r', col='to_id')} "
        "WHERE x.chain = 'tron' ORDER BY ALL",
    }
    return {name: query(db, sql) for name, sql in sqls.items()}


def counts(db: Path) -> dict[str, int]:
    return {
        t: query(db, f"SELECT count(*) FROM {t}")[0][0]
        for t in ("blocks", "account_txs", "transfers", "addresses", "assets")
    }


def transfers(db: Path, kind: str) -> list[tuple[Any, ...]]:
    """(tx hash, height, log index, trace position, contract key, from key, to key, amount) of a kind."""
    return query(
        db,
        "SELECT t.hash, b.height, x.log_index, x.trace_position, s.contract, f.key, r.key, x.amount::VARCHAR "
        "FROM transfers x JOIN blocks b ON b.block_id = x.block_id JOIN account_txs t ON t.tx_id = x.tx_id "
        "JOIN assets s ON s.chain = x.chain AND s.asset_id = x.asset_id "
        "JOIN addresses f ON f.chain = x.chain AND f.address_id = x.from_id "
        "JOIN addresses r ON r.chain = x.chain AND r.address_id = x.to_id "
        "WHERE x.chain = 'tron' AND x.kind = ?",
        [kind],
    )


# -- fixtures: one ingest of each chain, shared by the tests that only read -------------------------------


@pytest.fixture(scope="module")
def c18() -> Chain:
    return chain_2018()


@pytest.fixture(scope="module")
def c23() -> Chain2023:
    return chain_2023()


@pytest.fixture(scope="module")
def store18(c18: Chain, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TronIngestSummary]:
    db = tmp_path_factory.mktemp("tron18") / "s.duckdb"
    with tron_node(c18) as node:
        s = run(db, node.url, batch_size=2000)
    return db, s


@pytest.fixture(scope="module")
def store23(c23: Chain2023, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TronIngestSummary]:
    db = tmp_path_factory.mktemp("tron23") / "s.duckdb"
    with tron_node(c23.chain) as node:
        s = run(db, node.url, start=FIRST_2023)
    return db, s


@pytest.fixture
def node23(c23: Chain2023) -> Iterator[TronNode]:
    with tron_node(c23.chain) as n:
        yield n


# -- 2018: the 2,172 real TRX transfers -------------------------------------------------------------------


def test_2018_blocks_carry_the_real_hashes_heights_and_times(store18: tuple[Path, TronIngestSummary]) -> None:
    db, s = store18
    assert (s.blocks, s.txs, s.start_height, s.stored_tip, s.node_tip, s.fetched) == (
        9998,
        2172,
        0,
        9997,
        9997,
        9998,
    )
    assert (s.info_requests, s.reorgs, s.missing_infos, s.unknown_types) == (661, 0, 0, 0)
    rows = {r[0]: r[1:] for r in query(db, "SELECT height, hash, prev_hash, time, tx_count FROM blocks")}
    assert sorted(rows) == list(range(9998))
    real = {(t["blockId"], b64(t["blockHash"]), t["blockTimestamp"]) for t in transactions_2018()}
    assert len(real) == 661
    for height, block_hash, ts in real:
        assert (rows[height][0], rows[height][2]) == (block_hash, ts)
    assert all(rows[h][1] == rows[h - 1][0] for h in range(1, 9998))  # every parent link holds
    per_block = Counter(t["blockId"] for t in transactions_2018())
    assert {h: r[3] for h, r in rows.items() if r[3]} == dict(per_block)


def test_2018_every_real_transfer_is_stored_with_its_exact_amount(
    store18: tuple[Path, TronIngestSummary],
) -> None:
    db, _ = store18
    data = transactions_2018()
    txs = {
        bytes(r[0]): r[1:]
        for r in query(
            db,
            "SELECT x.hash, b.height, x.position, f.key, r.key, x.value::VARCHAR, x.status, x.tx_type "
            "FROM account_txs x JOIN blocks b ON b.block_id = x.block_id "
            "JOIN addresses f ON f.chain = x.chain AND f.address_id = x.from_id "
            "LEFT JOIN addresses r ON r.chain = x.chain AND r.address_id = x.to_id WHERE x.chain = 'tron'",
        )
    }
    assert len(txs) == 2172
    for t in data:
        height, position, sender, to, value, ok, tx_type = txs[b64(t["txHash"])]
        assert (height, position, bytes(sender), ok) == (
            t["blockId"],
            t["transactionIndex"],
            key(b64(t["fromAddress"])),
            True,
        )
        if "toAddress" in t:
            assert bytes(to) == key(b64(t["toAddress"]))
            assert (value, tx_type) == ((str(t["value"]), 1) if t["value"] else ("0", 2))  # TRC-10 when 0
        else:
            assert (to, value) == (None, "0")  # staking, witness, asset issue, account update: no TRX moved

    native = {bytes(r[0]): r for r in transfers(db, "native")}
    with_recipient = [t for t in data if "toAddress" in t and t["value"] > 0]
    assert len(native) == len(with_recipient) == 1953
    for t in with_recipient:
        _, height, _, _, contract, sender, to, amount = native[b64(t["txHash"])]
        assert (height, contract, bytes(sender), bytes(to), amount) == (
            t["blockId"], None, key(b64(t["fromAddress"])), key(b64(t["toAddress"])), str(t["value"]),
        )  # fmt: skip
    total = sum(int(r[7]) for r in native.values())
    assert total == sum(t["value"] for t in data if "toAddress" in t) == 67_312_229_451_038_156
    assert sum(t["value"] for t in data) - total == 50_371_152_023_730  # the 214 without a recipient
    assert query(db, "SELECT sum(amount)::VARCHAR FROM transfers WHERE kind = 'native'") == [(str(total),)]


def test_2018_per_address_received_and_sent(store18: tuple[Path, TronIngestSummary]) -> None:
    db, _ = store18
    data = [t for t in transactions_2018() if "toAddress" in t]
    received: defaultdict[bytes, int] = defaultdict(int)
    sent: defaultdict[bytes, int] = defaultdict(int)
    for t in data:
        received[b64(t["toAddress"])] += t["value"]
        sent[b64(t["fromAddress"])] += t["value"]
    active = Counter(b64(t[f]) for t in data for f in ("fromAddress", "toAddress"))
    for body, _ in active.most_common(4):
        k = key(body)
        got = query(
            db,
            "SELECT coalesce(sum(CASE WHEN r.key = ? THEN x.amount END), 0)::VARCHAR, "
            "coalesce(sum(CASE WHEN f.key = ? THEN x.amount END), 0)::VARCHAR FROM transfers x "
            "JOIN addresses f ON f.chain = x.chain AND f.address_id = x.from_id "
            "JOIN addresses r ON r.chain = x.chain AND r.address_id = x.to_id "
            "WHERE x.chain = 'tron' AND x.kind = 'native'",
            [k, k],
        )
        assert got == [(str(received[body]), str(sent[body]))], tron_address(k)
    top = key(active.most_common(1)[0][0])
    assert (received[top[1:]], sent[top[1:]]) != (0, 0)


def test_2018_fees_are_the_real_fees(store18: tuple[Path, TronIngestSummary]) -> None:
    db, _ = store18
    fees = fees_2018()
    senders = {t["txHash"]: key(b64(t["fromAddress"])) for t in transactions_2018()}
    paid = {b64(h): f["fee"] for h, f in fees.items() if f["fee"] > 0}
    stored = transfers(db, "fee")
    assert len(stored) == len(paid) == 1794
    by_tx = {bytes(r[0]): r for r in stored}
    for h, f in fees.items():
        if f["fee"]:
            row = by_tx[b64(h)]
            assert (bytes(row[5]), bytes(row[6]), row[7]) == (senders[h], FEE_SINK, str(f["fee"]))
    assert sum(int(r[7]) for r in stored) == sum(f["fee"] for f in fees.values()) == 277_312_297_920
    fee_col = dict(query(db, "SELECT hash, fee::VARCHAR FROM account_txs WHERE chain = 'tron'"))
    assert {bytes(k): v for k, v in fee_col.items()} == {b64(h): str(f["fee"]) for h, f in fees.items()}


def test_2018_addresses_round_trip(store18: tuple[Path, TronIngestSummary]) -> None:
    db, _ = store18
    bodies = {b64(t[f]) for t in transactions_2018() for f in ("fromAddress", "toAddress") if f in t}
    keys = {bytes(r[0]) for r in query(db, "SELECT key FROM addresses WHERE chain = 'tron'")}
    assert {key(b) for b in bodies} <= keys
    for b in bodies:
        assert tron_address(key(b)) == base58check(key(b))
        assert tron_address(key(b)).startswith("T") and len(tron_address(key(b))) == 34


# -- 2023: real headers, real internal transactions, USDT -------------------------------------------------


def test_2023_blocks_are_the_real_headers(store23: tuple[Path, TronIngestSummary]) -> None:
    db, s = store23
    assert (s.blocks, s.stored_tip, s.node_tip, s.limitnext) == (1001, LAST_2023, LAST_2023, True)
    got = query(
        db,
        "SELECT height, hash, prev_hash, time, m.key FROM blocks x JOIN addresses m "
        "ON m.chain = x.chain AND m.address_id = x.miner_id WHERE x.chain = 'tron' ORDER BY 1",
    )
    want = [
        (h["blockId"], b64(h["blockHash"]), b64(h["parentHash"]), h["timestamp"], key(b64(h["miner"])))
        for h in headers_2023()
    ]
    assert [(r[0], bytes(r[1]), bytes(r[2]), r[3], bytes(r[4])) for r in got] == want


def test_2023_usdt_transfers_decoded_exactly(c23: Chain2023, store23: tuple[Path, TronIngestSummary]) -> None:
    db, s = store23
    tokens = tokens_2023()
    assert tron_address(key(tokens["USDT"])) == base58check(key(tokens["USDT"])) == USDT_T
    stored = sorted(
        (bytes(r[0]), r[2], bytes(r[4]), bytes(r[5]), bytes(r[6]), int(r[7])) for r in transfers(db, "token")
    )
    want = sorted((tx, i, key(c), key(f), key(t), amount) for tx, i, c, f, t, amount in c23.token_transfers)
    assert stored == want and len(stored) == s.token_transfers == 426
    usdt = [r for r in stored if r[2] == key(tokens["USDT"])]
    assert len(usdt) == 424 and max(r[5] for r in usdt) == UINT256_MAX
    (row,) = [r for r in stored if r[0] == c23.special.max_amount and r[1] == 0]
    assert (
        row[5]
        == UINT256_MAX
        == 115792089237316195423570985008687907853269984665640564039457584007913129639935
    )
    assert query(
        db,
        "SELECT a.symbol, a.decimals, sum(x.amount)::VARCHAR, count(*) FROM transfers x JOIN assets a "
        "ON a.chain = x.chain AND a.asset_id = x.asset_id WHERE x.kind = 'token' GROUP BY 1, 2 "
        "ORDER BY 4, 1 NULLS FIRST",
    ) == [
        (None, None, str(10**30), 1),  # a contract not in the registry: decimals unknown, not guessed
        ("USDC", 6, "1000000", 1),
        ("USDT", 6, str(sum(r[5] for r in usdt)), 424),
    ]
    assert s.odd_transfer_logs == 2  # an empty-data Transfer and a 4-topic (TRC-721) one, skipped


def test_2023_internal_transactions_are_the_real_ones(store23: tuple[Path, TronIngestSummary]) -> None:
    db, s = store23
    traces = traces_2023()
    want = sorted(
        (b64(t["txHash"]), key(b64(t["callerAddress"])), key(b64(t["transfertoAddress"])), t["callValue"])
        for t in traces
        if t["callValue"] > 0 and not t["rejected"]
    )
    stored = sorted((bytes(r[0]), bytes(r[5]), bytes(r[6]), int(r[7])) for r in transfers(db, "internal"))
    assert stored == want and len(stored) == s.internal_transfers == 210
    assert sum(r[3] for r in stored) == 80_522_439_591
    assert s.negative_call_values == sum(1 for t in traces if t["callValue"] < 0) == 22


def test_2023_failed_tx_moves_nothing_but_pays_its_fee(
    c23: Chain2023, store23: tuple[Path, TronIngestSummary]
) -> None:
    db, _ = store23
    sp = c23.special
    rows = query(
        db,
        "SELECT x.status, x.value::VARCHAR, x.fee::VARCHAR, t.kind, t.amount::VARCHAR FROM account_txs x "
        "LEFT JOIN transfers t ON t.tx_id = x.tx_id WHERE x.hash = ?",
        [sp.failed],
    )
    assert rows == [(False, "5000000", str(sp.failed_fee), "fee", str(sp.failed_fee))]
    reverted = {b64(t["txHash"]) for t in traces_2023() if t["rejected"]} - {
        b64(t["txHash"]) for t in traces_2023() if not t["rejected"]
    }
    got = {bytes(r[0]) for r in query(db, "SELECT hash FROM account_txs WHERE status = false")}
    assert got == reverted | {sp.failed} and len(reverted) == 247
    assert query(
        db,
        "SELECT count(*) FROM transfers x JOIN account_txs t ON t.tx_id = x.tx_id "
        "WHERE t.status = false AND x.kind <> 'fee'",
    ) == [(0,)]
    fees = {bytes(r[0]): int(r[7]) for r in transfers(db, "fee")}
    assert fees == {tx: f for tx, f in c23.fees.items() if f}


def test_2023_call_value_and_contract_creation(
    c23: Chain2023, store23: tuple[Path, TronIngestSummary]
) -> None:
    db, _ = store23
    sp = c23.special
    native = {bytes(r[0]): (bytes(r[6]), int(r[7])) for r in transfers(db, "native")}
    assert native == {
        sp.call_value: (key(tokens_2023()["WTRX"]), sp.call_value_amount),
        sp.create: (key(sp.created), 7_000_000),
    }
    created = query(
        db,
        "SELECT c.key, x.tx_type FROM account_txs x JOIN addresses c ON c.chain = x.chain "
        "AND c.address_id = x.created_id WHERE x.hash = ?",
        [sp.create],
    )
    assert [(bytes(created[0][0]), created[0][1])] == [(key(sp.created), 30)]


# -- resume, idempotence, fallbacks, reorgs ----------------------------------------------------------------


def test_resume_and_idempotence(
    node23: TronNode, store23: tuple[Path, TronIngestSummary], tmp_path: Path
) -> None:
    db = tmp_path / "s.duckdb"
    first = run(db, node23.url, start=FIRST_2023, stop=56_804_799, batch_size=64)
    assert (first.blocks, first.stored_tip) == (300, 56_804_799)
    second = run(db, node23.url)  # resumes after the stored tip
    assert (second.start_height, second.blocks, second.skipped, second.stored_tip) == (
        56_804_800,
        701,
        0,
        LAST_2023,
    )
    before = counts(db)
    node23.reset_counts()
    third = run(db, node23.url)
    assert (third.blocks, third.fetched, third.info_requests) == (0, 0, 0) and counts(db) == before
    again = run(db, node23.url, start=FIRST_2023)  # an explicit re-run: blocks fetched, nothing written
    assert (again.blocks, again.skipped, again.info_requests) == (0, 1001, 0) and counts(db) == before
    assert snap(db) == snap(store23[0])  # incremental equals one full run


@pytest.mark.parametrize("mode", ["404", "error", "empty"])
def test_falls_back_to_getblockbynum(node23: TronNode, mode: str, tmp_path: Path) -> None:
    ref, db = tmp_path / "ref.duckdb", tmp_path / "s.duckdb"
    run(ref, node23.url, start=56_805_400)
    node23.limitnext = mode
    node23.reset_counts()
    s = run(db, node23.url, start=56_805_400)
    assert (s.limitnext, s.blocks) == (False, 101)
    assert node23.served["getblockbynum"] >= 101
    assert snap(db) == snap(ref)


def test_reorg_between_runs(tmp_path: Path) -> None:
    db, fresh = tmp_path / "s.duckdb", tmp_path / "fresh.duckdb"
    a = chain_2023(first=56_805_300)
    b = chain_2023(fork_above=56_805_450, variant="b", first=56_805_300)
    assert a.chain[56_805_450] == b.chain[56_805_450] and a.chain[56_805_451] != b.chain[56_805_451]
    with tron_node(a.chain) as n:
        run(db, n.url, start=56_805_300)
        old = snap(db)
        n.set_chain(b.chain)
        s = run(db, n.url)
        assert (s.reorgs, s.rolled_back, s.start_height, s.blocks, s.stored_tip) == (
            1,
            50,
            56_805_451,
            50,
            LAST_2023,
        )
        run(fresh, n.url, start=56_805_300)
    assert snap(db) == snap(fresh) != old
    assert query(db, "SELECT count(*) FROM blocks WHERE chain = 'tron'") == [(201,)]


def test_reorg_during_a_run(tmp_path: Path) -> None:
    db, fresh = tmp_path / "s.duckdb", tmp_path / "fresh.duckdb"
    a = chain_2023(first=56_805_300)
    b = chain_2023(fork_above=56_805_350, variant="c", first=56_805_300)
    with tron_node(a.chain) as n:

        def switch_at(ev: Progress) -> None:
            if ev.done == 56_805_379 and not ev.note:
                n.set_chain(b.chain)

        s = run(db, n.url, start=56_805_300, batch_size=40, progress=switch_at)
        assert (s.reorgs, s.rolled_back, s.stored_tip) == (1, 29, LAST_2023)
        run(fresh, n.url, start=56_805_300)
    assert snap(db) == snap(fresh)


def test_follow_polls_until_to(tmp_path: Path) -> None:
    full = chain_2023(first=56_805_400)
    db = tmp_path / "s.duckdb"
    with tron_node({h: v for h, v in full.chain.items() if h <= 56_805_420}) as n:
        polls: list[float] = []

        def sleep(seconds: float) -> None:  # the chain grows by 10 blocks while the job waits
            polls.append(seconds)
            n.set_chain({h: v for h, v in full.chain.items() if h <= 56_805_420 + 10 * len(polls)})

        con = connect(db)
        with client(n.url) as c:
            s = ingest_tron(
                con, c, start=56_805_400, stop=56_805_445, follow=True, poll_seconds=0.5, sleep=sleep
            )
        con.close()
    assert polls == [0.5, 0.5, 0.5] and (s.blocks, s.stored_tip) == (46, 56_805_445)


# -- failures -----------------------------------------------------------------------------------------------


def test_retries_transient_failures(node23: TronNode, tmp_path: Path) -> None:
    node23.fail_next(503, "drop", 429, 503)
    s = run(tmp_path / "s.duckdb", node23.url, start=56_805_490)
    assert (s.retries, s.blocks) == (4, 11)
    node23.fail_next(*[503] * 5)
    with pytest.raises(SourceUnavailable, match="failed 5 times on /wallet/getnowblock, last with HTTP 503"):
        run(tmp_path / "s.duckdb", node23.url)


def test_unreachable_node(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SourceUnavailable) as exc_info:
        run(tmp_path / "s.duckdb", f"http://127.0.0.1:{port}")
    assert exc_info.value.line().startswith(f"cannot reach the node at http://127.0.0.1:{port}")
    assert exc_info.value.fix == UNREACHABLE_FIX


def test_api_key(c23: Chain2023, tmp_path: Path) -> None:
    secret = "0f1e2d3c-key"
    with tron_node(c23.chain, api_key=secret) as n:
        with pytest.raises(SourceUnavailable) as exc_info:
            run(tmp_path / "s.duckdb", n.url, api_key="wrong-key", start=LAST_2023)
        assert "HTTP 401" in exc_info.value.line() and "--api-key" in exc_info.value.line()
        assert "wrong-key" not in exc_info.value.line()
        s = run(tmp_path / "s.duckdb", n.url, api_key=secret, start=LAST_2023)
        assert s.blocks == 1 and n.headers_seen[-1]["TRON-PRO-API-KEY"] == secret


def test_malformed_answer_names_block_and_field(c23: Chain2023, tmp_path: Path) -> None:
    chain = dict(c23.chain)
    blk, infos = chain[56_805_003]
    bad = {**blk, "transactions": [dict(t) for t in blk["transactions"]]}
    bad["transactions"][0]["raw_data"] = {
        **bad["transactions"][0]["raw_data"],
        "contract": [{"type": "TriggerSmartContract", "parameter": {"value": {"owner_address": "41zz"}}}],
    }
    chain[56_805_003] = (bad, infos)
    db = tmp_path / "s.duckdb"
    with tron_node(chain) as n, pytest.raises(CorruptData) as exc_info:
        run(db, n.url, start=56_805_000, batch_size=10)
    line = exc_info.value.line()
    assert "TRON block 56805003: transactions[0].raw_data.contract[0].parameter.value.owner_address" in line
    assert "is not a TRON address" in line and "nothing of heights 56805000..56805009 was stored" in line
    assert query(db, "SELECT count(*) FROM blocks") == [(0,)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.update(blockID="zz" * 32), "blockID is not hex"),
        (lambda b: b.update(blockID="00" * 32), "blockID does not begin with the block number 56804500"),
        (
            lambda b: b["block_header"]["raw_data"].update(timestamp="1701046164000"),
            "timestamp is not an integer",
        ),
        (lambda b: b["block_header"]["raw_data"].update(parentHash="ab"), "parentHash is not 32 bytes"),
    ],
)
def test_decoder_is_strict(c23: Chain2023, change: Callable[[dict[str, Any]], None], message: str) -> None:
    blk = copy.deepcopy(c23.chain[FIRST_2023][0])
    change(blk)
    with pytest.raises(CorruptData, match=message):
        parse_block(blk)


def test_times_are_seconds_from_milliseconds(c23: Chain2023) -> None:
    blk = copy.deepcopy(c23.chain[FIRST_2023][0])
    blk["block_header"]["raw_data"]["timestamp"] = 1_701_046_164_999
    h = parse_header(blk)
    assert (h.time_ms, h.time) == (1_701_046_164_999, 1_701_046_164)


def test_bad_options(node23: TronNode, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="--to 5 is below --from 9"):
        run(tmp_path / "s.duckdb", node23.url, start=9, stop=5)
    with pytest.raises(InvalidInput, match="--batch-size 0"):
        run(tmp_path / "s.duckdb", node23.url, batch_size=0)


# -- the command ---------------------------------------------------------------------------------------


def fundtrail(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from fundtrail.cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


def test_cli_ingests(node23: TronNode, tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    args = ["--db", str(db), "ingest", "tron", "--url", node23.url, "--from", "56805400", "--to", "56805450",
            "--batch-size", "20"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "stored 51 blocks" in result.output and "heights 56805400..56805450" in result.output
    assert query(db, "SELECT count(*), min(height), max(height) FROM blocks") == [
        (51, 56_805_400, 56_805_450)
    ]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    bad = fundtrail("--db", str(db), "ingest", "tron", "--url", "ftp://u:hunter2@host/")
    assert bad.returncode == 2 and bad.stderr.startswith(
        "error: --url 'ftp://u:***@host/' is not an http(s) URL"
    )
    assert len(bad.stderr.strip().splitlines()) == 1 and "hunter2" not in bad.stderr and not db.exists()
    with tron_node({}, api_key="the-right-key") as n:
        denied = fundtrail("--db", str(db), "ingest", "tron", "--url", n.url, "--api-key", "s3cr3t-wrong")
    lines = [line for line in denied.stderr.splitlines() if line.strip()]
    assert denied.returncode == 5 and len(lines) == 1 and "HTTP 401" in lines[0] and "--api-key" in lines[0]
    assert lines[0].startswith("error: the node at http://127.0.0.1:")
    assert "s3cr3t" not in denied.stderr and "Traceback" not in denied.stderr


def test_command_options_are_documented() -> None:
    group: Any = typer.main.get_command(app)
    command = group.commands["ingest"].commands["tron"]
    page = (ROOT / "docs" / "commands" / "ingest-tron.md").read_text()
    options = [o for p in command.params for o in p.opts if o.startswith("--")]
    assert {"--url", "--from", "--to", "--follow", "--batch-size", "--poll-seconds", "--api-key"} <= set(
        options
    )
    assert "fundtrail ingest tron" in page
    for option in options:
        assert f"`{option}" in page, option


def test_decoder_rules_for_receipts() -> None:
    a, b, c = (bytes([n]) * 20 for n in (1, 2, 3))
    ref = (9, bytes(32))
    t1 = transaction(b"\x01" * 32, "TransferContract", {"amount": 5, "owner_address": "41" + a.hex(),
                     "to_address": "41" + b.hex()}, ref, 0, ret=None)  # fmt: skip
    t2 = transaction(b"\x02" * 32, "TriggerSmartContract", {"owner_address": "41" + a.hex(),
                     "contract_address": "41" + c.hex()}, ref, 0)  # fmt: skip
    blk = parse_block(block(10, (10).to_bytes(8, "big") + bytes(24), bytes(32), 0, a, [t1, t2]))
    trc10 = internal_tx(c, b, 0, "call", False, bytes(32))
    trc10["callValueInfo"] = [{"callValue": 9, "tokenId": "1002000"}, {"callValue": 4}]
    rows = block_rows(blk, parse_infos(blk, [info(b"\x02" * 32, 10, 0, fee=7, internal=[trc10])]))
    # no receipt and no ret: status and fee unknown (null), the value recorded as stated
    assert [(t.status, t.fee, t.value) for t in rows.txs] == [(None, None, 5), (True, 7, 0)]
    assert rows.missing_infos == 1
    assert [(r.kind, r.amount) for r in rows.transfers] == [("internal", 4)]  # the TRC-10 entry left out
    with pytest.raises(InfoMismatch, match="is not a transaction of the block"):
        parse_infos(blk, [info(b"\x03" * 32, 10, 0)])
    with pytest.raises(InfoMismatch, match="is about block 11"):
        parse_infos(blk, [info(b"\x02" * 32, 11, 0)])
    t1["raw_data"]["contract"][0]["parameter"]["value"]["amount"] = -5
    with pytest.raises(
        CorruptData, match=r"transactions\[0\].raw_data.contract\[0\].parameter.value.amount is neg"
    ):
        parse_block(block(10, (10).to_bytes(8, "big") + bytes(24), bytes(32), 0, a, [t1, t2]))
