"""EVM and TRON address codecs: EIP-55 vectors, known TRON pairs, the OFAC lists' real addresses."""

from __future__ import annotations

import base64
import json

import pytest

from fundtrail.chains.evm.address import evm_address, parse_evm_address
from fundtrail.chains.tron.address import from_body, parse_tron_address, tron_address
from fundtrail.errors import InvalidInput
from tests.conftest import DATA

OFAC = DATA / "labels" / "ofac-sanctioned"

# The examples of EIP-55 itself
EIP55 = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]


@pytest.mark.parametrize("address", EIP55)
def test_eip55_vectors(address: str) -> None:
    key = parse_evm_address(address)
    assert evm_address(key) == address
    assert parse_evm_address(address.lower()) == key
    assert parse_evm_address("0x" + address[2:].upper()) == key
    flipped = address[:-1] + (address[-1].swapcase() if address[-1].isalpha() else address[-1])
    if flipped != address:
        with pytest.raises(InvalidInput, match="EIP-55"):
            parse_evm_address(flipped)


@pytest.mark.parametrize(
    "bad",
    [
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeA",
        "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xZaAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "",
    ],
)
def test_evm_malformed(bad: str) -> None:
    with pytest.raises(InvalidInput, match="0x followed by 40 hex digits"):
        parse_evm_address(bad)


def test_ofac_eth_addresses_mixed_and_lower_case() -> None:
    addresses = (OFAC / "sanctioned_addresses_ETH.txt").read_text().split()
    assert len(addresses) == 152
    for a in addresses:
        key = parse_evm_address(a)
        shown = evm_address(key)
        assert shown.lower() == a.lower()
        if a != a.lower():  # the 115 mixed-case entries carry a valid checksum
            assert shown == a


def test_tron_pairs_from_graphsense_token_configuration() -> None:
    """USDT/USDC/WTRX: the base64 20-byte bodies of GraphSense's configuration give the known T... forms."""
    config = [
        json.loads(line)
        for line in (DATA / "graphsense-lib" / "trx_56804500to56805500" / "token_configuration.json").open()
    ]
    usdt = next(c for c in config if c["currencyTicker"] == "USDT")
    key = from_body(base64.b64decode(usdt["tokenAddress"]))
    assert tron_address(key) == "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
    assert parse_tron_address("TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t") == key
    assert parse_tron_address("41" + key[1:].hex()) == key


def test_ofac_tron_addresses_including_the_one_filed_as_xbt() -> None:
    trx = (OFAC / "sanctioned_addresses_TRX.txt").read_text().split()
    usdt_t = [a for a in (OFAC / "sanctioned_addresses_USDT.txt").read_text().split() if a.startswith("T")]
    for a in [*trx, *usdt_t, "TUCsTq7TofTCJRRoHk6RvhMoS2mJLm5Yzq"]:
        assert tron_address(parse_tron_address(a)) == a
    assert len(trx) >= 1 and len(usdt_t) >= 1


@pytest.mark.parametrize(
    "bad", ["TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6u", "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa", "T123"]
)
def test_tron_malformed(bad: str) -> None:
    with pytest.raises(InvalidInput, match="TRON"):
        parse_tron_address(bad)
