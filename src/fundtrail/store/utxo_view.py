"""A compact, read-only view of a UTXO chain's transactions for the clustering heuristics: CSR NumPy arrays
(one row per transaction, inputs and outputs numbered across the view), loaded from the store in bulk
through Arrow, never row by row.

Transaction ``i`` (rows sorted by ``tx_id``) has inputs ``in_off[i]:in_off[i+1]`` and outputs
``out_off[i]:out_off[i+1]``, in the order of the transaction (``n``). Unknown is never zero: an
unresolved input has ``in_addr == -1`` and ``in_value == -1``; an output without an address (OP_RETURN,
bare multisig, non-standard) has ``out_addr == -1``; a script type that cannot be known is ``-1``.
Script type codes are those of :mod:`fundtrail.chains.bitcoin.script` (``SCRIPT_TYPE_NAMES``); an
input's type is the type of the output it spends.

Per transaction, where it was mined: ``height`` (block height) and ``time`` (block timestamp, Unix
seconds); -1 when unknown: a loose transaction (stored outside any block) has neither, a block whose
height could not be established has a time but no height.

Per output, four whole-chain facts the change heuristics need:

- ``first_seen_out``: the smallest ``tx_id`` in which the output's address received anything (ids are
  assigned in order of first appearance, so this is its first appearance); -1 for no address;
- ``second_seen_out``: the smallest ``tx_id`` after ``first_seen_out`` in which the address received
  again (its second receipt); -1 when it received in one transaction only (so far: this reads the
  whole stored chain, later blocks can set it) or has no address;
- ``spender_version`` / ``spender_locktime``: version and locktime of the transaction spending the
  output; -1 while unspent or where the spender is not stored.

Two sources: :func:`load_view` (the store) and :func:`view_from_rpc_json` (one verbose
``getrawtransaction`` answer, so detectors run on a single transaction outside the store).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from fundtrail.chains.bitcoin import script as st
from fundtrail.chains.bitcoin.address import hash160
from fundtrail.chains.bitcoin.decoder import decode_transaction
from fundtrail.chains.bitcoin.network import MAINNET, Network
from fundtrail.chains.bitcoin.script_kernels import classify
from fundtrail.errors import InvalidInput
from fundtrail.store.db import registered

I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
B = npt.NDArray[np.bool_]

SAT_PER_BTC = 100_000_000


@dataclass(frozen=True)
class UtxoView:
    """Transactions of one chain in CSR layout, sorted by ``tx_id`` (see the module docstring)."""

    tx_id: I64
    version: I64
    locktime: I64
    is_coinbase: B
    in_off: I64
    in_addr: I64
    in_value: I64
    in_type: I8
    in_seq: I64
    out_off: I64
    out_addr: I64
    out_value: I64
    out_type: I8
    first_seen_out: I64
    second_seen_out: I64
    spender_version: I64
    spender_locktime: I64
    height: I64
    """Block height per transaction, -1 unknown (loose transaction, or a block of unknown height)."""
    time: I64
    """Block timestamp per transaction (Unix seconds), -1 unknown (loose transaction)."""
    keys: tuple[bytes, ...] = ()
    """Address keys of a view built outside the store: address id ``k`` is ``keys[k]`` (empty for a
    store view, whose ids are the store's ``address_id``)."""

    def __post_init__(self) -> None:
        n, ni, no = len(self.tx_id), len(self.in_addr), len(self.out_addr)
        txs = (self.version, self.locktime, self.is_coinbase, self.height, self.time)
        if any(len(a) != n for a in txs):
            raise ValueError("UtxoView: transaction arrays differ in length")
        if len(self.in_off) != n + 1 or len(self.out_off) != n + 1:
            raise ValueError("UtxoView: offsets must have one more entry than transactions")
        if int(self.in_off[-1]) != ni or int(self.out_off[-1]) != no:
            raise ValueError("UtxoView: offsets do not end at the input/output counts")
        if not (len(self.in_value) == len(self.in_type) == len(self.in_seq) == ni):
            raise ValueError("UtxoView: input arrays differ in length")
        outs = (
            self.out_value,
            self.out_type,
            self.first_seen_out,
            self.second_seen_out,
            self.spender_version,
            self.spender_locktime,
        )
        if any(len(a) != no for a in outs):
            raise ValueError("UtxoView: output arrays differ in length")

    def __len__(self) -> int:
        return len(self.tx_id)

    @property
    def n_in(self) -> I64:
        return np.diff(self.in_off)

    @property
    def n_out(self) -> I64:
        return np.diff(self.out_off)

    def index_of(self, tx_id: int) -> int:
        """The row of ``tx_id`` in this view (raises KeyError when absent)."""
        k = int(np.searchsorted(self.tx_id, tx_id))
        if k >= len(self.tx_id) or int(self.tx_id[k]) != tx_id:
            raise KeyError(tx_id)
        return k


def _int64(col: pa.ChunkedArray | pa.Array, null: int = -1) -> I64:
    """An Arrow integer column as int64, nulls replaced by ``null``."""
    arr = pc.cast(col, pa.int64())
    if arr.null_count:
        arr = pc.fill_null(arr, null)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.int64)


