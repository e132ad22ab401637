"""Decode serialized Bitcoin blocks and transactions into columns, and check their integrity.

``decode_blocks`` takes a byte buffer and the byte ranges of the blocks in it, runs the compiled kernel
once over all of them, then one compiled hashing pass (``sha256.hash_batch``: txids, wtxids, headers,
merkle trees and witness merkle roots, double SHA-256 by OpenSSL's libcrypto; through hashlib when no
libcrypto can be loaded), and checks each block: merkle root against the header (rejecting the
CVE-2012-2459 mutation too), the BIP141 witness commitment where the block carries witness data or a
commitment, and proof of work against the header's own target. The first block that fails raises
:class:`BlockRejected` naming its hash, so a caller that decodes before it writes stores a block whole
or not at all.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from dataclasses import dataclass
from itertools import starmap
from typing import Any

import numpy as np
import numpy.typing as npt

from fundtrail.chains.bitcoin import kernels, sha256
from fundtrail.chains.bitcoin import script as st
from fundtrail.chains.bitcoin.address import hash160
from fundtrail.chains.bitcoin.network import Network
from fundtrail.errors import BlockRejected, CorruptData

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

_log = logging.getLogger(__name__)
WITNESS_COMMITMENT_HEADER = bytes.fromhex("6a24aa21a9ed")
_SHA256 = hashlib.sha256
_DIGEST = type(hashlib.sha256()).digest
_KIND_OF_TYPE = np.full(256, -1, np.int64)  # script type code -> address kind (-1: no address)
for _type, _kind in st.ADDRESS_KIND_OF_TYPE.items():
    _KIND_OF_TYPE[_type] = _kind


def sha256d(data: Any) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


@dataclass(frozen=True)
class BlockHeader:
    hash: bytes  # display order (big-endian), as every explorer shows it
    version: int
    prev_hash: bytes  # display order
    merkle_root: bytes  # display order
    time: int  # unix seconds
    bits: int
    nonce: int

    @classmethod
    def parse(cls, raw: bytes) -> BlockHeader:
        version, prev, merkle, time, bits, nonce = struct.unpack("<I32s32sIII", raw)
        return cls(sha256d(raw)[::-1], version, prev[::-1], merkle[::-1], time, bits, nonce)

    @property
    def target(self) -> int:
        exponent, mantissa = self.bits >> 24, self.bits & 0x007FFFFF
        if self.bits & 0x00800000:
            return 0  # negative target: nothing meets it
        return mantissa >> (8 * (3 - exponent)) if exponent <= 3 else mantissa << (8 * (exponent - 3))


@dataclass
class BlockInfo:
    header: BlockHeader
    height: int | None
    height_source: str | None  # "rpc", "bip34", "genesis", "linked" (set by the store) or None
    size: int
    stripped_size: int
    weight: int
    merkle_ok: bool
    witness_ok: bool | None  # None: the block carries no witness data and no commitment


@dataclass
class Decoded:
    """Columns of decoded blocks (or bare transactions). Row k of a block-level list is block k;
    ``seg_tx[k]:seg_tx[k+1]`` are its transactions, and likewise for inputs and outputs."""

    network: Network
    buf: U8
    blocks: list[BlockInfo]
    seg_tx: I64
    seg_in: I64
    seg_out: I64
    tx_off: I64
    tx_len: I64
    tx_strip_len: I64
    tx_version: I64
    tx_locktime: I64
    tx_segwit: npt.NDArray[np.bool_]
    tx_n_in: I64
    tx_n_out: I64
    txid: U8  # (n_tx, 32), display order
    wtxid: U8  # (n_tx, 32), display order
    in_prev: U8  # (n_in, 32), display order
    in_vout: I64
    in_seq: I64
    in_script_off: I64
    in_script_len: I64
    in_wit_items: I64
    in_wit_off: I64
    in_wit_len: I64
    out_value: I64
    out_script_off: I64
    out_script_len: I64
    out_type: U8
    address_key_data: U8  # Arrow variable-binary layout: keys of outputs that have an address
    address_key_offsets: I64
    has_address: npt.NDArray[np.bool_]

    @property
    def n_tx(self) -> int:
        return int(self.tx_off.shape[0])

    def txid_hex(self, i: int) -> str:
        return bytes(self.txid[i]).hex()

    def script(self, out: int) -> bytes:
        o = int(self.out_script_off[out])
        return bytes(self.buf[o : o + int(self.out_script_len[out])])

    def address_key(self, out: int) -> bytes | None:
        if not self.has_address[out]:
            return None
        a, b = int(self.address_key_offsets[out]), int(self.address_key_offsets[out + 1])
        return bytes(self.address_key_data[a:b])

    def tx_raw(self, i: int) -> bytes:
        o = int(self.tx_off[i])
        return bytes(self.buf[o : o + int(self.tx_len[i])])


def _sha256d_ranges(data: Any, starts: list[int], ends: list[int]) -> bytes:
    """Double SHA-256 of data[starts[k]:ends[k]] for every k, the 32-byte digests concatenated.

    One hashlib call chain driven by ``map`` (no Python bytecode per message): with messages this
    small, hashlib's per-call cost is most of the work."""
    parts = map(data.__getitem__, map(slice, starts, ends))
    return b"".join(map(_DIGEST, map(_SHA256, map(_DIGEST, map(_SHA256, parts)))))


