"""ethereum-etl ingest on the real fixtures: every amount equals the fixtures' own numbers."""

from __future__ import annotations

import base64
import csv
import json
from pathlib import Path

import duckdb
import pytest

from fundtrail.chains.evm.logs import TRANSFER_TOPIC_HEX
from fundtrail.chains.registry import chain
from fundtrail.errors import CorruptData, InvalidInput
from fundtrail.ingest.ethereum_etl import ingest_ethereum_etl
from fundtrail.store import account_read
from fundtrail.store.db import connect
from tests.conftest import DATA, table_counts

ETL = DATA / "ethereum-etl"
STREAM = ETL / "test_stream" / "blocks_17173049_17173050"
BLOCKS_483920 = ETL / "test_export_blocks_job" / "block_with_logs"
RECEIPTS_483920 = ETL / "test_export_receipts_job" / "receipts_with_logs"
GS = DATA / "graphsense-lib" / "eth_tokens_block15000000"
ETH = chain("ethereum")


def jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tokens(con: duckdb.DuckDBPyConnection) -> set[tuple[str, int, str, str, str, int]]:
    rows = con.execute(
        """SELECT lower(hex(t.tx_hash)), t.log_index, lower(hex(s.contract)), lower(hex(f.key)),
                  lower(hex(r.key)), t.amount::VARCHAR
           FROM transfers t JOIN assets s USING (asset_id) JOIN addresses f ON f.address_id = t.from_id
           JOIN addresses r ON r.address_id = t.to_id WHERE t.kind = 'token'"""
    ).fetchall()
    return {(h, i, c, f, r, int(a)) for h, i, c, f, r, a in rows}


