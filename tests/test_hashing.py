"""Hashing in compiled code (libcrypto called from Numba) against the hashlib fallback: the same txids,
wtxids, block hashes, merkle roots and witness roots on the real blocks, the same errors on bad blocks,
and known vectors."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import ssl
import sys
from pathlib import Path

import numpy as np
import pytest

from fundtrail.chains.bitcoin import builder, decoder, sha256
from fundtrail.chains.bitcoin.blockfile import read_block_file
from fundtrail.chains.bitcoin.decoder import Decoded, decode_blocks, decode_transaction
from fundtrail.chains.bitcoin.network import MAINNET, TESTNET, Network
from fundtrail.errors import BlockRejected
from tests.conftest import ALL_MAINNET, BLOCK_514485, MAINNET_SINGLE, TESTNET_SINGLE

LIB = sha256.libcrypto()
needs_libcrypto = pytest.mark.skipif(LIB is None, reason="no usable libcrypto: only the hashlib path runs")
REAL = [(p, MAINNET) for p in ALL_MAINNET] + [(p, TESTNET) for p in TESTNET_SINGLE]


@pytest.fixture
def hashlib_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode as on a machine where no libcrypto can be loaded."""
    monkeypatch.setattr(sha256, "libcrypto", lambda: None)


def _sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def _columns(d: Decoded) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(d):
        v = getattr(d, f.name)
        out[f.name] = (v.dtype.str, v.shape, v.tobytes()) if isinstance(v, np.ndarray) else repr(v)
    return out


def _one_block(raw: bytes, check_pow: bool = True) -> Decoded:
    return decode_blocks(
        np.frombuffer(raw, np.uint8), np.array([0]), np.array([len(raw)]), MAINNET, check_pow=check_pow
    )


def _first_block(path: Path) -> bytes:
    bf = read_block_file(path, MAINNET)
    return bytes(bf.buf[int(bf.starts[0]) : int(bf.ends[0])])


def test_libcrypto_loads_where_hashlib_uses_openssl() -> None:
    """On Linux, with hashlib built on OpenSSL (as here), the compiled path must be the one that runs:
    a libcrypto that stopped loading would otherwise only show as a slower decode."""
    if sys.platform != "linux" or not ssl.OPENSSL_VERSION.startswith("OpenSSL"):
        pytest.skip("not Linux with OpenSSL")
    assert LIB is not None


def test_sha256d_of_the_genesis_header_is_the_genesis_hash() -> None:
    assert _sha256d(sha256.GENESIS_HEADER)[::-1].hex() == sha256.GENESIS_HASH == MAINNET.genesis_hash
    assert decoder.sha256d(sha256.GENESIS_HEADER)[::-1].hex() == MAINNET.genesis_hash


@needs_libcrypto
def test_compiled_known_vectors() -> None:
    assert LIB is not None
    msgs = [sha256.GENESIS_HEADER, b"", b"abc", bytes(range(64)), bytes(range(256)) * 40]
    data = np.frombuffer(b"".join(msgs), np.uint8)
    lens = np.array([len(m) for m in msgs], np.int64)
    out = LIB.sha256d_ranges(data, np.cumsum(lens) - lens, lens)
    assert out is not None
    assert bytes(out[0][::-1]).hex() == MAINNET.genesis_hash
    # sha256d("abc"), as in Bitcoin Core's crypto tests
    assert bytes(out[2]).hex() == "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358"
    assert [bytes(r) for r in out] == [_sha256d(m) for m in msgs]


@needs_libcrypto
def test_compiled_hash160_vector() -> None:
    assert LIB is not None
    key = np.frombuffer(sha256.WIKI_PUBKEY, np.uint8)
    data = np.zeros(21, np.uint8)
    zero = np.zeros(1, np.int64)
    if not LIB.hash160_keys(key, zero, np.array([key.shape[0]], np.int64), zero, data, zero):
        pytest.skip("this libcrypto has no RIPEMD-160 (P2PK keys go through hashlib)")
    assert bytes(data[1:]).hex() == sha256.WIKI_HASH160


@needs_libcrypto
@pytest.mark.parametrize("path,net", REAL, ids=[p.name for p, _ in REAL])
def test_compiled_hashes_equal_hashlib_on_real_blocks(path: Path, net: Network) -> None:
    bf = read_block_file(path, net)
    k = decoder._run_kernel(bf.buf, bf.starts, bf.ends, True)
    args = (bf.buf, k[5], k[6], k[7], k[10], bf.starts, k[2], True)  # tx_off, tx_len, tx_strip_len, tx_segwit
    compiled = decoder._hash_batch(*args)
    fallback = decoder._hash_batch(*args, use_libcrypto=False)
    for f in dataclasses.fields(decoder.Hashes):
        a, b = getattr(compiled, f.name), getattr(fallback, f.name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), f.name
    # and the txids are those of the transactions' stripped serializations
    d = decode_blocks(bf.buf, bf.starts, bf.ends, net)
    for i in range(0, d.n_tx, 50):
        if not d.tx_segwit[i]:
            assert bytes(compiled.txid[i]) == _sha256d(d.tx_raw(i))[::-1]


