"""The compact in-memory graph of one UTXO chain the tracer walks: transactions in topological order with
their outputs and inputs in CSR arrays, built from the store in bulk (three Arrow queries, a few
compiled passes) and cached in the process and on disk next to the store.

Layout (``n`` transactions, dense index ``i`` = position in topological order):

- order: by block height, then position in the block; blocks without a known height after those with
  one (by block id); loose transactions (stored outside any block, ``block_id`` NULL) last, by ``tx_id``.
  A funding transaction always comes before its spender; should the stored heights ever contradict that
  (a loose transaction spending a later-stored loose one), a topological sort (Kahn's, smallest current
  position first) repairs the order, so the tracer can rely on it.
- per transaction: ``tx_id`` (store id), ``txid`` (32 bytes, display order), ``time`` (block time, unix
  seconds; :data:`LOOSE_TIME` for a loose transaction: it counts as later than any time limit),
  ``is_coinbase``.
- outputs ``out_off[i]:out_off[i+1]`` in ``n`` order, numbered across the graph ("txo index"): value,
  address id (``-1``: no address), ``out_tx`` (the transaction holding it), ``out_spender`` (dense index of
  the spending transaction, ``-1`` while unspent or where the spender is not stored) and
  ``out_spender_pos`` (the input position in the spender). Where two stored transactions spend one
  output (a stale block beside the main chain) the first in topological order is kept.
- inputs ``in_off[i]:in_off[i+1]`` in ``n`` order: ``in_txo`` (the spent output's txo index, ``-1`` when the
  input is unresolved: the funding transaction is not stored), ``in_value`` (``-1`` when unknown) and
  ``in_addr``. A coinbase has no inputs here (its coinbase input spends nothing).

Derived on load (not stored): ``out_tx`` and, for the forward walk, two packed record arrays, so one
cache line serves what the walk reads about one transaction or output instead of one line per column:
``tx_rec`` (:data:`TX_REC`: first output, first input, fee, output and input counts) and ``out_rec``
(:data:`OUT_REC`: value, address, spender, spender's input position). The fee is
``max(0, known inputs - outputs)``, stored as ``-1 - fee`` when an input is unresolved.

Caches: :func:`load` keeps one graph per (store, chain) in the process and writes ``<db>.graph/<chain>.npz``
beside the store; both are keyed by a fingerprint of the store (transaction and block counts and maxima,
heights known, resolved inputs), so a graph is rebuilt exactly when ingest changed what it is built from.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import numba as nb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fundtrail.errors import NotFound
from fundtrail.tracing.heap import heap_pop, heap_push

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bools = npt.NDArray[np.bool_]

LOOSE_TIME = np.iinfo(np.int64).max  # time of a transaction outside any block: after every limit
GRAPH_FORMAT = 1  # bump when the cached arrays change meaning
TX_REC = np.dtype(
    [("out0", np.int64), ("in0", np.int64), ("fee", np.int64), ("n_out", np.int32), ("n_in", np.int32)]
)  # 32 bytes: two per cache line
OUT_REC = np.dtype(
    [("value", np.int64), ("addr", np.int64), ("spender", np.int64), ("spender_pos", np.int64)]
)  # 32 bytes
_LUT_SPARSITY = 4  # a direct tx_id lookup table is used while max-min+1 <= this many times the count

_ARRAYS = (
    "tx_id",
    "txid",
    "time",
    "is_coinbase",
    "out_off",
    "out_value",
    "out_addr",
    "out_spender",
    "out_spender_pos",
    "in_off",
    "in_txo",
    "in_value",
    "in_addr",
)


class Outputs(NamedTuple):
    """The outputs of one transaction (index = ``vout``)."""

    txo: I64  # txo indexes in the graph
    value: I64
    address: I64  # -1: no address
    spender_tx_id: I64  # store tx_id of the spending transaction, -1 while unspent (or not stored)
    spender_pos: I64  # the input position in the spender, -1 while unspent


@dataclass
class UtxoGraph:
    """One UTXO chain as CSR arrays in topological order (see the module docstring)."""

    chain: str
    fingerprint: tuple[int, ...]
    tx_id: I64
    txid: U8  # (n, 32)
    time: I64
    is_coinbase: Bools
    out_off: I64
    out_value: I64
    out_addr: I64
    out_spender: I64
    out_spender_pos: I64
    in_off: I64
    in_txo: I64
    in_value: I64
    in_addr: I64
    out_tx: I64 = field(init=False, repr=False)
    tx_rec: npt.NDArray[np.void] = field(init=False, repr=False)
    out_rec: npt.NDArray[np.void] = field(init=False, repr=False)
    _sorted_ids: I64 = field(init=False, repr=False)
    _sorted_pos: I64 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.tx_id)
        if len(self.out_off) != n + 1 or len(self.in_off) != n + 1:
            raise ValueError("UtxoGraph: offsets must have one more entry than transactions")
        if not (len(self.time) == len(self.is_coinbase) == len(self.txid) == n):
            raise ValueError("UtxoGraph: transaction arrays differ in length")
        no, ni = int(self.out_off[-1]), int(self.in_off[-1])
        if any(len(a) != no for a in (self.out_value, self.out_addr, self.out_spender, self.out_spender_pos)):
            raise ValueError("UtxoGraph: output arrays differ in length")
        if any(len(a) != ni for a in (self.in_txo, self.in_value, self.in_addr)):
            raise ValueError("UtxoGraph: input arrays differ in length")
        self.out_tx = np.repeat(np.arange(n, dtype=np.int64), np.diff(self.out_off))
        self.tx_rec, self.out_rec = _pack(self)
        self._sorted_pos = np.argsort(self.tx_id, kind="stable").astype(np.int64)
        self._sorted_ids = self.tx_id[self._sorted_pos]

    def __len__(self) -> int:
        return len(self.tx_id)

    @property
    def n_txo(self) -> int:
        return int(self.out_off[-1])

    @property
    def n_inputs(self) -> int:
        return int(self.in_off[-1])

    @property
    def n_edges(self) -> int:
        """Outputs plus inputs: the edges of the transaction/output graph."""
        return self.n_txo + self.n_inputs

    def index_of(self, tx_id: int) -> int:
        """The dense index of a store ``tx_id`` (NotFound when this chain's graph does not hold it)."""
        k = int(np.searchsorted(self._sorted_ids, tx_id))
        if k >= len(self._sorted_ids) or int(self._sorted_ids[k]) != tx_id:
            raise NotFound(
                f"transaction {tx_id} is not in the {self.chain} graph",
                "check the chain of the seed, or ingest the block holding it",
            )
        return int(self._sorted_pos[k])

    def indexes_of(self, tx_ids: I64) -> I64:
        """Dense indexes of many store tx_ids (-1 for those not in the graph)."""
        ids = np.asarray(tx_ids, dtype=np.int64)
        k = np.minimum(np.searchsorted(self._sorted_ids, ids), max(len(self._sorted_ids) - 1, 0))
        if not len(self._sorted_ids):
            return np.full(len(ids), -1, np.int64)
        hit = self._sorted_ids[k] == ids
        return np.where(hit, self._sorted_pos[k], -1).astype(np.int64)

    def txo_index(self, tx_id: int, vout: int) -> int:
        """The txo index of output ``vout`` of ``tx_id`` (NotFound when there is no such output)."""
        i = self.index_of(tx_id)
        lo, hi = int(self.out_off[i]), int(self.out_off[i + 1])
        if not 0 <= vout < hi - lo:
            raise NotFound(
                f"transaction {self.txid_hex(i)} has no output {vout} (it has {hi - lo})",
                "give an output index of the transaction",
            )
        return lo + vout

    def outputs_of(self, tx_id: int) -> Outputs:
        i = self.index_of(tx_id)
        s = slice(int(self.out_off[i]), int(self.out_off[i + 1]))
        sp = self.out_spender[s]
        return Outputs(
            txo=np.arange(s.start, s.stop, dtype=np.int64),
            value=self.out_value[s].copy(),
            address=self.out_addr[s].copy(),
            spender_tx_id=np.where(sp >= 0, self.tx_id[np.maximum(sp, 0)], -1).astype(np.int64),
            spender_pos=self.out_spender_pos[s].copy(),
        )

    def txid_hex(self, index: int) -> str:
        """The txid (as explorers show it) of the transaction at dense ``index``."""
        return bytes(self.txid[index]).hex()

    def find_txid(self, txid: bytes | str) -> int:
        """The store tx_id of a txid (32 bytes or 64 hex digits, display order); NotFound if absent. A
        linear scan: for resolving a handful of seeds, not for bulk lookups (the store does those)."""
        raw = bytes.fromhex(txid) if isinstance(txid, str) else txid
        if len(raw) != 32:
            raise NotFound(f"{raw.hex()} is not a txid", "give 64 hex digits")
        hit = np.flatnonzero((self.txid == np.frombuffer(raw, np.uint8)).all(axis=1))
        if not len(hit):
            raise NotFound(f"transaction {raw.hex()} is not in the {self.chain} graph", "ingest its block")
        return int(self.tx_id[hit[-1]])  # BIP30 duplicates: the latest, as input resolution does

    def arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {name: getattr(self, name) for name in _ARRAYS}


def _segment_sums(values: I64, off: I64) -> I64:
    """Per segment ``off[i]:off[i+1]`` the sum of ``values`` (exact: wrapping prefix sums subtract back
    to the true segment sums while those fit 64 bits)."""
    c = np.zeros(len(values) + 1, np.int64)
    np.cumsum(values, out=c[1:])
    return c[off[1:]] - c[off[:-1]]


def _pack(g: UtxoGraph) -> tuple[npt.NDArray[np.void], npt.NDArray[np.void]]:
    """The forward walk's record arrays (``tx_rec``, ``out_rec``; module docstring)."""
    spent = np.where(g.in_txo >= 0, g.out_value[np.maximum(g.in_txo, 0)], 0) if len(g.in_txo) else g.in_txo
    known = _segment_sums(spent, g.in_off)
    unknown = _segment_sums((g.in_txo < 0).astype(np.int64), g.in_off) > 0
    fee = np.maximum(known - _segment_sums(g.out_value, g.out_off), 0)
    tx = np.empty(len(g.tx_id), TX_REC)
    tx["out0"] = g.out_off[:-1]
    tx["in0"] = g.in_off[:-1]
    tx["fee"] = np.where(unknown, -1 - fee, fee)
    tx["n_out"] = np.diff(g.out_off)
    tx["n_in"] = np.diff(g.in_off)
    out = np.empty(len(g.out_value), OUT_REC)
    out["value"] = g.out_value
    out["addr"] = g.out_addr
    out["spender"] = g.out_spender
    out["spender_pos"] = g.out_spender_pos
    return tx, out


# --- building from the store ---------------------------------------------------------------------------


def fingerprint(con: duckdb.DuckDBPyConnection, chain: str) -> tuple[int, ...]:
    """What the graph of ``chain`` is built from, in a few aggregates: any ingest, rollback, late input
    resolution or height linking changes at least one of them."""
    row = con.execute(
        """SELECT
             (SELECT count(*) FROM transactions WHERE chain = $c),
             (SELECT coalesce(max(tx_id), -1) FROM transactions WHERE chain = $c),
             (SELECT count(block_id) FROM transactions WHERE chain = $c),
             (SELECT count(*) FROM blocks WHERE chain = $c),
             (SELECT coalesce(max(block_id), -1) FROM blocks WHERE chain = $c),
             (SELECT count(height) FROM blocks WHERE chain = $c),
             (SELECT count(*) FROM tx_inputs WHERE chain = $c AND resolved)""",
        {"c": chain},
    ).fetchall()[0]
    return (GRAPH_FORMAT, *(int(v) for v in row))


def _int64(col: pa.ChunkedArray | pa.Array, null: int = -1) -> I64:
    arr = pc.cast(col, pa.int64())
    if arr.null_count:
        arr = pc.fill_null(arr, null)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.int64)


