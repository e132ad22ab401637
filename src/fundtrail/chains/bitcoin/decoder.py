"""Decode serialized Bitcoin blocks and transactions into columns, and check their integrity.

``decode_blocks`` takes a byte buffer and the byte ranges of the blocks in it, runs the compiled kernel
once over all of them, computes txids and wtxids (double SHA-256 through hashlib), and checks each
block: merkle root against the header (rejecting the CVE-2012-2459 mutation too), the BIP141 witness
commitment where the block carries witness data or a commitment, and proof of work against the header's
own target. The first block that fails raises :class:`BlockRejected` naming its hash, so a caller that
decodes before it writes stores a block whole or not at all.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fundtrail.chains.bitcoin import kernels
from fundtrail.chains.bitcoin import script as st
from fundtrail.chains.bitcoin.address import hash160
from fundtrail.chains.bitcoin.network import Network
from fundtrail.errors import BlockRejected, CorruptData

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]

WITNESS_COMMITMENT_HEADER = bytes.fromhex("6a24aa21a9ed")


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


def _merkle_root(leaves: list[bytes]) -> tuple[bytes, bool]:
    """Merkle root (internal byte order) and whether the tree is mutated (CVE-2012-2459)."""
    level = leaves
    mutated = False
    while len(level) > 1:
        for i in range(0, len(level) - 1, 2):
            if level[i] == level[i + 1]:
                mutated = True
        if len(level) % 2:
            level = [*level, level[-1]]
        level = [sha256d(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0], mutated


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
    kinds = np.full(out_type.shape[0], -1, np.int64)
    for t, kind in st.ADDRESS_KIND_OF_TYPE.items():
        kinds[out_type == t] = kind
    has = kinds >= 0
    offs = np.where(has, pay_off, 0)
    lens = np.where(has, pay_len, 0)
    wunk = (out_type == st.WITNESS_UNKNOWN) | (out_type == st.ANCHOR)
    offs[wunk] = script_off[wunk]
    lens[wunk] = script_len[wunk]
    p2pk = np.flatnonzero(out_type == st.P2PK)
    src = buf
    if p2pk.size:
        hashes = b"".join(
            hash160(bytes(buf[o : o + n])) for o, n in zip(pay_off[p2pk].tolist(), pay_len[p2pk].tolist())
        )
        src = np.concatenate([buf, np.frombuffer(hashes, np.uint8)])
        offs[p2pk] = buf.shape[0] + 20 * np.arange(p2pk.size)
        lens[p2pk] = 20
    data, offsets = kernels.gather(src, offs, lens, kinds)
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


def decode_transaction(raw: bytes, network: Network) -> Decoded:
    """Decode one serialized transaction (no block around it)."""
    buf = np.frombuffer(raw, np.uint8)
    return _decode(
        buf, np.array([0], np.int64), np.array([len(raw)], np.int64), network, False, None, None, False
    )


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
    (
        err,
        err_pos,
        seg_tx,
        seg_in,
        seg_out,
        tx_off,
        tx_len,
        _tx_strip_off,
        tx_strip_len,
        tx_version,
        tx_locktime,
        tx_segwit,
        tx_n_in,
        tx_n_out,
        in_prev,
        in_vout,
        in_seq,
        in_script_off,
        in_script_len,
        in_wit_items,
        in_wit_off,
        in_wit_len,
        out_value,
        out_script_off,
        out_script_len,
        out_type,
        out_pay_off,
        out_pay_len,
        stripped,
    ) = _run_kernel(buf, starts, ends, has_header)

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
        raise CorruptData(f"transaction does not decode: {problem}", "check the input data")

    # txids over the stripped serialization; wtxids over the full one (same as txid without witness)
    n_tx = int(tx_off.shape[0])
    mv_s = memoryview(stripped)
    mv_b = memoryview(buf)  # type: ignore[arg-type]
    ends_s = np.cumsum(tx_strip_len).tolist()
    starts_s = [0, *ends_s[:-1]]
    txid_int = [sha256d(mv_s[a:b]) for a, b in zip(starts_s, ends_s)]
    wtxid_int = list(txid_int)
    for i in np.flatnonzero(tx_segwit).tolist():
        o = int(tx_off[i])
        wtxid_int[i] = sha256d(mv_b[o : o + int(tx_len[i])])
    txid = np.frombuffer(b"".join(t[::-1] for t in txid_int), np.uint8).reshape(n_tx, 32)
    wtxid = np.frombuffer(b"".join(t[::-1] for t in wtxid_int), np.uint8).reshape(n_tx, 32)

    key_data, key_offsets, has_address = _address_keys(
        buf, out_type, out_pay_off, out_pay_len, out_script_off, out_script_len
    )

    d = Decoded(
        network,
        buf,
        [],
        seg_tx,
        seg_in,
        seg_out,
        tx_off,
        tx_len,
        tx_strip_len,
        tx_version,
        tx_locktime,
        tx_segwit,
        tx_n_in,
        tx_n_out,
        txid,
        wtxid,
        in_prev,
        in_vout,
        in_seq,
        in_script_off,
        in_script_len,
        in_wit_items,
        in_wit_off,
        in_wit_len,
        out_value,
        out_script_off,
        out_script_len,
        out_type,
        key_data,
        key_offsets,
        has_address,
    )
    if has_header:
        for k in range(int(starts.shape[0])):
            try:
                d.blocks.append(
                    _check_block(
                        d,
                        k,
                        int(starts[k]),
                        int(ends[k]),
                        txid_int,
                        wtxid_int,
                        heights,
                        height_source,
                        check_pow,
                    )
                )
            except BlockRejected as exc:
                exc.index = k
                raise
    return d


def _check_block(
    d: Decoded,
    k: int,
    s: int,
    e: int,
    txid_int: list[bytes],
    wtxid_int: list[bytes],
    heights: list[int | None] | None,
    height_source: str | None,
    check_pow: bool,
) -> BlockInfo:
    header = BlockHeader.parse(bytes(d.buf[s : s + 80]))
    t0, t1 = int(d.seg_tx[k]), int(d.seg_tx[k + 1])
    name = header.hash.hex()
    root, mutated = _merkle_root(txid_int[t0:t1])
    if root[::-1] != header.merkle_root:
        raise BlockRejected(
            name,
            f"merkle root {root[::-1].hex()} does not match the header's {header.merkle_root.hex()}",
            "the block is corrupt or incomplete: fetch it again",
        )
    if mutated:
        raise BlockRejected(name, "merkle tree is mutated (duplicated transactions, CVE-2012-2459)")
    if check_pow and int.from_bytes(header.hash, "big") > header.target:
        raise BlockRejected(
            name,
            f"block hash is above the target of its bits 0x{header.bits:08x}",
            "the header is corrupt, or the block is from another network (--network)",
        )
    witness_ok = _check_witness(d, name, k, t0, t1, wtxid_int)
    size = e - s
    stripped_size = size - int((d.tx_len[t0:t1] - d.tx_strip_len[t0:t1]).sum())
    height, source = _height(d, k, header, heights, height_source)
    return BlockInfo(header, height, source, size, stripped_size, stripped_size * 3 + size, True, witness_ok)


def _height(
    d: Decoded, k: int, header: BlockHeader, heights: list[int | None] | None, height_source: str | None
) -> tuple[int | None, str | None]:
    if heights is not None and heights[k] is not None:
        return heights[k], height_source
    if header.hash.hex() == d.network.genesis_hash:
        return 0, "genesis"
    if header.version >= 2:
        first_in = int(d.seg_in[k])
        o = int(d.in_script_off[first_in])
        h = bip34_height(bytes(d.buf[o : o + int(d.in_script_len[first_in])]))
        if h is not None:
            return h, "bip34"
    return None, None


def _check_witness(d: Decoded, name: str, k: int, t0: int, t1: int, wtxid_int: list[bytes]) -> bool | None:
    """BIP141: the last coinbase output starting 6a24aa21a9ed commits to the wtxid merkle root."""
    buf = d.buf
    commitment = None
    o0 = int(d.seg_out[k])
    for o in range(o0, o0 + int(d.tx_n_out[t0])):
        off, ln = int(d.out_script_off[o]), int(d.out_script_len[o])
        if ln >= 38 and bytes(buf[off : off + 6]) == WITNESS_COMMITMENT_HEADER:
            commitment = bytes(buf[off + 6 : off + 38])
    has_witness = bool(d.tx_segwit[t0:t1].any())
    if commitment is None:
        if has_witness:
            raise BlockRejected(name, "transactions carry witness data but the coinbase has no commitment")
        return None
    if not bool(d.tx_segwit[t0]):
        if has_witness:
            raise BlockRejected(name, "the coinbase has a witness commitment but no witness reserved value")
        return None  # a pre-SegWit coinbase output that merely looks like a commitment
    i0 = int(d.seg_in[k])
    wo, wl = int(d.in_wit_off[i0]), int(d.in_wit_len[i0])
    if int(d.in_wit_items[i0]) != 1 or wl != 34 or buf[wo + 1] != 32:
        raise BlockRejected(name, "the coinbase witness is not a single 32-byte reserved value")
    reserved = bytes(buf[wo + 2 : wo + 34])
    root, _ = _merkle_root([b"\x00" * 32, *wtxid_int[t0 + 1 : t1]])
    if sha256d(root + reserved) != commitment:
        raise BlockRejected(name, "witness commitment does not match the transactions' witness data")
    return True
