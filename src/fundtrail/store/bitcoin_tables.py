"""Decoded Bitcoin columns -> Arrow tables, ready for a bulk insert (no row-by-row work)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from fundtrail.chains.bitcoin import kernels
from fundtrail.chains.bitcoin import script as st
from fundtrail.chains.bitcoin.decoder import I64, Decoded

_TYPE_NAMES = pa.array(st.SCRIPT_TYPE_NAMES, pa.string())
_NO_ADDRESS = np.array(sorted(set(range(len(st.SCRIPT_TYPE_NAMES))) - st.HAS_ADDRESS), np.uint8)


@dataclass
class BitcoinTables:
    blocks: pa.Table
    txs: pa.Table
    outputs: pa.Table
    inputs: pa.Table


def _fixed32(rows: npt.NDArray[np.uint8]) -> pa.Array:
    data = np.ascontiguousarray(rows)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(32), data.shape[0], [None, pa.py_buffer(data)])


def _binary(data: npt.NDArray[np.uint8], offsets: I64, valid: npt.NDArray[np.bool_] | None) -> pa.Array:
    mask = None if valid is None else pa.array(valid, pa.bool_()).buffers()[1]
    n = offsets.shape[0] - 1
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(),
        n,
        [mask, pa.py_buffer(offsets), pa.py_buffer(data)],
        null_count=-1 if valid is not None else 0,
    )


def _ranges(first: I64, count: I64) -> I64:
    """Concatenation of arange(first[k], first[k] + count[k])."""
    if count.size == 0:
        return np.zeros(0, np.int64)
    total = int(count.sum())
    starts = np.repeat(first - np.concatenate([[0], np.cumsum(count)[:-1]]), count)
    out: I64 = (np.arange(total, dtype=np.int64) + starts).astype(np.int64)
    return out


def _rows(seg: I64, kb: I64, contiguous: bool) -> slice | I64:
    """The rows (of transactions, inputs or outputs: ``seg`` gives each block's first row) of blocks
    ``kb``: a slice where the blocks are consecutive, else an index array."""
    if contiguous:
        return slice(int(seg[kb[0]]), int(seg[kb[-1] + 1]))
    return _ranges(seg[kb], seg[kb + 1] - seg[kb])


def _count(seg: I64, kb: I64) -> int:
    return int((seg[kb + 1] - seg[kb]).sum())


def build_tables(
    d: Decoded,
    keep: list[int],
    block_id0: int,
    tx_id0: int,
    chain: str,
    source: str,
    heights: list[int | None] | None = None,
    height_sources: list[str | None] | None = None,
) -> BitcoinTables:
    """Arrow tables for blocks ``keep`` (indices into d.blocks) with ids from block_id0 / tx_id0.
    ``heights`` and ``height_sources`` (one per kept block) replace the decoder's where given."""
    kb = np.array(keep, np.int64)
    tx_cnt = d.seg_tx[kb + 1] - d.seg_tx[kb]
    # consecutive blocks (the usual case: none skipped) take their rows as slices, which are views
    contiguous = keep[-1] - keep[0] == len(keep) - 1
    tx_rows = _rows(d.seg_tx, kb, contiguous)
    in_rows = _rows(d.seg_in, kb, contiguous)
    out_rows = _rows(d.seg_out, kb, contiguous)
    n_tx, n_outs = _count(d.seg_tx, kb), _count(d.seg_out, kb)
    block_ids = block_id0 + np.arange(kb.size, dtype=np.int64)
    tx_ids = tx_id0 + np.arange(n_tx, dtype=np.int64)
    tx_block = np.repeat(block_ids, tx_cnt)
    position = np.arange(n_tx, dtype=np.int64) - np.repeat(np.cumsum(tx_cnt) - tx_cnt, tx_cnt)
    n_in, n_out = d.tx_n_in[tx_rows], d.tx_n_out[tx_rows]
    is_cb = position == 0

    # per-tx output value, exact in int64
    out_value = d.out_value[out_rows]
    cs = np.concatenate([[0], np.cumsum(out_value)])
    out_end = np.cumsum(n_out)
    output_value = cs[out_end] - cs[out_end - n_out]

    infos = [d.blocks[k] for k in keep]
    if heights is None:
        heights = [b.height for b in infos]
    if height_sources is None:
        height_sources = [b.height_source for b in infos]
    blocks = pa.table(
        {
            "chain": pa.array([chain] * kb.size, pa.string()),
            "block_id": block_ids,
            "hash": pa.array([b.header.hash for b in infos], pa.binary(32)),
            "height": pa.array(heights, pa.int64()),
            "height_source": pa.array(height_sources, pa.string()),
            "prev_hash": pa.array([b.header.prev_hash for b in infos], pa.binary(32)),
            "merkle_root": pa.array([b.header.merkle_root for b in infos], pa.binary(32)),
            "version": pa.array([b.header.version for b in infos], pa.int64()),
            "time": pa.array([b.header.time for b in infos], pa.int64()),
            "bits": pa.array([b.header.bits for b in infos], pa.uint32()),
            "nonce": pa.array([b.header.nonce for b in infos], pa.uint32()),
            "tx_count": tx_cnt.astype(np.int32),
            "size": pa.array([b.size for b in infos], pa.int32()),
            "stripped_size": pa.array([b.stripped_size for b in infos], pa.int32()),
            "weight": pa.array([b.weight for b in infos], pa.int64()),
            "merkle_ok": pa.array([b.merkle_ok for b in infos], pa.bool_()),
            "witness_ok": pa.array([b.witness_ok for b in infos], pa.bool_()),
            "source": pa.array([source] * kb.size, pa.string()),
        }
    )

    # coinbase scripts: the script of input 0 of each block's first transaction
    cb_in = d.seg_in[kb]
    cb_valid = np.zeros(n_tx, np.bool_)
    cb_valid[is_cb] = True
    cb_offs = np.zeros(n_tx, np.int64)
    cb_lens = np.zeros(n_tx, np.int64)
    cb_offs[is_cb] = d.in_script_off[cb_in]
    cb_lens[is_cb] = d.in_script_len[cb_in]
    cb_data, cb_offsets = kernels.gather(d.buf, cb_offs, cb_lens, np.full(n_tx, -1, np.int64))
    strip_len = d.tx_strip_len[tx_rows]
    size = d.tx_len[tx_rows]
    txs = pa.table(
        {
            "tx_id": tx_ids,
            "block_id": tx_block,
            "position": position.astype(np.int32),
            "txid": _fixed32(d.txid[tx_rows]),
            "wtxid": _fixed32(d.wtxid[tx_rows]),
            "version": d.tx_version[tx_rows].astype(np.uint32),
            "locktime": d.tx_locktime[tx_rows].astype(np.uint32),
            "size": size.astype(np.int32),
            "weight": strip_len * 3 + size,
            "is_coinbase": is_cb,
            "input_count": n_in.astype(np.int32),
            "output_count": n_out.astype(np.int32),
            "output_value": output_value,
            "coinbase_script": _binary(cb_data, cb_offsets, cb_valid),
        }
    )

    out_tx = np.repeat(tx_ids, n_out)
    out_n = np.arange(n_outs, dtype=np.int64) - np.repeat(out_end - n_out, n_out)
    otype = d.out_type[out_rows]
    has_addr = d.has_address[out_rows]
    if isinstance(out_rows, slice):  # the keys are one run of the key column
        key_offsets = d.address_key_offsets[out_rows.start : out_rows.stop + 1]
        key_data = d.address_key_data[int(key_offsets[0]) : int(key_offsets[-1])]
        key_offsets = key_offsets - key_offsets[0]
    else:
        key_offs = d.address_key_offsets[out_rows]
        key_lens = d.address_key_offsets[out_rows + 1] - key_offs
        key_data, key_offsets = kernels.gather(
            d.address_key_data, key_offs, key_lens, np.full(n_outs, -1, np.int64)
        )
    keep_script = np.isin(otype, _NO_ADDRESS)
    sc_offs = np.where(keep_script, d.out_script_off[out_rows], 0)
    sc_lens = np.where(keep_script, d.out_script_len[out_rows], 0)
    sc_data, sc_offsets = kernels.gather(d.buf, sc_offs, sc_lens, np.full(n_outs, -1, np.int64))
    outputs = pa.table(
        {
            "pos": np.arange(n_outs, dtype=np.int64),
            "tx_id": out_tx,
            "n": out_n.astype(np.int32),
            "value": out_value,
            "script_type": pa.DictionaryArray.from_arrays(pa.array(otype.astype(np.int8)), _TYPE_NAMES),
            "key": _binary(key_data, key_offsets, has_addr),
            "script": _binary(sc_data, sc_offsets, keep_script),
        }
    )

    in_end = np.cumsum(n_in)
    in_tx = np.repeat(tx_ids, n_in)
    in_n = np.arange(_count(d.seg_in, kb), dtype=np.int64) - np.repeat(in_end - n_in, n_in)
    inputs = pa.table(
        {
            "tx_id": in_tx,
            "n": in_n.astype(np.int32),
            "prev_txid": _fixed32(d.in_prev[in_rows]),
            "prev_vout": d.in_vout[in_rows].astype(np.uint32),
            "sequence": d.in_seq[in_rows].astype(np.uint32),
            "witness_items": d.in_wit_items[in_rows].astype(np.int32),
            "is_coinbase": np.repeat(is_cb, n_in),
        }
    )
    return BitcoinTables(blocks, txs, outputs, inputs)
