"""The decoder on real blocks: hashes, merkle roots, txids, witness commitments, script types, and an
independent implementation (python-bitcoinlib) as a second oracle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from bitcoin.core import CBlock

from fundtrail.chains.bitcoin import script as st
from fundtrail.chains.bitcoin.address import key_to_address, parse_address
from fundtrail.chains.bitcoin.blockfile import read_block_file
from fundtrail.chains.bitcoin.decoder import Decoded, decode_blocks, decode_transaction
from fundtrail.chains.bitcoin.network import MAINNET, TESTNET
from tests.conftest import (
    BITCOIN_S,
    BLOCK_514485,
    BLOCK_514492,
    BTC,
    FIRST_BLOCKS,
    MAINNET_SINGLE,
    TESTNET_SINGLE,
)

# From ../shared/data/bitcoin/bitcoinj-blocks/SOURCES.md: height, tx count, hash prefix
BITCOINJ_FACTS = {
    "block169482.dat": (None, 14, "0000000000000756935f"),
    "block227835.dat": (None, 122, None),
    "block227836.dat": (227836, 100, None),
    "block363703.dat": (363703, 587, None),
    "block370661.dat": (370661, 708, None),
    "block383616.dat": (383616, 1731, None),
    "block481815.dat": (481815, 2097, None),
    "block481829.dat": (481829, 2020, None),
}


def decode_file(path: Path, net=MAINNET) -> Decoded:  # type: ignore[no-untyped-def]
    bf = read_block_file(path, net)
    return decode_blocks(bf.buf, bf.starts, bf.ends, net)


def test_first_439_blocks_chain_and_genesis() -> None:
    d = decode_file(FIRST_BLOCKS)
    assert len(d.blocks) == 439
    assert d.blocks[0].header.hash.hex() == MAINNET.genesis_hash
    assert d.blocks[0].height == 0
    for prev, cur in zip(d.blocks, d.blocks[1:]):
        assert cur.header.prev_hash == prev.header.hash
    # the genesis coinbase pays 50 BTC to the famous P2PK key, shown as its P2PKH address
    assert int(d.out_value[0]) == 50 * 10**8
    assert int(d.out_type[0]) == st.P2PK
    assert key_to_address(d.address_key(0) or b"", MAINNET) == "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
    # genesis merkle root equals its only txid
    assert d.txid_hex(0) == "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"


@pytest.mark.parametrize("path", MAINNET_SINGLE, ids=lambda p: p.name)
def test_bitcoinj_single_blocks(path: Path) -> None:
    d = decode_file(path)
    (b,) = d.blocks
    height, n_tx, prefix = BITCOINJ_FACTS[path.name]
    assert b.height == height
    assert d.n_tx == n_tx
    if prefix:
        assert b.header.hash.hex().startswith(prefix)
    assert b.merkle_ok
    assert b.size == path.stat().st_size


def test_first_segwit_block_has_valid_commitment() -> None:
    d = decode_file(MAINNET_SINGLE[-1])  # block481829: the first SegWit transaction
    assert d.blocks[0].witness_ok is True
    assert int(d.tx_segwit.sum()) == 1
    seg = int(np.flatnonzero(d.tx_segwit)[0])
    assert d.txid_hex(seg) != bytes(d.wtxid[seg]).hex()
    assert d.blocks[0].weight < 4 * d.blocks[0].size


@pytest.mark.parametrize("path", [BLOCK_514485, BLOCK_514492], ids=["514485", "514492"])
def test_bitcoin_s_hex_blocks(path: Path) -> None:
    d = decode_file(path)
    (b,) = d.blocks
    assert b.header.hash.hex() == path.stem
    assert b.witness_ok is True
    assert b.height == (514485 if path == BLOCK_514485 else 514492)
    assert d.n_tx == (2165 if path == BLOCK_514485 else 1044)


@pytest.mark.parametrize("path", TESTNET_SINGLE, ids=lambda p: p.name)
def test_testnet_blocks(path: Path) -> None:
    d = decode_file(path, TESTNET)
    assert d.blocks[0].height == int(path.stem.removeprefix("block_testnet"))
    for o in range(d.out_value.shape[0]):
        key = d.address_key(o)
        if key is not None:
            assert key_to_address(key, TESTNET)[0] in "mn2t"


def test_giant_witness_transactions() -> None:
    for name in (
        "7393096d97bfee8660f4100ffd61874d62f9a65de9fb6acf740c4c386990ef73",
        "73be398c4bdc43709db7398106609eea2a7841aaf3a4fa2000dc18184faa2a7e",
    ):
        raw = bytes.fromhex((BITCOIN_S / f"{name}.txt").read_text().strip())
        d = decode_transaction(raw, MAINNET)
        assert d.txid_hex(0) == name
    # 500,003 witness items, one OP_RETURN output whose data is kept
    assert int(d.in_wit_items[0]) == 500_003
    assert int(d.out_type[0]) == st.NULLDATA
    assert b"you'll run cln. and you'll be happy." in d.script(0)


def test_69420_output_testnet_transaction() -> None:
    name = "a536e7f60a493a258d9adc77d913f7798baf60c808c16898b04579d8c0652681"
    d = decode_transaction(bytes.fromhex((BITCOIN_S / f"{name}.txt").read_text().strip()), TESTNET)
    assert d.txid_hex(0) == name
    assert d.out_value.shape[0] == 69_420
    # SOURCES.md says 69,420 P2TR outputs; python-bitcoinlib agrees with us: 2 P2TR, 69,418 OP_RETURN
    types = d.out_type.tolist()
    assert types.count(st.P2TR) == 2 and types.count(st.NULLDATA) == 69_418
    addresses = {key_to_address(d.address_key(o) or b"", TESTNET) for o in np.flatnonzero(d.has_address)}
    assert len(addresses) == 2
    for a in addresses:
        assert a.startswith("tb1p")
        assert key_to_address(parse_address(a, TESTNET), TESTNET) == a


def _mainnet_blocks() -> list[tuple[str, bytes]]:
    out = []
    bf = read_block_file(FIRST_BLOCKS, MAINNET)
    for s, e in zip(bf.starts.tolist()[::40], bf.ends.tolist()[::40]):
        out.append((f"first@{s}", bytes(bf.buf[s:e])))
    for p in [*MAINNET_SINGLE, BLOCK_514485, BLOCK_514492]:
        bf = read_block_file(p, MAINNET)
        out.append((p.name[:16], bytes(bf.buf)))
    return out


@pytest.mark.parametrize(("name", "raw"), _mainnet_blocks(), ids=lambda v: v if isinstance(v, str) else "")
def test_agrees_with_python_bitcoinlib(name: str, raw: bytes) -> None:
    """Every txid, output value and output script equals python-bitcoinlib's reading of the same bytes."""
    ref = CBlock.deserialize(raw)
    buf = np.frombuffer(raw, np.uint8)
    d = decode_blocks(buf, np.array([0], np.int64), np.array([len(raw)], np.int64), MAINNET)
    assert d.n_tx == len(ref.vtx)
    assert d.blocks[0].header.hash == ref.GetHash()[::-1]
    o = 0
    for i, tx in enumerate(ref.vtx):
        assert bytes(d.txid[i]) == tx.GetTxid()[::-1]
        assert int(d.tx_n_in[i]) == len(tx.vin)
        for out in tx.vout:
            assert int(d.out_value[o]) == out.nValue
            assert d.script(o) == bytes(out.scriptPubKey)
            o += 1


