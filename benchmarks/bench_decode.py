"""Decode throughput: fundtrail's ``decode_blocks`` against python-bitcoinlib's ``CBlock.deserialize``.

Both sides start from the raw blocks in memory and end with every transaction's txid computed.
fundtrail decodes all blocks in one call (as ``ingest bitcoin-blocks`` does per batch) and checks them
too: merkle root, CVE-2012-2459 mutation, BIP141 witness commitment, proof of work. The reference
deserializes each block (building its merkle trees) and calls ``GetTxid()`` on each transaction.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import dataclass
from unittest import mock

import numpy as np
from bitcoin.core import CBlock, b2lx

from bench_common import BlockSet, Timing, log, timed
from fundtrail.chains.bitcoin import sha256
from fundtrail.chains.bitcoin.decoder import Decoded, decode_blocks
from fundtrail.chains.bitcoin.network import MAINNET

REFERENCE = "python-bitcoinlib CBlock.deserialize + GetTxid"
_NOISE = os.urandom(4 << 20)  # message bytes for the hashing floor (content does not change the cost)


@dataclass
class DecodeRun:
    ours: Timing  # garbage collector off while timed (as timeit does)
    reference: Timing
    ours_gc_on: Timing  # collector on, as an application runs
    reference_gc_on: Timing
    hash_floor: Timing  # the SHA-256 work decode_blocks must do, alone (see hashing_work)
    ours_hashlib: Timing  # decode_blocks with its hashlib fallback (as where no libcrypto loads)
    hash_backend: str  # what decode_blocks hashed with: the libcrypto it loaded, or "hashlib"
    sha256_calls: int
    n_bytes: int
    n_blocks: int
    n_txs: int


def _concat(blocks: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lens = np.array([len(b) for b in blocks], np.int64)
    ends = np.cumsum(lens)
    starts = ends - lens
    return np.frombuffer(b"".join(blocks), np.uint8), starts, ends


def reference_decode(blocks: list[bytes]) -> int:
    """python-bitcoinlib: deserialize every block and compute every txid. Returns the tx count."""
    n = 0
    for raw in blocks:
        block = CBlock.deserialize(raw)
        for tx in block.vtx:
            tx.GetTxid()
            n += 1
    return n


def _cross_check(blocks: list[bytes], d: Decoded) -> None:
    """Both decoders must agree on every txid before either is timed."""
    ref_txids: list[str] = []
    for raw in blocks:
        block = CBlock.deserialize(raw)
        if block.vMerkleTree[-1] != block.hashMerkleRoot:
            raise SystemExit(f"reference: merkle root mismatch in block {b2lx(block.GetHash())}")
        ref_txids.extend(b2lx(tx.GetTxid()) for tx in block.vtx)
    ours = [d.txid_hex(i) for i in range(d.n_tx)]
    if ours != ref_txids:
        raise SystemExit("fundtrail and python-bitcoinlib disagree on the txids")


def _merkle_nodes(n: int) -> int:
    """Inner nodes of a Bitcoin merkle tree over n leaves (odd levels pair their last node with itself)."""
    total = 0
    while n > 1:
        n = (n + 1) // 2
        total += n
    return total


def hashing_work(d: Decoded) -> list[int]:
    """Lengths of the messages every correct decode with these checks must double-SHA-256: each txid
    (stripped serialization), each wtxid of a SegWit transaction, each header, each merkle node (64
    bytes) and, where a block commits to its witnesses, the witness tree and the commitment."""
    lens: list[int] = d.tx_strip_len.tolist() + d.tx_len[d.tx_segwit].tolist() + [80] * len(d.blocks)
    for k, b in enumerate(d.blocks):
        nodes = _merkle_nodes(int(d.seg_tx[k + 1] - d.seg_tx[k]))
        lens += [64] * (2 * nodes + 1 if b.witness_ok else nodes)
    return lens


def hash_floor(lens: list[int]) -> None:
    """Double SHA-256 of messages of these lengths through hashlib, driven by ``map`` (no Python
    bytecode per message): the least time any hashlib-based decoder needs for the same checks."""
    sha, digest = hashlib.sha256, type(hashlib.sha256()).digest
    mv = memoryview(_NOISE[: max(lens, default=0)])
    parts = map(mv.__getitem__, map(slice, itertools.repeat(0), lens))
    b"".join(map(digest, map(sha, map(digest, map(sha, parts)))))


def run(data: BlockSet, rounds: int, inner: int) -> DecodeRun:
    buf, starts, ends = _concat(data.blocks)
    log("decode: warming up (Numba loads or compiles its kernels)")
    d = decode_blocks(buf, starts, ends, MAINNET)
    _cross_check(data.blocks, d)
    n_txs = d.n_tx
    lens = hashing_work(d)
    log(f"decode: {len(data.blocks)} blocks, {n_txs} txs, {buf.shape[0] / 1e6:.2f} MB; txids agree")
    t: dict[str, list[float]] = {k: [] for k in ("ours", "ref", "ours_gc", "ref_gc", "floor", "hashlib")}
    lib = sha256.libcrypto()
    backend = f"libcrypto ({lib.path}, EVP, from compiled code)" if lib else "hashlib (no libcrypto loaded)"
    log(f"decode: hashing with {backend}")

    def ours() -> None:
        decode_blocks(buf, starts, ends, MAINNET)

    def ours_hashlib() -> None:
        with mock.patch.object(sha256, "libcrypto", lambda: None):  # as where no libcrypto loads
            decode_blocks(buf, starts, ends, MAINNET)

    def ref() -> None:
        reference_decode(data.blocks)

    for r in range(rounds):  # interleaved, so both sides see the same machine load
        t["ref"].append(timed(ref))
        t["ref_gc"].append(timed(ref, gc_off=False))
        t["ours"].extend(timed(ours) for _ in range(inner))
        t["ours_gc"].extend(timed(ours, gc_off=False) for _ in range(inner))
        t["floor"].extend(timed(lambda: hash_floor(lens)) for _ in range(inner))
        t["hashlib"].append(timed(ours_hashlib))
        log(
            f"decode: round {r + 1}/{rounds}: ours {min(t['ours']) * 1e3:.1f} ms "
            f"(hashlib floor {min(t['floor']) * 1e3:.1f} ms), reference {min(t['ref']) * 1e3:.1f} ms; "
            f"GC on: ours {min(t['ours_gc']) * 1e3:.1f} ms, reference {min(t['ref_gc']) * 1e3:.1f} ms"
        )
    return DecodeRun(
        Timing(t["ours"]), Timing(t["ref"]), Timing(t["ours_gc"]), Timing(t["ref_gc"]), Timing(t["floor"]),
        Timing(t["hashlib"]), backend, 2 * len(lens), int(buf.shape[0]), len(data.blocks), n_txs,
    )  # fmt: skip
