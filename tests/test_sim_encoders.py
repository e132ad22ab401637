"""The simulator's encoders: regtest blk*.dat files and ethereum-etl CSV exports, ingested by the real
ingest jobs into real stores and read back through the ``show`` answers, plus python-bitcoinlib as an
independent deserializer of the Bitcoin side and eth-hash's Keccak for the account side."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import bitcoin
import bitcoin.core
import duckdb
import pytest
from bitcoin.core import CBlock
from bitcoin.core.script import CScript
from bitcoin.wallet import CBitcoinAddress
from eth_hash.auto import keccak

from fundtrail.chains.assets import SIM_USDT_CONTRACT
from fundtrail.chains.bitcoin.builder import COIN, DUMMY_SIGNATURE, hash160, regtest_genesis
from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.chains.registry import chain
from fundtrail.errors import InvalidInput
from fundtrail.ingest.bitcoin_files import ingest_block_files
from fundtrail.ingest.ethereum_etl import ingest_ethereum_etl
from fundtrail.simulate.btc_blocks import P2PKH, P2WPKH, BlockFileWriter, TxEncoder, address_key, script_for
from fundtrail.simulate.etl_export import (
    GENESIS_HASH,
    ISSUE_SELECTOR,
    NATIVE_GAS,
    SWAP_GAS,
    TOKEN_GAS,
    TRANSFER_SELECTOR,
    EtlWriter,
    fast_keccak256,
)
from fundtrail.store import account_read, bitcoin_read
from fundtrail.store.db import connect

SEED = b"fundtrail test world"
T0 = 1_700_000_000


# Bitcoin ---------------------------------------------------------------------------------------------------


@dataclass
class Coin:
    txid: bytes  # internal order
    vout: int
    value: int
    kind: int
    n: int  # address number of the owner

    @property
    def script(self) -> bytes:
        return script_for(self.kind, address_key(SEED, self.n)[1])


@dataclass
class World:
    """What was written, to compare the store with: per txid (display hex), the spent coins and the
    outputs (value, script); the blocks' raw bytes and whether each carries witness data."""

    writer: BlockFileWriter
    txs: dict[str, tuple[list[Coin], list[tuple[int, bytes]]]] = field(default_factory=dict)
    coinbases: dict[str, list[tuple[int, bytes]]] = field(default_factory=dict)
    segwit_blocks: list[bool] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)  # display order, by height


def _spend(enc: TxEncoder, coins: list[Coin], outs: list[tuple[int, int, int]], locktime: int = 0
           ) -> tuple[tuple[bytes, bytes, bytes], list[Coin], list[tuple[int, bytes]]]:  # fmt: skip
    """Spend ``coins`` to outputs (value, kind, address number); returns the encoded tx, its new coins
    and its outputs as (value, script)."""
    ins = [(c.txid, c.vout, c.kind, address_key(SEED, c.n)[0]) for c in coins]
    outputs = [(v, script_for(k, address_key(SEED, n)[1])) for v, k, n in outs]
    tx = enc.encode(ins, outputs, locktime)
    new = [Coin(tx[1], i, v, k, n) for i, (v, k, n) in enumerate(outs)]
    return tx, new, outputs