def _txids(col: pa.ChunkedArray) -> U8:
    arr = pc.cast(col, pa.binary(32)).combine_chunks() if len(col) else pa.array([], pa.binary(32))
    if not len(arr):
        return np.zeros((0, 32), np.uint8)
    data = np.frombuffer(arr.buffers()[1], np.uint8)
    return data[arr.offset * 32 : (arr.offset + len(arr)) * 32].reshape(-1, 32).copy()


@nb.njit(cache=True, nogil=True)
def _place(dense: I64, n: I64, off: I64, counts: I64) -> I64:
    """Destination slot of each row (``off[dense] + n``), -2 for a row whose ``n`` is out of range or
    whose slot is taken twice (corrupt data; the caller raises)."""
    dst = np.empty(len(dense), np.int64)
    seen = np.zeros(off[-1], np.bool_)
    for r in range(len(dense)):
        d = dense[r]
        k = n[r]
        if d < 0 or k < 0 or k >= counts[d] or seen[off[d] + k]:
            dst[r] = -2
            continue
        dst[r] = off[d] + k
        seen[dst[r]] = True
    return dst


@nb.njit(cache=True, nogil=True)
def _link(
    in_dense: I64, in_pos: I64, prev_dense: I64, prev_vout: I64, out_off: I64, n_txo: int
) -> tuple[I64, I64, I64, int]:
    """Per input row the spent txo (-1 unresolved or unknown), and per txo the first spender (dense
    index, -1) and its input position; also how many inputs spend an output of a later transaction."""
    txo = np.full(len(in_dense), -1, np.int64)
    spender = np.full(n_txo, -1, np.int64)
    spos = np.full(n_txo, -1, np.int64)
    backward = 0
    for r in range(len(in_dense)):
        p = prev_dense[r]
        if p < 0:
            continue
        v = prev_vout[r]
        if v < 0 or v >= out_off[p + 1] - out_off[p]:
            continue
        o = out_off[p] + v
        txo[r] = o
        d = in_dense[r]
        if p >= d:
            backward += 1
        if spender[o] < 0 or d < spender[o]:
            spender[o] = d
            spos[o] = in_pos[r]
    return txo, spender, spos, backward


