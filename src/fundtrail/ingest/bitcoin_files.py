"""Job: ingest Bitcoin block files (blk*.dat, or files holding one block as binary or hex).

Files are read whole, grouped into batches of up to ``BATCH_BYTES`` of block data, decoded in one
compiled pass per batch and written in one transaction per batch. A bad block stops the run with an
error naming it; nothing of its batch is stored, earlier batches stay (and a re-run skips them).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from fundtrail.chains.bitcoin.blockfile import BlockFile, read_block_file
from fundtrail.chains.bitcoin.decoder import decode_blocks
from fundtrail.chains.bitcoin.network import Network
from fundtrail.errors import BlockRejected, FundtrailError, InvalidInput
from fundtrail.ingest.progress import Progress, ProgressFn, no_progress
from fundtrail.store.bitcoin_write import WriteResult, write_blocks

BATCH_BYTES = 64 * 1024 * 1024


@dataclass
class IngestSummary:
    files: int = 0
    blocks: int = 0
    skipped: int = 0
    txs: int = 0
    inputs: int = 0
    outputs: int = 0
    unresolved: int = 0
    late_resolved: int = 0
    new_addresses: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)

    def add(self, r: WriteResult) -> None:
        self.blocks += r.blocks
        self.skipped += r.skipped
        self.txs += r.txs
        self.inputs += r.inputs
        self.outputs += r.outputs
        self.unresolved += r.unresolved
        self.late_resolved += r.late_resolved
        self.new_addresses += r.new_addresses


def ingest_block_files(
    con: duckdb.DuckDBPyConnection,
    paths: list[Path],
    network: Network,
    xor_key: bytes | None = None,
    progress: ProgressFn = no_progress,
    batch_bytes: int = BATCH_BYTES,
) -> IngestSummary:
    summary = IngestSummary()
    total = 0
    for p in paths:
        if not p.is_file():
            raise InvalidInput(f"cannot read {p}: no such file", "check the path")
        with contextlib.suppress(OSError):
            total += p.stat().st_size
    batch: list[BlockFile] = []
    size = 0
    for path in paths:
        bf = read_block_file(path, network, xor_key)
        summary.files += 1
        batch.append(bf)
        size += bf.file_size
        if size >= batch_bytes:
            _flush(con, batch, network, summary, progress, total)
            batch, size = [], 0
    if batch:
        _flush(con, batch, network, summary, progress, total)
    return summary


def _flush(
    con: duckdb.DuckDBPyConnection,
    batch: list[BlockFile],
    network: Network,
    summary: IngestSummary,
    progress: ProgressFn,
    total: int,
) -> None:
    if len(batch) == 1:
        buf, starts, ends = batch[0].buf, batch[0].starts, batch[0].ends
    else:
        buf = np.concatenate([b.buf for b in batch])
        base = np.cumsum([0] + [int(b.buf.shape[0]) for b in batch[:-1]])
        starts = np.concatenate([b.starts + o for b, o in zip(batch, base)])
        ends = np.concatenate([b.ends + o for b, o in zip(batch, base)])
    source = "file:" + ",".join(b.path.name for b in batch[:3]) + ("..." if len(batch) > 3 else "")
    try:
        decoded = decode_blocks(buf, starts, ends, network)
        result = write_blocks(con, decoded, source)
    except BlockRejected as exc:
        exc.problem = _in_file(exc, batch, buf, starts) + exc.problem
        exc.fix = (exc.fix + "; " if exc.fix else "") + (
            f"{summary.blocks} blocks of earlier batches are stored, a re-run skips them"
            if summary.blocks
            else "nothing was stored"
        )
        exc.args = (exc.line(),)
        raise
    except FundtrailError:
        raise
    summary.add(result)
    summary.bytes += sum(b.file_size for b in batch)
    progress(Progress(summary.bytes, total, summary.blocks + summary.skipped, summary.txs))


def _in_file(exc: BlockRejected, batch: list[BlockFile], buf: np.ndarray, starts: np.ndarray) -> str:
    from fundtrail.chains.bitcoin.decoder import sha256d

    if exc.block_hash is None:
        return ""
    offset = 0
    for b in batch:
        for s in b.starts.tolist():
            o = offset + s
            if sha256d(bytes(buf[o : o + 80]))[::-1].hex() == exc.block_hash:
                return f"{b.path}: "
        offset += int(b.buf.shape[0])
    return ""
