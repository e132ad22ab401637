"""Compiled (Numba) kernels that walk serialized blocks and transactions.

The kernels never trust their input: every read is bounds-checked and a malformed block gets an error
code and the offset where decoding stopped, never a crash or an out-of-bounds read. Hashing is not done
here: ``sha256.hash_batch`` hashes the byte ranges these kernels return.

Layout is columnar: one array per field, transactions, inputs and outputs each numbered across the
whole call, so a file of many blocks is decoded in one compiled pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from fundtrail.chains.bitcoin.script_kernels import _ANCHOR, _P2PK, _WUNK, classify
from fundtrail.chains.bitcoin.script_kernels import read_u32 as _u32

# Error codes (see ERROR_TEXT).
OK = 0
E_TRUNCATED = 1
E_TRAILING = 2
E_NONCANONICAL_VARINT = 3
E_WITNESS_FLAG = 4
E_SUPERFLUOUS_WITNESS = 5
E_NO_INPUTS = 6
E_VALUE_RANGE = 7
E_NO_TRANSACTIONS = 8
E_SIZE = 9

ERROR_TEXT = {
    E_TRUNCATED: "data ends in the middle of a field (truncated)",
    E_TRAILING: "bytes left over after the last transaction",
    E_NONCANONICAL_VARINT: "non-canonical variable-length integer",
    E_WITNESS_FLAG: "unknown transaction serialization flag",
    E_SUPERFLUOUS_WITNESS: "witness flag set but every witness is empty",
    E_NO_INPUTS: "transaction with no inputs",
    E_VALUE_RANGE: "output value above 21,000,000 BTC",
    E_NO_TRANSACTIONS: "block with no transactions",
    E_SIZE: "count larger than the data could hold",
}

MAX_MONEY = 21_000_000 * 100_000_000


@njit(cache=True, inline="always")
def _varint(buf: Any, pos: int, end: int) -> tuple[int, int, int]:
    """Read a CompactSize at pos. Returns (value, new position, error)."""
    if pos >= end:
        return 0, pos, E_TRUNCATED
    b = buf[pos]
    if b < 0xFD:
        return np.int64(b), pos + 1, OK
    if b == 0xFD:
        if pos + 3 > end:
            return 0, pos, E_TRUNCATED
        v = np.int64(buf[pos + 1]) | (np.int64(buf[pos + 2]) << 8)
        if v < 0xFD:
            return 0, pos, E_NONCANONICAL_VARINT
        return v, pos + 3, OK
    if b == 0xFE:
        if pos + 5 > end:
            return 0, pos, E_TRUNCATED
        v = np.int64(0)
        for k in range(4):
            v |= np.int64(buf[pos + 1 + k]) << (8 * k)
        if v <= 0xFFFF:
            return 0, pos, E_NONCANONICAL_VARINT
        return v, pos + 5, OK
    if pos + 9 > end:
        return 0, pos, E_TRUNCATED
    if buf[pos + 8] >= 0x80:  # above 2^63: no count in a real block comes near
        return 0, pos, E_SIZE
    v = np.int64(0)
    for k in range(8):
        v |= np.int64(buf[pos + 1 + k]) << (8 * k)
    if v <= 0xFFFFFFFF:
        return 0, pos, E_NONCANONICAL_VARINT
    return v, pos + 9, OK


@njit(cache=True, inline="always")
def _u64(buf: Any, pos: int) -> int:
    v = np.uint64(0)
    for k in range(8):
        v |= np.uint64(buf[pos + k]) << np.uint64(8 * k)
    return v


@njit(cache=True)
def _walk(
    buf: Any,
    start: int,
    end: int,
    has_header: bool,
    fill: bool,
    t0: int,
    i0: int,
    o0: int,
    tx_off: Any,
    tx_len: Any,
    tx_strip_len: Any,
    tx_version: Any,
    tx_locktime: Any,
    tx_segwit: Any,
    tx_n_in: Any,
    tx_n_out: Any,
    in_prev: Any,
    in_vout: Any,
    in_seq: Any,
    in_script_off: Any,
    in_script_len: Any,
    in_wit_items: Any,
    in_wit_off: Any,
    in_wit_len: Any,
    out_value: Any,
    out_script_off: Any,
    out_script_len: Any,
    out_type: Any,
    out_pay_off: Any,
    out_pay_len: Any,
) -> tuple[int, int, int, int, int, int]:
    """Walk one block (or one bare transaction). Count mode (fill=False) validates and counts; fill mode
    writes rows starting at t0/i0/o0. Returns (error, error offset, n_tx, n_in, n_out, end position).

    The stripped serialization of a SegWit transaction (what its txid hashes) is not copied: it is the
    version (4 bytes), then the bytes from after the marker and flag up to the witnesses
    (``tx_strip_len - 8`` of them, from offset 6), then the locktime (the last 4 bytes)."""
    pos = start
    if has_header:
        if end - start < 80:
            return E_TRUNCATED, end, 0, 0, 0, pos
        pos += 80
        n_tx, pos, err = _varint(buf, pos, end)
        if err != OK:
            return err, pos, 0, 0, 0, pos
        if n_tx == 0:
            return E_NO_TRANSACTIONS, pos, 0, 0, 0, pos
        if n_tx > (end - pos) // 60 + 1:
            return E_SIZE, pos, 0, 0, 0, pos
    else:
        n_tx = 1
    ti = t0
    ii = i0
    oi = o0
    for _t in range(n_tx):
        txs = pos
        if pos + 4 > end:
            return E_TRUNCATED, pos, 0, 0, 0, pos
        version = _u32(buf, pos)
        pos += 4
        n_in, pos, err = _varint(buf, pos, end)
        if err != OK:
            return err, pos, 0, 0, 0, pos
        segwit = False
        if n_in == 0:
            if pos >= end:
                return E_TRUNCATED, pos, 0, 0, 0, pos
            if buf[pos] != 1:
                return (E_NO_INPUTS if buf[pos] == 0 else E_WITNESS_FLAG), pos, 0, 0, 0, pos
            pos += 1
            segwit = True
            body = pos
            n_in, pos, err = _varint(buf, pos, end)
            if err != OK:
                return err, pos, 0, 0, 0, pos
            if n_in == 0:
                return E_NO_INPUTS, pos, 0, 0, 0, pos
        if not segwit:
            body = txs + 4
        if n_in > (end - pos) // 41:
            return E_SIZE, pos, 0, 0, 0, pos
        first_in = ii
        for _i in range(n_in):
            if pos + 36 > end:
                return E_TRUNCATED, pos, 0, 0, 0, pos
            if fill:
                for k in range(32):
                    in_prev[ii, k] = buf[pos + 31 - k]
                in_vout[ii] = _u32(buf, pos + 32)
            pos += 36
            sl, pos, err = _varint(buf, pos, end)
            if err != OK:
                return err, pos, 0, 0, 0, pos
            if pos + sl + 4 > end:
                return E_TRUNCATED, pos, 0, 0, 0, pos
            if fill:
                in_script_off[ii] = pos
                in_script_len[ii] = sl
                in_seq[ii] = _u32(buf, pos + sl)
                in_wit_items[ii] = 0
                in_wit_off[ii] = 0
                in_wit_len[ii] = 0
            pos += sl + 4
            ii += 1
        n_out, pos, err = _varint(buf, pos, end)
        if err != OK:
            return err, pos, 0, 0, 0, pos
        if n_out > (end - pos) // 9:
            return E_SIZE, pos, 0, 0, 0, pos
        for _o in range(n_out):
            if pos + 8 > end:
                return E_TRUNCATED, pos, 0, 0, 0, pos
            value = _u64(buf, pos)
            if value > np.uint64(MAX_MONEY):
                return E_VALUE_RANGE, pos, 0, 0, 0, pos
            pos += 8
            sl, pos, err = _varint(buf, pos, end)
            if err != OK:
                return err, pos, 0, 0, 0, pos
            if pos + sl > end:
                return E_TRUNCATED, pos, 0, 0, 0, pos
            if fill:
                out_value[oi] = np.int64(value)
                out_script_off[oi] = pos
                out_script_len[oi] = sl
                st, po, pl = classify(buf, pos, sl)
                out_type[oi] = st
                out_pay_off[oi] = po
                out_pay_len[oi] = pl
            pos += sl
            oi += 1
        wit_start = pos
        if segwit:
            any_witness = False
            for i in range(n_in):
                ws = pos
                items, pos, err = _varint(buf, pos, end)
                if err != OK:
                    return err, pos, 0, 0, 0, pos
                if items > (end - pos):
                    return E_SIZE, pos, 0, 0, 0, pos
                if items > 0:
                    any_witness = True
                for _k in range(items):
                    ln, pos, err = _varint(buf, pos, end)
                    if err != OK:
                        return err, pos, 0, 0, 0, pos
                    if pos + ln > end:
                        return E_TRUNCATED, pos, 0, 0, 0, pos
                    pos += ln
                if fill:
                    in_wit_items[first_in + i] = items
                    in_wit_off[first_in + i] = ws
                    in_wit_len[first_in + i] = pos - ws
            if not any_witness:
                return E_SUPERFLUOUS_WITNESS, wit_start, 0, 0, 0, pos
        if pos + 4 > end:
            return E_TRUNCATED, pos, 0, 0, 0, pos
        locktime = _u32(buf, pos)
        pos += 4
        slen = (4 + (wit_start - body) + 4) if segwit else (pos - txs)
        if fill:
            tx_off[ti] = txs
            tx_len[ti] = pos - txs
            tx_version[ti] = version
            tx_locktime[ti] = locktime
            tx_segwit[ti] = segwit
            tx_n_in[ti] = n_in
            tx_n_out[ti] = n_out
            tx_strip_len[ti] = slen
        ti += 1
    if pos != end:
        return E_TRAILING, pos, 0, 0, 0, pos
    return OK, 0, ti - t0, ii - i0, oi - o0, pos


@njit(cache=True)
def _columns(nt: int, ni: int, no: int) -> Any:
    """The row arrays :func:`_walk` fills, in its argument order, for nt transactions, ni inputs and no
    outputs (all empty: what count mode is given)."""
    return (
        np.empty(nt, np.int64),  # tx_off
        np.empty(nt, np.int64),  # tx_len
        np.empty(nt, np.int64),  # tx_strip_len
        np.empty(nt, np.int64),  # tx_version
        np.empty(nt, np.int64),  # tx_locktime
        np.empty(nt, np.bool_),  # tx_segwit
        np.empty(nt, np.int64),  # tx_n_in
        np.empty(nt, np.int64),  # tx_n_out
        np.empty((ni, 32), np.uint8),  # in_prev
        np.empty(ni, np.int64),  # in_vout
        np.empty(ni, np.int64),  # in_seq
        np.empty(ni, np.int64),  # in_script_off
        np.empty(ni, np.int64),  # in_script_len
        np.empty(ni, np.int64),  # in_wit_items
        np.empty(ni, np.int64),  # in_wit_off
        np.empty(ni, np.int64),  # in_wit_len
        np.empty(no, np.int64),  # out_value
        np.empty(no, np.int64),  # out_script_off
        np.empty(no, np.int64),  # out_script_len
        np.empty(no, np.uint8),  # out_type
        np.empty(no, np.int64),  # out_pay_off
        np.empty(no, np.int64),  # out_pay_len
    )


@njit(cache=True)
def decode_segments(buf: Any, starts: Any, ends: Any, has_header: bool) -> Any:
    """Decode every segment buf[starts[k]:ends[k]] (a block, or a bare transaction when has_header is
    False). Segments that fail get err[k] != 0 and contribute no rows. Returns (err, err_pos, seg_tx,
    seg_in, seg_out) followed by the row arrays of :func:`_columns`."""
    nseg = starts.shape[0]
    err = np.zeros(nseg, np.int32)
    err_pos = np.zeros(nseg, np.int64)
    seg_tx = np.zeros(nseg + 1, np.int64)
    seg_in = np.zeros(nseg + 1, np.int64)
    seg_out = np.zeros(nseg + 1, np.int64)
    empty = _columns(0, 0, 0)
    for k in range(nseg):
        e, ep, nt, ni, no, _ = _walk(buf, starts[k], ends[k], has_header, False, 0, 0, 0, *empty)
        err[k] = e
        err_pos[k] = ep
        seg_tx[k + 1] = seg_tx[k] + nt
        seg_in[k + 1] = seg_in[k] + ni
        seg_out[k + 1] = seg_out[k] + no
    cols = _columns(seg_tx[nseg], seg_in[nseg], seg_out[nseg])
    for k in range(nseg):
        if err[k] != OK:
            continue
        _walk(buf, starts[k], ends[k], has_header, True, seg_tx[k], seg_in[k], seg_out[k], *cols)
    return (err, err_pos, seg_tx, seg_in, seg_out, *cols)


@njit(cache=True)
def gather(buf: Any, offs: Any, lens: Any, prefix: Any) -> tuple[Any, Any]:
    """Concatenate buf[offs[k]:offs[k]+lens[k]] into one byte array, each preceded by prefix[k] when
    prefix[k] >= 0. Returns (data, offsets) in Arrow's variable-binary layout (int64 offsets)."""
    n = offs.shape[0]
    offsets = np.empty(n + 1, np.int64)
    offsets[0] = 0
    for k in range(n):
        offsets[k + 1] = offsets[k] + lens[k] + (1 if prefix[k] >= 0 else 0)
    data = np.empty(offsets[n], np.uint8)
    for k in range(n):
        p = offsets[k]
        if prefix[k] >= 0:
            data[p] = prefix[k]
            p += 1
        data[p : p + lens[k]] = buf[offs[k] : offs[k] + lens[k]]
    return data, offsets