@nb.njit(cache=True, nogil=True)
def _topo_order(n: int, in_dense: I64, prev_dense: I64) -> I64:
    """Kahn's topological sort of the funding -> spending edges, always taking the smallest current
    position among the ready transactions (so a consistent order is left as it is). Transactions on a
    cycle (impossible in valid data) are appended in their current order."""
    indeg = np.zeros(n, np.int64)
    cnt = np.zeros(n + 1, np.int64)
    for r in range(len(in_dense)):
        p = prev_dense[r]
        if p >= 0 and p != in_dense[r]:
            indeg[in_dense[r]] += 1
            cnt[p + 1] += 1
    for i in range(n):
        cnt[i + 1] += cnt[i]
    adj = np.empty(cnt[n], np.int64)
    fill = cnt[:n].copy()
    for r in range(len(in_dense)):
        p = prev_dense[r]
        if p >= 0 and p != in_dense[r]:
            adj[fill[p]] = in_dense[r]
            fill[p] += 1
    heap = np.empty(n, np.int64)
    hn = 0
    for i in range(n):
        if indeg[i] == 0:
            heap[hn] = i  # ascending: already a heap
            hn += 1
    order = np.empty(n, np.int64)
    done = np.zeros(n, np.bool_)
    m = 0
    while hn > 0:
        top = heap_pop(heap, hn)
        hn -= 1
        order[m] = top
        m += 1
        done[top] = True
        for e in range(cnt[top], cnt[top + 1]):
            s = adj[e]
            indeg[s] -= 1
            if indeg[s] == 0:
                heap_push(heap, hn, s)
                hn += 1
    for i in range(n):
        if not done[i]:
            order[m] = i
            m += 1
    return order


