"""Address codecs: 99,999 real addresses round-trip; strict parsing rejects what it must."""

from __future__ import annotations

import pytest
from bip_utils.bech32.bech32 import Bech32Encodings, Bech32Utils
from bip_utils.bech32.bech32_base import Bech32BaseConst, Bech32BaseUtils

from fundtrail.chains.bitcoin import script as st
from fundtrail.chains.bitcoin.address import key_to_address, parse_address, script_for_key
from fundtrail.chains.bitcoin.network import MAINNET, REGTEST, TESTNET
from fundtrail.errors import InvalidInput
from tests.conftest import DATA

SAMPLES = DATA / "graphsense-lib" / "address_samples"


def test_99999_real_btc_addresses_round_trip() -> None:
    addresses = (SAMPLES / "btc_addresses.txt").read_text().split()
    assert len(addresses) == 99_999
    kinds: dict[int, int] = {}
    for a in addresses:
        key = parse_address(a, MAINNET)
        kinds[key[0]] = kinds.get(key[0], 0) + 1
        assert key_to_address(key, MAINNET) == a
    # SOURCES.md: 50,425 P2PKH + 29,105 P2SH + 20,469 bech32 (v0 and v1)
    assert kinds[st.P2PKH] == 50_425
    assert kinds[st.P2SH] == 29_105
    assert kinds[st.P2WPKH] + kinds[st.P2WSH] + kinds[st.P2TR] == 20_469


def test_litecoin_addresses_are_not_bitcoin() -> None:
    for a in (SAMPLES / "ltc_addresses.txt").read_text().split()[:200]:
        with pytest.raises(InvalidInput):
            parse_address(a, MAINNET)


def _bech32(hrp: str, ver: int, prog: bytes, encoding: Bech32Encodings) -> str:
    data = [ver, *Bech32BaseUtils.ConvertToBase32(prog)]
    checksum = Bech32Utils.ComputeChecksum(hrp, data, encoding)
    return hrp + "1" + "".join(Bech32BaseConst.CHARSET[d] for d in data + checksum)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb", "checksum"),
        ("1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfN0", "base58 has no 0"),
        ("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn", "testnet address on mainnet"),
        ("bc1Qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "mixed case"),
        ("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx", "testnet hrp on mainnet"),
        (_bech32("bc", 1, bytes(32), Bech32Encodings.BECH32), "v1 with a bech32 (not bech32m) checksum"),
        (_bech32("bc", 0, bytes(20), Bech32Encodings.BECH32M), "v0 with a bech32m checksum"),
        (_bech32("bc", 0, bytes(25), Bech32Encodings.BECH32), "v0 program of 25 bytes"),
        ("", "empty"),
    ],
)
def test_strict_parsing_rejects(text: str, why: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_address(text, MAINNET)
    assert "\n" not in str(exc.value)


def test_bip_vectors_and_networks() -> None:
    # BIP173 / BIP350 valid vectors
    key = parse_address("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", MAINNET)
    assert key == bytes([st.P2WPKH]) + bytes.fromhex("751e76e8199196d454941c45d1b3a323f1433bd6")
    assert script_for_key(key).hex() == "0014751e76e8199196d454941c45d1b3a323f1433bd6"
    p2tr = "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"
    assert key_to_address(parse_address(p2tr, MAINNET), MAINNET) == p2tr
    v16 = parse_address("BC1SW50QGDZ25J", MAINNET)
    assert v16[0] == st.WITNESS_UNKNOWN and script_for_key(v16).hex() == "6002751e"
    assert key_to_address(v16, MAINNET) == "bc1sw50qgdz25j"
    # the same key on the test networks
    h = bytes.fromhex("751e76e8199196d454941c45d1b3a323f1433bd6")
    assert key_to_address(bytes([st.P2PKH]) + h, TESTNET)[0] in "mn"
    assert key_to_address(bytes([st.P2WPKH]) + h, REGTEST).startswith("bcrt1q")
