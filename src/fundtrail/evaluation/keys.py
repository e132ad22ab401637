"""How the evaluation compares what the truth names with what the platform found: an address as its key
(the store's identity of an address, so ``BCRT1Q..``/``bcrt1q..`` or an EIP-55 and a lower-case EVM
address are one), a transaction id as lower-case hex without ``0x``.

Parsing is strict (the codecs of :mod:`fundtrail.chains.registry`); the fast paths of
:mod:`fundtrail.labels.codecs` are tried first because a large world's truth holds millions of addresses
and the strict Bitcoin codecs cost ~35 µs each. They only ever accept what the strict codecs accept.
Chains fundtrail does not know are compared on the address text as given.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from fundtrail.chains.bitcoin.network import BY_CHAIN
from fundtrail.chains.registry import CHAINS
from fundtrail.errors import InvalidInput
from fundtrail.labels.codecs import bitcoin_base58_key, bitcoin_segwit_key

_LOWER_HEX40 = re.compile(r"0x[0-9a-f]{40}")


def _bitcoin_fast(chain: str) -> Callable[[str], bytes | None]:
    net = BY_CHAIN[chain]

    def fast(text: str) -> bytes | None:
        if text.startswith(net.hrp + "1"):
            return bitcoin_segwit_key(text, net.hrp)
        return bitcoin_base58_key(text, net.p2pkh_prefix, net.p2sh_prefix)

    return fast


def _evm_fast(text: str) -> bytes | None:
    return bytes.fromhex(text[2:]) if _LOWER_HEX40.fullmatch(text) else None


def _no_fast(_: str) -> bytes | None:
    return None


_FAST: dict[str, Callable[[str], bytes | None]] = {
    name: _bitcoin_fast(name) if c.family == "bitcoin" else _evm_fast if c.family == "evm" else _no_fast
    for name, c in CHAINS.items()
}


def known_chain(chain: str) -> bool:
    return chain in CHAINS


def address_key(chain: str, text: str) -> bytes:
    """The identity of an address of ``chain``: its store key on a chain fundtrail knows (InvalidInput
    when it does not parse), else its text."""
    s = text.strip()
    fast = _FAST.get(chain)
    if fast is None:
        return s.encode()
    key = fast(s)
    return key if key is not None else CHAINS[chain].parse(s)


def address_key_or_none(chain: str, text: str | None) -> bytes | None:
    """:func:`address_key`, or None for a missing or malformed address (e.g. a trace's ``(fees)``)."""
    if text is None:
        return None
    try:
        return address_key(chain, text)
    except InvalidInput:
        return None


def txid_key(text: str) -> str:
    s = text.strip().lower()
    return s[2:] if s.startswith("0x") else s