def _type_codes(col: pa.ChunkedArray | pa.Array) -> I8:
    """Script type names -> codes (index in SCRIPT_TYPE_NAMES), -1 for null or an unknown name."""
    idx = pc.index_in(col, value_set=pa.array(st.SCRIPT_TYPE_NAMES))
    return _int64(idx).astype(np.int8)


def load_view(
    con: duckdb.DuckDBPyConnection, chain: str, after_tx_id: int = -1, tx_ids: I64 | None = None
) -> UtxoView:
    """The transactions of ``chain`` with ``tx_id > after_tx_id``, or exactly those in ``tx_ids``
    (ids not stored are skipped), with their inputs and outputs, in three bulk queries."""
    if tx_ids is not None:
        sel = np.unique(np.asarray(tx_ids, dtype=np.int64))
        with registered(con, "_ft_view_sel", pa.table({"tx_id": sel})):
            return _load(con, chain, "tx_id IN (SELECT tx_id FROM _ft_view_sel)", [chain])
    return _load(con, chain, "tx_id > ?", [chain, int(after_tx_id)])


def _arrow(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> pa.Table:
    table: pa.Table = con.sql(sql, params=params).to_arrow_table()
    return table


def _load(con: duckdb.DuckDBPyConnection, chain: str, where: str, params: list[Any]) -> UtxoView:
    txs = _arrow(
        con,
        f"""WITH sel AS (SELECT tx_id, block_id, version, locktime, is_coinbase FROM transactions
                         WHERE chain = ? AND {where})
            SELECT sel.tx_id, sel.version, sel.locktime, sel.is_coinbase, b.height, b.time
            FROM sel LEFT JOIN blocks b ON b.chain = ? AND b.block_id = sel.block_id
            ORDER BY sel.tx_id""",
        [*params, chain],
    )
    ins = _arrow(
        con,
        f"""WITH sel AS (SELECT tx_id, n, prev_tx_id, prev_vout, address_id, value, sequence
                         FROM tx_inputs WHERE chain = ? AND {where})
            SELECT sel.tx_id, sel.address_id, sel.value, o.script_type, sel.sequence
            FROM sel LEFT JOIN tx_outputs o
              ON o.chain = ? AND o.tx_id = sel.prev_tx_id AND o.n = sel.prev_vout
            ORDER BY sel.tx_id, sel.n""",
        [*params, chain],
    )
    outs = _arrow(
        con,
        f"""WITH sel AS (SELECT tx_id, n, address_id, value, script_type
                         FROM tx_outputs WHERE chain = ? AND {where}),
            first AS (SELECT address_id, min(tx_id) AS first_tx FROM tx_outputs
                      WHERE chain = ?
                        AND address_id IN (SELECT address_id FROM sel WHERE address_id IS NOT NULL)
                      GROUP BY address_id),
            second AS (SELECT o.address_id, min(o.tx_id) AS second_tx FROM tx_outputs o
                       JOIN first ON first.address_id = o.address_id
                       WHERE o.chain = ? AND o.tx_id > first.first_tx
                       GROUP BY o.address_id),
            spend AS (SELECT i.prev_tx_id, i.prev_vout, min(i.tx_id) AS spender FROM tx_inputs i
                      WHERE i.chain = ? AND i.prev_tx_id IN (SELECT tx_id FROM sel)
                      GROUP BY i.prev_tx_id, i.prev_vout)
            SELECT sel.tx_id, sel.address_id, sel.value, sel.script_type, first.first_tx,
                   second.second_tx, t.version AS s_version, t.locktime AS s_locktime
            FROM sel
            LEFT JOIN first ON first.address_id = sel.address_id
            LEFT JOIN second ON second.address_id = sel.address_id
            LEFT JOIN spend ON spend.prev_tx_id = sel.tx_id AND spend.prev_vout = sel.n
            LEFT JOIN transactions t ON t.chain = ? AND t.tx_id = spend.spender
            ORDER BY sel.tx_id, sel.n""",
        [*params, chain, chain, chain, chain],
    )
    tx_id = _int64(txs.column("tx_id"))
    in_tx = _int64(ins.column("tx_id"))
    out_tx = _int64(outs.column("tx_id"))
    return UtxoView(
        tx_id=tx_id,
        version=_int64(txs.column("version")),
        locktime=_int64(txs.column("locktime")),
        is_coinbase=np.asarray(txs.column("is_coinbase").to_numpy(zero_copy_only=False), dtype=np.bool_),
        in_off=_csr(in_tx, tx_id),
        in_addr=_int64(ins.column("address_id")),
        in_value=_int64(ins.column("value")),
        in_type=_type_codes(ins.column("script_type")),
        in_seq=_int64(ins.column("sequence")),
        out_off=_csr(out_tx, tx_id),
        out_addr=_int64(outs.column("address_id")),
        out_value=_int64(outs.column("value")),
        out_type=_type_codes(outs.column("script_type")),
        first_seen_out=_int64(outs.column("first_tx")),
        second_seen_out=_int64(outs.column("second_tx")),
        spender_version=_int64(outs.column("s_version")),
        spender_locktime=_int64(outs.column("s_locktime")),
        height=_int64(txs.column("height")),
        time=_int64(txs.column("time")),
    )


def _csr(row_tx: I64, tx_id: I64) -> I64:
    """Offsets of each transaction's rows in ``row_tx`` (both sorted by tx_id)."""
    out = np.empty(len(tx_id) + 1, np.int64)
    out[:-1] = np.searchsorted(row_tx, tx_id, side="left")
    out[-1] = len(row_tx)
    return out


# --- one transaction from a verbose getrawtransaction answer -------------------------------------------


def btc_to_sat(value: Any, what: str) -> int:
    """An amount in BTC as JSON carries it (number or string) -> satoshi, exactly; raises InvalidInput
    for anything that is not a whole number of satoshi."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InvalidInput(f"{what} is not an amount: {value!r}", "give the value in BTC as a number")
    try:
        d = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    except InvalidOperation:
        raise InvalidInput(f"{what} is not an amount: {value!r}", "give the value in BTC") from None
    sat = d * SAT_PER_BTC
    if sat != sat.to_integral_value() or sat < 0:
        raise InvalidInput(f"{what} {value!r} is not a whole number of satoshi", "check the JSON")
    return int(sat)


def _pushes(script: bytes) -> list[bytes] | None:
    """The data pushes of a push-only script (None if it holds anything else or is truncated)."""
    out: list[bytes] = []
    pos, n = 0, len(script)
    while pos < n:
        op = script[pos]
        pos += 1
        if op == 0:
            out.append(b"")
            continue
        if op <= 0x4B:
            ln = op
        elif op == 0x4C and pos + 1 <= n:
            ln, pos = script[pos], pos + 1
        elif op == 0x4D and pos + 2 <= n:
            ln, pos = int.from_bytes(script[pos : pos + 2], "little"), pos + 2
        elif op == 0x4E and pos + 4 <= n:
            ln, pos = int.from_bytes(script[pos : pos + 4], "little"), pos + 4
        elif 0x51 <= op <= 0x60 or op == 0x4F:
            out.append(b"")
            continue
        else:
            return None
        if pos + ln > n:
            return None
        out.append(script[pos : pos + ln])
        pos += ln
    return out


def _is_pubkey(b: bytes) -> bool:
    return (len(b) == 33 and b[0] in (2, 3)) or (len(b) == 65 and b[0] == 4)


def spent_address(script_sig: bytes, witness: list[bytes]) -> tuple[int, bytes | None]:
    """The (script type, address key) an input spends, derived from its scriptSig and witness the way
    block explorers do when the funding output is not at hand: P2PKH (<sig> <pubkey>), P2SH (last push
    is the redeem script), P2WPKH, P2WSH, P2SH-wrapped SegWit. Taproot key-path spends reveal no address
    (type P2TR, key None); anything else is (-1, None)."""
    if witness:
        if not script_sig:
            if witness[-1][:1] == b"\x50" and len(witness) >= 2:  # BIP341 annex: taproot
                return st.P2TR, None
            if len(witness) == 2 and _is_pubkey(witness[1]) and len(witness[1]) == 33:
                return st.P2WPKH, bytes([st.P2WPKH]) + hash160(witness[1])
            if len(witness) == 1 and len(witness[0]) in (64, 65):
                return st.P2TR, None
            last = witness[-1]
            if len(last) >= 33 and (len(last) - 33) % 32 == 0 and last[0] & 0xFE == 0xC0:
                return st.P2TR, None  # script-path spend: control block last
            return st.P2WSH, bytes([st.P2WSH]) + hashlib.sha256(last).digest()
        pushes = _pushes(script_sig)
        if pushes is not None and len(pushes) == 1 and len(pushes[0]) in (22, 34) and pushes[0][0] == 0:
            return st.P2SH, bytes([st.P2SH]) + hash160(pushes[0])
        return -1, None
    pushes = _pushes(script_sig)
    if not pushes:
        return -1, None
    if len(pushes) == 2 and _is_pubkey(pushes[1]) and pushes[0][:1] == b"\x30":
        return st.P2PKH, bytes([st.P2PKH]) + hash160(pushes[1])
    if len(pushes) >= 2 and len(pushes[-1]) > 0:
        return st.P2SH, bytes([st.P2SH]) + hash160(pushes[-1])
    return -1, None


def _witness_items(buf: bytes) -> list[bytes]:
    """The items of one input's serialized witness (count, then length-prefixed items)."""

    def varint(pos: int) -> tuple[int, int]:
        b = buf[pos]
        if b < 0xFD:
            return b, pos + 1
        size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[b]
        return int.from_bytes(buf[pos + 1 : pos + 1 + size], "little"), pos + 1 + size

    if not buf:
        return []
    count, pos = varint(0)
    items = []
    for _ in range(count):
        ln, pos = varint(pos)
        items.append(buf[pos : pos + ln])
        pos += ln
    return items


def _script_key(script: bytes) -> tuple[int, bytes | None]:
    """(type code, address key) of an output script, as the decoder gives them."""
    arr = np.frombuffer(script, np.uint8) if script else np.zeros(1, np.uint8)
    t, off, ln = classify(arr, 0, len(script))
    t = int(t)
    kind = st.ADDRESS_KIND_OF_TYPE.get(t)
    if kind is None:
        return t, None
    if t in (st.WITNESS_UNKNOWN, st.ANCHOR):
        return t, bytes([kind]) + script
    if t == st.P2PK:
        return t, bytes([kind]) + hash160(script[int(off) : int(off) + int(ln)])
    return t, bytes([kind]) + script[int(off) : int(off) + int(ln)]


def view_from_rpc_json(tx: dict[str, Any] | str, network: Network = MAINNET) -> UtxoView:
    """A one-transaction view of a verbose ``getrawtransaction`` answer (a dict or its JSON text).

    The transaction itself is decoded from its ``hex`` (the authority; its txid must match ``txid``).
    Inputs take value, type and address from ``prevout`` where the answer carries it (Bitcoin Core's
    verbosity 2); otherwise the value is unknown (-1) and type and address are derived from the
    scriptSig/witness (:func:`spent_address`). Addresses get local ids 0, 1, ... (``view.keys``).
    Whole-chain facts are unknown: ``first_seen_out`` is the view's own tx_id (0) for every output
    with an address, no output has a known second receipt or spender, and the height is unknown (-1);
    ``time`` is the answer's ``blocktime`` when it carries one (a confirmed transaction), else -1."""
    if isinstance(tx, str):
        try:
            tx = json.loads(tx)
        except json.JSONDecodeError as e:
            raise InvalidInput(f"not JSON: {e}", "give a verbose getrawtransaction answer") from None
    if not isinstance(tx, dict) or not isinstance(tx.get("hex"), str) or not isinstance(tx.get("vin"), list):
        raise InvalidInput("not a verbose getrawtransaction answer", "call getrawtransaction TXID true")
    try:
        raw = bytes.fromhex(tx["hex"])
    except ValueError:
        raise InvalidInput("the transaction hex is not hexadecimal", "check the JSON") from None
    d = decode_transaction(raw, network)
    if "txid" in tx and d.txid_hex(0) != str(tx["txid"]).lower():
        raise InvalidInput(f"txid {tx['txid']} does not match its hex ({d.txid_hex(0)})", "check the JSON")
    n_in, n_out = int(d.tx_n_in[0]), int(d.tx_n_out[0])
    if len(tx["vin"]) != n_in:
        raise InvalidInput("vin does not match the transaction hex", "check the JSON")
    keys: dict[bytes, int] = {}

    def addr_id(key: bytes | None) -> int:
        if key is None:
            return -1
        return keys.setdefault(key, len(keys))

    in_addr, in_value, in_type = np.full(n_in, -1, np.int64), np.full(n_in, -1, np.int64), np.full(n_in, -1)
    coinbase = False
    for k, vin in enumerate(tx["vin"]):
        if not isinstance(vin, dict):
            raise InvalidInput(f"vin[{k}] is not an object", "check the JSON")
        if "coinbase" in vin:
            coinbase = True
            continue
        prevout = vin.get("prevout")
        if isinstance(prevout, dict):
            spk = prevout.get("scriptPubKey", {})
            try:
                script = bytes.fromhex(spk["hex"])
            except (KeyError, TypeError, ValueError):
                raise InvalidInput(f"vin[{k}].prevout has no scriptPubKey hex", "check the JSON") from None
            t, key = _script_key(script)
            in_value[k] = btc_to_sat(prevout.get("value"), f"vin[{k}].prevout.value")
        else:
            so, sl = int(d.in_script_off[k]), int(d.in_script_len[k])
            wo, wl = int(d.in_wit_off[k]), int(d.in_wit_len[k])
            t, key = spent_address(bytes(d.buf[so : so + sl]), _witness_items(bytes(d.buf[wo : wo + wl])))
        in_type[k] = t
        in_addr[k] = addr_id(key)
    out_addr = np.array([addr_id(d.address_key(o)) for o in range(n_out)], np.int64)
    return UtxoView(
        tx_id=np.zeros(1, np.int64),
        version=d.tx_version[:1].astype(np.int64),
        locktime=d.tx_locktime[:1].astype(np.int64),
        is_coinbase=np.array([coinbase]),
        in_off=np.array([0, n_in], np.int64),
        in_addr=in_addr,
        in_value=in_value,
        in_type=in_type.astype(np.int8),
        in_seq=d.in_seq[:n_in].astype(np.int64),
        out_off=np.array([0, n_out], np.int64),
        out_addr=out_addr,
        out_value=d.out_value[:n_out].astype(np.int64),
        out_type=d.out_type[:n_out].astype(np.int8),
        first_seen_out=np.where(out_addr >= 0, 0, -1).astype(np.int64),
        second_seen_out=np.full(n_out, -1, np.int64),
        spender_version=np.full(n_out, -1, np.int64),
        spender_locktime=np.full(n_out, -1, np.int64),
        height=np.full(1, -1, np.int64),
        time=np.array([_blocktime(tx.get("blocktime"))], np.int64),
        keys=tuple(keys),
    )


def _blocktime(value: Any) -> int:
    """A ``blocktime`` field as Unix seconds, -1 when absent or not a non-negative integer."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else -1


@dataclass(frozen=True)
class TxRow:
    """One transaction for :func:`view_from_rows`: inputs and outputs as (address id or -1, value in
    satoshi or -1, script type code or -1). Optional per-output whole-chain facts default to "fresh
    address, first seen here", "never received again" and "spender unknown"; height and time default
    to unknown (-1, a loose transaction)."""

    inputs: list[tuple[int, int, int]]
    outputs: list[tuple[int, int, int]]
    tx_id: int = -1
    version: int = 2
    locktime: int = 0
    coinbase: bool = False
    sequence: int = 0xFFFFFFFF
    first_seen: list[int] | None = None
    second_seen: list[int] | None = None  # tx_id of the address's second receipt per output, -1 none
    spender: list[tuple[int, int]] | None = None  # (version, locktime) per output, (-1, -1) unknown
    height: int = -1
    time: int = -1


def view_from_rows(rows: list[TxRow]) -> UtxoView:
    """A view of transactions given as plain rows (constructed cases, simulations); tx ids default to
    the row number."""
    ins = [i for r in rows for i in r.inputs]
    outs = [o for r in rows for o in r.outputs]
    tx_ids = [r.tx_id if r.tx_id >= 0 else k for k, r in enumerate(rows)]
    first: list[int] = []
    second: list[int] = []
    spend: list[tuple[int, int]] = []
    for r, t in zip(rows, tx_ids):
        first += r.first_seen if r.first_seen is not None else [t if a >= 0 else -1 for a, _, _ in r.outputs]
        second += r.second_seen if r.second_seen is not None else [-1] * len(r.outputs)
        spend += r.spender if r.spender is not None else [(-1, -1)] * len(r.outputs)
        if not (len(first) == len(second) == len(spend)):
            raise ValueError("first_seen/second_seen/spender must give one entry per output")

    def col(items: list[tuple[int, int, int]], k: int) -> I64:
        return np.array([x[k] for x in items], np.int64)

    return UtxoView(
        tx_id=np.array(tx_ids, np.int64),
        version=np.array([r.version for r in rows], np.int64),
        locktime=np.array([r.locktime for r in rows], np.int64),
        is_coinbase=np.array([r.coinbase for r in rows], np.bool_),
        in_off=np.concatenate([[0], np.cumsum([len(r.inputs) for r in rows])]).astype(np.int64),
        in_addr=col(ins, 0),
        in_value=col(ins, 1),
        in_type=col(ins, 2).astype(np.int8),
        in_seq=np.array([r.sequence for r in rows for _ in r.inputs], np.int64),
        out_off=np.concatenate([[0], np.cumsum([len(r.outputs) for r in rows])]).astype(np.int64),
        out_addr=col(outs, 0),
        out_value=col(outs, 1),
        out_type=col(outs, 2).astype(np.int8),
        first_seen_out=np.array(first, np.int64),
        second_seen_out=np.array(second, np.int64),
        spender_version=np.array([s[0] for s in spend], np.int64),
        spender_locktime=np.array([s[1] for s in spend], np.int64),
        height=np.array([r.height for r in rows], np.int64),
        time=np.array([r.time for r in rows], np.int64),
    )
