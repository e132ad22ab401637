"""EVM addresses: 20 bytes inside (the store's key), lower-case hex in data, EIP-55 when shown.

Parsing is strict: ``0x`` and 40 hex digits; an all-lower or all-upper address is accepted as is, a
mixed-case one must carry a valid EIP-55 checksum (a wrong one is a typo to be caught, not corrected).
Keccak and the checksum come from eth-utils.
"""

from __future__ import annotations

import re

from eth_utils.address import is_checksum_address, to_checksum_address

from fundtrail.errors import InvalidInput

_HEX40 = re.compile(r"^0x[0-9a-fA-F]{40}$")
EVM_FORMAT = "0x followed by 40 hex digits (EIP-55 checksummed or all one case)"


def parse_evm_address(text: str) -> bytes:
    s = text.strip()
    if not _HEX40.match(s):
        raise InvalidInput(f"{s!r} is not an EVM address", f"expected {EVM_FORMAT}")
    body = s[2:]
    if body != body.lower() and body != body.upper() and not is_checksum_address(s):
        raise InvalidInput(
            f"{s!r} has a wrong EIP-55 checksum (mixed case that does not match)",
            "check the address for a typo, or give it all in lower case",
        )
    return bytes.fromhex(body)


def evm_address(key: bytes) -> str:
    """The EIP-55 checksummed form of a 20-byte address."""
    if len(key) != 20:
        raise ValueError(f"an EVM address is 20 bytes, not {len(key)}")
    return str(to_checksum_address("0x" + key.hex()))


def data_address(text: str, where: str) -> bytes:
    """An address inside source data (ETL files, RPC answers): any case accepted, shape checked."""
    s = text.strip()
    if not _HEX40.match(s):
        raise InvalidInput(f"{where}: {s!r} is not a 20-byte hex address", "the data is malformed")
    return bytes.fromhex(s[2:])