def test_outputs_against_bitcoin_etl_expected() -> None:
    """Address and type of every output in bitcoin-etl's expected outputs for blocks 0, 1, 50000-50002
    (decoded from the recorded transaction hex)."""
    checked = 0
    for exp in (BTC / "bitcoin-etl-rpc" / "bitcoin").glob("*/expected_transactions.json"):
        for line in exp.read_text().splitlines():
            t = json.loads(line)
            rpc = exp.parent.glob("rpc_response_getblock_*.json")
            raw = _tx_hex(list(rpc), t["hash"])
            d = decode_transaction(bytes.fromhex(raw), MAINNET)
            assert d.txid_hex(0) == t["hash"]
            for o in t["outputs"]:
                n = o["index"]
                assert int(d.out_value[n]) == o["value"]
                key = d.address_key(n)
                assert ([key_to_address(key, MAINNET)] if key else []) == o["addresses"]
                assert (
                    st.SCRIPT_TYPE_NAMES[int(d.out_type[n])]
                    == {"pubkey": "p2pk", "pubkeyhash": "p2pkh"}[o["type"]]
                )
                checked += 1
    assert checked >= 10


def _tx_hex(responses: list[Path], txid: str) -> str:
    for r in responses:
        body = json.loads(r.read_text())
        result = body.get("result", body)
        for tx in result["tx"]:
            if tx["txid"] == txid:
                return str(tx["hex"])
    raise AssertionError(f"{txid} not in the recorded responses")


def test_script_classification_vectors() -> None:
    """Bare multisig, witness v0 of an odd length, future witness versions, anchors, non-standard."""
    pk = bytes.fromhex("02" + "11" * 32)
    cases = {
        bytes([0x51, 33]) + pk + bytes([0x51, 0xAE]): st.MULTISIG,
        bytes([0x52, 33]) + pk + bytes([0x51, 0xAE]): st.NONSTANDARD,  # m > n
        bytes([0x00, 0x10]) + b"\x01" * 16: st.NONSTANDARD,  # v0 program of 16 bytes
        bytes([0x52, 0x10]) + b"\x01" * 16: st.WITNESS_UNKNOWN,
        bytes([0x51, 0x02, 0x4E, 0x73]): st.ANCHOR,
        bytes([0x6A]): st.NULLDATA,
        bytes([0x6A, 0x05]) + b"hi": st.NONSTANDARD,  # truncated push after OP_RETURN
        bytes([0xAC]): st.NONSTANDARD,
        b"": st.NONSTANDARD,
    }
    for script_bytes, expected in cases.items():
        raw = _one_output_tx(script_bytes)
        d = decode_transaction(raw, MAINNET)
        assert int(d.out_type[0]) == expected, script_bytes.hex()
    anchor = decode_transaction(_one_output_tx(bytes([0x51, 0x02, 0x4E, 0x73])), MAINNET)
    assert key_to_address(anchor.address_key(0) or b"", MAINNET) == "bc1pfeessrawgf"


def _one_output_tx(script_bytes: bytes) -> bytes:
    return (
        b"\x01\x00\x00\x00\x01"
        + b"\x11" * 32
        + b"\x00\x00\x00\x00"
        + b"\x00"
        + b"\xff" * 4
        + b"\x01"
        + (1000).to_bytes(8, "little")
        + bytes([len(script_bytes)])
        + script_bytes
        + b"\x00" * 4
    )
