"""Every chain fundtrail knows, its family, and how its addresses are parsed and shown."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fundtrail.chains.assets import NATIVE
from fundtrail.chains.bitcoin.address import key_to_address, parse_address
from fundtrail.chains.bitcoin.network import BY_CHAIN
from fundtrail.chains.evm.address import EVM_FORMAT, evm_address, parse_evm_address
from fundtrail.chains.tron.address import TRON_FORMAT, parse_tron_address, tron_address
from fundtrail.errors import InvalidInput

PSEUDO_NAMES = {b"fees": "(fees)", b"beacon": "(beacon chain)"}


@dataclass(frozen=True)
class Chain:
    name: str
    family: str  # "bitcoin", "evm" or "tron"
    parse: Callable[[str], bytes]
    show: Callable[[bytes], str]
    address_formats: str


def _shown(show: Callable[[bytes], str]) -> Callable[[bytes], str]:
    def wrapper(key: bytes) -> str:
        return PSEUDO_NAMES.get(key) or show(key)

    return wrapper


def _bitcoin(name: str) -> Chain:
    net = BY_CHAIN[name]
    return Chain(
        name,
        "bitcoin",
        lambda s: parse_address(s, net),
        lambda k: key_to_address(k, net),
        "base58check or bech32/bech32m",
    )


CHAINS: dict[str, Chain] = {
    **{name: _bitcoin(name) for name in BY_CHAIN},
    **{
        name: Chain(name, "evm", parse_evm_address, _shown(evm_address), EVM_FORMAT)
        for name in NATIVE
        if name != "tron"
    },
    "tron": Chain("tron", "tron", parse_tron_address, _shown(tron_address), TRON_FORMAT),
}


def chain(name: str) -> Chain:
    try:
        return CHAINS[name]
    except KeyError:
        raise InvalidInput(f"unknown chain {name!r}", f"use one of {', '.join(CHAINS)}") from None
