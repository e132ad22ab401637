"""``ingest bitcoin-rpc`` against a local replay node: real mainnet blocks 0..438, recorded Bitcoin Core
answers (heights 0, 1, 50000-50002) as an oracle, and builder-made regtest chains for reorgs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import typer
from typer.testing import CliRunner

from fundtrail.chains.bitcoin.builder import COIN, ChainBuilder, Key, OutPoint, Tx, TxOut
from fundtrail.chains.bitcoin.network import MAINNET, REGTEST, Network
from fundtrail.cli.main import app
from fundtrail.errors import BlockRejected, InvalidInput, NotFound, SourceUnavailable
from fundtrail.ingest.bitcoin_files import ingest_block_files
from fundtrail.ingest.bitcoin_rpc import UNREACHABLE_FIX, RpcIngestSummary, connect_node, ingest_rpc
from fundtrail.ingest.jsonrpc import JsonRpcClient, parse_url
from fundtrail.ingest.progress import Progress
from fundtrail.store import bitcoin_read
from fundtrail.store.db import connect
from tests.conftest import BTC, FIRST_BLOCKS, ROOT, table_counts
from tests.rpc_replay import ReplayNode, block_hash, blocks_from_file, recorded_blocks, replay_node

ETL = BTC / "bitcoin-etl-rpc" / "bitcoin"
TX170 = "f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16"


@pytest.fixture(scope="module")
def mainnet_blocks() -> list[bytes]:
    return blocks_from_file(FIRST_BLOCKS, MAINNET)


@pytest.fixture
def node(mainnet_blocks: list[bytes]) -> Iterator[ReplayNode]:
    with replay_node(mainnet_blocks) as n:
        yield n


def client(url: str, cookie: Path | None = None, default_port: int = 8332) -> JsonRpcClient:
    """A client as the CLI makes it, with millisecond backoff so retry tests stay fast."""
    endpoint = parse_url(url, default_port, cookie)
    return JsonRpcClient(endpoint, backoff=0.001, max_backoff=0.002, unreachable_fix=UNREACHABLE_FIX)


def run(db: Path, url: str, network: Network = MAINNET, cookie: Path | None = None,
        **kwargs: Any) -> RpcIngestSummary:  # fmt: skip
    con = connect(db)
    try:
        with client(url, cookie) as c:
            return ingest_rpc(con, c, network, **kwargs)
    finally:
        con.close()


def query(db: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    con = connect(db)
    try:
        rows: list[tuple[Any, ...]] = con.execute(sql, params or []).fetchall()
        return rows
    finally:
        con.close()


def snapshot(con: duckdb.DuckDBPyConnection, chain: str) -> dict[str, list[tuple[Any, ...]]]:
    """The store's content for a chain, independent of internal ids and ingest order."""
    t = "JOIN transactions t ON t.chain = x.chain AND t.tx_id = x.tx_id"
    a = "LEFT JOIN addresses a ON a.chain = x.chain AND a.address_id = x.address_id"
    sqls = {
        "blocks": "SELECT height, hex(hash), hex(prev_hash), tx_count, size, weight, witness_ok "
        "FROM blocks x WHERE chain = ? ORDER BY height",
        "txs": "SELECT hex(x.txid), b.height, x.position, x.input_value, x.output_value, x.fee, x.size "
        "FROM transactions x JOIN blocks b ON b.block_id = x.block_id WHERE x.chain = ? ORDER BY 2, 3",
        "inputs": f"SELECT hex(t.txid), x.n, hex(x.prev_txid), x.prev_vout, x.value, hex(a.key), x.resolved, "
        f"hex(p.txid) FROM tx_inputs x {t} {a} LEFT JOIN transactions p ON p.tx_id = x.prev_tx_id "
        "WHERE x.chain = ? ORDER BY 1, 2",
        "outputs": f"SELECT hex(t.txid), x.n, x.value, x.script_type, hex(a.key) FROM tx_outputs x {t} {a} "
        "WHERE x.chain = ? ORDER BY 1, 2",
        "unresolved": f"SELECT hex(t.txid), x.n, hex(x.prev_txid), x.prev_vout FROM unresolved_inputs x {t} "
        "WHERE x.chain = ? ORDER BY 1, 2",
    }
    return {name: con.execute(sql, [chain]).fetchall() for name, sql in sqls.items()}


