"""The CLI contracts on the real blocks: JSON shapes, tables, and one-line errors with exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIRST_BLOCKS, MAINNET_SINGLE

SPEND_170 = "f4184fc596403b9d638783cf57adfe4c75c605f6356fbc91338530e9831e9e16"
GENESIS = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f"


def run(*args: str, db: Path | None = None, env_db: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "FUNDTRAIL_DB"}
    env["COLUMNS"] = "200"
    if env_db is not None:
        env["FUNDTRAIL_DB"] = str(env_db)
    argv = [sys.executable, "-m", "fundtrail", *(["--db", str(db)] if db else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)


def test_tx_json_contract(real_store: Path) -> None:
    r = run("show", "tx", SPEND_170, "--json", db=real_store)
    assert r.returncode == 0, r.stderr
    t = json.loads(r.stdout)
    assert {"chain", "txid", "block_hash", "height", "time", "inputs", "outputs", "fee"} <= t.keys()
    assert {"prev_txid", "prev_vout", "address", "value", "resolved"} <= t["inputs"][0].keys()
    assert {"n", "address", "value", "script_type"} <= t["outputs"][0].keys()
    assert (t["chain"], t["height"], t["fee"]) == ("bitcoin", 170, 0)
    assert t["inputs"][0]["prev_txid"] == "0437cd7f8525ceed2324359c2d0ba26006d92d856a9c20fa0241106ee5a597c9"
    assert t["outputs"][0] == {
        "n": 0,
        "address": "1Q2TWHE3GMdB6BZKafqwxXtWAWgFt5Jvm3",
        "value": 1_000_000_000,
        "script_type": "p2pk",
    }


def test_block_json_contract_by_height_and_hash(real_store: Path) -> None:
    by_height = json.loads(run("show", "block", "0", "--json", "--db", str(real_store)).stdout)
    by_hash = json.loads(run("show", "block", GENESIS, "--json", db=real_store).stdout)
    assert by_height == by_hash
    assert {
        "chain",
        "hash",
        "height",
        "prev_hash",
        "time",
        "tx_count",
        "merkle_root",
        "merkle_ok",
    } <= by_hash.keys()
    assert (
        by_hash["hash"] == GENESIS
        and by_hash["merkle_ok"] is True
        and by_hash["time"] == "2009-01-03T18:15:05Z"
    )
    assert by_hash["merkle_root"] == "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"


def test_address_json_contract(real_store: Path) -> None:
    r = run("show", "address", "12cbQLTFMXRnSzktFkuoG3eHoMeFtpTu3S", "--json", env_db=real_store)
    a = json.loads(r.stdout)
    assert {
        "chain",
        "address",
        "tx_count",
        "received",
        "sent",
        "balance",
        "first_seen",
        "last_seen",
    } <= a.keys()
    assert (a["received"], a["sent"], a["tx_count"]) == _bitcoinlib_address_stats(
        "12cbQLTFMXRnSzktFkuoG3eHoMeFtpTu3S"
    )
    assert a["balance"] == a["received"] - a["sent"]
    assert a["first_seen"] == "2009-01-09T03:54:39Z"  # block 9


def _bitcoinlib_address_stats(address: str) -> tuple[int, int, int]:
    """Received, sent and tx count of an address over blocks 0..438, by python-bitcoinlib (P2PK outputs
    counted under their P2PKH address)."""
    from bitcoin.core import CBlock
    from bitcoin.wallet import CBitcoinAddress, P2PKHBitcoinAddress

    from fundtrail.chains.bitcoin.blockfile import read_block_file
    from fundtrail.chains.bitcoin.network import MAINNET

    bf = read_block_file(FIRST_BLOCKS, MAINNET)
    owner: dict[tuple[bytes, int], int] = {}
    received = sent = 0
    txs: set[bytes] = set()
    for s, e in zip(bf.starts.tolist(), bf.ends.tolist()):
        for tx in CBlock.deserialize(bytes(bf.buf[s:e])).vtx:
            for i in tx.vin:
                key = (bytes(i.prevout.hash), i.prevout.n)
                if key in owner:
                    sent += owner.pop(key)
                    txs.add(tx.GetTxid())
            for n, o in enumerate(tx.vout):
                script = bytes(o.scriptPubKey)
                if len(script) in (35, 67) and script[-1] == 0xAC:  # P2PK
                    a = str(P2PKHBitcoinAddress.from_pubkey(script[1:-1]))
                else:
                    try:
                        a = str(CBitcoinAddress.from_scriptPubKey(o.scriptPubKey))
                    except Exception:
                        continue
                if a == address:
                    received += o.nValue
                    owner[(tx.GetTxid(), n)] = o.nValue
                    txs.add(tx.GetTxid())
    return received, sent, len(txs)


def test_tables_for_people(real_store: Path) -> None:
    r = run("show", "tx", SPEND_170, db=real_store)
    assert r.returncode == 0
    assert "1Q2TWHE3GMdB6BZKafqwxXtWAWgFt5Jvm3" in r.stdout and "10.00000000 BTC" in r.stdout
    s = run("summary", db=real_store)
    assert "value moved" in s.stdout and "449" in s.stdout


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("show", "address", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb"), 2, "checksum"),
        (("show", "tx", "abcd"), 2, "64 hex digits"),
        (("show", "tx", "zz" * 32), 2, "not hexadecimal"),
        (("show", "tx", "00" * 32), 3, "not in the store"),
        (("show", "block", "999999"), 3, "ingest it first"),
        (("show", "address", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"), 3, "never appears"),
        (("ingest", "bitcoin-blocks", "/nonexistent/blk00000.dat"), 2, "cannot read"),
        (
            ("ingest", "bitcoin-blocks", str(FIRST_BLOCKS), "--network", "moonnet"),
            2,
            "unknown Bitcoin network",
        ),
    ],
)
def test_errors_are_one_line_with_a_fix(
    real_store: Path, tmp_path: Path, args: tuple[str, ...], code: int, words: str
) -> None:
    db = real_store if args[0] == "show" else tmp_path / "x.duckdb"
    r = run(*args, db=db)
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_debug_shows_the_traceback(real_store: Path) -> None:
    r = run("--debug", "show", "tx", "abcd", db=real_store)
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_missing_store_is_an_error(tmp_path: Path) -> None:
    r = run("summary", db=tmp_path / "none.duckdb")
    assert r.returncode == 3 and "no store at" in r.stderr


def test_ingest_via_cli_then_idempotent(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    r1 = run("ingest", "bitcoin-blocks", str(FIRST_BLOCKS), str(MAINNET_SINGLE[0]), db=db)
    assert r1.returncode == 0, r1.stderr
    assert "stored 440 blocks" in " ".join(r1.stderr.split())
    r2 = run("ingest", "bitcoin-blocks", str(FIRST_BLOCKS), db=db)
    assert "stored 0 blocks (439 already stored)" in " ".join(r2.stderr.split())
    corrupt = tmp_path / "bad.dat"
    corrupt.write_bytes(MAINNET_SINGLE[1].read_bytes()[:-50])
    r3 = run("ingest", "bitcoin-blocks", str(corrupt), db=db)
    assert r3.returncode == 4 and "rejected" in r3.stderr and "Traceback" not in r3.stderr
