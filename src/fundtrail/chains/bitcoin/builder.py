"""Build Bitcoin transactions and blocks: a small, typed serializer for tests and simulated worlds.

It writes the consensus serialization (BIP144 with witness data), computes txids, wtxids, the merkle
root and the BIP141 witness commitment, puts the BIP34 height in every coinbase, and grinds the nonce
until the header meets its own target (instant at regtest difficulty, bits ``0x207fffff``).

Signatures are placeholders of the right shape (a 72-byte DER-like push and a 33-byte key): the decoder
and the store never verify scripts, so the blocks decode and link exactly like real ones, but a node
would reject them. Keys are deterministic identities made from a label, not key pairs.

Hashes given and returned are in display order (big-endian, as explorers show them).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

COIN = 100_000_000  # satoshi per bitcoin
REGTEST_BITS = 0x207FFFFF  # regtest difficulty: about one nonce in two meets the target
REGTEST_HALVING_INTERVAL = 150  # blocks between subsidy halvings on regtest (mainnet: 210,000)
BLOCK_INTERVAL_S = 600  # the spacing the builder gives consecutive block times
DUMMY_SIGNATURE = bytes([0x30, 0x45]) + b"\x00" * 69 + b"\x01"  # DER-shaped placeholder + SIGHASH_ALL
WITNESS_RESERVED = b"\x00" * 32
_COMMITMENT_HEADER = bytes.fromhex("aa21a9ed")

# Satoshi's genesis coinbase (shared by mainnet, testnet, signet and regtest; only the header differs)
_GENESIS_SCRIPT_SIG = bytes.fromhex(
    "04ffff001d0104455468652054696d65732030332f4a616e2f32303039204368616e63656c6c6f72206f6e20627269"
    "6e6b206f66207365636f6e64206261696c6f757420666f722062616e6b73"
)
_GENESIS_PUBKEY = bytes.fromhex(
    "04678afdb0fe5548271967f1a67130b7105cd6a828e03909a67962e0ea1f61deb649f6bc3f4cef38c4f35504e51ec112de5c"
    "384df7ba0b8d578a4c702b6bf11d5f"
)


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


_SHA256 = hashlib.sha256
_DIGEST = type(hashlib.sha256()).digest
_RIPEMD160 = hashlib.new("ripemd160")  # copied per call: cheaper than looking the digest up by name


def hash160(data: bytes) -> bytes:
    h = _RIPEMD160.copy()
    h.update(hashlib.sha256(data).digest())
    return h.digest()


def compact_size(n: int) -> bytes:
    """Bitcoin's variable-length integer (CompactSize)."""
    if n < 0:
        raise ValueError("compact size of a negative number")
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + struct.pack("<H", n)
    if n <= 0xFFFFFFFF:
        return b"\xfe" + struct.pack("<I", n)
    return b"\xff" + struct.pack("<Q", n)


def push(data: bytes) -> bytes:
    """A minimal script push of ``data``."""
    n = len(data)
    if n < 0x4C:
        return bytes([n]) + data
    if n <= 0xFF:
        return b"\x4c" + bytes([n]) + data
    if n <= 0xFFFF:
        return b"\x4d" + struct.pack("<H", n) + data
    return b"\x4e" + struct.pack("<I", n) + data


def script_num(n: int) -> bytes:
    """``CScript() << n`` as Bitcoin Core writes it: OP_0, OP_1..OP_16, or a minimal CScriptNum push."""
    if n == 0:
        return b"\x00"
    if 1 <= n <= 16:
        return bytes([0x50 + n])
    neg, v = n < 0, abs(n)
    out = bytearray()
    while v:
        out.append(v & 0xFF)
        v >>= 8
    if out[-1] & 0x80:
        out.append(0x80 if neg else 0)
    elif neg:
        out[-1] |= 0x80
    return push(bytes(out))


def p2pk_script(pubkey: bytes) -> bytes:
    return push(pubkey) + b"\xac"


def p2pkh_script(pubkey_hash: bytes) -> bytes:
    return b"\x76\xa9\x14" + pubkey_hash + b"\x88\xac"


def p2wpkh_script(pubkey_hash: bytes) -> bytes:
    return b"\x00\x14" + pubkey_hash


