"""Address texts in bulk for the simulator's truth: millions of P2WPKH addresses encoded as bech32 in one
compiled pass (BIP173), P2PKH ones through the fast base58check of ``labels.codecs``. Tests compare both
with bip-utils."""

from __future__ import annotations

import hashlib
from typing import Any

import numba as nb
import numpy as np
import pyarrow as pa

from fundtrail.labels.codecs import _BECH32, _POLY, _hrp_state

_CHARSET = np.frombuffer(_BECH32.encode(), np.uint8).copy()
_GEN = np.array(_POLY, np.uint32)


@nb.njit(cache=True)
def _bech32_v0(h160: Any, start: int, charset: Any, gen: Any) -> Any:  # pragma: no cover - compiled
    n = h160.shape[0]
    out = np.empty((n, 39), np.uint8)
    data = np.empty(33, np.uint8)
    for i in range(n):
        data[0] = 0
        acc = 0
        bits = 0
        k = 1
        for j in range(20):
            acc = ((acc << 8) | h160[i, j]) & 0xFFFF
            bits += 8
            while bits >= 5:
                bits -= 5
                data[k] = (acc >> bits) & 31
                k += 1
        chk = np.uint32(start)
        for j in range(33):
            top = chk >> 25
            chk = ((chk & np.uint32(0x1FFFFFF)) << 5) ^ np.uint32(data[j]) ^ gen[top]
        for _ in range(6):
            top = chk >> 25
            chk = ((chk & np.uint32(0x1FFFFFF)) << 5) ^ gen[top]
        chk ^= np.uint32(1)
        for j in range(33):
            out[i, j] = charset[data[j]]
        for j in range(6):
            out[i, 33 + j] = charset[(chk >> (5 * (5 - j))) & 31]
    return out


def p2wpkh_texts(hrp: str, h160: np.ndarray[Any, Any]) -> pa.Array:
    """bech32 v0 addresses of the 20-byte key hashes in the rows of ``h160`` (uint8, n x 20), as an Arrow
    string array (built from the bytes, no Python strings)."""
    if len(h160) == 0:
        return pa.array([], pa.string())
    body = _bech32_v0(h160, _hrp_state(hrp), _CHARSET, _GEN)
    prefix = (hrp + "1").encode()
    joined = np.empty((len(h160), len(prefix) + 39), np.uint8)
    joined[:, : len(prefix)] = np.frombuffer(prefix, np.uint8)
    joined[:, len(prefix) :] = body
    width = joined.shape[1]
    offsets = pa.array(np.arange(0, (len(h160) + 1) * width, width, dtype=np.int32))
    return pa.StringArray.from_buffers(len(h160), offsets.buffers()[1], pa.py_buffer(joined.tobytes()))


_B58 = np.frombuffer(b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz", np.uint8).copy()


_B58_5 = 58**5  # five base-58 digits per division: 32-bit limbs, 58^5 < 2^30


@nb.njit(cache=True)
def _base58_25(payload: Any, alphabet: Any) -> tuple[Any, Any]:  # pragma: no cover - compiled
    """Base58 of 25-byte rows (version, hash160, checksum): characters and lengths (at most 35). The
    200-bit number is held in seven 32-bit limbs (the top one of 8 bits) and divided by 58^5 at a time."""
    n = payload.shape[0]
    out = np.empty((n, 35), np.uint8)
    lengths = np.empty(n, np.int64)
    limbs = np.empty(7, np.int64)
    digits = np.empty(40, np.uint8)
    for i in range(n):
        limbs[0] = payload[i, 0]
        for j in range(6):
            b = 1 + 4 * j
            limbs[1 + j] = (
                (np.int64(payload[i, b]) << 24) | (np.int64(payload[i, b + 1]) << 16)
                | (np.int64(payload[i, b + 2]) << 8) | np.int64(payload[i, b + 3])
            )  # fmt: skip
        zeros = 0
        while zeros < 25 and payload[i, zeros] == 0:
            zeros += 1
        k = 0
        start = 0
        while start < 7 and limbs[start] == 0:
            start += 1
        while start < 7:
            rem = np.int64(0)
            for j in range(start, 7):
                acc = (rem << 32) | limbs[j]
                limbs[j] = acc // 656356768
                rem = acc % 656356768
            for _ in range(5):
                digits[k] = rem % 58
                rem //= 58
                k += 1
            while start < 7 and limbs[start] == 0:
                start += 1
        while k > 0 and digits[k - 1] == 0:  # the last group's leading zeros are not digits
            k -= 1
        for j in range(zeros):
            out[i, j] = alphabet[0]
        for j in range(k):
            out[i, zeros + j] = alphabet[digits[k - 1 - j]]
        lengths[i] = zeros + k
    return out, lengths


def p2pkh_texts(version: bytes, h160: list[bytes]) -> pa.Array:
    """Base58Check addresses of ``version`` + each 20-byte hash, as an Arrow string array (checksums by
    hashlib, the base conversion compiled)."""
    if not h160:
        return pa.array([], pa.string())
    sha = hashlib.sha256
    rows = b"".join(p + sha(sha(p).digest()).digest()[:4] for p in (version + h for h in h160))
    chars, lengths = _base58_25(np.frombuffer(rows, np.uint8).reshape(-1, 25), _B58)
    mask = np.arange(35)[None, :] < lengths[:, None]
    data = chars[mask].tobytes()
    offsets = np.zeros(len(h160) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.StringArray.from_buffers(len(h160), pa.py_buffer(offsets.tobytes()), pa.py_buffer(data))
