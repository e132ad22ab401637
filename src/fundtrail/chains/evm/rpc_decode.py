"""Strict parsing of Ethereum JSON-RPC answers into typed rows (house rule 3: parse at the edge).

Every hex quantity must be ``0x`` followed by hex digits, every hash 32 bytes, every address 20 bytes;
anything else raises :class:`~fundtrail.errors.CorruptData` naming the block and the field. Covered:

- ``eth_getBlockByNumber`` (with full transactions or hashes only; EIP-4895 withdrawals),
- receipts (``eth_getBlockReceipts`` / ``eth_getTransactionReceipt``): status, gas used, effective gas
  price, created contract, logs; the fee is ``gasUsed x effectiveGasPrice`` plus, where the receipt
  states them, the blob fee (``blobGasUsed x blobGasPrice``) and an OP-stack L1 fee (``l1Fee``),
- traces: Parity/Erigon ``trace_block`` and geth ``debug_traceBlockByNumber`` with ``callTracer``,
  reduced to the internal value transfers (see :func:`parity_internal` and :func:`geth_internal`),
- ``eth_call`` answers of ``decimals()``, ``symbol()``, ``name()``: a value that does not decode is None.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fundtrail.chains.evm.logs import TRANSFER_TOPIC_HEX, decode_transfer
from fundtrail.errors import CorruptData

QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
INT64_MAX = 2**63 - 1
GWEI = 10**9
FIX = "check that --url points at an EVM node of that chain; nothing of this batch was stored"
VALUE_CALL_TYPES = {"call"}  # Parity callType moving value between two accounts (not delegate/static/code)
GETH_VALUE_TYPES = {"CALL", "CREATE", "CREATE2", "SELFDESTRUCT"}


@dataclass(frozen=True)
class RpcTx:
    hash: bytes
    position: int
    sender: bytes
    to: bytes | None
    value: int
    nonce: int
    gas: int
    gas_price: int | None
    tx_type: int
    method: bytes | None  # first 4 bytes of the input of a call; None for plain transfers and creations


@dataclass(frozen=True)
class Withdrawal:
    index: int
    address: bytes
    amount: int  # wei (the node states gwei)


@dataclass(frozen=True)
class RpcBlock:
    number: int
    hash: bytes
    parent_hash: bytes
    time: int
    miner: bytes | None
    gas_used: int
    base_fee: int | None
    size: int | None
    tx_hashes: tuple[bytes, ...]
    txs: tuple[RpcTx, ...]  # empty unless fetched with full transactions
    withdrawals: tuple[Withdrawal, ...]


@dataclass(frozen=True)
class RpcLog:
    address: bytes
    topics: list[str]
    data: str
    log_index: int


@dataclass(frozen=True)
class RpcReceipt:
    tx_hash: bytes
    block_hash: bytes
    status: bool | None  # None before Byzantium (the receipt has a state root instead)
    gas_used: int
    effective_gas_price: int | None
    extra_fee: int  # blob fee + L1 fee, 0 where the receipt states none
    contract: bytes | None
    logs: tuple[RpcLog, ...]


@dataclass(frozen=True)
class InternalTransfer:
    tx_hash: bytes
    position: str  # trace address joined by "."
    sender: bytes
    recipient: bytes
    value: int


def _bad(block: int | str, field: str, value: Any, what: str) -> CorruptData:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    return CorruptData(f"block {block}: {field} is {shown}, not {what}", FIX)


def quantity(value: Any, block: int | str, field: str) -> int:
    if not isinstance(value, str) or not QUANTITY.fullmatch(value):
        raise _bad(block, field, value, "a hex quantity")
    return int(value, 16)


def small(value: Any, block: int | str, field: str) -> int:
    """A quantity that must fit the store's BIGINT columns (nonces, gas, heights)."""
    n = quantity(value, block, field)
    if n > INT64_MAX:
        raise _bad(block, field, value, "a quantity below 2^63")
    return n


def opt_quantity(obj: dict[str, Any], key: str, block: int | str, field: str) -> int | None:
    v = obj.get(key)
    return None if v is None else quantity(v, block, field)


def data(value: Any, block: int | str, field: str) -> bytes:
    if not isinstance(value, str) or not _DATA.fullmatch(value):
        raise _bad(block, field, value, "hex data")
    return bytes.fromhex(value[2:])