class _Rows(NamedTuple):
    tx_id: I64
    n: I64
    value: I64
    addr: I64
    prev_tx_id: I64
    prev_vout: I64


def _query(con: duckdb.DuckDBPyConnection, sql: str, chain: str) -> pa.Table:
    table: pa.Table = con.sql(sql, params=[chain]).to_arrow_table()
    return table


def build(con: duckdb.DuckDBPyConnection, chain: str) -> UtxoGraph:
    """The graph of ``chain`` from the store: three bulk queries (no ORDER BY on the large tables: rows
    are placed by their ``n``), then compiled passes."""
    fp = fingerprint(con, chain)
    txs = _query(
        con,
        """SELECT t.tx_id, t.txid, t.is_coinbase, b.time
           FROM transactions t LEFT JOIN blocks b ON b.chain = t.chain AND b.block_id = t.block_id
           WHERE t.chain = ?
           ORDER BY t.block_id IS NULL, b.height NULLS LAST, t.block_id, t.position, t.tx_id""",
        chain,
    )
    outs = _query(con, "SELECT tx_id, n, value, address_id FROM tx_outputs WHERE chain = ?", chain)
    ins = _query(
        con,
        """SELECT tx_id, n, value, address_id, prev_tx_id, prev_vout FROM tx_inputs
           WHERE chain = ? AND resolved IS NOT NULL""",
        chain,
    )
    o = _Rows(
        _int64(outs.column("tx_id")),
        _int64(outs.column("n")),
        _int64(outs.column("value")),
        _int64(outs.column("address_id")),
        np.zeros(0, np.int64),
        np.zeros(0, np.int64),
    )
    i = _Rows(
        _int64(ins.column("tx_id")),
        _int64(ins.column("n")),
        _int64(ins.column("value")),
        _int64(ins.column("address_id")),
        _int64(ins.column("prev_tx_id")),
        _int64(ins.column("prev_vout")),
    )
    time = _int64(txs.column("time"), null=int(LOOSE_TIME))
    graph = _assemble(
        chain,
        fp,
        _int64(txs.column("tx_id")),
        _txids(txs.column("txid")),
        time,
        np.asarray(txs.column("is_coinbase").to_numpy(zero_copy_only=False), dtype=np.bool_),
        o,
        i,
    )
    return graph