@needs_libcrypto
def test_full_decode_identical_without_libcrypto(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every column (txids, wtxids, address keys of P2PK outputs included) and every block row."""
    decoded = []
    for path, net in REAL:
        bf = read_block_file(path, net)
        decoded.append(_columns(decode_blocks(bf.buf, bf.starts, bf.ends, net)))
    raw = _first_block(BLOCK_514485)
    d = _one_block(raw)
    txs = [d.tx_raw(i) for i in (0, 1, int(np.flatnonzero(d.tx_segwit)[1]))]
    decoded += [_columns(decode_transaction(t, MAINNET)) for t in txs]
    monkeypatch.setattr(sha256, "libcrypto", lambda: None)
    again = []
    for path, net in REAL:
        bf = read_block_file(path, net)
        again.append(_columns(decode_blocks(bf.buf, bf.starts, bf.ends, net)))
    again += [_columns(decode_transaction(t, MAINNET)) for t in txs]
    assert again == decoded


def test_txids_and_roots_match_python_bitcoinlib_without_libcrypto(hashlib_only: None) -> None:
    from bitcoin.core import CBlock, b2lx

    for path in [*MAINNET_SINGLE, BLOCK_514485]:
        raw = _first_block(path)
        ref = CBlock.deserialize(raw)
        d = _one_block(raw)
        assert [d.txid_hex(i) for i in range(d.n_tx)] == [b2lx(tx.GetTxid()) for tx in ref.vtx]
        assert d.blocks[0].header.merkle_root == ref.hashMerkleRoot[::-1]


def _bad_blocks() -> dict[str, tuple[bytes, bool]]:
    """Blocks that must be rejected: (raw block, check proof of work)."""
    seg = _first_block(BLOCK_514485)
    d = _one_block(seg)
    t = int(np.flatnonzero(d.tx_segwit)[3])
    locktime = int(d.tx_off[t] + d.tx_len[t] - 1)
    first_in = int(d.tx_n_in[:t].sum())
    witness = int(d.in_wit_off[first_in] + 5)
    old = _first_block(next(p for p in MAINNET_SINGLE if p.name == "block383616.dat"))
    o = _one_block(old)
    raws = [o.tx_raw(i) for i in range(13)]
    ids = [bytes(o.txid[i])[::-1] for i in range(13)]

    def craft(order: list[int], tree: list[int]) -> bytes:
        root: bytes = builder.merkle_root([ids[i] for i in tree])
        body = builder.compact_size(len(order)) + b"".join(raws[i] for i in order)
        return old[:36] + root + old[68:80] + bytes(body)

    def flip(raw: bytes, at: int) -> bytes:
        return raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1 :]

    return {
        "merkle root (a flipped locktime)": (flip(seg, locktime), True),
        "merkle root (a flipped header byte)": (flip(seg, 40), True),
        "witness commitment (a flipped witness byte)": (flip(seg, witness), True),
        "proof of work": (flip(seg, 76), True),
        "mutated at level 0": (craft([0, 1, 2, 2], [0, 1, 2]), False),
        "mutated at level 1": (craft([0, 1, 2, 3, 4, 5, 4, 5], [0, 1, 2, 3, 4, 5]), False),
        "mutated at level 2": (craft([*range(12), *range(8, 12)], list(range(12))), False),
    }


@pytest.fixture(scope="module")
def bad_blocks() -> dict[str, tuple[bytes, bool]]:
    return _bad_blocks()


def _rejection(raw: bytes, check_pow: bool) -> tuple[str, int | None]:
    with pytest.raises(BlockRejected) as exc:
        _one_block(raw, check_pow)
    return str(exc.value), exc.value.index


def test_bad_blocks_rejected_alike_with_and_without_libcrypto(
    bad_blocks: dict[str, tuple[bytes, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = {name: _rejection(raw, pow_) for name, (raw, pow_) in bad_blocks.items()}
    monkeypatch.setattr(sha256, "libcrypto", lambda: None)
    second = {name: _rejection(raw, pow_) for name, (raw, pow_) in bad_blocks.items()}
    assert first == second
    for name, (text, index) in first.items():
        assert index == 0
        if name.startswith("merkle root"):
            assert "does not match the header's" in text
        elif name.startswith("witness"):
            assert "witness commitment does not match" in text
        elif name.startswith("proof"):
            assert "above the target" in text
        else:
            assert "merkle tree is mutated" in text


def test_unmutated_subtrees_decode(hashlib_only: None) -> None:
    """The trees the mutation cases come from are valid (odd levels repeat their last node)."""
    old = _first_block(next(p for p in MAINNET_SINGLE if p.name == "block383616.dat"))
    o = _one_block(old)
    for n in (1, 2, 3, 5, 6, 7, 12, 13):
        raws = [o.tx_raw(i) for i in range(n)]
        root = builder.merkle_root([bytes(o.txid[i])[::-1] for i in range(n)])
        raw = old[:36] + root + old[68:80] + builder.compact_size(n) + b"".join(raws)
        assert _one_block(raw, check_pow=False).blocks[0].merkle_ok


def test_fallback_when_no_libcrypto_loads(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sha256, "_candidates", lambda: ["/nonexistent/libcrypto.so.3"])
    sha256.libcrypto.cache_clear()
    try:
        with caplog.at_level(logging.DEBUG, logger=sha256.__name__):
            assert sha256.libcrypto() is None
            assert sha256.libcrypto() is None  # cached: logged once
        records = [r for r in caplog.records if r.name == sha256.__name__]
        assert len(records) == 1 and records[0].levelno == logging.DEBUG
        assert "hashing through hashlib" in records[0].getMessage()
        d = _one_block(_first_block(BLOCK_514485))
        assert d.blocks[0].header.hash.hex() == BLOCK_514485.stem
        assert d.blocks[0].witness_ok is True
    finally:
        sha256.libcrypto.cache_clear()


@needs_libcrypto
def test_a_libcrypto_failure_falls_back_to_hashlib(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    raw = _first_block(BLOCK_514485)
    want = _columns(_one_block(raw))
    monkeypatch.setattr(sha256.LibCrypto, "hash_batch", lambda self, *args: None)
    with caplog.at_level(logging.WARNING, logger=decoder.__name__):
        assert _columns(_one_block(raw)) == want
    assert any("hashing this batch through hashlib" in r.getMessage() for r in caplog.records)