def snap(db: Path, chain: str) -> dict[str, list[tuple[Any, ...]]]:
    con = connect(db)
    try:
        return snapshot(con, chain)
    finally:
        con.close()


# -- real mainnet blocks 0..438 ------------------------------------------------------------------------


def test_ingests_mainnet_0_to_438_like_the_block_files(
    node: ReplayNode, mainnet_blocks: list[bytes], tmp_path: Path
) -> None:
    db = tmp_path / "rpc.duckdb"
    events: list[Progress] = []
    s = run(db, node.url, batch_size=50, progress=events.append)
    assert (s.blocks, s.fetched, s.skipped, s.stored_tip, s.node_tip, s.reorgs) == (439, 439, 0, 438, 438, 0)
    rows = query(db, "SELECT height, hex(hash), height_source, source FROM blocks ORDER BY height")
    assert [(r[0], r[1].lower()) for r in rows] == [(h, block_hash(b)) for h, b in enumerate(mainnet_blocks)]
    assert {(r[2], r[3]) for r in rows} == {("rpc", "rpc:127.0.0.1")}
    assert events[-1].done == 438 and events[-1].total == 438 and events[-1].blocks == 439

    con = connect(db)
    t = bitcoin_read.tx(con, MAINNET, TX170)
    con.close()
    assert t["height"] == 170 and t["fee"] == 0 and t["input_value"] == 5_000_000_000
    assert [(i["value"], i["address"], i["resolved"]) for i in t["inputs"]] == [
        (5_000_000_000, "12cbQLTFMXRnSzktFkuoG3eHoMeFtpTu3S", True)
    ]
    assert [o["value"] for o in t["outputs"]] == [1_000_000_000, 4_000_000_000]

    # batching: block fetches travel as JSON arrays of at most 10 calls, 50 hashes per batch
    for body in node.bodies:
        if isinstance(body, dict):
            assert body["method"] in ("getblockcount", "getblockhash")
        else:
            assert len(body) <= 51 and len({c["method"] for c in body}) == 1
    getblock_requests = [b for b in node.bodies if isinstance(b, list) and b[0]["method"] == "getblock"]
    assert sum(map(len, getblock_requests)) == node.calls["getblock"] == 439
    assert len(getblock_requests) == 8 * 5 + 4 and all(len(b) <= 10 for b in getblock_requests)
    assert all(c["params"][1] == 0 for b in getblock_requests for c in b)

    files_db = tmp_path / "files.duckdb"
    con = connect(files_db)
    ingest_block_files(con, [FIRST_BLOCKS], MAINNET)
    con.close()
    assert snap(db, "bitcoin") == snap(files_db, "bitcoin")


