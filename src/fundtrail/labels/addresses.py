"""Which chain an address of a label source belongs to, its address key and its canonical text.

Sources name a *currency* (``BTC``, ``XBT``, ``ETH``, ``USDT`` ...), not a chain, and real lists get it
wrong: OFAC filed a TRON address as XBT, and the USDT list mixes ERC-20 (``0x...``, Ethereum), TRC-20
(``T...``, TRON) and Omni-layer (Bitcoin-format) addresses. The rules:

1. A currency of a chain fundtrail ingests (:data:`CURRENCY_CHAIN` -> a chain of the registry): the
   address is parsed by that chain's parser. If it does not parse, the chain is detected from the
   address format (``0x`` + 40 hex: Ethereum, or the declared EVM chain; ``T...`` base58check: TRON;
   else Bitcoin mainnet). If nothing parses, the tag is skipped with the parser's reason.
2. A multi-chain token (``USDT``, ``USDC``): the chain is detected from the format; a Bitcoin-format
   USDT address is an Omni-layer one (context ``asset: USDT-Omni``).
3. Any other currency: a *recorded* chain (litecoin, monero, ... or the lower-cased currency code):
   the label is kept with the address as given and a NULL key (fundtrail does not ingest that chain, so
   nothing joins on it).

The declared currency is kept in the label's context by every importer.
Ethereum-family addresses compare case-insensitively (the key is the 20 bytes). A mixed-case address with
a wrong EIP-55 checksum is refused when ``strict`` (CSV, ``labels add``); from an official list it is
recorded as given and counted as a warning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fundtrail.chains.bitcoin.address import parse_address
from fundtrail.chains.bitcoin.network import MAINNET
from fundtrail.chains.registry import CHAINS
from fundtrail.chains.tron.address import PREFIX as TRON_PREFIX
from fundtrail.chains.tron.address import parse_tron_address
from fundtrail.errors import InvalidInput
from fundtrail.labels.codecs import base58check, bitcoin_base58_key, bitcoin_segwit_key, eip55

# currency code (upper case) -> chain name (a registry chain, or a recorded chain we do not ingest)
CURRENCY_CHAIN: dict[str, str] = {
    "BTC": "bitcoin",
    "XBT": "bitcoin",
    "ETH": "ethereum",
    "TRX": "tron",
    "BSC": "bsc",
    "BEP20": "bsc",
    "BNB": "bsc",
    "MATIC": "polygon",
    "POL": "polygon",
    "ARB": "arbitrum",
    "OP": "optimism",
    "AVAX": "avalanche",
    "LTC": "litecoin",
    "BCH": "bitcoin-cash",
    "BSV": "bitcoin-sv",
    "BTG": "bitcoin-gold",
    "XMR": "monero",
    "ZEC": "zcash",
    "DASH": "dash",
    "ETC": "ethereum-classic",
    "XRP": "ripple",
    "RIPPLE": "ripple",
    "XVG": "verge",
    "DOGE": "dogecoin",
    "SOL": "solana",
    "EOS": "eos",
    "BEP2": "bnb-beacon-chain",
    "ADA": "cardano",
    "DOT": "polkadot",
    "XLM": "stellar",
    "XTZ": "tezos",
    "ATOM": "cosmos",
    "ALGO": "algorand",
    "FIL": "filecoin",
}
MULTI_CHAIN_TOKENS = frozenset({"USDT", "USDC"})
RECORDED_CHAINS = frozenset(c for c in CURRENCY_CHAIN.values() if c not in CHAINS)
_HEX40 = re.compile(r"^0x[0-9a-fA-F]{40}$")
_RECORDED_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class Resolved:
    chain: str
    address: str  # canonical display text (as given for recorded chains)
    key: bytes | None  # None for recorded chains
    asset: str | None = None  # e.g. USDT-Omni
    checksum_warning: bool = False  # mixed-case EVM address with a wrong EIP-55 checksum, kept as given


def chain_for_currency(currency: str) -> str | None:
    """The chain a currency code names; None for a multi-chain token (detect from the format)."""
    code = currency.strip().upper()
    if code in MULTI_CHAIN_TOKENS:
        return None
    if code in CURRENCY_CHAIN:
        return CURRENCY_CHAIN[code]
    name = currency.strip().lower()
    if not _RECORDED_NAME.match(name):
        raise InvalidInput(f"currency {currency!r} is not a currency code", "give a code such as BTC or ETH")
    return name


def _evm(text: str, chain: str, strict: bool) -> Resolved:
    body = text[2:]
    key = bytes.fromhex(body)
    shown = eip55(key)
    if body != body.lower() and body != body.upper() and text != shown:
        if strict:
            raise InvalidInput(
                f"{text!r} has a wrong EIP-55 checksum (mixed case that does not match)",
                "check the address for a typo, or give it all in lower case",
            )
        return Resolved(chain, text, key, checksum_warning=True)
    return Resolved(chain, shown, key)


def _bitcoin(text: str) -> Resolved:
    key = bitcoin_segwit_key(text) if text[:3] == "bc1" else bitcoin_base58_key(text)
    if key is None:  # not a plain valid address: the strict codec accepts it or names the problem
        key = parse_address(text, MAINNET)
    # a base58 string that parsed is canonical; bech32 is shown in lower case
    return Resolved("bitcoin", text.lower() if text[:3].lower() == "bc1" else text, key)


def _tron(text: str) -> Resolved:
    raw = base58check(text)
    if raw is not None and len(raw) == 21 and raw[0] == TRON_PREFIX:
        return Resolved("tron", text, raw)
    key = parse_tron_address(text)
    return Resolved("tron", CHAINS["tron"].show(key), key)


def check_chain(chain: str) -> str:
    """``chain`` if it is a registry chain or a plausible name of a chain fundtrail does not ingest."""
    if chain not in CHAINS and not _RECORDED_NAME.match(chain):
        raise InvalidInput(
            f"unknown chain {chain!r}",
            f"use one of {', '.join(CHAINS)}, or the lower-case name of a chain fundtrail does not ingest "
            f"(e.g. {', '.join(sorted(RECORDED_CHAINS)[:4])})",
        )
    return chain


def resolve_on(chain: str, text: str, strict: bool = True) -> Resolved:
    """Parse ``text`` as an address of ``chain`` (a registry chain or a recorded one), no detection."""
    s = text.strip()
    if not s:
        raise InvalidInput("empty address", "give an address")
    if check_chain(chain) not in CHAINS:
        if any(c.isspace() for c in s):
            raise InvalidInput(f"address {s!r} contains white space", "give the address alone")
        return Resolved(chain, s, None)
    c = CHAINS[chain]
    if c.family == "evm":
        if not _HEX40.match(s):
            raise InvalidInput(f"{s!r} is not an EVM address", f"expected {c.address_formats}")
        return _evm(s, chain, strict)
    if chain == "bitcoin":
        return _bitcoin(s)
    if chain == "tron":
        return _tron(s)
    key = c.parse(s)
    return Resolved(chain, c.show(key), key)


def detect(text: str, evm_chain: str = "ethereum", strict: bool = False) -> Resolved:
    """The chain an address belongs to by its format alone (Ethereum-family, TRON, Bitcoin mainnet)."""
    s = text.strip()
    if _HEX40.match(s):
        return _evm(s, evm_chain, strict)
    if s.startswith("T") and len(s) == 34:
        return _tron(s)
    return _bitcoin(s)


def resolve(currency: str, text: str, strict: bool = False) -> Resolved:
    """Resolve a source's (currency, address) to chain, canonical text and key (rules in the module doc).
    Raises :class:`InvalidInput` naming why the address does not parse."""
    s = text.strip()
    if not s:
        raise InvalidInput("empty address", "give an address")
    code = currency.strip().upper()
    chain = chain_for_currency(currency)
    if chain is None:  # multi-chain token
        r = detect(s, strict=strict)
        if r.chain == "bitcoin":
            return Resolved(r.chain, r.address, r.key, asset=f"{code}-Omni")
        return r
    if chain not in CHAINS:
        return resolve_on(chain, s, strict)
    try:
        return resolve_on(chain, s, strict)
    except InvalidInput as first:
        evm_chain = chain if CHAINS[chain].family == "evm" else "ethereum"
        try:
            return detect(s, evm_chain, strict)
        except InvalidInput:
            raise first from None
