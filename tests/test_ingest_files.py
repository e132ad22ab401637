"""Ingesting real block files: input resolution, idempotence, order independence, atomicity, bad input."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from fundtrail.chains.bitcoin.blockfile import BlockFile, read_block_file
from fundtrail.chains.bitcoin.decoder import decode_blocks
from fundtrail.chains.bitcoin.network import MAINNET
from fundtrail.errors import BlockRejected, CorruptData, InvalidInput
from fundtrail.ingest.bitcoin_files import ingest_block_files
from fundtrail.store import bitcoin_read
from fundtrail.store.bitcoin_write import write_blocks
from fundtrail.store.db import connect
from tests.conftest import FIRST_BLOCKS, MAINNET_SINGLE, TESTNET_SINGLE, table_counts

SPEND_170 = "f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16"
FIRST = read_block_file(FIRST_BLOCKS, MAINNET)


def _write_subset(con: duckdb.DuckDBPyConnection, bf: BlockFile, idx: list[int]) -> None:
    d = decode_blocks(bf.buf, bf.starts[idx], bf.ends[idx], MAINNET)
    write_blocks(con, d, "test")


def _state(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """Everything ingest derives, keyed by content (not by ids, which depend on order)."""
    return {
        "blocks": sorted(
            con.execute("SELECT hex(hash), height, tx_count FROM blocks").fetchall(), key=lambda r: r[0]
        ),
        "txs": sorted(
            con.execute("SELECT hex(txid), input_value, output_value, fee FROM transactions").fetchall()
        ),
        "inputs": sorted(
            con.execute(
                """SELECT hex(t.txid), i.n, i.resolved, i.value, hex(a.key), hex(pt.txid)
                   FROM tx_inputs i JOIN transactions t ON t.tx_id = i.tx_id
                   LEFT JOIN addresses a ON a.address_id = i.address_id
                   LEFT JOIN transactions pt ON pt.tx_id = i.prev_tx_id"""
            ).fetchall(),
            key=repr,
        ),
        "unresolved": con.execute("SELECT count(*) FROM unresolved_inputs").fetchall(),
        "addresses": sorted(r[0] for r in con.execute("SELECT hex(key) FROM addresses").fetchall()),
    }


def test_real_store_resolves_every_input_of_blocks_0_to_438(real_con: duckdb.DuckDBPyConnection) -> None:
    unresolved_early = real_con.execute(
        """SELECT count(*) FROM tx_inputs i JOIN transactions t ON t.tx_id = i.tx_id
           JOIN blocks b ON b.block_id = t.block_id WHERE b.height <= 438 AND NOT i.resolved"""
    ).fetchall()[0][0]
    assert unresolved_early == 0
    t = bitcoin_read.tx(real_con, MAINNET, SPEND_170)
    assert t["height"] == 170
    (i,) = t["inputs"]
    assert i["resolved"] is True
    assert i["value"] == 50 * 10**8
    assert i["address"] == "12cbQLTFMXRnSzktFkuoG3eHoMeFtpTu3S"
    assert [(o["address"], o["value"]) for o in t["outputs"]] == [
        ("1Q2TWHE3GMdB6BZKafqwxXtWAWgFt5Jvm3", 10 * 10**8),
        ("12cbQLTFMXRnSzktFkuoG3eHoMeFtpTu3S", 40 * 10**8),
    ]
    assert t["fee"] == 0
    # every height of 0..438 present once, linked by prev-hash
    heights = [
        r[0] for r in real_con.execute("SELECT height FROM blocks WHERE height <= 438 ORDER BY 1").fetchall()
    ]
    assert heights == list(range(439))


def test_unresolved_then_resolved_when_the_funding_block_arrives(tmp_path: Path) -> None:
    con = connect(tmp_path / "s.duckdb")
    _write_subset(con, FIRST, [170])
    t = bitcoin_read.tx(con, MAINNET, SPEND_170)
    (i,) = t["inputs"]
    assert (i["resolved"], i["value"], i["address"], t["fee"], t["input_value"]) == (
        False,
        None,
        None,
        None,
        None,
    )
    assert t["height"] is None  # no parent stored, v1 block: nothing tells its height
    _write_subset(con, FIRST, [9])  # the coinbase it spends
    t = bitcoin_read.tx(con, MAINNET, SPEND_170)
    (i,) = t["inputs"]
    assert (i["resolved"], i["value"], i["address"], t["fee"]) == (
        True,
        50 * 10**8,
        "12cbQLTFMXRnSzktFkuoG3eHoMeFtpTu3S",
        0,
    )
    assert con.execute("SELECT count(*) FROM unresolved_inputs").fetchall()[0][0] == 0


def test_same_files_twice_change_nothing(tmp_path: Path) -> None:
    con = connect(tmp_path / "s.duckdb")
    first = ingest_block_files(con, [FIRST_BLOCKS, MAINNET_SINGLE[0]], MAINNET)
    before = table_counts(con), _state(con)
    again = ingest_block_files(con, [FIRST_BLOCKS, MAINNET_SINGLE[0]], MAINNET)
    assert (first.blocks, again.blocks, again.skipped) == (440, 0, 440)
    assert (table_counts(con), _state(con)) == before


@pytest.fixture(scope="module")
def full_state(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    con = connect(tmp_path_factory.mktemp("full") / "s.duckdb")
    _write_subset(con, FIRST, list(range(439)))
    return _state(con)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=hs.permutations(range(439)), cuts=hs.lists(hs.integers(1, 438), max_size=5))
def test_incremental_in_any_order_equals_full(
    tmp_path_factory: pytest.TempPathFactory, full_state: dict[str, object], order: list[int], cuts: list[int]
) -> None:
    """Blocks 0..438 ingested in random order and random batches give the store a single full ingest gives."""
    con = connect(tmp_path_factory.mktemp("inc") / "s.duckdb")
    bounds = [0, *sorted(set(cuts)), 439]
    for a, b in itertools.pairwise(bounds):
        _write_subset(con, FIRST, order[a:b])
    assert _state(con) == full_state


def _corrupt_copy(tmp_path: Path, src: Path, offset: int) -> Path:
    dst = tmp_path / src.name
    raw = bytearray(src.read_bytes())
    raw[offset] ^= 0x01
    dst.write_bytes(bytes(raw))
    return dst


def test_bad_merkle_root_rejects_the_block_and_stores_nothing(tmp_path: Path) -> None:
    con = connect(tmp_path / "s.duckdb")
    ingest_block_files(con, [MAINNET_SINGLE[0]], MAINNET)
    before = table_counts(con)
    # a byte inside an input's signature script of block 227835: the structure stays, the txid changes
    bf = read_block_file(MAINNET_SINGLE[1], MAINNET)
    d = decode_blocks(bf.buf, bf.starts, bf.ends, MAINNET)
    bad = _corrupt_copy(tmp_path, MAINNET_SINGLE[1], int(d.in_script_off[20]) + 10)
    with pytest.raises(BlockRejected) as exc:
        ingest_block_files(con, [bad], MAINNET)
    assert "00000000000001aa077d" in str(exc.value)  # names the block
    assert "merkle root" in str(exc.value) and "\n" not in str(exc.value)
    assert table_counts(con) == before


def test_a_bad_block_in_a_batch_stores_nothing_of_the_batch(tmp_path: Path) -> None:
    con = connect(tmp_path / "s.duckdb")
    bad = _corrupt_copy(tmp_path, MAINNET_SINGLE[2], MAINNET_SINGLE[2].stat().st_size - 30)
    with pytest.raises(BlockRejected):
        ingest_block_files(con, [FIRST_BLOCKS, bad], MAINNET)
    assert table_counts(con)["blocks"] == 0


def test_truncated_and_garbage_files(tmp_path: Path) -> None:
    con = connect(tmp_path / "s.duckdb")
    raw = FIRST_BLOCKS.read_bytes()
    cut = tmp_path / "blk00000.dat"
    cut.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(CorruptData, match="truncated"):
        ingest_block_files(con, [cut], MAINNET)
    single = tmp_path / "block.dat"
    single.write_bytes(MAINNET_SINGLE[3].read_bytes()[:-7])
    with pytest.raises(BlockRejected, match="truncated"):
        ingest_block_files(con, [single], MAINNET)
    bad_magic = tmp_path / "blk00001.dat"
    bad_magic.write_bytes(raw[:293] + b"\xde\xad\xbe\xef" + raw[297:])  # the second block's magic
    with pytest.raises(CorruptData, match="wrong network magic"):
        ingest_block_files(con, [bad_magic], MAINNET)
    with pytest.raises(InvalidInput, match="cannot read"):
        ingest_block_files(con, [tmp_path / "missing.dat"], MAINNET)
    assert table_counts(con)["blocks"] == 0


def test_testnet_blk_file_needs_network_flag(tmp_path: Path) -> None:
    con = connect(tmp_path / "s.duckdb")
    blk = tmp_path / "blk00000.dat"
    body = TESTNET_SINGLE[0].read_bytes()
    blk.write_bytes(bytes.fromhex("0b110907") + len(body).to_bytes(4, "little") + body)
    with pytest.raises(InvalidInput, match="--network testnet"):
        ingest_block_files(con, [blk], MAINNET)


def test_xor_obfuscated_blk_file(tmp_path: Path) -> None:
    key = bytes.fromhex("3a9f0c5e71d2b48e")
    raw = np.frombuffer(FIRST_BLOCKS.read_bytes(), np.uint8)
    blk = tmp_path / "blk00000.dat"
    blk.write_bytes((raw ^ np.resize(np.frombuffer(key, np.uint8), raw.shape[0])).tobytes())
    con = connect(tmp_path / "s.duckdb")
    with pytest.raises(InvalidInput, match="--xor-key"):
        ingest_block_files(con, [blk], MAINNET)
    summary = ingest_block_files(con, [blk], MAINNET, xor_key=key)
    assert summary.blocks == 439 and summary.unresolved == 0


def test_hex_and_binary_forms_give_the_same_block(tmp_path: Path) -> None:
    hex_file = tmp_path / "block.hex"
    hex_file.write_text(MAINNET_SINGLE[0].read_bytes().hex() + "\n")
    shutil.copy(MAINNET_SINGLE[0], tmp_path / "block.bin")
    a = connect(tmp_path / "a.duckdb")
    b = connect(tmp_path / "b.duckdb")
    ingest_block_files(a, [hex_file], MAINNET)
    ingest_block_files(b, [tmp_path / "block.bin"], MAINNET)
    assert _state(a) == _state(b)