def fixed(value: Any, size: int, block: int | str, field: str) -> bytes:
    b = data(value, block, field) if isinstance(value, str) and len(value) == 2 + 2 * size else None
    if b is None:
        raise _bad(block, field, value, f"{size} bytes of hex")
    return b


def address(value: Any, block: int | str, field: str) -> bytes:
    return fixed(value, 20, block, field)


def opt_address(value: Any, block: int | str, field: str) -> bytes | None:
    return None if value is None else address(value, block, field)


def _obj(value: Any, block: int | str, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(block, field, value, "an object")
    return value


def _list(value: Any, block: int | str, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise _bad(block, field, value, "a list")
    return value


# -- blocks ------------------------------------------------------------------------------------------------


def parse_block(answer: Any, height: int, full: bool) -> RpcBlock:
    """An ``eth_getBlockByNumber`` answer for ``height`` (``full``: with transaction objects)."""
    b = _obj(answer, height, "the block")
    number = small(b.get("number"), height, "number")
    if number != height:
        raise CorruptData(f"asked for block {height}, the node answered block {number}", FIX)
    txs: list[RpcTx] = []
    hashes: list[bytes] = []
    for k, t in enumerate(_list(b.get("transactions"), height, "transactions")):
        if full:
            tx = _parse_tx(t, height, k)
            txs.append(tx)
            hashes.append(tx.hash)
        else:
            hashes.append(fixed(t, 32, height, f"transactions[{k}]"))
    withdrawals = [
        _parse_withdrawal(w, height, k) for k, w in enumerate(_list(b.get("withdrawals", []), height, "w"))
    ]
    size = b.get("size")
    return RpcBlock(
        number=number,
        hash=fixed(b.get("hash"), 32, height, "hash"),
        parent_hash=fixed(b.get("parentHash"), 32, height, "parentHash"),
        time=small(b.get("timestamp"), height, "timestamp"),
        miner=opt_address(b.get("miner"), height, "miner"),
        gas_used=small(b.get("gasUsed"), height, "gasUsed"),
        base_fee=opt_quantity(b, "baseFeePerGas", height, "baseFeePerGas"),
        size=None if size is None else small(size, height, "size"),
        tx_hashes=tuple(hashes),
        txs=tuple(txs),
        withdrawals=tuple(withdrawals),
    )


def _parse_tx(value: Any, height: int, k: int) -> RpcTx:
    t = _obj(value, height, f"transactions[{k}]")
    f = f"transactions[{k}]."
    position = small(t.get("transactionIndex"), height, f + "transactionIndex")
    if position != k:
        raise _bad(height, f + "transactionIndex", t.get("transactionIndex"), f"position {k}")
    to = opt_address(t.get("to"), height, f + "to")
    payload = data(t.get("input", "0x"), height, f + "input")
    tx_type = t.get("type")
    return RpcTx(
        hash=fixed(t.get("hash"), 32, height, f + "hash"),
        position=position,
        sender=address(t.get("from"), height, f + "from"),
        to=to,
        value=quantity(t.get("value"), height, f + "value"),
        nonce=small(t.get("nonce"), height, f + "nonce"),
        gas=small(t.get("gas"), height, f + "gas"),
        gas_price=opt_quantity(t, "gasPrice", height, f + "gasPrice"),
        tx_type=0 if tx_type is None else small(tx_type, height, f + "type"),  # legacy before EIP-2718
        method=payload[:4] if to is not None and len(payload) >= 4 else None,
    )


def _parse_withdrawal(value: Any, height: int, k: int) -> Withdrawal:
    w = _obj(value, height, f"withdrawals[{k}]")
    f = f"withdrawals[{k}]."
    return Withdrawal(
        index=small(w.get("index"), height, f + "index"),
        address=address(w.get("address"), height, f + "address"),
        amount=quantity(w.get("amount"), height, f + "amount") * GWEI,
    )


# -- receipts ----------------------------------------------------------------------------------------------


def parse_receipt(answer: Any, height: int, tx_hash: bytes) -> RpcReceipt:
    """The receipt of ``tx_hash`` (in block ``height``); its hash must be the one asked for."""
    r = _obj(answer, height, f"the receipt of 0x{tx_hash.hex()}")
    got = fixed(r.get("transactionHash"), 32, height, "receipt.transactionHash")
    if got != tx_hash:
        raise CorruptData(f"block {height}: receipt of 0x{got.hex()} where 0x{tx_hash.hex()} was due", FIX)
    f = f"receipt of 0x{tx_hash.hex()[:16]}...: "
    status = r.get("status")
    extra = 0
    blob_used = r.get("blobGasUsed")
    if blob_used is not None:
        extra += quantity(blob_used, height, f + "blobGasUsed") * quantity(
            r.get("blobGasPrice"), height, f + "blobGasPrice"
        )
    l1_fee = r.get("l1Fee")
    if l1_fee is not None:
        extra += quantity(l1_fee, height, f + "l1Fee")
    logs = tuple(_parse_log(x, height, f) for x in _list(r.get("logs"), height, f + "logs"))
    return RpcReceipt(
        tx_hash=got,
        block_hash=fixed(r.get("blockHash"), 32, height, f + "blockHash"),
        status=None if status is None else _status(status, height, f + "status"),
        gas_used=small(r.get("gasUsed"), height, f + "gasUsed"),
        effective_gas_price=opt_quantity(r, "effectiveGasPrice", height, f + "effectiveGasPrice"),
        extra_fee=extra,
        contract=opt_address(r.get("contractAddress"), height, f + "contractAddress"),
        logs=logs,
    )


def _status(value: Any, height: int, field: str) -> bool:
    n = quantity(value, height, field)
    if n > 1:
        raise _bad(height, field, value, "0x0 or 0x1")
    return n == 1


def _parse_log(value: Any, height: int, f: str) -> RpcLog:
    log = _obj(value, height, f + "log")
    topics = _list(log.get("topics"), height, f + "log.topics")
    for t in topics:
        fixed(t, 32, height, f + "log.topics")
    payload = log.get("data")
    data(payload, height, f + "log.data")
    return RpcLog(
        address=address(log.get("address"), height, f + "log.address"),
        topics=list(topics),
        data=str(payload),
        log_index=small(log.get("logIndex"), height, f + "log.logIndex"),
    )


def receipt_fee(receipt: RpcReceipt, tx: RpcTx) -> int | None:
    """Gas used x effective gas price (the receipt's, else the transaction's), plus blob and L1 fees."""
    price = receipt.effective_gas_price if receipt.effective_gas_price is not None else tx.gas_price
    return None if price is None else receipt.gas_used * price + receipt.extra_fee


# -- traces ------------------------------------------------------------------------------------------------


def parity_internal(answer: Any, height: int, block_hash: bytes) -> list[InternalTransfer]:
    """Internal value transfers of a ``trace_block`` answer: ``call`` (callType call), ``create`` and
    ``suicide`` traces below the top level (the top-level call is the transaction's own value) with a
    value above 0, skipping every trace that failed or lies under a failed one. Rewards are skipped."""
    failed: set[tuple[bytes, tuple[int, ...]]] = set()
    out: list[InternalTransfer] = []
    for k, item in enumerate(_list(answer, height, "trace_block")):
        t = _obj(item, height, f"trace_block[{k}]")
        kind = t.get("type")
        if kind == "reward" or t.get("transactionHash") is None:
            continue
        f = f"trace_block[{k}]."
        if (
            t.get("blockHash") is not None
            and fixed(t["blockHash"], 32, height, f + "blockHash") != block_hash
        ):
            raise CorruptData(f"block {height}: trace_block answered traces of another block", FIX)
        tx_hash = fixed(t["transactionHash"], 32, height, f + "transactionHash")
        path = tuple(_trace_address(t.get("traceAddress"), height, f + "traceAddress"))
        if t.get("error") is not None or any((tx_hash, path[:n]) in failed for n in range(len(path))):
            failed.add((tx_hash, path))
            continue
        if not path:
            continue
        action = _obj(t.get("action"), height, f + "action")
        if kind == "call":
            if action.get("callType") not in VALUE_CALL_TYPES:
                continue
            sender, to = action.get("from"), action.get("to")
            value = action.get("value")
        elif kind == "create":
            sender, value = action.get("from"), action.get("value")
            to = _obj(t.get("result"), height, f + "result").get("address")
        elif kind == "suicide":
            sender, to, value = action.get("address"), action.get("refundAddress"), action.get("balance")
        else:
            raise _bad(height, f + "type", kind, "call, create, suicide or reward")
        amount = quantity(value, height, f + "value")
        if amount:
            src, dst = address(sender, height, f + "from"), address(to, height, f + "to")
            out.append(InternalTransfer(tx_hash, ".".join(map(str, path)), src, dst, amount))
    return out


def _trace_address(value: Any, height: int, field: str) -> list[int]:
    items = _list(value, height, field)
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items):
        raise _bad(height, field, value, "a list of positions")
    return items


def geth_internal(answer: Any, height: int, tx_hashes: Sequence[bytes]) -> tuple[list[InternalTransfer], int]:
    """Internal value transfers of a ``debug_traceBlockByNumber`` callTracer answer (one frame tree per
    transaction, in block order): CALL, CREATE, CREATE2 and SELFDESTRUCT frames below the top level with a
    value above 0, skipping reverted frames (``error``) and everything under them. Also returns how many
    value-moving frames could not be read (a transaction whose tracing failed, or an old geth's
    SELFDESTRUCT frame that states no beneficiary or value): the transfers are then incomplete."""
    items = _list(answer, height, "debug_traceBlockByNumber")
    if len(items) != len(tx_hashes):
        raise CorruptData(
            f"block {height}: debug_traceBlockByNumber answered {len(items)} traces for {len(tx_hashes)} "
            "transactions",
            FIX,
        )
    out: list[InternalTransfer] = []
    unreadable = 0
    for k, (item, tx_hash) in enumerate(zip(items, tx_hashes)):
        entry = _obj(item, height, f"debug_traceBlockByNumber[{k}]")
        if entry.get("txHash") is not None and fixed(entry["txHash"], 32, height, "txHash") != tx_hash:
            raise CorruptData(f"block {height}: trace {k} is of another transaction", FIX)
        if entry.get("result") is None:
            unreadable += 1  # the node could not trace this transaction
            continue
        stack: list[tuple[dict[str, Any], tuple[int, ...]]] = [(_obj(entry["result"], height, "result"), ())]
        while stack:
            frame, path = stack.pop()
            if frame.get("error") is not None:
                continue  # reverted: moved nothing, nor did anything under it
            f = f"trace of tx {k} at [{'.'.join(map(str, path))}]."
            if path and frame.get("type") in GETH_VALUE_TYPES:
                value, to = frame.get("value"), frame.get("to")
                if value is None or to is None or frame.get("from") is None:
                    unreadable += int(frame.get("type") == "SELFDESTRUCT")  # (CALLs state all three)
                else:
                    amount = quantity(value, height, f + "value")
                    if amount:
                        out.append(InternalTransfer(tx_hash, ".".join(map(str, path)),
                                                    address(frame["from"], height, f + "from"),
                                                    address(to, height, f + "to"), amount))  # fmt: skip
            calls = _list(frame.get("calls", []), height, f + "calls")
            stack.extend(
                (_obj(c, height, f + "calls"), (*path, n)) for n, c in reversed(list(enumerate(calls)))
            )
    return out, unreadable


# -- rows for the store ---------------------------------------------------------------------------------

BLOCK_COLUMNS = ("number", "hash", "parent_hash", "time", "tx_count", "miner", "gas_used", "base_fee", "size")
TX_COLUMNS = ("block_number", "position", "hash", "from", "to", "created", "value", "nonce", "gas",
              "gas_price", "gas_used", "fee", "status", "tx_type", "method")  # fmt: skip
TRANSFER_COLUMNS = ("tx_hash", "block_number", "kind", "log_index", "trace_position", "contract", "from",
                    "to", "amount")  # fmt: skip


@dataclass
class BatchRows:
    """Columns named as the account writer's schemas (fundtrail.store.account_write), amounts as decimal
    strings; the writer derives the native-value and fee transfers from the transaction rows."""

    blocks: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in BLOCK_COLUMNS})
    txs: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in TX_COLUMNS})
    transfers: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in TRANSFER_COLUMNS})
    contracts: set[bytes] = field(default_factory=set)  # token contracts of the token transfers
    tokens: int = 0
    internal: int = 0
    withdrawals: int = 0
    logs_skipped: int = 0  # Transfer-signature logs not of the 3-topic ERC-20 form (ERC-721, odd tokens)

    def add(self, table: dict[str, list[Any]], *values: Any) -> None:
        for column, value in zip(table, values, strict=True):
            table[column].append(value)