def _sha256d_fixed(data: bytes, size: int) -> bytes:
    """Double SHA-256 of each consecutive ``size``-byte piece of data, the digests concatenated."""
    first = map(_DIGEST, starmap(_SHA256, struct.iter_unpack(f"{size}s", data)))
    return b"".join(map(_DIGEST, map(_SHA256, first)))


def _rows32(data: bytes) -> U8:
    return np.frombuffer(data, np.uint8).reshape(-1, 32)


def _ranges(first: I64, count: I64) -> I64:
    """Concatenation of arange(first[k], first[k] + count[k])."""
    total = int(count.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    out: I64 = np.arange(total, dtype=np.int64) + np.repeat(first - (np.cumsum(count) - count), count)
    return out


def _merkle_roots(leaves: U8, counts: I64) -> tuple[U8, npt.NDArray[np.bool_]]:
    """Merkle roots (internal byte order) of consecutive groups of leaves (group k: the next counts[k]
    >= 1 rows of ``leaves``, shape (n, 32)), and whether each tree is mutated (CVE-2012-2459: two
    equal hashes paired at some level). All groups advance one tree level per step."""
    nb = int(counts.shape[0])
    roots = np.empty((nb, 32), np.uint8)
    mutated = np.zeros(nb, np.bool_)
    ids = np.arange(nb, dtype=np.int64)  # the groups still climbing, in order
    n = counts.astype(np.int64)  # their node counts at this level
    level = leaves
    while ids.size:
        first = np.cumsum(n) - n
        done = n == 1
        if done.any():
            roots[ids[done]] = level[first[done]]
            more = ~done
            ids, n = ids[more], n[more]
            if not ids.size:
                break
            level = level[_ranges(first[more], n)]
            first = np.cumsum(n) - n
        half = n // 2  # pairs of two original nodes (the padding duplicate is not a mutation)
        left = _ranges(np.zeros_like(half), half) * 2 + np.repeat(first, half)
        same = (level[left] == level[left + 1]).all(axis=1)
        if same.any():
            mutated[ids[np.repeat(np.arange(ids.size), half)[same]]] = True
        padded = n + (n & 1)  # an odd level repeats its last node
        local = _ranges(np.zeros_like(padded), padded)
        idx = np.repeat(first, padded) + np.minimum(local, np.repeat(n - 1, padded))
        level = _rows32(_sha256d_fixed(level[idx].tobytes(), 64))
        n = padded // 2
    return roots, mutated


@dataclass
class Hashes:
    """The hashes of one batch (see ``sha256.hash_batch``)."""

    txid: U8  # (n_tx, 32), display order
    wtxid: U8  # (n_tx, 32), display order
    header: U8  # (n_blocks, 32), display order: the block hashes
    root: U8  # (n_blocks, 32), display order: merkle root of the txids
    mutated: npt.NDArray[np.bool_]  # (n_blocks,): CVE-2012-2459
    wroot: U8  # (n_blocks, 32), internal order: witness merkle root, where has_wroot
    has_wroot: npt.NDArray[np.bool_]  # (n_blocks,): the coinbase carries a witness


def _hash_batch(buf: U8, tx_off: I64, tx_len: I64, tx_strip_len: I64, tx_segwit: npt.NDArray[np.bool_],
                starts: I64, seg_tx: I64, has_header: bool,
                use_libcrypto: bool = True) -> Hashes:  # fmt: skip
    """Every hash of the batch: one compiled pass calling libcrypto, or hashlib when libcrypto is
    unavailable (or ``use_libcrypto`` is False). Both give the same bytes."""
    args = (buf, tx_off, tx_len, tx_strip_len, tx_segwit, starts, seg_tx, has_header)
    lib = sha256.libcrypto() if use_libcrypto else None
    if lib is not None:
        out = lib.hash_batch(*args)
        if out is not None:
            return Hashes(*out)
        _log.warning("libcrypto reported a failure while hashing; hashing this batch through hashlib")
    return _hash_batch_hashlib(*args)


def _display(rows: U8) -> U8:
    """(n, 32) hashes with each row's bytes reversed (internal order <-> display order), contiguous."""
    return np.ascontiguousarray(rows[:, ::-1]).reshape(-1, 32)


def _hash_batch_hashlib(buf: U8, tx_off: I64, tx_len: I64, tx_strip_len: I64,
                        tx_segwit: npt.NDArray[np.bool_], starts: I64, seg_tx: I64,
                        has_header: bool) -> Hashes:  # fmt: skip
    """:func:`_hash_batch` through hashlib."""
    # txids over the stripped serialization; wtxids over the full one (same as txid without witness)
    mv = memoryview(buf)  # type: ignore[arg-type]
    seg = np.flatnonzero(tx_segwit)
    plain = np.flatnonzero(~tx_segwit)
    txid_int = np.empty((tx_off.shape[0], 32), np.uint8)
    so, pl = tx_off[plain], tx_off[plain] + tx_len[plain]
    txid_int[plain] = _rows32(_sha256d_ranges(mv, so.tolist(), pl.tolist()))
    wtxid_int = txid_int.copy()
    if seg.size:
        so, sl, se = tx_off[seg], tx_strip_len[seg], tx_off[seg] + tx_len[seg]
        # stripped serialization: version, the bytes after marker and flag up to the witnesses, locktime
        stripped = bytearray().join(
            b"".join((mv[o : o + 4], mv[o + 6 : o + n - 2], mv[e - 4 : e]))
            for o, n, e in zip(so.tolist(), sl.tolist(), se.tolist())
        )
        ends = np.cumsum(sl)
        txid_int[seg] = _rows32(_sha256d_ranges(memoryview(stripped), (ends - sl).tolist(), ends.tolist()))
        wtxid_int[seg] = _rows32(_sha256d_ranges(mv, so.tolist(), se.tolist()))
    nb = int(starts.shape[0]) if has_header else 0
    header = np.zeros((nb, 32), np.uint8)
    root = np.zeros((nb, 32), np.uint8)
    mutated = np.zeros(nb, np.bool_)
    wroot = np.zeros((nb, 32), np.uint8)
    has_wroot = np.zeros(nb, np.bool_)
    if nb:
        header = _display(_rows32(_sha256d_fixed(buf[starts[:, None] + np.arange(80)].tobytes(), 80)))
        t0s = seg_tx[:-1]
        counts = seg_tx[1:] - t0s
        roots_int, mutated = _merkle_roots(txid_int, counts)
        root = _display(roots_int)
        # witness merkle roots: the coinbase's wtxid counts as zeros
        has_wroot = tx_segwit[t0s] & (counts > 0)
        wblocks = np.flatnonzero(has_wroot)
        wleaves = wtxid_int[_ranges(t0s[wblocks], counts[wblocks])]
        wleaves[np.cumsum(counts[wblocks]) - counts[wblocks]] = 0
        wroot[wblocks], _ = _merkle_roots(wleaves, counts[wblocks])
    return Hashes(_display(txid_int), _display(wtxid_int), header, root, mutated, wroot, has_wroot)


def bip34_height(coinbase_script: bytes) -> int | None:
    """The height a BIP34 coinbase script starts with (CScript() << height), or None."""
    if not coinbase_script:
        return None
    op = coinbase_script[0]
    if 0x51 <= op <= 0x60:
        return op - 0x50
    if 1 <= op <= 8 and len(coinbase_script) > op:
        num = coinbase_script[1 : 1 + op]
        if num[-1] & 0x80:
            return None  # negative
        return int.from_bytes(num, "little")
    return None


def _run_kernel(buf: U8, starts: I64, ends: I64, has_header: bool) -> tuple[Any, ...]:
    return tuple(kernels.decode_segments(buf, starts, ends, has_header))


def _address_keys(
    buf: U8, out_type: U8, pay_off: I64, pay_len: I64, script_off: I64, script_len: I64
) -> tuple[U8, I64, npt.NDArray[np.bool_]]:
    data, offsets, has = kernels.address_keys(
        buf, out_type, pay_off, pay_len, script_off, script_len, _KIND_OF_TYPE
    )
    p2pk = np.flatnonzero(out_type == st.P2PK)
    if p2pk.size:  # a P2PK output's key is the hash160 of its public key, as a P2PKH key
        lib = sha256.libcrypto()
        if lib is None or not lib.hash160_keys(buf, pay_off, pay_len, p2pk, data, offsets):
            mv = memoryview(buf)  # type: ignore[arg-type]
            keys = map(
                bytes,
                map(mv.__getitem__, map(slice, pay_off[p2pk].tolist(), (pay_off + pay_len)[p2pk].tolist())),
            )
            hashes = np.frombuffer(b"".join(map(hash160, keys)), np.uint8).reshape(-1, 20)
            data[(offsets[p2pk] + 1)[:, None] + np.arange(20)] = hashes
    return data, offsets, has


def decode_blocks(
    buf: U8,
    starts: I64,
    ends: I64,
    network: Network,
    heights: list[int | None] | None = None,
    height_source: str | None = None,
    check_pow: bool = True,
) -> Decoded:
    """Decode and check the blocks at buf[starts[k]:ends[k]]. Raises BlockRejected for the first bad one.

    ``heights`` (from an RPC source) wins over the coinbase; otherwise the BIP34 height is taken from
    blocks of version 2 and above, height 0 from the network's genesis hash, and None where neither tells.
    """
    return _decode(buf, starts, ends, network, True, heights, height_source, check_pow)


class TransactionRejected(CorruptData):
    """A bare transaction does not decode: ``index`` is its position in the call, ``code`` the kernel's
    error code (``kernels.E_TRUNCATED``, ...), ``detail`` the problem without the fix."""

    def __init__(self, index: int, code: int, detail: str) -> None:
        self.index = index
        self.code = code
        self.detail = detail
        super().__init__(f"transaction does not decode: {detail}", "check the input data")


def decode_transaction(raw: bytes, network: Network) -> Decoded:
    """Decode one serialized transaction (no block around it)."""
    return decode_transactions([raw], network)


def decode_transactions(raws: list[bytes], network: Network) -> Decoded:
    """Decode bare serialized transactions (no block around them), each exactly one transaction, in one
    compiled pass: the same kernel that walks the transactions of blocks. Segment k of the result is
    transaction k (``d.blocks`` is empty). Raises :class:`TransactionRejected` for the first that is
    truncated, has bytes after its end, or is otherwise malformed."""
    lens = np.array([len(r) for r in raws], np.int64)
    ends = np.cumsum(lens)
    buf = np.frombuffer(b"".join(raws), np.uint8)
    return _decode(buf, ends - lens, ends, network, False, None, None, False)


def _decode(
    buf: U8,
    starts: I64,
    ends: I64,
    network: Network,
    has_header: bool,
    heights: list[int | None] | None,
    height_source: str | None,
    check_pow: bool,
) -> Decoded:
    (err, err_pos, seg_tx, seg_in, seg_out,
     tx_off, tx_len, tx_strip_len, tx_version, tx_locktime, tx_segwit, tx_n_in, tx_n_out,
     in_prev, in_vout, in_seq, in_script_off, in_script_len, in_wit_items, in_wit_off, in_wit_len,
     out_value, out_script_off, out_script_len, out_type, out_pay_off, out_pay_len,
     ) = _run_kernel(buf, starts, ends, has_header)  # fmt: skip

    bad = np.flatnonzero(err)
    if bad.size:
        k = int(bad[0])
        s, e = int(starts[k]), int(ends[k])
        where = f"at byte {int(err_pos[k]) - s} of {e - s}"
        problem = f"{kernels.ERROR_TEXT[int(err[k])]} {where}"
        if has_header and e - s >= 80:
            exc = BlockRejected(
                sha256d(bytes(buf[s : s + 80]))[::-1].hex(), problem, "the file is damaged: fetch it again"
            )
            exc.index = k
            raise exc
        raise TransactionRejected(k, int(err[k]), problem)

    h = _hash_batch(buf, tx_off, tx_len, tx_strip_len, tx_segwit, starts, seg_tx, has_header)
    txid, wtxid = h.txid, h.wtxid

    key_data, key_offsets, has_address = _address_keys(
        buf, out_type, out_pay_off, out_pay_len, out_script_off, out_script_len
    )

    d = Decoded(
        network, buf, [], seg_tx, seg_in, seg_out, tx_off, tx_len, tx_strip_len, tx_version,
        tx_locktime, tx_segwit, tx_n_in, tx_n_out, txid, wtxid, in_prev, in_vout, in_seq, in_script_off,
        in_script_len, in_wit_items, in_wit_off, in_wit_len, out_value, out_script_off, out_script_len,
        out_type, key_data, key_offsets, has_address,
    )  # fmt: skip
    if has_header:
        d.blocks = _check_blocks(d, starts, ends, h, heights, height_source, check_pow)
    return d


def _check_blocks(d: Decoded, starts: I64, ends: I64, h: Hashes, heights: list[int | None] | None,
                  height_source: str | None, check_pow: bool) -> list[BlockInfo]:  # fmt: skip
    """Check every block, in order; the first that fails raises BlockRejected (with ``index`` set).

    The hashing (headers, merkle trees) and the array work are done for all blocks at once up front;
    the loop only compares and builds the BlockInfo rows."""
    nb = int(starts.shape[0])
    buf = d.buf
    raw_headers = buf[starts[:, None] + np.arange(80)].tobytes()
    hashes = h.header.tobytes()
    t0s, t1s = d.seg_tx[:-1], d.seg_tx[1:]
    mutated = h.mutated.tolist()
    roots = h.root.tobytes()

    # sizes without witness data
    wit_bytes = np.concatenate([[0], np.cumsum(d.tx_len - d.tx_strip_len)])
    sizes = ends - starts
    stripped_sizes = (sizes - (wit_bytes[t1s] - wit_bytes[t0s])).tolist()

    # BIP141: the last coinbase output of >= 38 bytes starting 6a24aa21a9ed holds the commitment
    n_segwit = np.concatenate([[0], np.cumsum(d.tx_segwit)])
    has_witness = ((n_segwit[t1s] - n_segwit[t0s]) > 0).tolist()
    cb_segwit = d.tx_segwit[t0s]
    n_cb_out = d.tx_n_out[t0s]
    cb_rows = _ranges(d.seg_out[:-1], n_cb_out)
    cb_block = np.repeat(np.arange(nb, dtype=np.int64), n_cb_out)
    long = d.out_script_len[cb_rows] >= 38
    cand_off, cand_block = d.out_script_off[cb_rows][long], cb_block[long]
    head = buf[cand_off[:, None] + np.arange(6)]
    match = (head == np.frombuffer(WITNESS_COMMITMENT_HEADER, np.uint8)).all(axis=1)
    m_off, m_block = cand_off[match], cand_block[match]
    last = np.ones(m_block.shape[0], np.bool_)
    last[:-1] = m_block[1:] != m_block[:-1]
    commit_off = np.full(nb, -1, np.int64)
    commit_off[m_block[last]] = m_off[last]
    # witness merkle roots (computed wherever the coinbase carries a witness), where there is a
    # commitment to check them against
    wblocks = np.flatnonzero((commit_off >= 0) & h.has_wroot)
    wroot = dict(zip(wblocks.tolist(), map(bytes, h.wroot[wblocks])))
    commit_offs, cb_segwits, size_list = commit_off.tolist(), cb_segwit.tolist(), sizes.tolist()

    infos: list[BlockInfo] = []
    for k, (version, prev, merkle, time, bits, nonce) in enumerate(
        struct.iter_unpack("<I32s32sIII", raw_headers)
    ):
        header = BlockHeader(
            hashes[32 * k : 32 * k + 32], version, prev[::-1], merkle[::-1], time, bits, nonce
        )
        try:
            name = header.hash.hex()
            root = roots[32 * k : 32 * k + 32]
            if root != header.merkle_root:
                raise BlockRejected(
                    name, f"merkle root {root.hex()} does not match the header's "
                    f"{header.merkle_root.hex()}", "the block is corrupt or incomplete: fetch it again",
                )  # fmt: skip
            if mutated[k]:
                raise BlockRejected(name, "merkle tree is mutated (duplicated transactions, CVE-2012-2459)")
            if check_pow and int.from_bytes(header.hash, "big") > header.target:
                raise BlockRejected(
                    name, f"block hash is above the target of its bits 0x{header.bits:08x}",
                    "the header is corrupt, or the block is from another network (--network)",
                )  # fmt: skip
            witness_ok = _check_witness(d, name, k, commit_offs[k], cb_segwits[k], has_witness[k],
                                        wroot.get(k))  # fmt: skip
            height, source = _height(d, k, header, name, heights, height_source)
        except BlockRejected as exc:
            exc.index = k
            raise
        size, stripped_size = size_list[k], stripped_sizes[k]
        infos.append(
            BlockInfo(header, height, source, size, stripped_size, stripped_size * 3 + size, True, witness_ok)
        )
    return infos


def _height(d: Decoded, k: int, header: BlockHeader, name: str, heights: list[int | None] | None,
            height_source: str | None) -> tuple[int | None, str | None]:  # fmt: skip
    """The block's height and where it comes from (``name``: the block hash in hex)."""
    if heights is not None and heights[k] is not None:
        return heights[k], height_source
    if name == d.network.genesis_hash:
        return 0, "genesis"
    if header.version >= 2:
        first_in = int(d.seg_in[k])
        o = int(d.in_script_off[first_in])
        h = bip34_height(bytes(d.buf[o : o + int(d.in_script_len[first_in])]))
        if h is not None:
            return h, "bip34"
    return None, None


def _check_witness(d: Decoded, name: str, k: int, commit_off: int, cb_segwit: bool, has_witness: bool,
                   wroot: bytes | None) -> bool | None:  # fmt: skip
    """BIP141: the last coinbase output starting 6a24aa21a9ed commits to the wtxid merkle root
    (``wroot``, computed by the caller wherever the coinbase has a commitment and a witness)."""
    buf = d.buf
    if commit_off < 0:
        if has_witness:
            raise BlockRejected(name, "transactions carry witness data but the coinbase has no commitment")
        return None
    if not cb_segwit:
        if has_witness:
            raise BlockRejected(name, "the coinbase has a witness commitment but no witness reserved value")
        return None  # a pre-SegWit coinbase output that merely looks like a commitment
    i0 = int(d.seg_in[k])
    wo, wl = int(d.in_wit_off[i0]), int(d.in_wit_len[i0])
    if int(d.in_wit_items[i0]) != 1 or wl != 34 or buf[wo + 1] != 32:
        raise BlockRejected(name, "the coinbase witness is not a single 32-byte reserved value")
    reserved = bytes(buf[wo + 2 : wo + 34])
    commitment = bytes(buf[commit_off + 6 : commit_off + 38])
    if wroot is None or sha256d(wroot + reserved) != commitment:
        raise BlockRejected(name, "witness commitment does not match the transactions' witness data")
    return True
