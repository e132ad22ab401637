"""Address texts in bulk for the simulator's truth: millions of P2WPKH addresses encoded as bech32 in one
compiled pass (BIP173), P2PKH ones through the fast base58check of ``labels.codecs``. Tests compare both
with bip-utils."""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np
import pyarrow as pa

from fundtrail.labels.codecs import _BECH32, _POLY, _hrp_state, base58check_encode

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


def p2pkh_texts(version: bytes, h160: list[bytes]) -> list[str]:
    return [base58check_encode(version + h) for h in h160]