def _text(n: int | None) -> str | None:
    return None if n is None else str(n)


def batch_rows(blocks: Sequence[RpcBlock], receipts: Sequence[Sequence[RpcReceipt]],
               internal: Sequence[InternalTransfer], beacon: bytes) -> BatchRows:  # fmt: skip
    """The rows of blocks with their receipts and internal transfers: token transfers from every receipt's
    ERC-20 Transfer logs, internal transfers of the transactions that did not fail, beacon withdrawals
    (from the pseudo-address ``beacon``, no transaction)."""
    out = BatchRows()
    failed: set[bytes] = set()
    for b, rs in zip(blocks, receipts, strict=True):
        out.add(out.blocks, b.number, b.hash, b.parent_hash, b.time, len(b.tx_hashes), b.miner, b.gas_used,
                _text(b.base_fee), b.size)  # fmt: skip
        for t, r in zip(b.txs, rs, strict=True):
            price = r.effective_gas_price if r.effective_gas_price is not None else t.gas_price
            created = r.contract if t.to is None else None
            out.add(out.txs, b.number, t.position, t.hash, t.sender, t.to, created, str(t.value), t.nonce,
                    t.gas, _text(price), r.gas_used, _text(receipt_fee(r, t)), r.status, t.tx_type,
                    t.method)  # fmt: skip
            if r.status is False:
                failed.add(t.hash)
            for log in r.logs:
                try:
                    tt = decode_transfer(log.address, log.topics, log.data)
                except ValueError:  # claims to be a Transfer, but its words do not parse as one
                    tt = None
                if tt is None:
                    out.logs_skipped += bool(log.topics) and log.topics[0].lower() == TRANSFER_TOPIC_HEX
                    continue
                out.add(out.transfers, t.hash, b.number, "token", log.log_index, None, tt.contract, tt.sender,
                        tt.recipient, str(tt.amount))  # fmt: skip
                out.contracts.add(tt.contract)
                out.tokens += 1
        for w in b.withdrawals:
            out.add(out.transfers, None, b.number, "withdrawal", None, str(w.index), None, beacon, w.address,
                    str(w.amount))  # fmt: skip
            out.withdrawals += 1
    number = {t: b.number for b in blocks for t in b.tx_hashes}
    for it in internal:
        if it.tx_hash in failed or it.tx_hash not in number:
            continue
        out.add(out.transfers, it.tx_hash, number[it.tx_hash], "internal", None, it.position, None, it.sender,
                it.recipient, str(it.value))  # fmt: skip
        out.internal += 1
    return out


