"""Single raw transactions outside any block (``ingest bitcoin-tx``), on real mainnet transactions taken
from the real blocks of ../shared/data: resolution, late resolution, confirmation by a later block, double
spends, strict parsing, and the write path's error handling."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from fundtrail.chains.bitcoin.blockfile import read_block_file
from fundtrail.chains.bitcoin.decoder import Decoded, decode_blocks, decode_transactions
from fundtrail.chains.bitcoin.network import MAINNET
from fundtrail.errors import CorruptData, InvalidInput
from fundtrail.ingest.bitcoin_tx import ingest_raw_transactions
from fundtrail.store import bitcoin_read
from fundtrail.store.bitcoin_loose import write_loose_txs
from fundtrail.store.bitcoin_read import LOOSE_STATUS
from fundtrail.store.bitcoin_write import write_blocks
from fundtrail.store.db import connect
from tests.conftest import BLOCK_514485, FIRST_BLOCKS, table_counts
from tests.test_cli import run

FIRST = read_block_file(FIRST_BLOCKS, MAINNET)
TX_170 = (
    "f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16"  # block 170: spends block 9's coinbase
)
TX_181 = "a16f3ce4dd5deb92d98ef5cf8afeaf0775ebca408f708b2146c4fb42b41e14be"  # block 181: spends TX_170:1
HAL = "1Q2TWHE3GMdB6BZKafqwxXtWAWgFt5Jvm3"
SATOSHI_9 = "12cbQLTFMXRnSzktFkuoG3eHoMeFtpTu3S"  # block 9's coinbase address
SEGWIT_514485 = "2980abb64b0d5100e8ac5973e807a7eb0a731100193ec1d7b9e0d77543085e44"  # position 15


def _blocks(heights: list[int]) -> Decoded:
    return decode_blocks(FIRST.buf, FIRST.starts[heights], FIRST.ends[heights], MAINNET)


def _raw(d: Decoded, txid: str) -> bytes:
    """The serialized bytes of transaction ``txid`` in the decoded blocks, as the decoder delimits it."""
    (k,) = [i for i in range(d.n_tx) if d.txid_hex(i) == txid]
    return d.tx_raw(k)


RAW_170 = _raw(_blocks([170]), TX_170)
RAW_181 = _raw(_blocks([181]), TX_181)


def _store(tmp_path: Path, heights: list[int], name: str = "s.duckdb") -> duckdb.DuckDBPyConnection:
    con = connect(tmp_path / name)
    if heights:
        write_blocks(con, _blocks(heights), "test")
    return con


def _state(con: duckdb.DuckDBPyConnection) -> dict[str, object]:
    """What ingest derives, keyed by content (ids depend on order)."""
    return {
        "txs": sorted(
            con.execute(
                """SELECT hex(t.txid), hex(b.hash), t.position, t.input_value, t.output_value, t.fee
                   FROM transactions t LEFT JOIN blocks b ON b.block_id = t.block_id"""
            ).fetchall(),
            key=repr,
        ),
        "inputs": sorted(
            con.execute(
                """SELECT hex(t.txid), i.n, i.resolved, i.value, hex(a.key), hex(pt.txid), i.witness_items
                   FROM tx_inputs i JOIN transactions t ON t.tx_id = i.tx_id
                   LEFT JOIN addresses a ON a.address_id = i.address_id
                   LEFT JOIN transactions pt ON pt.tx_id = i.prev_tx_id"""
            ).fetchall(),
            key=repr,
        ),
        "outputs": sorted(
            con.execute(
                """SELECT hex(t.txid), o.n, o.value, hex(a.key) FROM tx_outputs o
                   JOIN transactions t ON t.tx_id = o.tx_id
                   LEFT JOIN addresses a ON a.address_id = o.address_id"""
            ).fetchall(),
            key=repr,
        ),
        "unresolved": con.execute("SELECT count(*) FROM unresolved_inputs").fetchall(),
        "addresses": sorted(r[0] for r in con.execute("SELECT hex(key) FROM addresses").fetchall()),
    }


def _tx_id(con: duckdb.DuckDBPyConnection, txid: str) -> list[int]:
    rows = con.execute("SELECT tx_id FROM transactions WHERE txid = from_hex(?)", [txid]).fetchall()
    return [int(r[0]) for r in rows]


def test_loose_tx_resolves_against_the_stored_funding_block(tmp_path: Path) -> None:
    con = _store(tmp_path, [9])
    r = ingest_raw_transactions(con, [RAW_170.hex()], MAINNET)
    (t,) = r.loose
    assert (t.txid, t.stored, t.confirmed, t.inputs, t.unresolved, t.fee, t.conflicts) == (
        TX_170, True, False, 1, 0, 0, []
    )  # fmt: skip
    assert (r.txs, r.unresolved, r.new_addresses) == (1, 0, 1)  # HAL's address is new; block 9's is known
    shown = bitcoin_read.tx(con, MAINNET, TX_170)
    assert (shown["block_hash"], shown["height"], shown["time"]) == (None, None, None)
    assert shown["status"] == LOOSE_STATUS
    (i,) = shown["inputs"]
    assert (i["resolved"], i["value"], i["address"]) == (True, 50 * 10**8, SATOSHI_9)
    assert [(o["address"], o["value"]) for o in shown["outputs"]] == [
        (HAL, 10 * 10**8),
        (SATOSHI_9, 40 * 10**8),
    ]
    assert (shown["fee"], shown["input_value"], shown["output_value"]) == (0, 50 * 10**8, 50 * 10**8)
    assert shown["size"] == len(RAW_170) == 275
    hal = bitcoin_read.address(con, MAINNET, HAL)
    assert (hal["tx_count"], hal["received"], hal["first_seen"]) == (1, 10 * 10**8, None)
    assert hal["unconfirmed"] == {"tx_count": 1, "received": 10 * 10**8, "sent": 0}
    (s,) = bitcoin_read.summary(con)
    assert (s["transactions"], s["unconfirmed_transactions"], s["blocks"]) == (2, 1, 1)

    # the same transaction again changes nothing, from hex or from a binary file
    before = table_counts(con), _state(con)
    binary = tmp_path / "tx170.bin"
    binary.write_bytes(RAW_170)
    again = ingest_raw_transactions(con, [RAW_170.hex(), str(binary)], MAINNET)
    assert [t.status for t in again.loose] == ["already stored (unconfirmed)"]
    assert (again.txs, again.skipped) == (0, 1)
    assert (table_counts(con), _state(con)) == before


def test_unresolved_loose_tx_is_resolved_and_confirmed_by_the_blocks(tmp_path: Path) -> None:
    con = _store(tmp_path, [])
    (t,) = ingest_raw_transactions(con, [RAW_170.hex()], MAINNET).loose
    assert (t.unresolved, t.fee) == (1, None)
    shown = bitcoin_read.tx(con, MAINNET, TX_170)
    assert (shown["inputs"][0]["resolved"], shown["inputs"][0]["value"], shown["fee"]) == (False, None, None)
    (loose_id,) = _tx_id(con, TX_170)

    result = write_blocks(con, _blocks(list(range(200))), "test")
    assert (result.loose_confirmed, result.late_resolved, result.txs) == (1, 1, 205)
    assert _tx_id(con, TX_170) == [loose_id]  # one row, the loose one's id kept
    shown = bitcoin_read.tx(con, MAINNET, TX_170)
    assert (shown["status"], shown["height"], shown["fee"]) == ("confirmed", 170, 0)
    assert shown["block_hash"] == "00000000d1145790a8694403d4063f323d499e655c83426834d4ce2f8dd4a2ee"
    assert shown["inputs"][0]["address"] == SATOSHI_9
    # exactly the store the blocks alone give
    assert _state(con) == _state(_store(tmp_path, list(range(200)), "blocks-only.duckdb"))
    (s,) = bitcoin_read.summary(con)
    assert (s["unconfirmed_transactions"], s["unresolved_inputs"]) == (0, 0)
    # and the raw transaction once more: already stored, confirmed
    (t,) = ingest_raw_transactions(con, [RAW_170.hex()], MAINNET).loose
    assert (t.stored, t.status) == (False, "already stored, confirmed at height 170")


def test_chains_of_loose_txs_and_blocks_spending_them_keep_their_ids(tmp_path: Path) -> None:
    """TX_181 spends TX_170:1. Loose TX_181 first (unresolved), then loose TX_170 (resolves it late); then
    block 181 confirms TX_181 while TX_170 is still loose, and block 170 confirms TX_170 last."""
    con = _store(tmp_path, list(range(170)))
    (t181,) = ingest_raw_transactions(con, [RAW_181.hex()], MAINNET).loose
    assert (t181.unresolved, t181.fee) == (1, None)
    r = ingest_raw_transactions(con, [RAW_170.hex()], MAINNET)
    assert (r.late_resolved, r.loose[0].fee) == (1, 0)
    shown = bitcoin_read.tx(con, MAINNET, TX_181)
    assert shown["inputs"][0]["value"] == 40 * 10**8 and shown["inputs"][0]["address"] == SATOSHI_9
    assert shown["fee"] == 0
    ids = (_tx_id(con, TX_170), _tx_id(con, TX_181))
    # block 181 confirms TX_181, whose input already points at the loose TX_170; then block 170
    write_blocks(con, _blocks([181]), "test")
    assert bitcoin_read.tx(con, MAINNET, TX_170)["status"] == LOOSE_STATUS
    assert bitcoin_read.tx(con, MAINNET, TX_181)["height"] is None  # block 181's parent is not stored yet
    assert bitcoin_read.tx(con, MAINNET, TX_181)["status"] == "confirmed"
    write_blocks(con, _blocks(list(range(170, 200))), "test")
    assert (_tx_id(con, TX_170), _tx_id(con, TX_181)) == ids
    assert bitcoin_read.tx(con, MAINNET, TX_181)["height"] == 181
    assert _state(con) == _state(_store(tmp_path, list(range(200)), "blocks-only.duckdb"))


def test_a_file_of_hex_lines_in_any_order(tmp_path: Path) -> None:
    con = _store(tmp_path, [9])
    f = tmp_path / "txs.hex"
    # the spending transaction first, CRLF, blank lines, spaces inside a line, upper case
    hex181 = RAW_181.hex().upper()
    f.write_text(f"  {hex181[:100]} {hex181[100:]}\r\n\r\n{RAW_170.hex()}\n\n")
    r = ingest_raw_transactions(con, [str(f)], MAINNET)
    assert [(t.txid, t.stored, t.unresolved, t.fee) for t in r.loose] == [
        (TX_181, True, 0, 0),
        (TX_170, True, 0, 0),
    ]
    assert bitcoin_read.tx(con, MAINNET, TX_181)["inputs"][0]["value"] == 40 * 10**8


def test_segwit_loose_tx_confirmed_by_its_block_514485(tmp_path: Path) -> None:
    bf = read_block_file(BLOCK_514485, MAINNET)
    d = decode_blocks(bf.buf, bf.starts, bf.ends, MAINNET)
    raw = _raw(d, SEGWIT_514485)
    con = _store(tmp_path, [])
    (t,) = ingest_raw_transactions(con, [raw.hex()], MAINNET).loose
    assert (t.stored, t.fee) == (True, None)
    loose = bitcoin_read.tx(con, MAINNET, SEGWIT_514485)
    assert loose["size"] == len(raw) and loose["weight"] < 4 * len(raw)  # the witness is discounted
    (loose_id,) = _tx_id(con, SEGWIT_514485)
    assert write_blocks(con, d, "test").loose_confirmed == 1
    assert _tx_id(con, SEGWIT_514485) == [loose_id]
    shown = bitcoin_read.tx(con, MAINNET, SEGWIT_514485)
    assert (shown["height"], shown["status"]) == (514485, "confirmed")
    assert {k: shown[k] for k in ("wtxid", "size", "weight")} == {
        k: loose[k] for k in ("wtxid", "size", "weight")
    }
    blocks_only = connect(tmp_path / "blocks-only.duckdb")
    write_blocks(blocks_only, d, "test")
    assert _state(con) == _state(blocks_only)


def _double_spend_of_170() -> bytes:
    """TX_170 with its first output 1 satoshi smaller: another transaction spending block 9's coinbase
    output (same input, so a double spend; fundtrail checks no signatures)."""
    raw = bytearray(RAW_170)
    d = decode_transactions([RAW_170], MAINNET)
    value_at = int(d.out_script_off[0]) - 1 - 8  # the 8-byte value before the script length byte
    assert int.from_bytes(raw[value_at : value_at + 8], "little") == 10 * 10**8
    raw[value_at : value_at + 8] = (10 * 10**8 - 1).to_bytes(8, "little")
    return bytes(raw)


def test_a_double_spend_of_a_block_tx_is_reported(tmp_path: Path) -> None:
    con = _store(tmp_path, list(range(171)))
    other = _double_spend_of_170()
    (t,) = ingest_raw_transactions(con, [other.hex()], MAINNET).loose
    assert t.stored and t.fee == 1
    (c,) = t.conflicts
    assert (c.n, c.prev_vout, c.txid, c.confirmed, c.height) == (0, 0, TX_170, True, 170)
    shown = bitcoin_read.tx(con, MAINNET, t.txid)
    assert shown["status"].startswith(
        LOOSE_STATUS + "; conflicted: input 0 is spent by confirmed transaction"
    )
    assert shown["conflicts"] == [
        {"input": 0, "spends": f"{c.prev_txid}:0", "txid": TX_170, "confirmed": True, "height": 170}
    ]
    confirmed = bitcoin_read.tx(con, MAINNET, TX_170)
    assert confirmed["status"].startswith("confirmed (a stored raw transaction double-spends")
    assert confirmed["conflicts"][0]["txid"] == t.txid


def test_two_loose_txs_spending_the_same_output_and_the_block_that_decides(tmp_path: Path) -> None:
    con = _store(tmp_path, list(range(170)))
    r = ingest_raw_transactions(con, [_double_spend_of_170().hex(), RAW_170.hex()], MAINNET)
    a, b = r.loose
    assert [c.txid for c in a.conflicts] == [TX_170] and [c.txid for c in b.conflicts] == [a.txid]
    assert not a.conflicts[0].confirmed
    assert "conflicts with unconfirmed transaction" in bitcoin_read.tx(con, MAINNET, a.txid)["status"]
    write_blocks(con, _blocks([170]), "test")  # the block confirms TX_170: the other one is conflicted
    assert (
        "conflicted: input 0 is spent by confirmed transaction"
        in bitcoin_read.tx(con, MAINNET, a.txid)["status"]
    )


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (RAW_170.hex()[:-10], "truncated"),
        (RAW_170.hex() + "00", "bytes left over"),
        (RAW_170.hex() + "0", "odd number of hex digits"),
        (RAW_170.hex()[:50] + "zz" + RAW_170.hex()[52:], "not a hex digit"),
        (RAW_170.hex() + "\n" + RAW_181.hex()[:300], "line 2"),
        ("", "is empty"),
        ("ff" * 100, "does not decode"),
    ],
)
def test_malformed_files_store_nothing(tmp_path: Path, content: str, words: str) -> None:
    con = _store(tmp_path, [9])
    before = table_counts(con)
    f = tmp_path / "tx.txt"
    f.write_text(content)
    with pytest.raises(InvalidInput, match=words) as exc:
        ingest_raw_transactions(con, [str(f)], MAINNET)
    assert "\n" not in str(exc.value) and exc.value.fix
    assert table_counts(con) == before


@pytest.mark.parametrize(
    ("arg", "words"),
    [
        (RAW_170.hex()[:-2], "truncated"),
        ("nonexistent.txt", "neither a file nor hexadecimal"),
        ("abcd", "too short for a transaction"),
        (RAW_170.hex() + "abc", "odd number"),
    ],
)
def test_malformed_arguments(tmp_path: Path, arg: str, words: str) -> None:
    con = _store(tmp_path, [])
    with pytest.raises(InvalidInput, match=words):
        ingest_raw_transactions(con, [arg], MAINNET)
    assert table_counts(con)["transactions"] == 0


def test_a_binary_file_holds_one_tx_and_trailing_bytes_are_refused(tmp_path: Path) -> None:
    con = _store(tmp_path, [9])
    f = tmp_path / "two.bin"
    f.write_bytes(RAW_170 + RAW_181)
    with pytest.raises(InvalidInput, match=r"bytes left over.*one transaction per line"):
        ingest_raw_transactions(con, [str(f)], MAINNET)
    assert table_counts(con)["transactions"] == 1


def test_a_coinbase_is_refused(tmp_path: Path) -> None:
    d = _blocks([9])
    con = _store(tmp_path, [])
    with pytest.raises(InvalidInput, match="coinbase"):
        ingest_raw_transactions(con, [d.tx_raw(0).hex()], MAINNET)
    with pytest.raises(CorruptData, match="coinbase"):  # the library refuses it too
        write_loose_txs(con, decode_transactions([d.tx_raw(0)], MAINNET))
    assert table_counts(con)["transactions"] == 0


def test_a_failing_insert_surfaces_its_own_error_and_stores_nothing(tmp_path: Path) -> None:
    """A failed statement aborts the transaction; the views must be dropped only after the rollback,
    or DuckDB's "transaction is aborted" hides the real error."""
    con = _store(tmp_path, [])
    # a store whose addresses table refuses every row: the first INSERT of a write fails
    con.execute("DROP TABLE addresses")
    con.execute(
        """CREATE TABLE addresses (chain VARCHAR NOT NULL, address_id BIGINT NOT NULL,
                                   key BLOB CHECK (key IS NULL))"""
    )
    threads = con.execute("SELECT current_setting('threads')").fetchall()
    with pytest.raises(duckdb.ConstraintException, match="CHECK constraint"):
        write_blocks(con, _blocks([0, 1, 2]), "test")
    with pytest.raises(duckdb.ConstraintException, match="CHECK constraint"):
        ingest_raw_transactions(con, [RAW_170.hex()], MAINNET)
    assert table_counts(con) == dict.fromkeys(table_counts(con), 0)
    with pytest.raises(duckdb.CatalogException):  # the batch's views are gone
        con.execute("SELECT * FROM new_txs")
    assert con.execute("SELECT current_setting('threads')").fetchall() == threads


def test_cli(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    _store(tmp_path, [9], "cli.duckdb").close()
    r = run("ingest", "bitcoin-tx", RAW_170.hex(), db=db)
    assert r.returncode == 0, r.stderr
    assert f"{TX_170}: stored (unconfirmed)" in r.stdout and "fee 0.00000000 BTC" in r.stdout
    r = run("ingest", "bitcoin-tx", RAW_170.hex(), _double_spend_of_170().hex(), "--json", db=db)
    out = json.loads(r.stdout)
    assert [t["status"] for t in out] == ["already stored (unconfirmed)", "stored (unconfirmed)"]
    assert out[1]["conflicts"][0]["txid"] == TX_170
    shown = json.loads(run("show", "tx", TX_170, "--json", db=db).stdout)
    assert (shown["block_hash"], shown["height"]) == (None, None)
    assert shown["status"].startswith(LOOSE_STATUS)
    bad = run("ingest", "bitcoin-tx", RAW_170.hex()[:-4], db=db)
    lines = bad.stderr.strip().splitlines()
    assert bad.returncode == 2 and len(lines) == 1 and "truncated" in lines[0], bad.stderr
    assert (
        lines[0].startswith("error: the argument: transaction does not decode")
        and "copy it again" in lines[0]
    )