def op_return_script(data: bytes) -> bytes:
    return b"\x6a" + push(data)


@dataclass(frozen=True)
class Key:
    """A deterministic identity: a compressed-key-shaped public key derived from a label."""

    label: str

    @property
    def pubkey(self) -> bytes:
        return b"\x02" + hashlib.sha256(self.label.encode()).digest()

    @property
    def pubkey_hash(self) -> bytes:
        return hash160(self.pubkey)

    def p2pkh(self) -> bytes:
        return p2pkh_script(self.pubkey_hash)

    def p2wpkh(self) -> bytes:
        return p2wpkh_script(self.pubkey_hash)


@dataclass(frozen=True)
class OutPoint:
    txid: bytes  # display order
    vout: int


@dataclass(frozen=True)
class TxIn:
    prevout: OutPoint
    script_sig: bytes = b""
    sequence: int = 0xFFFFFFFF
    witness: tuple[bytes, ...] = ()


@dataclass(frozen=True)
class TxOut:
    value: int  # satoshi
    script_pubkey: bytes


@dataclass(frozen=True)
class Tx:
    inputs: tuple[TxIn, ...]
    outputs: tuple[TxOut, ...]
    version: int = 2
    locktime: int = 0

    @property
    def has_witness(self) -> bool:
        return any(i.witness for i in self.inputs)

    @property
    def is_coinbase(self) -> bool:
        return len(self.inputs) == 1 and self.inputs[0].prevout == OutPoint(b"\x00" * 32, 0xFFFFFFFF)

    def serialize(self, with_witness: bool = True) -> bytes:
        witness = with_witness and self.has_witness
        parts = [struct.pack("<i", self.version)]
        if witness:
            parts.append(b"\x00\x01")  # BIP144 marker and flag
        parts.append(compact_size(len(self.inputs)))
        for i in self.inputs:
            parts += [i.prevout.txid[::-1], struct.pack("<I", i.prevout.vout)]
            parts += [compact_size(len(i.script_sig)), i.script_sig, struct.pack("<I", i.sequence)]
        parts.append(compact_size(len(self.outputs)))
        for o in self.outputs:
            parts += [struct.pack("<q", o.value), compact_size(len(o.script_pubkey)), o.script_pubkey]
        if witness:
            for i in self.inputs:
                parts.append(compact_size(len(i.witness)))
                parts += [compact_size(len(item)) + item for item in i.witness]
        parts.append(struct.pack("<I", self.locktime))
        return b"".join(parts)

    @property
    def txid(self) -> bytes:
        return sha256d(self.serialize(with_witness=False))[::-1]

    @property
    def wtxid(self) -> bytes:
        return sha256d(self.serialize())[::-1]

    def outpoint(self, n: int) -> OutPoint:
        return OutPoint(self.txid, n)


def coinbase_tx(height: int, outputs: Sequence[TxOut], tag: bytes = b"fundtrail") -> Tx:
    """A coinbase whose script starts with the BIP34 height."""
    script_sig = script_num(height) + push(tag)
    return Tx((TxIn(OutPoint(b"\x00" * 32, 0xFFFFFFFF), script_sig),), tuple(outputs))