# -- eth_call answers (token metadata) -----------------------------------------------------------------------


METADATA_SELECTORS = ("0x95d89b41", "0x313ce567", "0x06fdde03")  # symbol(), decimals(), name()


def decode_metadata(answers: Sequence[Any]) -> tuple[str | None, int | None, str | None]:
    """Symbol, decimals and name from the ``eth_call`` answers to :data:`METADATA_SELECTORS` (an answer
    that is an error, or does not decode, gives None)."""
    symbol, decimals, name = answers
    return decode_text(symbol), decode_decimals(decimals), decode_text(name)


def _call_bytes(answer: Any) -> bytes | None:
    if not isinstance(answer, str) or not _DATA.fullmatch(answer):
        return None
    return bytes.fromhex(answer[2:])


def decode_decimals(answer: Any) -> int | None:
    """``decimals()``: one 32-byte word holding 0..255 (uint8); anything else is no answer."""
    b = _call_bytes(answer)
    if b is None or len(b) != 32:
        return None
    n = int.from_bytes(b, "big")
    return n if n <= 255 else None


def decode_text(answer: Any) -> str | None:
    """``symbol()`` / ``name()``: an ABI-encoded string, or (old tokens such as MKR) a bytes32; trailing
    NUL bytes are dropped. Text that is not UTF-8, or holds control characters, is no answer."""
    b = _call_bytes(answer)
    if b is None:
        return None
    raw: bytes | None = None
    if len(b) >= 64 and len(b) % 32 == 0:
        offset = int.from_bytes(b[:32], "big")
        if offset % 32 == 0 and offset + 32 <= len(b):
            length = int.from_bytes(b[offset : offset + 32], "big")
            if offset + 32 + length <= len(b):
                raw = b[offset + 32 : offset + 32 + length]
    if raw is None and len(b) == 32:
        raw = b
    if raw is None:
        return None
    raw = raw.rstrip(b"\x00")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return None
    return text