def write_world(out: Path, max_file_bytes: int = 128 << 20) -> World:
    """Four blocks after the genesis: 1 coinbase only; 2 a P2PKH spend (no witness anywhere); 3 mixed
    P2WPKH + P2PKH inputs, a spend of an output of the same block, a legacy tx among segwit ones; 4 a
    four-input, four-output tx."""
    w = World(BlockFileWriter(out, max_file_bytes))
    enc = TxEncoder()

    def block(time: int, cb_outs: list[tuple[int, bytes]], txs: list[tuple[bytes, bytes, bytes]]) -> bytes:
        cb, h = w.writer.add_block(time, cb_outs, txs)
        w.coinbases[cb[::-1].hex()] = cb_outs
        w.segwit_blocks.append(any(t[1] != t[2] for t in txs))
        w.hashes.append(h)
        return cb

    def record(tx: tuple[bytes, bytes, bytes], coins: list[Coin], outputs: list[tuple[int, bytes]]) -> None:
        w.txs[tx[1][::-1].hex()] = (coins, outputs)

    # block 1: a coinbase paying three addresses (its own outputs, not the builder's default)
    cb_outs = [(30 * COIN, script_for(P2WPKH, address_key(SEED, 1)[1])),
               (20 * COIN, script_for(P2PKH, address_key(SEED, 2)[1])),
               (5 * COIN, script_for(P2WPKH, address_key(SEED, 3)[1]))]  # fmt: skip
    cb1 = block(T0 + 600, cb_outs, [])
    c1, c2, c3 = (Coin(cb1, 0, 30 * COIN, P2WPKH, 1), Coin(cb1, 1, 20 * COIN, P2PKH, 2),
                  Coin(cb1, 2, 5 * COIN, P2WPKH, 3))  # fmt: skip

    # block 2: a legacy spend only: no witness, no commitment
    ta, (a0, a1), oa = _spend(enc, [c2], [(12 * COIN, P2PKH, 4), (8 * COIN - 10_000, P2WPKH, 5)])
    record(ta, [c2], oa)
    block(T0 + 1200, [(50 * COIN + 10_000, script_for(P2PKH, address_key(SEED, 6)[1]))], [ta])

    # block 3: mixed inputs, a chained spend inside the block, a legacy tx between segwit ones
    tb, (b0, b1, b2), ob = _spend(
        enc, [c1, a0], [(20 * COIN, P2WPKH, 7), (15 * COIN, P2PKH, 8), (7 * COIN - 2_500, P2WPKH, 1)], 77
    )
    record(tb, [c1, a0], ob)
    tc, (c_0,), oc = _spend(enc, [b0], [(20 * COIN - 1_000, P2PKH, 9)])
    record(tc, [b0], oc)
    td, _, od = _spend(enc, [b1], [(15 * COIN - 3_000, P2WPKH, 10)])
    record(td, [b1], od)
    block(T0 + 1800, [(50 * COIN + 6_500, script_for(P2PKH, address_key(SEED, 6)[1]))], [tb, tc, td])

    # block 4: four inputs of both kinds (one a coinbase output), four outputs
    spent = [c3, a1, c_0, b2]
    total = sum(c.value for c in spent)
    te, _, oe = _spend(
        enc,
        spent,
        [
            (COIN, P2WPKH, 11),
            (2 * COIN, P2PKH, 12),
            (3 * COIN, P2WPKH, 13),
            (total - 6 * COIN - 5_000, P2PKH, 1),
        ],
    )
    record(te, spent, oe)
    block(T0 + 2400, [(50 * COIN + 5_000, script_for(P2WPKH, address_key(SEED, 14)[1]))], [te])
    w.writer.close()
    return w


def _address(script: bytes) -> str:
    """The regtest address of a script, by python-bitcoinlib (independent of fundtrail's codecs)."""
    old = (bitcoin.params, bitcoin.core.coreparams)
    bitcoin.SelectParams("regtest")
    try:
        return str(CBitcoinAddress.from_scriptPubKey(CScript(script)))
    finally:
        bitcoin.params, bitcoin.core.coreparams = old


def _ingest(files: list[Path], db: Path) -> tuple[duckdb.DuckDBPyConnection, int]:
    con = connect(db)
    s = ingest_block_files(con, files, REGTEST)
    return con, s.unresolved


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return write_world(tmp_path_factory.mktemp("btc") / "blocks")


