"""Bitcoin networks: the parameters that differ between mainnet, testnet, signet and regtest."""

from __future__ import annotations

from dataclasses import dataclass

from fundtrail.errors import InvalidInput


@dataclass(frozen=True)
class Network:
    name: str
    chain: str  # the value of the store's `chain` column
    magic: bytes  # blk*.dat and P2P framing
    p2pkh_prefix: int
    p2sh_prefix: int
    hrp: str  # bech32 human-readable part
    genesis_hash: str
    bip34_height: int  # height from which the coinbase must carry its height


MAINNET = Network(
    "mainnet",
    "bitcoin",
    bytes.fromhex("f9beb4d9"),
    0x00,
    0x05,
    "bc",
    "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
    227931,
)
TESTNET = Network(
    "testnet",
    "bitcoin-testnet",
    bytes.fromhex("0b110907"),
    0x6F,
    0xC4,
    "tb",
    "000000000933ea01ad0ee984209779baaec3ced90fa3f408719526f8d77f4943",
    21111,
)
SIGNET = Network(
    "signet",
    "bitcoin-signet",
    bytes.fromhex("0a03cf40"),
    0x6F,
    0xC4,
    "tb",
    "00000008819873e925422c1ff0f99f7cc9bbb232af63a077a480a3633bee1ef6",
    1,
)
REGTEST = Network(
    "regtest",
    "bitcoin-regtest",
    bytes.fromhex("fabfb5da"),
    0x6F,
    0xC4,
    "bcrt",
    "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206",
    1,
)

NETWORKS: dict[str, Network] = {n.name: n for n in (MAINNET, TESTNET, SIGNET, REGTEST)}
BY_CHAIN: dict[str, Network] = {n.chain: n for n in NETWORKS.values()}
BY_MAGIC: dict[bytes, Network] = {n.magic: n for n in NETWORKS.values()}


def network(name: str) -> Network:
    try:
        return NETWORKS[name]
    except KeyError:
        raise InvalidInput(f"unknown Bitcoin network {name!r}", f"use one of {', '.join(NETWORKS)}") from None


def by_chain(chain: str) -> Network:
    try:
        return BY_CHAIN[chain]
    except KeyError:
        raise InvalidInput(f"unknown chain {chain!r}", f"use one of {', '.join(BY_CHAIN)}") from None