def spend_input(prevout: OutPoint, key: Key, spent_script: bytes) -> TxIn:
    """An input spending ``prevout`` (locked to ``spent_script``) with placeholder signature data."""
    if spent_script == key.p2wpkh():
        return TxIn(prevout, b"", 0xFFFFFFFF, (DUMMY_SIGNATURE, key.pubkey))
    if spent_script == key.p2pkh():
        return TxIn(prevout, push(DUMMY_SIGNATURE) + push(key.pubkey))
    if spent_script == p2pk_script(key.pubkey):
        return TxIn(prevout, push(DUMMY_SIGNATURE))
    raise ValueError(f"{key.label} cannot spend the script {spent_script.hex()}")


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Merkle root over hashes in internal byte order; returns internal byte order."""
    level = list(leaves)
    if not level:
        raise ValueError("merkle root of no leaves")
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        pairs = map(bytes.__add__, level[0::2], level[1::2])
        level = list(map(_DIGEST, map(_SHA256, map(_DIGEST, map(_SHA256, pairs)))))  # sha256d, no frames
    return level[0]


def target_of(bits: int) -> int:
    exponent, mantissa = bits >> 24, bits & 0x007FFFFF
    return mantissa >> (8 * (3 - exponent)) if exponent <= 3 else mantissa << (8 * (exponent - 3))


@dataclass(frozen=True)
class Header:
    version: int
    prev_hash: bytes  # display order
    merkle_root: bytes  # display order
    time: int
    bits: int
    nonce: int

    def serialize(self) -> bytes:
        return struct.pack(
            "<I32s32sIII", self.version, self.prev_hash[::-1], self.merkle_root[::-1], self.time,
            self.bits, self.nonce,
        )  # fmt: skip

    @property
    def hash(self) -> bytes:
        return sha256d(self.serialize())[::-1]


@dataclass(frozen=True)
class Block:
    header: Header
    txs: tuple[Tx, ...]

    @property
    def hash(self) -> bytes:
        return self.header.hash

    def serialize(self) -> bytes:
        return b"".join(
            [self.header.serialize(), compact_size(len(self.txs)), *(t.serialize() for t in self.txs)]
        )


def witness_commitment_script(wtxids: Sequence[bytes]) -> bytes:
    """The BIP141 commitment output script over the wtxids (internal byte order) of a block's transactions
    after the coinbase (whose own wtxid counts as zeros), with the all-zero reserved value."""
    root = merkle_root([b"\x00" * 32, *wtxids])
    return op_return_script(_COMMITMENT_HEADER + sha256d(root + WITNESS_RESERVED))


def commit_witness(coinbase: Tx, wtxids: Sequence[bytes]) -> Tx:
    """The coinbase with the BIP141 commitment output over ``wtxids`` (internal byte order, the block's
    other transactions) and the reserved value in its witness."""
    cb_in = coinbase.inputs[0]
    return Tx(
        (TxIn(cb_in.prevout, cb_in.script_sig, cb_in.sequence, (WITNESS_RESERVED,)),),
        (*coinbase.outputs, TxOut(0, witness_commitment_script(wtxids))),
        coinbase.version,
        coinbase.locktime,
    )


def with_witness_commitment(coinbase: Tx, others: Sequence[Tx]) -> Tx:
    """The coinbase with the BIP141 commitment output and the reserved value in its witness."""
    return commit_witness(coinbase, [t.wtxid[::-1] for t in others])


def mine(header: Header) -> Header:
    """The header with the first nonce from its own whose hash meets the target of its bits."""
    target = target_of(header.bits)
    prefix = header.serialize()[:76]
    for nonce in range(header.nonce, 1 << 32):
        if int.from_bytes(sha256d(prefix + struct.pack("<I", nonce))[::-1], "big") <= target:
            return Header(
                header.version, header.prev_hash, header.merkle_root, header.time, header.bits, nonce
            )
    raise ValueError(f"no nonce meets the target of bits 0x{header.bits:08x}: raise the time and retry")


def build_block(prev_hash: bytes, txs: Sequence[Tx], time: int, bits: int = REGTEST_BITS,
                version: int = 0x20000000) -> Block:  # fmt: skip
    """A block over ``txs`` (coinbase first): witness commitment added when a transaction has witness
    data, merkle root computed, nonce ground until the proof of work holds."""
    if not txs or not txs[0].is_coinbase:
        raise ValueError("a block starts with a coinbase transaction")
    coinbase, others = txs[0], tuple(txs[1:])
    if any(t.has_witness for t in others):
        coinbase = with_witness_commitment(coinbase, others)
    all_txs = (coinbase, *others)
    root = merkle_root([t.txid[::-1] for t in all_txs])[::-1]
    return Block(mine(Header(version, prev_hash, root, time, bits, 0)), all_txs)


def genesis_block(time: int, bits: int, nonce: int) -> Block:
    """The genesis block of a network whose header has these fields (mined already: no grinding)."""
    cb = Tx(
        (TxIn(OutPoint(b"\x00" * 32, 0xFFFFFFFF), _GENESIS_SCRIPT_SIG),),
        (TxOut(50 * COIN, p2pk_script(_GENESIS_PUBKEY)),),
        version=1,
    )
    return Block(Header(1, b"\x00" * 32, cb.txid, time, bits, nonce), (cb,))


def regtest_genesis() -> Block:
    return genesis_block(1296688602, REGTEST_BITS, 2)


def subsidy(height: int, halving_interval: int = REGTEST_HALVING_INTERVAL) -> int:
    halvings = height // halving_interval
    return 0 if halvings >= 64 else (50 * COIN) >> halvings


@dataclass
class ChainBuilder:
    """A chain under construction: its blocks by height and its unspent outputs (with their values, so
    coinbases collect the fees). Spends are not checked for maturity or signatures."""

    blocks: list[Block] = field(default_factory=lambda: [regtest_genesis()])
    utxos: dict[OutPoint, TxOut] = field(default_factory=dict)
    halving_interval: int = REGTEST_HALVING_INTERVAL

    @property
    def height(self) -> int:
        return len(self.blocks) - 1

    @property
    def tip(self) -> Block:
        return self.blocks[-1]

    def spend(
        self, spends: Sequence[tuple[OutPoint, Key]], outputs: Sequence[TxOut], locktime: int = 0
    ) -> Tx:
        """A transaction spending unspent outputs of this chain (each with the key it pays to)."""
        for op, _ in spends:
            if op not in self.utxos:
                raise ValueError(f"{op.txid.hex()}:{op.vout} is not an unspent output of this chain")
        if sum(o.value for o in outputs) > sum(self.utxos[op].value for op, _ in spends):
            raise ValueError("outputs exceed the inputs")
        inputs = tuple(spend_input(op, key, self.utxos[op].script_pubkey) for op, key in spends)
        return Tx(inputs, tuple(outputs), 2, locktime)

    def add_block(self, txs: Sequence[Tx] = (), miner: Key | None = None, time: int | None = None) -> Block:
        """Mine a block on the tip holding ``txs`` after a coinbase paying subsidy plus fees to
        ``miner`` (P2PKH; the default miner is Key("miner")). Updates the unspent outputs."""
        height = self.height + 1
        spent: dict[OutPoint, TxOut] = {}
        created: dict[OutPoint, TxOut] = {}
        fees = 0
        for t in txs:
            value_in = 0
            for i in t.inputs:
                prev = created.pop(i.prevout, None) or self.utxos.get(i.prevout)
                if prev is None or i.prevout in spent:
                    raise ValueError(f"{i.prevout.txid.hex()}:{i.prevout.vout} is spent or unknown")
                spent[i.prevout] = prev
                value_in += prev.value
            fees += value_in - sum(o.value for o in t.outputs)
            created.update({t.outpoint(n): o for n, o in enumerate(t.outputs)})
        payee = (miner or Key("miner")).p2pkh()
        cb = coinbase_tx(height, [TxOut(subsidy(height, self.halving_interval) + fees, payee)])
        when = time if time is not None else self.tip.header.time + BLOCK_INTERVAL_S
        block = build_block(self.tip.hash, [cb, *txs], when)
        for op in spent:
            self.utxos.pop(op, None)
        self.utxos.update(created)
        self.utxos.update({block.txs[0].outpoint(n): o for n, o in enumerate(block.txs[0].outputs)})
        self.blocks.append(block)
        return block

    def fork(self, height: int) -> ChainBuilder:
        """A new builder holding this chain's blocks up to ``height`` and the outputs unspent there."""
        if not 0 <= height <= self.height:
            raise ValueError(f"cannot fork at height {height} of a chain of height {self.height}")
        other = ChainBuilder([self.blocks[0]], {}, self.halving_interval)
        for b in self.blocks[1 : height + 1]:
            other._replay(b)
        return other

    def _replay(self, block: Block) -> None:
        for t in block.txs:
            if not t.is_coinbase:
                for i in t.inputs:
                    self.utxos.pop(i.prevout, None)
            self.utxos.update({t.outpoint(n): o for n, o in enumerate(t.outputs)})
        self.blocks.append(block)

    def raw_blocks(self) -> list[bytes]:
        return [b.serialize() for b in self.blocks]