@pytest.fixture(scope="module")
def btc(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    con, unresolved = _ingest(world.writer.files, tmp_path_factory.mktemp("btc-store") / "s.duckdb")
    assert unresolved == 0
    yield con
    con.close()


def test_blocks_pass_every_check_and_link_from_genesis(world: World, btc: duckdb.DuckDBPyConnection) -> None:
    rows = btc.execute(
        """SELECT height, height_source, hash, prev_hash, merkle_ok, witness_ok FROM blocks
           WHERE chain = 'bitcoin-regtest' ORDER BY height"""
    ).fetchall()
    assert [r[0] for r in rows] == [0, 1, 2, 3, 4] and world.writer.height == 4
    assert [r[1] for r in rows] == ["genesis", "bip34", "bip34", "bip34", "bip34"]
    assert bytes(rows[0][2]) == regtest_genesis().hash and rows[0][2].hex() == REGTEST.genesis_hash
    assert [bytes(r[2]) for r in rows[1:]] == world.hashes and bytes(rows[-1][2]) == world.writer.tip_hash
    assert all(bytes(rows[i][3]) == bytes(rows[i - 1][2]) for i in range(1, 5))
    assert all(r[4] for r in rows)
    # a commitment (checked) exactly where a transaction carries a witness
    assert [r[5] for r in rows[1:]] == [True if s else None for s in world.segwit_blocks]
    assert world.segwit_blocks == [False, False, True, True]
    assert btc.execute("SELECT count(*) FROM tx_inputs WHERE resolved = false").fetchall() == [(0,)]


def test_transactions_read_back_exactly(world: World, btc: duckdb.DuckDBPyConnection) -> None:
    for txid, (coins, outputs) in world.txs.items():
        t = bitcoin_read.tx(btc, REGTEST, txid)
        assert [(i["prev_txid"], i["prev_vout"]) for i in t["inputs"]] == [
            (c.txid[::-1].hex(), c.vout) for c in coins
        ]
        assert [(i["address"], i["value"], i["sequence"]) for i in t["inputs"]] == [
            (_address(c.script), c.value, 0xFFFFFFFD) for c in coins
        ]
        assert [(o["address"], o["value"]) for o in t["outputs"]] == [(_address(s), v) for v, s in outputs]
        assert [o["script_type"] for o in t["outputs"]] == [
            "p2wpkh" if s[0] == 0 else "p2pkh" for _, s in outputs
        ]
        assert t["fee"] == sum(c.value for c in coins) - sum(v for v, _ in outputs)
        assert t["version"] == 2
        assert (t["wtxid"] != txid) == any(c.kind == P2WPKH for c in coins)
    assert bitcoin_read.tx(btc, REGTEST, list(world.txs)[1])["locktime"] == 77
    for txid, outputs in world.coinbases.items():
        t = bitcoin_read.tx(btc, REGTEST, txid)
        assert t["is_coinbase"] and [(o["address"], o["value"]) for o in t["outputs"][: len(outputs)]] == [
            (_address(s), v) for v, s in outputs
        ]


def test_address_balances(world: World, btc: duckdb.DuckDBPyConnection) -> None:
    """Address 1 was paid by the coinbase of block 1 and as change twice, and spent the first two."""
    a = bitcoin_read.address(btc, REGTEST, _address(script_for(P2WPKH, address_key(SEED, 1)[1])))
    assert (a["received"], a["sent"], a["balance"]) == (37 * COIN - 2_500, 37 * COIN - 2_500, 0)
    legacy = bitcoin_read.address(btc, REGTEST, _address(script_for(P2PKH, address_key(SEED, 1)[1])))
    coins, outputs = list(world.txs.values())[-1]
    assert legacy["received"] == legacy["balance"] == outputs[-1][0]
    assert legacy["received"] == sum(c.value for c in coins) - 6 * COIN - 5_000


def test_python_bitcoinlib_reads_the_same_blocks(world: World) -> None:
    """An independent deserializer agrees on hashes, merkle roots, witness roots and txids."""
    data = world.writer.files[0].read_bytes()
    pos, blocks = 0, []
    while pos < len(data):
        assert data[pos : pos + 4] == bytes.fromhex("fabfb5da")
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        blocks.append(data[pos + 8 : pos + 8 + size])
        pos += 8 + size
    assert len(blocks) == 5
    for raw, h, segwit in zip(blocks[1:], world.hashes, world.segwit_blocks):
        b = CBlock.deserialize(raw)
        assert b.GetHash()[::-1] == h and b.serialize() == raw
        assert b.calc_merkle_root() == b.hashMerkleRoot
        assert int.from_bytes(h, "big") <= (0x7FFFFF << 8 * 29)
        if segwit:
            commit = b.vtx[0].vout[b.get_witness_commitment_index()].scriptPubKey
            assert commit[6:38] == bitcoin.core.Hash(b.calc_witness_merkle_root() + b"\x00" * 32)
        ids = [t.GetTxid()[::-1].hex() for t in b.vtx]
        assert set(ids[1:]) <= set(world.txs)
        assert ids[0] in world.coinbases
    spend = CBlock.deserialize(blocks[3]).vtx[1]  # P2WPKH then P2PKH input
    assert list(spend.wit.vtxinwit[0].scriptWitness) == [DUMMY_SIGNATURE, address_key(SEED, 1)[0]]
    assert spend.vin[0].scriptSig == b"" and list(spend.wit.vtxinwit[1].scriptWitness) == []
    assert list(CScript(spend.vin[1].scriptSig)) == [DUMMY_SIGNATURE, address_key(SEED, 4)[0]]


def test_small_files_rotate_and_ingest_in_order(tmp_path: Path, world: World) -> None:
    small = write_world(tmp_path / "small", max_file_bytes=700)
    assert len(small.writer.files) >= 3
    assert [p.name for p in small.writer.files] == [f"blk{i:05d}.dat" for i in range(len(small.writer.files))]
    assert b"".join(p.read_bytes() for p in small.writer.files) == world.writer.files[0].read_bytes()
    con, unresolved = _ingest(sorted((tmp_path / "small").glob("blk*.dat")), tmp_path / "s.duckdb")
    heights = con.execute("SELECT height FROM blocks ORDER BY height").fetchall()
    assert unresolved == 0 and [h for (h,) in heights] == [0, 1, 2, 3, 4]


def test_same_calls_give_the_same_bytes(tmp_path: Path, world: World) -> None:
    again = write_world(tmp_path / "again")
    assert [p.read_bytes() for p in again.writer.files] == [p.read_bytes() for p in world.writer.files]


def test_keys_scripts_and_refusals(tmp_path: Path) -> None:
    pubkey, h = address_key(b"seed", 7)
    assert pubkey[0] == 2 and len(pubkey) == 33 and h == hash160(pubkey)
    assert address_key(b"seed", 7) == (pubkey, h) and address_key(b"seed", 8) != (pubkey, h)
    assert (
        script_for(P2WPKH, h) == b"\x00\x14" + h and script_for(P2PKH, h) == b"\x76\xa9\x14" + h + b"\x88\xac"
    )
    enc = TxEncoder()
    raw, txid, wtxid = enc.encode([(b"\x01" * 32, 0, P2PKH, pubkey)], [(1, script_for(P2PKH, h))])
    assert txid == wtxid and raw[4] == 1  # no marker: legacy serialization
    for ins, outs in (
        ([(b"\x01" * 31, 0, P2PKH, pubkey)], [(1, b"")]),
        ([(b"\x01" * 32, 0, 5, pubkey)], [(1, b"")]),
        ([(b"\x01" * 32, 2**32, P2WPKH, pubkey)], [(1, b"")]),
        ([(b"\x01" * 32, 0, P2WPKH, pubkey)], [(-1, b"")]),
        ([], [(1, b"")]),
    ):
        with pytest.raises(ValueError):
            enc.encode(ins, outs)
    w = BlockFileWriter(tmp_path / "x")
    w.close()
    with pytest.raises(InvalidInput, match="already holds block files"):
        BlockFileWriter(tmp_path / "x")


# ethereum-etl ----------------------------------------------------------------------------------------------

USDT = bytes.fromhex(SIM_USDT_CONTRACT)
ISSUER, ALICE, BOB, POOL = (bytes([b]) * 20 for b in (0x11, 0xAA, 0xBB, 0xDE))
GWEI = 10**9
BIG = 2**70 + 12_345  # wei, more than 2^64
PRICE = 7 * GWEI


def write_export(out: Path) -> tuple[EtlWriter, dict[str, str]]:
    w = EtlWriter(out)
    hashes: dict[str, str] = {}
    w.withdrawal(ALICE, 2 * BIG // GWEI + 5, 100)  # 2 x BIG wei (rounded up to a gwei), and then some
    w.withdrawal(ISSUER, 10**9, 101)  # 1 ETH for the issuer's gas
    assert w.seal_block(T0) == (1, w.tip_hash)
    hashes["native"] = w.native(ALICE, BOB, BIG, PRICE)
    hashes["mint"] = w.mint(USDT, ISSUER, ALICE, 5_000_000_000, PRICE + 1)
    hashes["token"] = w.token(USDT, ALICE, BOB, 1_234_567, PRICE)
    hashes["swap"] = w.call(BOB, POOL, 10**18, PRICE, [(USDT, POOL, BOB, 42)])
    hashes["native2"] = w.native(ALICE, BOB, 1, PRICE + 2)
    w.seal_block(T0 + 12)
    w.seal_block(T0 + 24)  # empty
    w.withdrawal(BOB, 3, 102)
    w.seal_block(T0 + 36)
    w.close()
    return w, hashes


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[EtlWriter, dict[str, str]]:
    return write_export(tmp_path_factory.mktemp("etl") / "export")


@pytest.fixture(scope="module")
def eth(
    export: tuple[EtlWriter, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[duckdb.DuckDBPyConnection]:
    w, _ = export
    con = connect(tmp_path_factory.mktemp("etl-store") / "s.duckdb")
    s = ingest_ethereum_etl(
        con, "sim-ethereum", w.blocks_path, w.transactions_path, token_transfers=w.token_transfers_path
    )
    assert (s.written.blocks, s.written.txs, s.withdrawals, s.rows["token_transfers"]) == (4, 5, 3, 3)
    yield con
    con.close()


SIM = chain("sim-ethereum")


def test_etl_balances_fees_and_exact_amounts(eth: duckdb.DuckDBPyConnection) -> None:
    fees = {
        "alice": NATIVE_GAS * PRICE + TOKEN_GAS * PRICE + NATIVE_GAS * (PRICE + 2),
        "bob": SWAP_GAS * PRICE,
        "issuer": TOKEN_GAS * (PRICE + 1),
    }
    alice = account_read.address(eth, SIM, "0x" + ALICE.hex())["assets"]
    withdrawn = (2 * BIG // GWEI + 5) * GWEI
    assert alice["ETH"]["received"] == withdrawn and withdrawn > 2**64
    assert alice["ETH"]["sent"] == BIG + 1 + fees["alice"]
    assert alice["ETH"]["balance"] == withdrawn - BIG - 1 - fees["alice"]
    assert alice["USDT"] == {
        **alice["USDT"],
        "decimals": 6,
        "received": 5_000_000_000,
        "sent": 1_234_567,
        "balance_decimal": "4998.765433",
    }
    bob = account_read.address(eth, SIM, "0x" + BOB.hex())["assets"]
    assert bob["ETH"]["received"] == BIG + 1 + 3 * GWEI
    assert bob["ETH"]["sent"] == 10**18 + fees["bob"]
    assert bob["USDT"]["received"] == 1_234_567 + 42
    issuer = account_read.address(eth, SIM, "0x" + ISSUER.hex())["assets"]
    assert issuer["ETH"]["sent"] == fees["issuer"] and "USDT" not in issuer
    total = eth.execute("SELECT sum(amount)::VARCHAR FROM transfers WHERE kind = 'fee'").fetchall()[0][0]
    assert int(total) == sum(fees.values())


def test_etl_transactions_read_back(export: tuple[EtlWriter, dict[str, str]], eth: duckdb.DuckDBPyConnection
                                    ) -> None:  # fmt: skip
    _, hashes = export
    t = account_read.tx(eth, SIM, hashes["native"])
    assert (t["value"], t["fee"], t["status"], t["gas_used"], t["nonce"], t["height"], t["position"]) == (
        BIG, NATIVE_GAS * PRICE, "success", NATIVE_GAS, 0, 2, 0,
    )  # fmt: skip
    assert [(x["kind"], x["amount"]) for x in t["transfers"]] == [
        ("native", BIG),
        ("fee", NATIVE_GAS * PRICE),
    ]
    m = account_read.tx(eth, SIM, hashes["mint"])
    token = [x for x in m["transfers"] if x["kind"] == "token"]
    assert m["method"] == "0x" + ISSUE_SELECTOR.hex() and m["to"].lower() == "0x" + SIM_USDT_CONTRACT
    assert [(x["asset"], x["decimals"], x["from"], x["amount"]) for x in token] == [
        ("USDT", 6, "0x" + "00" * 20, 5_000_000_000)
    ]
    assert m["fee"] == TOKEN_GAS * (PRICE + 1) and m["value"] == 0
    tt = account_read.tx(eth, SIM, hashes["token"])
    assert tt["method"] == "0x" + TRANSFER_SELECTOR.hex() and tt["nonce"] == 1
    swap = account_read.tx(eth, SIM, hashes["swap"])
    assert [(x["kind"], x["amount"]) for x in swap["transfers"]] == [
        ("native", 10**18), ("token", 42), ("fee", SWAP_GAS * PRICE),
    ]  # fmt: skip
    assert account_read.tx(eth, SIM, hashes["native2"])["nonce"] == 2
    b = account_read.block(eth, SIM, "2")
    assert b["tx_count"] == 5 and b["gas_used"] == 2 * NATIVE_GAS + 2 * TOKEN_GAS + SWAP_GAS
    assert b["base_fee"] == PRICE
    heights = eth.execute("SELECT height FROM blocks WHERE chain = 'sim-ethereum' ORDER BY height").fetchall()
    assert [h for (h,) in heights] == [1, 2, 3, 4]


def test_etl_files_are_ethereum_etl_shaped(export: tuple[EtlWriter, dict[str, str]]) -> None:
    """Column names as ethereum-etl writes them (compared with its own fixture), withdrawals as JSON
    objects joined by commas with amounts in gwei, hashes that are Keccak-256 of the canonical encodings."""
    w, hashes = export
    fixture = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ethereum-etl"
    real = fixture / "test_export_blocks_job" / "blocks_with_transactions_and_withdrawals"
    blocks = list(csv.DictReader(io.StringIO(w.blocks_path.read_text())))
    with (real / "expected_blocks.csv").open() as fh:
        assert list(blocks[0]) == next(csv.reader(fh))
    txs = list(csv.DictReader(io.StringIO(w.transactions_path.read_text())))
    with (real / "expected_transactions.csv").open() as fh:
        assert list(txs[0])[:15] == next(csv.reader(fh))
    expected_receipt = json.loads((fixture / "test_stream" / "blocks_17173049_17173050" /
                                   "expected_transactions.json").read_text().splitlines()[0])  # fmt: skip
    assert set(list(txs[0])[15:]) <= set(expected_receipt)
    assert json.loads(f"[{blocks[0]['withdrawals']}]") == [
        {"index": 0, "validator_index": 100, "address": "0x" + ALICE.hex(), "amount": 2 * BIG // GWEI + 5},
        {"index": 1, "validator_index": 101, "address": "0x" + ISSUER.hex(), "amount": 10**9},
    ]
    assert blocks[2]["withdrawals"] == "" and json.loads(blocks[3]["withdrawals"])["index"] == 2
    assert blocks[0]["parent_hash"] == "0x" + GENESIS_HASH.hex()
    assert all(blocks[i]["parent_hash"] == blocks[i - 1]["hash"] for i in range(1, 4))
    first = txs[0]
    encoding = b"".join((
        (1_337_000).to_bytes(8, "big"), ALICE, (0).to_bytes(8, "big"), BOB, bytes([9]), BIG.to_bytes(9, "big")
    ))  # fmt: skip
    assert first["hash"] == hashes["native"] == "0x" + keccak(encoding).hex()
    block_encoding = b"".join(
        [bytes.fromhex(blocks[0]["hash"][2:]), (2).to_bytes(8, "big"), (T0 + 12).to_bytes(8, "big")]
        + [bytes.fromhex(t["hash"][2:]) for t in txs]
    )
    assert blocks[1]["hash"] == first["block_hash"] == "0x" + keccak(block_encoding).hex()
    assert first["block_timestamp"] == str(T0 + 12) and first["receipt_cumulative_gas_used"] == "21000"


def test_fast_keccak_is_eth_hash_keccak() -> None:
    k = fast_keccak256()
    for n in (0, 1, 55, 88, 125, 135, 136, 137, 271, 272, 1000):
        data = bytes((i * 7 + n) & 0xFF for i in range(n))
        assert k(data) == keccak(data)


def test_etl_same_calls_same_bytes_and_refusals(
    tmp_path: Path, export: tuple[EtlWriter, dict[str, str]]
) -> None:
    w, _ = export
    again, _ = write_export(tmp_path / "again")
    for a, b in ((w.blocks_path, again.blocks_path), (w.transactions_path, again.transactions_path),
                 (w.token_transfers_path, again.token_transfers_path)):  # fmt: skip
        assert a.read_bytes() == b.read_bytes()
    with pytest.raises(InvalidInput, match="exists already"):
        EtlWriter(tmp_path / "again")
    e = EtlWriter(tmp_path / "new")
    bad_calls = (
        lambda: e.native(ALICE[:19], BOB, 1, 1),
        lambda: e.native(ALICE, BOB, -1, 1),
        lambda: e.native(ALICE, BOB, 2**256, 1),
        lambda: e.token(USDT, ALICE, BOB, 1, 2**64),
    )
    for bad in bad_calls:
        with pytest.raises(ValueError):
            bad()
    e.seal_block(T0)
    with pytest.raises(ValueError, match="before the previous block"):
        e.seal_block(T0 - 1)
    e.native(ALICE, BOB, 1, 1)
    with pytest.raises(ValueError, match="call seal_block before close"):
        e.close()


def test_a_block_row_longer_than_the_csv_readers_block_ingests(tmp_path: Path) -> None:
    """20,000 withdrawals in one block make a ~2 MB CSV cell, longer than pyarrow's default 1 MB read
    block (a simulated world's bootstrap did this before withdrawals were capped at 16 per block)."""
    w = EtlWriter(tmp_path / "long")
    for i in range(20_000):
        w.withdrawal(bytes([1 + i % 200]) * 20, 1 + i, i)
    w.seal_block(1_767_571_200)
    w.close()
    con = connect(tmp_path / "long.duckdb")
    s = ingest_ethereum_etl(
        con, "sim-ethereum", w.blocks_path, w.transactions_path, token_transfers=w.token_transfers_path
    )
    assert s.withdrawals == 20_000
    total = con.execute("SELECT sum(amount)::VARCHAR FROM transfers WHERE kind = 'withdrawal'").fetchone()
    assert total is not None and int(total[0]) == sum(range(1, 20_001)) * 10**9
    con.close()