def _dense_map(tx_id: I64) -> tuple[I64, int] | tuple[I64, I64]:
    """A tx_id -> dense index map: a direct table (and its base) when ids are dense enough, else the
    sorted ids and their positions."""
    if not len(tx_id):
        return np.zeros(0, np.int64), 0
    lo, hi = int(tx_id.min()), int(tx_id.max())
    if hi - lo + 1 <= _LUT_SPARSITY * len(tx_id) + 1024:
        lut = np.full(hi - lo + 1, -1, np.int64)
        lut[tx_id - lo] = np.arange(len(tx_id), dtype=np.int64)
        return lut, lo
    pos = np.argsort(tx_id, kind="stable").astype(np.int64)
    return tx_id[pos], pos


def _lookup(mapping: tuple[I64, int] | tuple[I64, I64], ids: I64) -> I64:
    """Dense indexes of ``ids`` (-1 for an id that is absent or negative, i.e. null)."""
    table, base = mapping
    if isinstance(base, int):
        rel = ids - base
        ok = (ids >= 0) & (rel >= 0) & (rel < len(table))
        out = np.full(len(ids), -1, np.int64)
        out[ok] = table[rel[ok]]
        return out
    if not len(table):
        return np.full(len(ids), -1, np.int64)
    k = np.minimum(np.searchsorted(table, ids), len(table) - 1)
    return np.where((table[k] == ids) & (ids >= 0), base[k], -1).astype(np.int64)