@pytest.fixture(scope="module")
def stream(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    con = connect(tmp_path_factory.mktemp("etl") / "s.duckdb")
    ingest_ethereum_etl(
        con,
        "ethereum",
        STREAM / "expected_blocks.json",
        STREAM / "expected_transactions.json",
        logs=STREAM / "expected_logs.json",
    )
    return con


def test_transactions_values_fees_status_match_the_fixture(stream: duckdb.DuckDBPyConnection) -> None:
    expected = jsonl(STREAM / "expected_transactions.json")
    assert len(expected) == 298
    for t in expected:
        got = account_read.tx(stream, ETH, str(t["hash"]))
        assert got["value"] == t["value"]
        assert got["fee"] == int(str(t["receipt_gas_used"])) * int(str(t["receipt_effective_gas_price"]))
        assert got["status"] == ("success" if t["receipt_status"] == 1 else "failed")
        assert got["height"] == t["block_number"] and got["position"] == t["transaction_index"]
        assert got["from"].lower() == t["from_address"]
        fee = [x for x in got["transfers"] if x["kind"] == "fee"]
        assert [x["amount"] for x in fee] == [got["fee"]]
        native = [x["amount"] for x in got["transfers"] if x["kind"] == "native"]
        assert native == ([t["value"]] if t["value"] and t["receipt_status"] == 1 else [])


def test_token_transfers_are_the_3_topic_transfer_logs(stream: duckdb.DuckDBPyConnection) -> None:
    """291 expected token transfers; 282 are 3-topic ERC-20 logs (SOURCES.md): exactly those, exactly."""
    logs = {(str(x["transaction_hash"]), x["log_index"]): x for x in jsonl(STREAM / "expected_logs.json")}
    expected = {
        (
            str(t["transaction_hash"])[2:],
            int(str(t["log_index"])),
            str(t["token_address"])[2:],
            str(t["from_address"])[2:],
            str(t["to_address"])[2:],
            int(str(t["value"])),
        )
        for t in jsonl(STREAM / "expected_token_transfers.json")
        if len(logs[(str(t["transaction_hash"]), t["log_index"])]["topics"]) == 3  # type: ignore[arg-type]
    }
    assert len(expected) == 282
    assert _tokens(stream) == expected


def test_withdrawals_in_wei(stream: duckdb.DuckDBPyConnection) -> None:
    blocks = jsonl(STREAM / "expected_blocks.json")
    gwei = sum(int(w["amount"]) for b in blocks for w in b["withdrawals"])  # type: ignore[attr-defined]
    total = stream.execute(
        "SELECT sum(amount)::VARCHAR, count(*) FROM transfers WHERE kind = 'withdrawal'"
    ).fetchall()
    assert (int(total[0][0]), total[0][1]) == (gwei * 10**9, 32)


def test_address_assets_per_asset(stream: duckdb.DuckDBPyConnection) -> None:
    """A withdrawal recipient: ETH received equals the fixture's withdrawals to it, in wei and as text."""
    blocks = jsonl(STREAM / "expected_blocks.json")
    to = "0xb9d7934878b5fb9610b3fe8a5e441e8fad7e293f"
    gwei = sum(int(w["amount"]) for b in blocks for w in b["withdrawals"] if w["address"] == to)  # type: ignore[attr-defined]
    a = account_read.address(stream, ETH, to)
    eth = a["assets"]["ETH"]
    assert eth["received"] == gwei * 10**9 and eth["decimals"] == 18
    assert eth["received_decimal"] == account_read.decimal_text(gwei * 10**9, 18)
    assert a["first_seen"] == "2023-05-02T12:19:59Z"


def test_csv_export_without_receipts_leaves_fee_and_status_unknown(tmp_path: Path) -> None:
    d = ETL / "test_export_blocks_job" / "blocks_with_transactions_and_withdrawals"
    con = connect(tmp_path / "s.duckdb")
    s = ingest_ethereum_etl(con, "ethereum", d / "expected_blocks.csv", d / "expected_transactions.csv")
    assert (s.written.blocks, s.written.txs, s.withdrawals) == (2, 298, 32)
    t = account_read.tx(con, ETH, "0xeb107a40ba73a50c79a9f2026e902d758d1c5e5e211f7a7db1b294f88f118dd0")
    assert (t["fee"], t["status"], t["gas_used"], t["value"]) == (None, None, None, 1642894143)
    assert [x["kind"] for x in t["transfers"]] == ["native"]


def test_receipts_and_logs_files_of_block_483920(tmp_path: Path) -> None:
    con = connect(tmp_path / "s.duckdb")
    ingest_ethereum_etl(
        con,
        "ethereum",
        BLOCKS_483920 / "expected_blocks.csv",
        BLOCKS_483920 / "expected_transactions.csv",
        receipts=RECEIPTS_483920 / "expected_receipts.csv",
        logs=RECEIPTS_483920 / "expected_logs.csv",
        allow_missing_transactions=True,
    )
    with (
        ETL / "test_export_token_transfers_job" / "block_with_transfers" / "expected_token_transfers.csv"
    ).open() as fh:
        expected = {
            (
                r["transaction_hash"][2:],
                int(r["log_index"]),
                r["token_address"][2:],
                r["from_address"][2:],
                r["to_address"][2:],
                int(r["value"]),
            )
            for r in csv.DictReader(fh)
        }
    assert _tokens(con) == expected
    receipts = {
        r["transaction_hash"]: r for r in csv.DictReader((RECEIPTS_483920 / "expected_receipts.csv").open())
    }
    for h, r in receipts.items():
        t = account_read.tx(con, ETH, h)
        assert t["gas_used"] == int(r["gas_used"])
        assert t["fee"] == int(r["gas_used"]) * int(r["effective_gas_price"] or t["gas_price"])


def test_usdt_reference_of_graphsense_reproduced_from_raw_logs(tmp_path: Path) -> None:
    """The 143 USDT transfers GraphSense computed for blocks 15,000,000-4, from logs.json, exactly."""
    con = connect(tmp_path / "s.duckdb")
    with pytest.raises(CorruptData, match="not in the batch"):
        ingest_ethereum_etl(
            con, "ethereum", GS / "blocks.csv", GS / "transactions.csv", logs=GS / "logs.json"
        )
    assert table_counts(con)["blocks"] == 0  # nothing half-written
    ingest_ethereum_etl(
        con,
        "ethereum",
        GS / "blocks.csv",
        GS / "transactions.csv",
        logs=GS / "logs.json",
        allow_missing_transactions=True,
    )
    usdt = "dac17f958d2ee523a2206206994597c13d831ec7"

    def b(x: str) -> str:
        return base64.b64decode(x).hex()

    reference = {
        (b(r["txHash"]), r["logIndex"], usdt, b(r["from"]), b(r["to"]), r["value"])
        for r in map(json.loads, (GS / "reference" / "USDT_token_transfers.json").read_text().splitlines())
    }
    ours = {t for t in _tokens(con) if t[2] == usdt}
    assert len(reference) == 143 and ours == reference
    symbol = con.execute(
        f"SELECT symbol, decimals FROM assets WHERE contract = from_hex('{usdt}')"
    ).fetchall()
    assert symbol == [("USDT", 6)]


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _tiny(
    tmp_path: Path, value: object = 5, numbers: tuple[int, int] = (100, 101)
) -> tuple[Path, Path, Path]:
    h = ["0x" + f"{n:064x}" for n in range(4)]
    a, b, token = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 20
    blocks = _write_csv(
        tmp_path / "blocks.csv",
        ["number", "hash", "parent_hash", "timestamp", "miner"],
        [[numbers[0], h[0], h[3], 1700000000, a], [numbers[1], h[1], h[0], 1700000012, a]],
    )
    txs = _write_csv(
        tmp_path / "transactions.csv",
        [
            "hash",
            "block_number",
            "transaction_index",
            "from_address",
            "to_address",
            "value",
            "gas",
            "gas_price",
            "receipt_gas_used",
            "receipt_status",
        ],
        [[h[2], numbers[1], 0, a, token, value, 100000, 7, 50000, 1]],
    )
    transfers = _write_csv(
        tmp_path / "token_transfers.csv",
        [
            "token_address",
            "from_address",
            "to_address",
            "value",
            "transaction_hash",
            "log_index",
            "block_number",
        ],
        [[token, a, b, 2**256 - 1, h[2], 0, numbers[1]]],
    )
    return blocks, txs, transfers


def test_uint256_max_stored_and_shown_exactly(tmp_path: Path) -> None:
    blocks, txs, transfers = _tiny(tmp_path)
    con = connect(tmp_path / "s.duckdb")
    ingest_ethereum_etl(con, "ethereum", blocks, txs, token_transfers=transfers)
    a = account_read.address(con, ETH, "0x" + "bb" * 20)
    (token,) = a["assets"].values()
    assert token["received"] == 2**256 - 1 and token["decimals"] is None and token["received_decimal"] is None
    t = account_read.tx(con, ETH, "0x" + f"{2:064x}")
    assert t["fee"] == 350000 and t["status"] == "success"
    before = table_counts(con)
    again = ingest_ethereum_etl(con, "ethereum", blocks, txs, token_transfers=transfers)
    assert again.written.skipped == 2 and table_counts(con) == before


@pytest.mark.parametrize(
    ("value", "numbers", "words"),
    [
        ("12.5", (100, 101), "transactions.csv line 2: column value"),
        ("-3", (100, 101), "column value"),
        (5, (101, 100), "blocks.csv line 3: block 100 after block 101"),
    ],
)
def test_bad_rows_are_named_and_nothing_is_stored(
    tmp_path: Path, value: object, numbers: tuple[int, int], words: str
) -> None:
    blocks, txs, transfers = _tiny(tmp_path, value, numbers)
    con = connect(tmp_path / "s.duckdb")
    with pytest.raises(CorruptData, match=words):
        ingest_ethereum_etl(con, "ethereum", blocks, txs, token_transfers=transfers)
    assert table_counts(con)["blocks"] == 0


def test_wrong_file_and_unknown_chain(tmp_path: Path) -> None:
    blocks, txs, _ = _tiny(tmp_path)
    con = connect(tmp_path / "s.duckdb")
    with pytest.raises(CorruptData, match="lacks the column"):
        ingest_ethereum_etl(con, "ethereum", txs, blocks)
    with pytest.raises(InvalidInput, match="unknown EVM chain"):
        ingest_ethereum_etl(con, "dogechain", blocks, txs)
    assert TRANSFER_TOPIC_HEX.startswith("0xddf252ad")


def test_cli_ingest_and_show_on_ethereum(tmp_path: Path) -> None:
    from tests.test_cli import run

    db = tmp_path / "c.duckdb"
    r = run(
        "ingest",
        "ethereum-etl",
        "--blocks",
        str(STREAM / "expected_blocks.json"),
        "--transactions",
        str(STREAM / "expected_transactions.json"),
        "--logs",
        str(STREAM / "expected_logs.json"),
        db=db,
    )
    assert r.returncode == 0, r.stderr
    assert "298 transactions" in " ".join(r.stderr.split())
    t = json.loads(run("show", "tx", "--chain", "ethereum", "--json", EB107, db=db).stdout)
    assert (t["value"], t["status"], t["height"]) == (1642894143, "success", 17173049)
    a = json.loads(run("show", "address", "--chain", "ethereum", "--json", WITHDRAWER, db=db).stdout)
    assert {"contract", "decimals", "received", "sent", "balance"} <= a["assets"]["ETH"].keys()
    bad = run("show", "address", "--chain", "ethereum", WITHDRAWER.replace("b9d79", "B9d79"), db=db)
    assert bad.returncode == 2 and "EIP-55" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    unknown = run("show", "tx", "--chain", "dogechain", EB107, db=db)
    assert unknown.returncode == 2 and "unknown chain" in unknown.stderr
    again = run(
        "ingest",
        "ethereum-etl",
        "--blocks",
        str(STREAM / "expected_blocks.json"),
        "--transactions",
        str(STREAM / "expected_transactions.json"),
        db=db,
    )
    assert "stored 0 blocks (2 already stored)" in " ".join(again.stderr.split())


EB107 = "0xeb107a40ba73a50c79a9f2026e902d758d1c5e5e211f7a7db1b294f88f118dd0"
WITHDRAWER = "0xb9d7934878b5fb9610b3fe8a5e441e8fad7e293f"