def test_resumes_after_interruption_without_refetching(node: ReplayNode, tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"

    def ctrl_c_after_100_blocks(ev: Progress) -> None:
        if ev.done >= 99:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(db, node.url, batch_size=50, progress=ctrl_c_after_100_blocks)
    assert query(db, "SELECT count(*), max(height) FROM blocks") == [(100, 99)]

    node.reset_counts()
    s = run(db, node.url, stop=200, batch_size=50)
    assert (s.start_height, s.stored_tip, s.fetched, s.blocks) == (100, 200, 101, 101)
    assert node.calls["getblock"] == 101

    node.reset_counts()
    s = run(db, node.url, batch_size=50)
    assert (s.start_height, s.stored_tip, s.fetched, s.blocks) == (201, 438, 238, 238)
    assert node.calls["getblock"] == 238
    assert query(db, "SELECT count(*), count(DISTINCT height), max(height) FROM blocks") == [(439, 439, 438)]


def test_second_run_changes_nothing_and_fetches_nothing(node: ReplayNode, tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    run(db, node.url, batch_size=100)
    con = connect(db)
    before, snap_before = table_counts(con), snapshot(con, "bitcoin")
    con.close()
    node.reset_counts()
    again = run(db, node.url, start=0, batch_size=100)
    assert (again.blocks, again.skipped, again.fetched) == (0, 439, 0)
    resumed = run(db, node.url)
    assert (resumed.start_height, resumed.blocks, resumed.fetched) == (439, 0, 0)
    assert node.calls["getblock"] == 0
    con = connect(db)
    assert table_counts(con) == before and before["blocks"] == 439
    assert snapshot(con, "bitcoin") == snap_before
    con.close()


# -- failures ------------------------------------------------------------------------------------------


def test_retries_transient_failures(node: ReplayNode, tmp_path: Path) -> None:
    node.fail_next(503, "drop", "warmup", 502)
    s = run(tmp_path / "s.duckdb", node.url, stop=20)
    assert (s.blocks, s.retries) == (21, 4)
    assert node.posts == s.requests + 4


def test_gives_up_after_bounded_retries(node: ReplayNode, tmp_path: Path) -> None:
    node.fail_next(*[503] * 5)
    db = tmp_path / "s.duckdb"
    with pytest.raises(SourceUnavailable, match=r"failed 5 times, last with HTTP 503") as e:
        run(db, node.url)
    assert node.posts == 5 and node.base_url in e.value.line()
    assert query(db, "SELECT count(*) FROM blocks") == [(0,)]


def test_wrong_credentials_fail_at_once_without_the_password(node: ReplayNode, tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with pytest.raises(SourceUnavailable) as e:
        run(db, f"http://rpcuser:wrong-horse@127.0.0.1:{node.port}")
    line = e.value.line()
    assert f"the node at http://127.0.0.1:{node.port} refused the credentials (HTTP 401)" in line
    assert "--url" in line and "--rpc-cookie" in line and "wrong-horse" not in line
    assert node.unauthorized == 1 and node.posts == 1  # never retried
    assert query(db, "SELECT count(*) FROM blocks") == [(0,)]


def test_unreachable_node(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SourceUnavailable) as e:
        run(tmp_path / "s.duckdb", f"http://u:topsecret@127.0.0.1:{port}")
    line = e.value.line()
    assert line.startswith(f"cannot reach the node at http://127.0.0.1:{port}: ")
    assert "(5 tries)" in line and line.endswith("check --url and that bitcoind runs with -server")
    assert "topsecret" not in line


@pytest.mark.parametrize(
    "url",
    ["localhost:8332", "ftp://u:hunter2@host:21", "http://", "http://u:hunter2@host:notaport",
     "http://u:hunter2@host:99999", "http://host:8332/?wallet=x", "not a url"],
)  # fmt: skip
def test_malformed_url_is_invalid_input(url: str) -> None:
    with pytest.raises(InvalidInput) as e:
        connect_node(url, MAINNET)
    assert "--url" in e.value.line() and "hunter2" not in e.value.line()


def test_url_defaults_and_display() -> None:
    assert parse_url("http://u:p@node", 18443).display == "http://node:18443"
    assert parse_url("https://u:p%40ss@[::1]:8332/wallet/w").display == "https://[::1]:8332/wallet/w"
    assert parse_url("https://u:p%40ss@[::1]:8332/wallet/w").auth == ("u", "p@ss")
    assert "p@ss" not in repr(parse_url("https://u:p%40ss@[::1]:8332"))
    assert connect_node("http://u:p@node", REGTEST).endpoint.port == 18443


def test_cookie_file_and_its_rotation(mainnet_blocks: list[bytes], tmp_path: Path) -> None:
    cookie = tmp_path / ".cookie"
    cookie.write_text("__cookie__:first")
    with replay_node(mainnet_blocks[:11], user="__cookie__", password="first") as n:
        db = tmp_path / "s.duckdb"
        assert run(db, n.base_url, cookie=cookie, stop=5).blocks == 6
        n.password = "second"  # the node restarted and wrote a new cookie
        cookie.write_text("__cookie__:second\n")
        assert run(db, n.base_url, cookie=cookie).blocks == 5
    with pytest.raises(InvalidInput, match="given twice"):
        parse_url("http://u:p@h:1", 8332, cookie)
    with pytest.raises(InvalidInput, match="cannot read the cookie file"):
        parse_url("http://h:1", 8332, tmp_path / "missing")


def test_wrong_network_is_refused(node: ReplayNode, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"is on mainnet .*: pass --network mainnet"):
        run(tmp_path / "s.duckdb", node.url, network=REGTEST)


def test_bad_block_rejected_and_nothing_of_its_batch_stored(
    node: ReplayNode, mainnet_blocks: list[bytes], tmp_path: Path
) -> None:
    good = mainnet_blocks[120]
    node.tamper(120, good[:-1] + bytes([good[-1] ^ 1]))  # last tx's locktime: the merkle root breaks
    db = tmp_path / "s.duckdb"
    with pytest.raises(BlockRejected) as e:
        run(db, node.url, batch_size=50)
    assert e.value.block_hash == block_hash(good)
    assert "height 120" in e.value.line() and "merkle root" in e.value.line()
    assert "nothing of heights 100..149 was stored" in e.value.line()
    assert query(db, "SELECT count(*), max(height) FROM blocks") == [(100, 99)]
    node.tamper(120, good)
    assert run(db, node.url, batch_size=50).blocks == 339


# -- recorded Bitcoin Core answers as an oracle --------------------------------------------------------


def test_recorded_blocks_rebuilt_from_getblock_2_ingest_with_their_recorded_hashes(tmp_path: Path) -> None:
    dirs = ["block_0", "block_1", "block_without_transactions", "block_with_transactions"]
    recorded = recorded_blocks([ETL / d for d in dirs])
    assert sorted(recorded) == [0, 1, 50000, 50001, 50002]
    db = tmp_path / "s.duckdb"
    with replay_node({h: raw for h, (raw, _) in recorded.items()}) as n:
        assert run(db, n.url, stop=1).blocks == 2
        assert run(db, n.url, start=50000).blocks == 3
    con = connect(db)
    for height, (_, answer) in recorded.items():
        b = bitcoin_read.block(con, MAINNET, str(height))
        assert (b["hash"], b["tx_count"], b["size"], b["weight"], b["merkle_root"], b["nonce"]) == (
            answer["hash"], answer["nTx"], answer["size"], answer["weight"], answer["merkleroot"],
            answer["nonce"],
        )  # fmt: skip
        txids = con.execute(
            "SELECT hex(t.txid) FROM transactions t JOIN blocks b ON b.block_id = t.block_id "
            "WHERE b.height = ? ORDER BY t.position",
            [height],
        ).fetchall()
        assert [r[0].lower() for r in txids] == [t["txid"] for t in answer["tx"]]
    for line in (ETL / "block_with_transactions" / "expected_transactions.json").read_text().splitlines():
        expected = json.loads(line)
        t = bitcoin_read.tx(con, MAINNET, expected["hash"])
        assert [(o["value"], o["address"]) for o in t["outputs"]] == [
            (o["value"], o["addresses"][0]) for o in expected["outputs"]
        ]
        if not expected["is_coinbase"]:  # the funding blocks are not stored: unknown, not zero
            assert [i["prev_txid"] for i in t["inputs"]] == [
                i["spent_transaction_hash"] for i in expected["inputs"]
            ]
            assert t["fee"] is None and all(i["value"] is None for i in t["inputs"])
    assert con.execute("SELECT count(*) FROM unresolved_inputs").fetchall() == [(3,)]
    con.close()


# -- reorgs on builder-made regtest chains -------------------------------------------------------------

ALICE, BOB, CAROL, DAVE, ERIN, FRANK = (Key(n) for n in ("alice", "bob", "carol", "dave", "erin", "frank"))


def cb(chain: ChainBuilder, height: int) -> OutPoint:
    return chain.blocks[height].txs[0].outpoint(0)


def fork_chains(fork_length: int) -> tuple[ChainBuilder, ChainBuilder, list[Tx]]:
    """Chain A: heights 0..12 with spends; chain B: A up to height 7, then ``fork_length`` other blocks.
    Returns A, B and the transactions only A holds."""
    a = ChainBuilder()
    for miner in (ALICE, BOB, CAROL, DAVE):  # 1..4: coinbases to four people
        a.add_block(miner=miner)
    t5 = a.spend([(cb(a, 1), ALICE)], [TxOut(10 * COIN, BOB.p2wpkh()), TxOut(39 * COIN, ALICE.p2pkh())])
    a.add_block([t5])
    a.add_block()
    t7 = a.spend([(t5.outpoint(0), BOB)], [TxOut(9 * COIN, CAROL.p2wpkh())])  # a segwit spend
    a.add_block([t7])
    b = a.fork(7)
    a8 = a.spend([(cb(a, 2), BOB)], [TxOut(20 * COIN, ERIN.p2pkh()), TxOut(29 * COIN, BOB.p2wpkh())])
    a.add_block([a8])
    a9 = a.spend([(a8.outpoint(1), BOB), (t7.outpoint(0), CAROL)], [TxOut(37 * COIN, DAVE.p2wpkh())])
    a.add_block([a9])
    a.add_block()
    a.add_block()
    a12 = a.spend([(cb(a, 3), CAROL)], [TxOut(49 * COIN, ERIN.p2wpkh())])
    a.add_block([a12])
    b.add_block(miner=FRANK)  # 8': another coinbase, another block
    b9 = b.spend([(cb(b, 2), BOB)], [TxOut(45 * COIN, FRANK.p2wpkh())])  # double-spends a8's input
    b.add_block([b9])
    b.add_block()
    b11 = b.spend([(cb(b, 4), DAVE), (t5.outpoint(1), ALICE)], [TxOut(88 * COIN, FRANK.p2pkh())])
    b.add_block([b11])
    b12 = b.spend([(b9.outpoint(0), FRANK)], [TxOut(44 * COIN, CAROL.p2pkh())])
    b.add_block([b12])
    while b.height < 14:
        b.add_block()
    b.blocks = b.blocks[: 8 + fork_length]
    return a, b, [a8, a9, a12]


@pytest.mark.parametrize(("start", "fork_length"), [(None, 7), (3, 7), (None, 2)])
def test_reorg_rolls_back_to_the_fork_and_equals_a_fresh_ingest(
    start: int | None, fork_length: int, tmp_path: Path
) -> None:
    a, b, a_only = fork_chains(fork_length)
    db, fresh = tmp_path / "s.duckdb", tmp_path / "fresh.duckdb"
    with replay_node(a.raw_blocks()) as n:
        s = run(db, n.url, REGTEST, start=start, batch_size=4)
        assert (s.blocks, s.stored_tip) == (13 - (start or 0), 12)
        con = connect(db)
        a8 = bitcoin_read.tx(con, REGTEST, a_only[0].txid.hex())  # spends the coinbase of block 2
        con.close()
        assert a8["fee"] == (None if start else 1 * COIN)
        n.set_chain(b.raw_blocks())
        n.reset_counts()
        events: list[Progress] = []
        s = run(db, n.url, REGTEST, batch_size=4, progress=events.append)
        assert (s.reorgs, s.rolled_back, s.fetched, s.stored_tip) == (1, 5, fork_length, 7 + fork_length)
        assert any("reorg: rolled back 5 blocks above height 7" in e.note for e in events)
        assert n.calls["getblock"] == fork_length  # blocks 0..7 are not fetched again
        run(fresh, n.url, REGTEST, start=start, batch_size=4)
    after, expected = snap(db, REGTEST.chain), snap(fresh, REGTEST.chain)
    assert after == expected
    assert [r[1].lower() for r in after["blocks"]] == [blk.hash.hex() for blk in b.blocks[start or 0 :]]
    con = connect(db)
    for tx in a_only:
        with pytest.raises(NotFound):
            bitcoin_read.tx(con, REGTEST, tx.txid.hex())
    if fork_length == 7:
        t = bitcoin_read.tx(con, REGTEST, b.blocks[11].txs[1].txid.hex())  # spends pre-fork outputs
        assert [i["value"] for i in t["inputs"]] == [50 * COIN, 39 * COIN] and t["fee"] == 1 * COIN
    unresolved = {(r[2].lower(), r[3]) for r in after["unresolved"]}
    if start:  # spends of coinbases 1 and 2 stay unknown, the rolled-back a8's is gone
        assert unresolved == {(cb(b, 1).txid.hex(), 0), (cb(b, 2).txid.hex(), 0)}
    else:
        assert unresolved == set()
    con.close()


def test_follow_polls_for_new_blocks_and_follows_a_reorg(tmp_path: Path) -> None:
    a, b, _ = fork_chains(7)
    db, fresh = tmp_path / "s.duckdb", tmp_path / "fresh.duckdb"
    with replay_node(a.raw_blocks()[:10]) as n:
        steps: list[Callable[[], None]] = [
            lambda: n.set_chain(a.raw_blocks()),  # two new blocks
            lambda: n.set_chain(b.raw_blocks()),  # a reorg
        ]
        polls: list[float] = []

        def poll(seconds: float) -> None:
            polls.append(seconds)
            if not steps:
                raise KeyboardInterrupt
            steps.pop(0)()

        events: list[Progress] = []
        with pytest.raises(KeyboardInterrupt):
            run(db, n.url, REGTEST, follow=True, poll_seconds=0.25, sleep=poll, progress=events.append)
        assert polls == [0.25, 0.25, 0.25]
        assert [e.done for e in events if e.note == "waiting for new blocks"] == [9, 12, 14]
        run(fresh, n.url, REGTEST)
    assert snap(db, REGTEST.chain) == snap(fresh, REGTEST.chain)


# -- the command ---------------------------------------------------------------------------------------


def fundtrail(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from fundtrail.cli.main import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


def test_cli_ingests(node: ReplayNode, tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    args = ["--db", str(db), "ingest", "bitcoin-rpc", "--url", node.url, "--to", "60", "--batch-size", "25"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "stored 61 blocks" in result.output and node.password not in result.output
    assert query(db, "SELECT count(*), max(height) FROM blocks") == [(61, 60)]


def test_cli_errors_are_one_line(node: ReplayNode, tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    bad = fundtrail("--db", str(db), "ingest", "bitcoin-rpc", "--url", "http://u:hunter2@host:notaport")
    assert bad.returncode == 2 and bad.stderr.startswith("error: --url 'http://u:***@host:notaport'")
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
    assert "hunter2" not in bad.stderr and not db.exists()
    denied = fundtrail(
        "--db", str(db), "ingest", "bitcoin-rpc", "--url", f"http://u:nope@127.0.0.1:{node.port}"
    )
    assert denied.returncode == 5 and "HTTP 401" in denied.stderr and "nope" not in denied.stderr
    lines = [line for line in denied.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: the node at") and "Traceback" not in denied.stderr


def test_command_options_are_documented() -> None:
    group: Any = typer.main.get_command(app)
    command = group.commands["ingest"].commands["bitcoin-rpc"]
    page = (ROOT / "docs" / "commands" / "ingest-bitcoin-rpc.md").read_text()
    options = [o for p in command.params for o in p.opts if o.startswith("--")]
    assert {"--url", "--from", "--to", "--follow", "--network", "--batch-size", "--poll-seconds"} <= set(
        options
    )
    for option in options:
        assert f"`{option}" in page, option


def test_reorg_between_batches_of_one_run(tmp_path: Path) -> None:
    a, b, _ = fork_chains(7)
    db, fresh = tmp_path / "s.duckdb", tmp_path / "fresh.duckdb"
    with replay_node(a.raw_blocks()) as n:

        def switch_after_height_11(ev: Progress) -> None:
            if ev.done == 11 and not ev.note:
                n.set_chain(b.raw_blocks())

        s = run(db, n.url, REGTEST, batch_size=4, progress=switch_after_height_11)
        assert (s.reorgs, s.rolled_back, s.stored_tip, s.node_tip) == (1, 4, 14, 14)
        assert s.fetched == 12 + 7  # 0..11 of chain A, then 8'..14'
        run(fresh, n.url, REGTEST)
    assert snap(db, REGTEST.chain) == snap(fresh, REGTEST.chain)
