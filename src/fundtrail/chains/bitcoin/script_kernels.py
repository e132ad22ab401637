"""Compiled (Numba) classification of output scripts, after Bitcoin Core's ``Solver``
(script/solver.cpp): the type of a script and where its address payload lies."""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

# script type codes, duplicated from script.py as plain ints for the compiled code
_NONSTANDARD, _P2PKH, _P2SH, _P2WPKH, _P2WSH, _P2TR, _WUNK, _P2PK, _MULTI, _NULLDATA, _ANCHOR = range(11)


@njit(cache=True, inline="always")
def read_u32(buf: Any, pos: int) -> int:
    """A little-endian uint32 at buf[pos:pos+4] (the caller checks the bounds)."""
    return (
        np.int64(buf[pos])
        | (np.int64(buf[pos + 1]) << 8)
        | (np.int64(buf[pos + 2]) << 16)
        | (np.int64(buf[pos + 3]) << 24)
    )


@njit(cache=True)
def _push_only(buf: Any, pos: int, end: int) -> bool:
    """Bitcoin Core's CScript::IsPushOnly over buf[pos:end]."""
    while pos < end:
        op = buf[pos]
        pos += 1
        if op > 0x60:  # above OP_16
            return False
        if op >= 0x01 and op <= 0x4B:
            n = np.int64(op)
        elif op == 0x4C:
            if pos + 1 > end:
                return False
            n = np.int64(buf[pos])
            pos += 1
        elif op == 0x4D:
            if pos + 2 > end:
                return False
            n = np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8)
            pos += 2
        elif op == 0x4E:
            if pos + 4 > end:
                return False
            n = read_u32(buf, pos)
            pos += 4
        else:
            n = 0
        if pos + n > end:
            return False
        pos += n
    return True


@njit(cache=True, inline="always")
def _pubkey_size(first: int) -> int:
    """CPubKey::GetLen: the size a public key starting with this byte must have (0: invalid)."""
    if first == 2 or first == 3:
        return 33
    if first == 4 or first == 6 or first == 7:
        return 65
    return 0


@njit(cache=True)
def _is_multisig(buf: Any, s: int, n: int) -> bool:
    """Bitcoin Core's MatchMultisig: OP_m <pubkey>... OP_n OP_CHECKMULTISIG."""
    if n < 3 or buf[s + n - 1] != 0xAE:
        return False
    m_op = buf[s]
    n_op = buf[s + n - 2]
    if m_op < 0x51 or m_op > 0x60 or n_op < 0x51 or n_op > 0x60:
        return False
    pos = s + 1
    end = s + n - 2
    keys = 0
    while pos < end:
        ln = np.int64(buf[pos])
        if ln != 33 and ln != 65:
            return False
        if pos + 1 + ln > end or _pubkey_size(buf[pos + 1]) != ln:
            return False
        pos += 1 + ln
        keys += 1
    return keys == n_op - 0x50 and m_op <= n_op


@njit(cache=True)
def classify(buf: Any, s: int, n: int) -> tuple[int, int, int]:
    """Classify the output script buf[s:s+n]. Returns (type code, payload offset, payload length)."""
    if n == 25 and buf[s] == 0x76 and buf[s + 1] == 0xA9 and buf[s + 2] == 0x14:
        if buf[s + 23] == 0x88 and buf[s + 24] == 0xAC:
            return _P2PKH, s + 3, 20
    if n == 23 and buf[s] == 0xA9 and buf[s + 1] == 0x14 and buf[s + 22] == 0x87:
        return _P2SH, s + 2, 20
    if n >= 4 and n <= 42 and np.int64(buf[s + 1]) == n - 2:
        op = buf[s]
        if op == 0:
            if n == 22:
                return _P2WPKH, s + 2, 20
            if n == 34:
                return _P2WSH, s + 2, 32
            return _NONSTANDARD, 0, 0
        if op >= 0x51 and op <= 0x60:
            if op == 0x51 and n == 34:
                return _P2TR, s + 2, 32
            if op == 0x51 and n == 4 and buf[s + 2] == 0x4E and buf[s + 3] == 0x73:
                return _ANCHOR, s + 2, 2
            return _WUNK, s + 2, n - 2
    if n == 35 and buf[s] == 33 and buf[s + 34] == 0xAC and _pubkey_size(buf[s + 1]) == 33:
        return _P2PK, s + 1, 33
    if n == 67 and buf[s] == 65 and buf[s + 66] == 0xAC and _pubkey_size(buf[s + 1]) == 65:
        return _P2PK, s + 1, 65
    if n >= 1 and buf[s] == 0x6A and _push_only(buf, s + 1, s + n):
        return _NULLDATA, 0, 0
    if _is_multisig(buf, s, n):
        return _MULTI, 0, 0
    return _NONSTANDARD, 0, 0