@njit(cache=True)
def address_keys(
    buf: Any, out_type: Any, pay_off: Any, pay_len: Any, script_off: Any, script_len: Any, kind_of_type: Any
) -> tuple[Any, Any, Any]:
    """The address key of every output: its kind byte (``kind_of_type[type]``, < 0: no address) and
    payload, in Arrow's variable-binary layout (int64 offsets), and which outputs have one. The payload
    is the hash or witness program; for a witness program of an unknown version or an anchor, the whole
    script; for P2PK, 20 zero bytes for the caller to overwrite with the hash160 of the key.
    Returns (data, offsets, has)."""
    n = out_type.shape[0]
    offsets = np.empty(n + 1, np.int64)
    has = np.empty(n, np.bool_)
    offsets[0] = 0
    for k in range(n):
        t = out_type[k]
        has[k] = kind_of_type[t] >= 0
        ln = 0
        if has[k]:
            if t in (_WUNK, _ANCHOR):
                ln = 1 + script_len[k]
            elif t == _P2PK:
                ln = 21
            else:
                ln = 1 + pay_len[k]
        offsets[k + 1] = offsets[k] + ln
    data = np.empty(offsets[n], np.uint8)
    for k in range(n):
        if not has[k]:
            continue
        t = out_type[k]
        p = offsets[k]
        data[p] = kind_of_type[t]
        if t in (_WUNK, _ANCHOR):
            data[p + 1 : offsets[k + 1]] = buf[script_off[k] : script_off[k] + script_len[k]]
        elif t == _P2PK:
            data[p + 1 : p + 21] = 0
        else:
            data[p + 1 : offsets[k + 1]] = buf[pay_off[k] : pay_off[k] + pay_len[k]]
    return data, offsets, has


