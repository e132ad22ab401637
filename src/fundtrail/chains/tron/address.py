"""TRON addresses: 21 bytes inside (0x41 + the 20-byte account body), base58check ``T...`` when shown.

Base58check comes from bip-utils. Hex forms (``41`` + 40 hex digits, as TRON's API returns them) are
accepted too; a base58 string with a bad checksum or another prefix is rejected.
"""

from __future__ import annotations

import re

from bip_utils import Base58Decoder, Base58Encoder

from fundtrail.errors import InvalidInput

PREFIX = 0x41
TRON_FORMAT = "base58check starting with T (34 characters), or 41 followed by 40 hex digits"
_HEX = re.compile(r"^(0x)?41[0-9a-fA-F]{40}$")


def parse_tron_address(text: str) -> bytes:
    s = text.strip()
    if _HEX.match(s):
        return bytes.fromhex(s.removeprefix("0x"))
    try:
        raw = bytes(Base58Decoder.CheckDecode(s))
    except Exception:
        raise InvalidInput(
            f"{s!r} is not a valid TRON address (bad base58 characters or checksum)",
            f"expected {TRON_FORMAT}",
        ) from None
    if len(raw) != 21 or raw[0] != PREFIX:
        raise InvalidInput(
            f"{s!r} is not a TRON account address (prefix or length)", f"expected {TRON_FORMAT}"
        )
    return raw


def tron_address(key: bytes) -> str:
    if len(key) != 21 or key[0] != PREFIX:
        raise ValueError("a TRON address key is 0x41 + 20 bytes")
    return str(Base58Encoder.CheckEncode(key))


def from_body(body: bytes) -> bytes:
    """The 21-byte key of a 20-byte account body (EVM-style addresses inside TRON's VM and logs)."""
    if len(body) != 20:
        raise ValueError("a TRON account body is 20 bytes")
    return bytes([PREFIX]) + body
