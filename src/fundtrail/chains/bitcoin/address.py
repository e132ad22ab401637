"""Bitcoin address codecs: address keys <-> canonical address strings.

Inside the store an address is its *key*: one byte naming its kind (the script type codes of
``script.py``) followed by its payload (the 20- or 32-byte hash or witness program; for a witness
program of an unknown version, the whole output script). The canonical string (base58check or
bech32/bech32m, per BIP173/BIP350) is a pure function of the key and the network, produced at the edges
by bip-utils. Parsing is strict: a wrong checksum, a prefix of another network, a mixed-case bech32
string or a witness program of an impossible length raises :class:`InvalidInput`.
"""

from __future__ import annotations

import hashlib

from bip_utils import Base58Decoder, Base58Encoder
from bip_utils.bech32 import SegwitBech32Decoder, SegwitBech32Encoder

from fundtrail.chains.bitcoin import script as st
from fundtrail.chains.bitcoin.network import Network
from fundtrail.errors import InvalidInput

ADDRESS_FORMATS = (
    "base58check P2PKH/P2SH (1... or 3... on mainnet, m/n/2... on test networks), "
    "bech32 P2WPKH/P2WSH (bc1q...), bech32m P2TR (bc1p...)"
)


def hash160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def key_to_address(key: bytes, net: Network) -> str:
    """The canonical address string of an address key."""
    kind, payload = key[0], key[1:]
    if kind == st.P2PKH:
        return str(Base58Encoder.CheckEncode(bytes([net.p2pkh_prefix]) + payload))
    if kind == st.P2SH:
        return str(Base58Encoder.CheckEncode(bytes([net.p2sh_prefix]) + payload))
    if kind in (st.P2WPKH, st.P2WSH):
        return str(SegwitBech32Encoder.Encode(net.hrp, 0, payload))
    if kind == st.P2TR:
        return str(SegwitBech32Encoder.Encode(net.hrp, 1, payload))
    if kind == st.WITNESS_UNKNOWN:  # payload is the script: OP_n, push length, program
        return str(SegwitBech32Encoder.Encode(net.hrp, payload[0] - 0x50, payload[2:]))
    raise ValueError(f"not an address key kind: {kind}")


def script_for_key(key: bytes) -> bytes:
    """The output script an address key pays to (P2PKH for keys made from P2PK outputs)."""
    kind, payload = key[0], key[1:]
    if kind == st.P2PKH:
        return b"\x76\xa9\x14" + payload + b"\x88\xac"
    if kind == st.P2SH:
        return b"\xa9\x14" + payload + b"\x87"
    if kind in (st.P2WPKH, st.P2WSH):
        return bytes([0, len(payload)]) + payload
    if kind == st.P2TR:
        return b"\x51\x20" + payload
    if kind == st.WITNESS_UNKNOWN:
        return payload
    raise ValueError(f"not an address key kind: {kind}")


def parse_address(text: str, net: Network) -> bytes:
    """Parse an address string strictly into its key, for the given network."""
    s = text.strip()
    if not s:
        raise InvalidInput("empty address", f"give an address: {ADDRESS_FORMATS}")
    if s.lower().startswith(net.hrp + "1"):
        return _parse_segwit(s, net)
    try:
        raw = bytes(Base58Decoder.CheckDecode(s))
    except Exception:
        raise InvalidInput(
            f"{s!r} is not a valid {net.name} Bitcoin address (bad base58 characters or checksum)",
            f"check it for typos; expected {ADDRESS_FORMATS}",
        ) from None
    if len(raw) != 21:
        raise InvalidInput(
            f"{s!r} decodes to {len(raw)} bytes, not the 21 of a Bitcoin address",
            f"expected {ADDRESS_FORMATS}",
        )
    if raw[0] == net.p2pkh_prefix:
        return bytes([st.P2PKH]) + raw[1:]
    if raw[0] == net.p2sh_prefix:
        return bytes([st.P2SH]) + raw[1:]
    raise InvalidInput(
        f"{s!r} has version byte 0x{raw[0]:02x}, which is not a {net.name} P2PKH or P2SH address",
        "pass --network for the address's network, or check the address",
    )


def _parse_segwit(s: str, net: Network) -> bytes:
    if s != s.lower() and s != s.upper():
        raise InvalidInput(f"{s!r} mixes upper and lower case", "bech32 addresses are all one case")
    try:
        ver, prog = SegwitBech32Decoder.Decode(net.hrp, s.lower())
    except Exception as exc:
        raise InvalidInput(
            f"{s!r} is not a valid bech32/bech32m address ({exc})",
            f"check it for typos; expected {ADDRESS_FORMATS}",
        ) from None
    prog = bytes(prog)
    if ver == 0:
        if len(prog) == 20:
            return bytes([st.P2WPKH]) + prog
        if len(prog) == 32:
            return bytes([st.P2WSH]) + prog
        raise InvalidInput(f"{s!r}: a version-0 witness program must be 20 or 32 bytes", "check it")
    if not 2 <= len(prog) <= 40 or not 1 <= ver <= 16:
        raise InvalidInput(f"{s!r}: witness version {ver} with a {len(prog)}-byte program", "check it")
    if ver == 1 and len(prog) == 32:
        return bytes([st.P2TR]) + prog
    return bytes([st.WITNESS_UNKNOWN, 0x50 + ver, len(prog)]) + prog
