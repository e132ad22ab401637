"""Read block files: Bitcoin Core ``blk*.dat`` (magic + length framing, optional ``xor.dat`` obfuscation),
and files holding one serialized block, as binary or as hex text."""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fundtrail.chains.bitcoin import kernels
from fundtrail.chains.bitcoin.decoder import I64, U8
from fundtrail.chains.bitcoin.network import BY_MAGIC, Network
from fundtrail.errors import CorruptData, InvalidInput

_HEX = frozenset(string.hexdigits + string.whitespace)


@dataclass
class BlockFile:
    path: Path
    buf: U8
    starts: I64
    ends: I64
    framed: bool  # blk*.dat framing (True) or one bare block (False)
    file_size: int


def read_xor_key(path: Path) -> bytes:
    """Bitcoin Core >= 28 obfuscates blk*.dat with the 8-byte key in blocks/xor.dat."""
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(
            f"cannot read xor key {path}: {exc.strerror}", "give the node's blocks/xor.dat"
        ) from None
    if len(key) != 8:
        raise InvalidInput(
            f"xor key {path} holds {len(key)} bytes, not 8", "give the node's blocks/xor.dat file"
        )
    return key


def read_block_file(path: Path, network: Network, xor_key: bytes | None = None) -> BlockFile:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", "check the path") from None
    if not raw:
        raise CorruptData(f"{path} is empty", "give a blk*.dat file or a file holding one block")
    buf = np.frombuffer(raw, np.uint8)
    if xor_key is not None and any(xor_key):
        buf = buf ^ np.resize(np.frombuffer(xor_key, np.uint8), buf.shape[0])
    elif _looks_hex(raw):
        try:
            buf = np.frombuffer(bytes.fromhex(raw.decode("ascii")), np.uint8)
        except ValueError:
            raise CorruptData(f"{path} is hex text of odd length", "the file is truncated") from None
    head = bytes(buf[:4])
    if head == network.magic:
        starts, ends, status, pos = kernels.frame_blocks(buf, np.frombuffer(network.magic, np.uint8))
        if status == 1:
            raise CorruptData(
                f"{path} is truncated: the block framed at byte {pos} runs past the end of the file",
                "copy the file again (or stop the node before reading its blk files)",
            )
        if status == 2:
            found = bytes(buf[pos : pos + 4]).hex()
            raise CorruptData(
                f"{path}: wrong network magic {found} at byte {pos} (expected {network.magic.hex()} for "
                f"{network.name})",
                "the file is damaged, or mixes networks",
            )
        return BlockFile(path, buf, starts, ends, True, len(raw))
    other = BY_MAGIC.get(head)
    if other is not None:
        raise InvalidInput(
            f"{path} is a {other.name} block file (magic {head.hex()}), not {network.name}",
            f"pass --network {other.name}",
        )
    if xor_key is None and _looks_obfuscated(raw):
        raise InvalidInput(
            f"{path} does not start with a block or a network magic; it looks obfuscated",
            "pass --xor-key with the node's blocks/xor.dat (Bitcoin Core >= 28)",
        )
    if buf.shape[0] < 81:
        raise CorruptData(f"{path} is too short to hold a block ({buf.shape[0]} bytes)", "check the file")
    return BlockFile(path, buf, np.array([0], np.int64), np.array([buf.shape[0]], np.int64), False, len(raw))


def _looks_hex(raw: bytes) -> bool:
    sample = raw[:4096]
    try:
        return all(c in _HEX for c in sample.decode("ascii"))
    except UnicodeDecodeError:
        return False


def _looks_obfuscated(raw: bytes) -> bool:
    """A blk file's first 4 bytes are a magic; a bare block's are a small version number or BIP9 bits."""
    version = int.from_bytes(raw[:4], "little")
    return not (version < 0x100 or (version >> 29) == 0b001)
