"""The simulator's Bitcoin encoder: transactions and regtest blocks written straight to ``blk*.dat`` files.

:class:`TxEncoder` serializes one transaction (BIP144 with witness data where an input spends P2WPKH) from
plain tuples, without the builder's dataclasses: a few byte concatenations and four SHA-256 calls per
transaction. :class:`BlockFileWriter` puts the coinbase (BIP34 height, BIP141 commitment when a transaction
carries a witness) in front of already-encoded transactions, computes the merkle root, grinds the nonce at
regtest difficulty and appends the block to ``blk00000.dat``, ``blk00001.dat`` ... with Bitcoin Core's
framing (network magic, 4-byte little-endian length), starting with the regtest genesis block.

The consensus pieces (CompactSize, pushes, the coinbase, merkle roots, the witness commitment, proof of
work, the genesis block) are the builder's (:mod:`fundtrail.chains.bitcoin.builder`). Signatures are the
builder's placeholders: the blocks decode, link and check exactly like real ones (merkle root, witness
commitment, proof of work, BIP34), but a node would reject their scripts. Nothing here reads a clock or a
random source: the same calls give the same bytes.

Hashes are in internal byte order (as serialized) unless named display order (as explorers show them).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from fundtrail.chains.bitcoin.builder import (
    DUMMY_SIGNATURE,
    REGTEST_BITS,
    Header,
    TxOut,
    coinbase_tx,
    commit_witness,
    compact_size,
    hash160,
    merkle_root,
    mine,
    p2pkh_script,
    p2wpkh_script,
    push,
    regtest_genesis,
    sha256d,
)
from fundtrail.chains.bitcoin.network import REGTEST
from fundtrail.errors import InvalidInput

P2WPKH, P2PKH = 0, 1  # the two script kinds the simulator pays to
MAX_MONEY = 21_000_000 * 100_000_000  # satoshi
BLOCK_VERSION = 0x20000000  # BIP9 version bits, none signalled
DEFAULT_MAX_FILE_BYTES = 128 << 20  # Bitcoin Core's MAX_BLOCKFILE_SIZE

_VERSION = struct.pack("<i", 2)
_MARKER_FLAG = b"\x00\x01"  # BIP144
_SEQUENCE = struct.pack("<I", 0xFFFFFFFD)  # opts in to replace-by-fee, as wallets do
_EMPTY_SCRIPT_SIG = b"\x00" + _SEQUENCE  # a segwit input: empty scriptSig, then the sequence
_NO_WITNESS = b"\x00"  # the witness of an input that has none, in a segwit transaction
_SIG_PUSH = push(DUMMY_SIGNATURE)
_SIG_ITEM = compact_size(len(DUMMY_SIGNATURE)) + DUMMY_SIGNATURE
# the common case, a 33-byte compressed key, precomputed up to the key itself
_P2PKH_SPEND_33 = compact_size(len(_SIG_PUSH) + 34) + _SIG_PUSH + b"\x21"
_P2WPKH_WITNESS_33 = b"\x02" + _SIG_ITEM + b"\x21"
_CSIZE = [compact_size(n) for n in range(0xFD)]
_U32 = struct.Struct("<I").pack
_I64 = struct.Struct("<q").pack
_SHA256 = hashlib.sha256


def address_key(seed: bytes, n: int) -> tuple[bytes, bytes]:
    """Deterministic identity for address number ``n`` of a world: (33-byte compressed-key-shaped pubkey,
    its hash160). pubkey = 0x02 + sha256(seed + n as 8 bytes LE)."""
    pubkey = b"\x02" + _SHA256(seed + n.to_bytes(8, "little")).digest()
    return pubkey, hash160(pubkey)


def script_for(kind: int, pubkey_hash: bytes) -> bytes:
    """The scriptPubKey paying ``pubkey_hash``: P2WPKH ``0014<hash>`` or P2PKH ``76a914<hash>88ac``."""
    if len(pubkey_hash) != 20:
        raise ValueError(f"a pubkey hash is 20 bytes, not {len(pubkey_hash)}")
    if kind == P2WPKH:
        return p2wpkh_script(pubkey_hash)
    if kind == P2PKH:
        return p2pkh_script(pubkey_hash)
    raise ValueError(f"unknown script kind {kind!r} (P2WPKH={P2WPKH}, P2PKH={P2PKH})")


def _csize(n: int) -> bytes:
    return _CSIZE[n] if n < 0xFD else compact_size(n)


class TxEncoder:
    """Serializes one transaction. Inputs spend P2WPKH (witness [placeholder sig, pubkey], empty scriptSig)
    or P2PKH (scriptSig push(sig) push(pubkey)). Placeholder signature: the 72-byte DER-shaped
    DUMMY_SIGNATURE of builder.py."""

    def encode(
        self,
        inputs: Sequence[tuple[bytes, int, int, bytes]],
        outputs: Sequence[tuple[int, bytes]],
        locktime: int = 0,
    ) -> tuple[bytes, bytes, bytes]:
        """inputs: (prev txid in INTERNAL byte order, vout, kind of the spent script, pubkey of the spender);
        outputs: (value in satoshi, scriptPubKey). Returns (raw tx with witness if any input is segwit,
        txid internal order, wtxid internal order). version 2, sequence 0xfffffffd."""
        if not inputs or not outputs:
            raise ValueError("a transaction needs at least one input and one output")
        parts = [_csize(len(inputs))]
        witnesses: list[bytes] = []
        segwit = False
        try:
            for prev, vout, kind, pubkey in inputs:
                if len(prev) != 32:
                    raise ValueError(f"a previous txid is 32 bytes, not {len(prev)}")
                if kind == P2WPKH:
                    parts.append(prev + _U32(vout) + _EMPTY_SCRIPT_SIG)
                    if len(pubkey) == 33:
                        witnesses.append(_P2WPKH_WITNESS_33 + pubkey)
                    else:
                        witnesses.append(b"\x02" + _SIG_ITEM + _csize(len(pubkey)) + pubkey)
                    segwit = True
                elif kind == P2PKH:
                    if len(pubkey) == 33:
                        parts.append(prev + _U32(vout) + _P2PKH_SPEND_33 + pubkey + _SEQUENCE)
                    else:
                        script_sig = _SIG_PUSH + push(pubkey)
                        parts.append(prev + _U32(vout) + _csize(len(script_sig)) + script_sig + _SEQUENCE)
                    witnesses.append(_NO_WITNESS)
                else:
                    raise ValueError(f"unknown script kind {kind!r} (P2WPKH={P2WPKH}, P2PKH={P2PKH})")
            parts.append(_csize(len(outputs)))
            for value, script in outputs:
                if not 0 <= value <= MAX_MONEY:
                    raise ValueError(f"output value {value} is outside 0..{MAX_MONEY} satoshi")
                parts.append(_I64(value) + _csize(len(script)) + script)
            tail = _U32(locktime)
        except struct.error as exc:  # a vout or locktime outside 0..2^32-1
            raise ValueError(f"a vout or the locktime does not fit 32 bits: {exc}") from None
        body = b"".join(parts)
        stripped = _VERSION + body + tail
        txid = sha256d(stripped)
        if not segwit:
            return stripped, txid, txid
        raw = b"".join((_VERSION, _MARKER_FLAG, body, *witnesses, tail))
        return raw, txid, sha256d(raw)


class BlockFileWriter:
    """Writes a regtest chain to out_dir/blk00000.dat, blk00001.dat, ... (magic fabfb5da + 4-byte LE length +
    block), starting with the regtest genesis block (so `ingest bitcoin-blocks --network regtest` links
    heights from 0), rotating files at max_file_bytes (default 128 MiB, like Bitcoin Core).

    A block is written whole into one file: a file ends before the block that would take it past
    ``max_file_bytes`` (a block larger than that gets a file of its own). ``out_dir`` must hold no
    ``blk*.dat`` files yet (ingest reads them all, a stale one would be read too)."""

    height: int  # height of the last block written (0 after the genesis)
    tip_hash: bytes  # display order

    def __init__(self, out_dir: Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> None:
        if max_file_bytes < 1:
            raise InvalidInput(f"block file size limit {max_file_bytes} is not positive", "give a size >= 1")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInput(f"cannot create {out_dir}: {exc.strerror}", "check the path") from None
        stale = sorted(out_dir.glob("blk*.dat"))
        if stale:
            raise InvalidInput(
                f"{out_dir} already holds block files ({stale[0].name} ...)",
                "write the chain to an empty directory, or delete the old blk*.dat files",
            )
        self.out_dir = out_dir
        self.max_file_bytes = max_file_bytes
        self.files: list[Path] = []  # the block files written so far, in order
        self._fh: BinaryIO | None = None
        self._file_bytes = 0
        self._closed = False
        genesis = regtest_genesis()
        self._append(genesis.serialize())
        self.height = 0
        self.tip_hash = genesis.hash

    def add_block(
        self,
        time: int,
        coinbase_outputs: Sequence[tuple[int, bytes]],
        txs: Sequence[tuple[bytes, bytes, bytes]],
    ) -> tuple[bytes, bytes]:
        """Append the next block: a coinbase (BIP34 height in its scriptSig, paying coinbase_outputs; plus the
        BIP141 witness commitment output and reserved-value witness when any tx has a witness), then txs as
        returned by TxEncoder.encode (raw, txid, wtxid). Computes the merkle root, grinds the nonce to meet
        0x207fffff, writes the framed block. Returns (coinbase txid internal order, block hash display)."""
        if self._closed:
            raise ValueError("the block file writer is closed")
        if not 0 <= time <= 0xFFFFFFFF:
            raise ValueError(f"block time {time} does not fit 32 bits")
        height = self.height + 1
        for value, _ in coinbase_outputs:
            if not 0 <= value <= MAX_MONEY:
                raise ValueError(f"coinbase output value {value} is outside 0..{MAX_MONEY} satoshi")
        coinbase = coinbase_tx(height, [TxOut(value, script) for value, script in coinbase_outputs])
        if any(txid != wtxid for _, txid, wtxid in txs):
            coinbase = commit_witness(coinbase, [wtxid for _, _, wtxid in txs])
        if not coinbase.outputs:
            raise ValueError("the coinbase pays no output: give at least one coinbase output")
        cb_raw = coinbase.serialize()
        cb_txid = coinbase.txid[::-1]
        root = merkle_root([cb_txid, *(txid for _, txid, _ in txs)])
        header = mine(Header(BLOCK_VERSION, self.tip_hash, root[::-1], time, REGTEST_BITS, 0))
        block = b"".join(
            (header.serialize(), compact_size(len(txs) + 1), cb_raw, *(raw for raw, _, _ in txs))
        )
        self._append(block)
        self.height = height
        self.tip_hash = header.hash
        return cb_txid, self.tip_hash

    def _append(self, block: bytes) -> None:
        framed = len(block) + 8
        if self._fh is None or (self._file_bytes and self._file_bytes + framed > self.max_file_bytes):
            self._open_next()
        assert self._fh is not None
        self._fh.write(REGTEST.magic + _U32(len(block)))
        self._fh.write(block)
        self._file_bytes += framed

    def _open_next(self) -> None:
        if self._fh is not None:
            self._fh.close()
        path = self.out_dir / f"blk{len(self.files):05d}.dat"
        try:
            self._fh = path.open("xb", buffering=1 << 20)
        except OSError as exc:
            raise InvalidInput(f"cannot write {path}: {exc.strerror}", "check the directory") from None
        self.files.append(path)
        self._file_bytes = 0

    def close(self) -> None:
        """Flush and close the current block file (idempotent)."""
        self._closed = True
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> BlockFileWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