def _assemble(
    chain: str,
    fp: tuple[int, ...],
    tx_id: I64,
    txid: U8,
    time: I64,
    is_coinbase: Bools,
    o: _Rows,
    i: _Rows,
) -> UtxoGraph:
    n = len(tx_id)
    mapping = _dense_map(tx_id)
    o_dense = _lookup(mapping, o.tx_id)
    i_dense = _lookup(mapping, i.tx_id)
    i_prev = _lookup(mapping, i.prev_tx_id)
    order: I64 | None = None
    # a funding tx after its spender (only loose txs can cause it): re-sort, then place rows again
    back = (i_prev >= 0) & (i_prev >= i_dense)
    if back.any():
        order = _topo_order(n, i_dense, i_prev)
        rank = np.empty(n, np.int64)
        rank[order] = np.arange(n, dtype=np.int64)
        tx_id, txid, time, is_coinbase = tx_id[order], txid[order], time[order], is_coinbase[order]
        o_dense = np.where(o_dense >= 0, rank[np.maximum(o_dense, 0)], -1)
        i_dense = np.where(i_dense >= 0, rank[np.maximum(i_dense, 0)], -1)
        i_prev = np.where(i_prev >= 0, rank[np.maximum(i_prev, 0)], -1)
    out_cnt = np.bincount(o_dense[o_dense >= 0], minlength=n).astype(np.int64)
    in_cnt = np.bincount(i_dense[i_dense >= 0], minlength=n).astype(np.int64)
    out_off = np.zeros(n + 1, np.int64)
    np.cumsum(out_cnt, out=out_off[1:])
    in_off = np.zeros(n + 1, np.int64)
    np.cumsum(in_cnt, out=in_off[1:])
    o_dst = _place(o_dense, o.n, out_off, out_cnt)
    i_dst = _place(i_dense, i.n, in_off, in_cnt)
    if (o_dst < 0).any() or (i_dst < 0).any():
        raise ValueError(f"the {chain} store holds inputs or outputs with gaps or duplicates in n")
    out_value = np.empty(len(o_dst), np.int64)
    out_value[o_dst] = o.value
    out_addr = np.empty(len(o_dst), np.int64)
    out_addr[o_dst] = o.addr
    txo_rows, spender, spos, _ = _link(i_dense, i.n, i_prev, i.prev_vout, out_off, int(out_off[-1]))
    in_txo = np.empty(len(i_dst), np.int64)
    in_txo[i_dst] = txo_rows
    in_value = np.empty(len(i_dst), np.int64)
    in_value[i_dst] = i.value
    in_addr = np.empty(len(i_dst), np.int64)
    in_addr[i_dst] = i.addr
    return UtxoGraph(
        chain=chain,
        fingerprint=fp,
        tx_id=tx_id,
        txid=txid,
        time=time,
        is_coinbase=is_coinbase,
        out_off=out_off,
        out_value=out_value,
        out_addr=out_addr,
        out_spender=spender,
        out_spender_pos=spos,
        in_off=in_off,
        in_txo=in_txo,
        in_value=in_value,
        in_addr=in_addr,
    )


# --- caches --------------------------------------------------------------------------------------------

_CACHE: dict[tuple[str, str], UtxoGraph] = {}


def cache_path(db_path: Path, chain: str) -> Path:
    """``<db>.graph/<chain>.npz`` beside the store."""
    return Path(f"{db_path}.graph") / f"{chain}.npz"


def save(graph: UtxoGraph, path: Path) -> None:
    """Write ``graph`` to ``path`` atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            payload: dict[str, Any] = {"fingerprint": np.array(graph.fingerprint, np.int64), **graph.arrays()}
            np.savez(fh, **payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read(path: Path, chain: str) -> UtxoGraph | None:
    """The graph stored at ``path`` (None when missing or unreadable: the caller rebuilds)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in _ARRAYS}
            fp = tuple(int(v) for v in z["fingerprint"])
    except (OSError, KeyError, ValueError):
        return None
    return UtxoGraph(chain=chain, fingerprint=fp, **arrays)


def load(con: duckdb.DuckDBPyConnection, chain: str, db_path: Path | None = None) -> UtxoGraph:
    """The graph of ``chain``, from the process cache, else the disk cache beside ``db_path``, else built
    from the store (and then cached in both). A cache whose fingerprint differs from the store's is
    stale and rebuilt. A store directory that cannot be written only loses the disk cache."""
    fp = fingerprint(con, chain)
    key = (str(Path(db_path).resolve()) if db_path is not None else f"con:{id(con)}", chain)
    hit = _CACHE.get(key)
    if hit is not None and hit.fingerprint == fp:
        return hit
    graph: UtxoGraph | None = None
    path = cache_path(Path(db_path), chain) if db_path is not None else None
    if path is not None and path.is_file():
        graph = read(path, chain)
        if graph is not None and graph.fingerprint != fp:
            graph = None
    if graph is None:
        graph = build(con, chain)
        if path is not None:
            with contextlib.suppress(OSError):  # a read-only store directory only loses the disk cache
                save(graph, path)
    _CACHE[key] = graph
    return graph


def clear_cache() -> None:
    """Forget the graphs held in this process (the disk caches stay; they carry their fingerprint)."""
    _CACHE.clear()
