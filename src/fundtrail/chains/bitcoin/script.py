"""Output script types, following Bitcoin Core's ``Solver`` (script/solver.cpp).

Codes are what the decoding kernel emits; names are what the store and the CLI show.
"""

from __future__ import annotations

from typing import Final

NONSTANDARD: Final = 0
P2PKH: Final = 1
P2SH: Final = 2
P2WPKH: Final = 3
P2WSH: Final = 4
P2TR: Final = 5
WITNESS_UNKNOWN: Final = 6  # a witness program of a future version: it has an address (bech32m)
P2PK: Final = 7  # shown as the P2PKH address of its key, flagged as p2pk
MULTISIG: Final = 8  # bare multisig: no address, script kept
NULLDATA: Final = 9  # OP_RETURN followed by pushes only: no address, data kept
ANCHOR: Final = 10  # pay-to-anchor (witness v1, program 4e73; Bitcoin Core 28): has an address

SCRIPT_TYPE_NAMES: Final[tuple[str, ...]] = (
    "nonstandard",
    "p2pkh",
    "p2sh",
    "p2wpkh",
    "p2wsh",
    "p2tr",
    "witness_unknown",
    "p2pk",
    "multisig",
    "nulldata",
    "anchor",
)

# Address "kinds": the first byte of an address key. An address key is kind + payload, where the
# payload is the hash or witness program (for WITNESS_UNKNOWN and ANCHOR: version byte + program).
# P2PK outputs get a P2PKH key (hash160 of the public key), as block explorers show them.
ADDRESS_KIND_OF_TYPE: Final[dict[int, int]] = {
    P2PKH: P2PKH,
    P2SH: P2SH,
    P2WPKH: P2WPKH,
    P2WSH: P2WSH,
    P2TR: P2TR,
    WITNESS_UNKNOWN: WITNESS_UNKNOWN,
    ANCHOR: WITNESS_UNKNOWN,
    P2PK: P2PKH,
}

HAS_ADDRESS: Final[frozenset[int]] = frozenset(ADDRESS_KIND_OF_TYPE)