@njit(cache=True)
def frame_blocks(buf: Any, magic: Any) -> tuple[Any, Any, int, int]:
    """Split a blk*.dat image (magic, 4-byte little-endian length, block) into block ranges.

    Stops at the first run of zero bytes (Bitcoin Core pre-allocates files). Returns
    (starts, ends, status, position): status 0 ok, 1 truncated, 2 wrong magic at position."""
    n = buf.shape[0]
    cap = 1024
    starts = np.empty(cap, np.int64)
    ends = np.empty(cap, np.int64)
    k = 0
    pos = 0
    while pos + 8 <= n:
        if buf[pos] == 0 and buf[pos + 1] == 0 and buf[pos + 2] == 0 and buf[pos + 3] == 0:
            break
        if (
            buf[pos] != magic[0]
            or buf[pos + 1] != magic[1]
            or buf[pos + 2] != magic[2]
            or buf[pos + 3] != magic[3]
        ):
            return starts[:k], ends[:k], 2, pos
        ln = _u32(buf, pos + 4)
        if pos + 8 + ln > n:
            return starts[:k], ends[:k], 1, pos
        if k == cap:
            cap *= 2
            s2 = np.empty(cap, np.int64)
            e2 = np.empty(cap, np.int64)
            s2[:k] = starts[:k]
            e2[:k] = ends[:k]
            starts = s2
            ends = e2
        starts[k] = pos + 8
        ends[k] = pos + 8 + ln
        k += 1
        pos += 8 + ln
    if 0 < n - pos < 8:
        tail_zero = True
        for q in range(pos, n):
            if buf[q] != 0:
                tail_zero = False
        if not tail_zero:
            return starts[:k], ends[:k], 1, pos
    return starts[:k], ends[:k], 0, pos
