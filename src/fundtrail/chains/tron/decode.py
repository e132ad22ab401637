"""TRON HTTP API answers (java-tron ``/wallet/...`` JSON) -> typed rows, strictly.

Three steps, each pure:

- :func:`parse_block` reads a ``getblockbynum`` / ``getblockbylimitnext`` / ``getnowblock`` block: header
  (``blockID``, ``block_header.raw_data`` number, parentHash, timestamp, witness_address) and every
  transaction's single contract. :func:`parse_header` reads the header only.
- :func:`parse_infos` reads the ``gettransactioninfobyblocknum`` answer of that block: fee, receipt result,
  energy, created contract, event logs and internal transactions per transaction.
- :func:`block_rows` joins the two into the rows the store takes: one :class:`TxRow` per transaction and
  the :class:`TransferRow` s only this source sees (TRC-20 ``Transfer`` logs as ``token``, internal
  transactions carrying TRX as ``internal``). Native-value and fee transfers are derived by the writer
  from the transaction rows.

A field that is present but does not parse (hex that is not hex, an address that is not one, a number
that is text, a negative amount) raises :class:`~fundtrail.errors.CorruptData` naming the block and the
field's path. Absent numeric fields are zero, as protobuf's JSON form omits zeros (``amount``,
``call_value``, ``fee``, the genesis block's ``number``); absent required fields (``blockID``, ``txID``,
``owner_address``, a contract's recipient) are errors.

Semantics (docs/commands/ingest-tron.md has the full table):

- A transaction's ``value`` is the TRX (sun) its contract moves to another account: ``amount`` of
  TransferContract and ParticipateAssetIssueContract, ``call_value`` of TriggerSmartContract,
  ``new_contract.call_value`` of CreateSmartContract. Every other contract (staking, votes, TRC-10
  transfers, account and witness management) has value 0: it moves no TRX to another account.
- ``status``: ``receipt.result`` of the transaction info where given, else ``ret[0].contractRet`` of the
  block's transaction, else false when the info says ``"result": "FAILED"``; ``SUCCESS`` is true, any
  other result false; nothing known is null (unknown, and the value is recorded as the transaction
  states it). A failed transaction moves no value: no native, token or internal transfer; it pays its fee.
- Times: TRON gives milliseconds; the store keeps unix seconds (``ms // 1000``). :attr:`Header.time_ms`
  keeps the exact value for callers that want it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fundtrail.chains.evm.logs import TRANSFER_TOPIC_HEX, decode_transfer
from fundtrail.chains.tron.address import from_body, parse_tron_address
from fundtrail.errors import CorruptData, InvalidInput

# protocol.Transaction.Contract.ContractType (java-tron's Tron.proto)
CONTRACT_TYPES: dict[str, int] = {
    "AccountCreateContract": 0,
    "TransferContract": 1,
    "TransferAssetContract": 2,
    "VoteAssetContract": 3,
    "VoteWitnessContract": 4,
    "WitnessCreateContract": 5,
    "AssetIssueContract": 6,
    "WitnessUpdateContract": 8,
    "ParticipateAssetIssueContract": 9,
    "AccountUpdateContract": 10,
    "FreezeBalanceContract": 11,
    "UnfreezeBalanceContract": 12,
    "WithdrawBalanceContract": 13,
    "UnfreezeAssetContract": 14,
    "UpdateAssetContract": 15,
    "ProposalCreateContract": 16,
    "ProposalApproveContract": 17,
    "ProposalDeleteContract": 18,
    "SetAccountIdContract": 19,
    "CustomContract": 20,
    "CreateSmartContract": 30,
    "TriggerSmartContract": 31,
    "GetContract": 32,
    "UpdateSettingContract": 33,
    "ExchangeCreateContract": 41,
    "ExchangeInjectContract": 42,
    "ExchangeWithdrawContract": 43,
    "ExchangeTransactionContract": 44,
    "UpdateEnergyLimitContract": 45,
    "AccountPermissionUpdateContract": 46,
    "ClearABIContract": 48,
    "UpdateBrokerageContract": 49,
    "ShieldedTransferContract": 51,
    "MarketSellAssetContract": 52,
    "MarketCancelOrderContract": 53,
    "FreezeBalanceV2Contract": 54,
    "UnfreezeBalanceV2Contract": 55,
    "WithdrawExpireUnfreezeContract": 56,
    "DelegateResourceContract": 57,
    "UnDelegateResourceContract": 58,
    "CancelAllUnfreezeV2Contract": 59,
}

# Contracts that name a counterparty account (kept as the transaction's ``to``; value 0 unless below).
_RECIPIENT_FIELD: dict[str, str] = {
    "TransferContract": "to_address",
    "TransferAssetContract": "to_address",
    "ParticipateAssetIssueContract": "to_address",
    "TriggerSmartContract": "contract_address",
    "AccountCreateContract": "account_address",
    "DelegateResourceContract": "receiver_address",
    "UnDelegateResourceContract": "receiver_address",
}
# Contracts that move TRX (sun) to their recipient, and the field holding the amount.
_VALUE_FIELD: dict[str, str] = {
    "TransferContract": "amount",
    "ParticipateAssetIssueContract": "amount",
    "TriggerSmartContract": "call_value",
}

SUCCESS = "SUCCESS"
_HEX = re.compile(r"^[0-9a-fA-F]*$")
FIX = "the node's answer is malformed: check that --url points at a java-tron HTTP API (e.g. port 8090)"


class InfoMismatch(CorruptData):
    """The transaction infos name a transaction or block the block does not hold: the node answered
    about another block (its chain changed between the two requests) or is inconsistent."""


@dataclass(frozen=True)
class Header:
    number: int
    hash: bytes  # blockID, 32 bytes; its first 8 bytes are the number
    parent_hash: bytes
    time_ms: int
    witness: bytes | None  # 21-byte key of the block producer

    @property
    def time(self) -> int:
        return self.time_ms // 1000


@dataclass(frozen=True)
class Tx:
    position: int
    hash: bytes
    type_name: str
    tx_type: int | None  # ContractType number; None for a type this version does not know
    owner: bytes
    to: bytes | None
    value: int  # sun moved to ``to`` (see the module docstring)
    fee_limit: int | None
    method: bytes | None  # first 4 bytes of TriggerSmartContract data
    contract_ret: str | None


@dataclass(frozen=True)
class Block:
    header: Header
    txs: tuple[Tx, ...]


@dataclass(frozen=True)
class Log:
    index: int  # position in the transaction's log list
    contract: bytes  # 21-byte key
    topics: tuple[str, ...]  # 0x + 64 hex digits each
    data: str  # 0x + hex


@dataclass(frozen=True)
class Internal:
    index: int  # position in the transaction's internal_transactions list
    caller: bytes
    to: bytes
    call_value: int  # sum of the TRX entries of callValueInfo (TRC-10 entries carry a tokenId)
    rejected: bool


@dataclass(frozen=True)
class TxInfo:
    hash: bytes
    fee: int
    receipt_result: str | None
    result: str | None  # top-level "result" ("FAILED" on failure)
    energy_usage_total: int | None
    contract_address: bytes | None
    logs: tuple[Log, ...]
    internals: tuple[Internal, ...]


@dataclass(frozen=True)
class TxRow:
    block_number: int
    position: int
    hash: bytes
    sender: bytes
    to: bytes | None
    created: bytes | None
    value: int
    fee: int | None  # None: no transaction info (unknown, not zero)
    status: bool | None
    tx_type: int | None
    method: bytes | None
    gas: int | None  # fee_limit (sun)
    gas_used: int | None  # energy_usage_total


@dataclass(frozen=True)
class TransferRow:
    tx_hash: bytes
    block_number: int
    kind: str  # "token" or "internal"
    log_index: int | None
    trace_position: str | None
    contract: bytes | None  # token contract key; None for TRX
    sender: bytes
    to: bytes
    amount: int


@dataclass
class BlockRows:
    header: Header
    txs: list[TxRow] = field(default_factory=list)
    transfers: list[TransferRow] = field(default_factory=list)
    token_transfers: int = 0
    internal_transfers: int = 0
    odd_transfer_logs: int = 0  # Transfer-signature logs not of the 3-topic uint256 form, skipped
    negative_call_values: int = 0  # internal transactions with callValue < 0, skipped
    unknown_types: int = 0  # contract types this version does not know (stored with tx_type null)
    missing_infos: int = 0  # transactions without a transaction info (fee and energy unknown)


# -- field readers -----------------------------------------------------------------------------------------


class _At:
    """Where in the answer a value is, for error messages."""

    def __init__(self, block: int | str) -> None:
        self.block = block

    def fail(self, path: str, what: str, value: Any = None) -> CorruptData:
        shown = "" if value is None else f" ({str(value)[:80]!r})"
        return CorruptData(f"TRON block {self.block}: {path} {what}{shown}", FIX)

    def obj(self, v: Any, path: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.fail(path, "is not a JSON object", v)
        return v

    def lst(self, v: Any, path: str) -> list[Any]:
        if not isinstance(v, list):
            raise self.fail(path, "is not a JSON array", v)
        return v

    def req(self, d: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in d or d[key] is None:
            raise self.fail(f"{path}.{key}" if path else key, "is missing")
        return d[key]

    def int_(self, v: Any, path: str, signed: bool = False) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(path, "is not an integer", v)
        if v < 0 and not signed:
            raise self.fail(path, "is negative", v)
        return v

    def opt_int(self, d: Mapping[str, Any], key: str, path: str, default: int | None = 0) -> int | None:
        v = d.get(key)
        return default if v is None else self.int_(v, f"{path}.{key}")

    def str_(self, v: Any, path: str) -> str:
        if not isinstance(v, str):
            raise self.fail(path, "is not a string", v)
        return v

    def hex_(self, v: Any, path: str, size: int | None = None) -> bytes:
        s = self.str_(v, path)
        s = s[2:] if s[:2] in ("0x", "0X") else s
        if len(s) % 2 or not _HEX.match(s):
            raise self.fail(path, "is not hex", v)
        if size is not None and len(s) != 2 * size:
            raise self.fail(path, f"is not {size} bytes of hex", v)
        return bytes.fromhex(s)

    def addr(self, v: Any, path: str) -> bytes:
        s = self.str_(v, path)
        try:
            return parse_tron_address(s)
        except InvalidInput:
            raise self.fail(path, "is not a TRON address", v) from None


def _number(at: _At, raw: Mapping[str, Any]) -> int:
    n = at.opt_int(raw, "number", "block_header.raw_data")
    assert n is not None
    return n


def parse_header(obj: Any) -> Header:
    """The header of a block answer (transactions are not read)."""
    at = _At("?")
    b = at.obj(obj, "block")
    header = at.obj(at.req(b, "block_header", ""), "block_header")
    raw = at.obj(at.req(header, "raw_data", "block_header"), "block_header.raw_data")
    number = _number(at, raw)
    at.block = number
    block_id = at.hex_(at.req(b, "blockID", ""), "blockID", 32)
    if int.from_bytes(block_id[:8], "big") != number:
        raise at.fail("blockID", f"does not begin with the block number {number}", block_id.hex())
    parent = at.hex_(
        at.req(raw, "parentHash", "block_header.raw_data"), "block_header.raw_data.parentHash", 32
    )
    time_ms = at.opt_int(raw, "timestamp", "block_header.raw_data")
    assert time_ms is not None
    w = raw.get("witness_address")
    witness = None if w is None else at.addr(w, "block_header.raw_data.witness_address")
    return Header(number, block_id, parent, time_ms, witness)


def parse_block(obj: Any) -> Block:
    """A block answer: header and transactions, strictly."""
    header = parse_header(obj)
    at = _At(header.number)
    raw_txs = obj.get("transactions")
    if raw_txs is None:
        return Block(header, ())
    txs = tuple(_tx(at, k, t) for k, t in enumerate(at.lst(raw_txs, "transactions")))
    seen: set[bytes] = set()
    for t in txs:
        if t.hash in seen:
            raise at.fail(f"transactions[{t.position}].txID", "appears twice in the block", t.hash.hex())
        seen.add(t.hash)
    return Block(header, txs)


def _tx(at: _At, k: int, obj: Any) -> Tx:
    p = f"transactions[{k}]"
    t = at.obj(obj, p)
    tx_hash = at.hex_(at.req(t, "txID", p), f"{p}.txID", 32)
    raw = at.obj(at.req(t, "raw_data", p), f"{p}.raw_data")
    contracts = at.lst(at.req(raw, "contract", f"{p}.raw_data"), f"{p}.raw_data.contract")
    if len(contracts) != 1:
        raise at.fail(f"{p}.raw_data.contract", f"holds {len(contracts)} contracts, not 1")
    cp = f"{p}.raw_data.contract[0]"
    c = at.obj(contracts[0], cp)
    type_name = at.str_(at.req(c, "type", cp), f"{cp}.type")
    vp = f"{cp}.parameter.value"
    value = at.obj(
        at.req(at.obj(at.req(c, "parameter", cp), f"{cp}.parameter"), "value", f"{cp}.parameter"), vp
    )
    owner = at.addr(at.req(value, "owner_address", vp), f"{vp}.owner_address")
    to = None
    if type_name in _RECIPIENT_FIELD:
        key = _RECIPIENT_FIELD[type_name]
        to = at.addr(at.req(value, key, vp), f"{vp}.{key}")
    amount = 0
    if type_name in _VALUE_FIELD:
        amount = at.opt_int(value, _VALUE_FIELD[type_name], vp) or 0
    elif type_name == "CreateSmartContract":
        nc = at.obj(at.req(value, "new_contract", vp), f"{vp}.new_contract")
        amount = at.opt_int(nc, "call_value", f"{vp}.new_contract") or 0
    method = None
    if type_name == "TriggerSmartContract" and value.get("data") is not None:
        data = at.hex_(value["data"], f"{vp}.data")
        method = data[:4] if len(data) >= 4 else None
    ret = None
    if t.get("ret") is not None:
        rets = at.lst(t["ret"], f"{p}.ret")
        if rets:
            r0 = at.obj(rets[0], f"{p}.ret[0]")
            if r0.get("contractRet") is not None:
                ret = at.str_(r0["contractRet"], f"{p}.ret[0].contractRet")
    return Tx(
        position=k,
        hash=tx_hash,
        type_name=type_name,
        tx_type=CONTRACT_TYPES.get(type_name),
        owner=owner,
        to=to,
        value=amount,
        fee_limit=at.opt_int(raw, "fee_limit", f"{p}.raw_data", None),
        method=method,
        contract_ret=ret,
    )


def parse_infos(block: Block, obj: Any) -> dict[bytes, TxInfo]:
    """The transaction infos of ``block`` (a ``gettransactioninfobyblocknum`` answer), by tx hash.
    Raises :class:`InfoMismatch` when an info names a transaction or block other than ``block``'s."""
    number = block.header.number
    at = _At(number)
    if isinstance(obj, dict) and not obj:
        items: list[Any] = []  # java-tron answers {} for a block without transactions
    else:
        items = at.lst(obj, "transaction infos")
    hashes = {t.hash for t in block.txs}
    out: dict[bytes, TxInfo] = {}
    for k, item in enumerate(items):
        info = _info(at, k, item)
        p = f"transaction infos[{k}]"
        bn = item.get("blockNumber")
        if bn is not None and at.int_(bn, f"{p}.blockNumber") != number:
            raise InfoMismatch(f"TRON block {number}: {p} is about block {bn}", FIX)
        if info.hash not in hashes:
            raise InfoMismatch(
                f"TRON block {number}: {p}.id {info.hash.hex()} is not a transaction of the block", FIX
            )
        if info.hash in out:
            raise at.fail(f"{p}.id", "appears twice", info.hash.hex())
        out[info.hash] = info
    return out


def _info(at: _At, k: int, obj: Any) -> TxInfo:
    p = f"transaction infos[{k}]"
    i = at.obj(obj, p)
    tx_hash = at.hex_(at.req(i, "id", p), f"{p}.id", 32)
    fee = at.opt_int(i, "fee", p)
    assert fee is not None
    receipt = at.obj(i.get("receipt") or {}, f"{p}.receipt")
    rr = receipt.get("result")
    receipt_result = None if rr is None else at.str_(rr, f"{p}.receipt.result")
    res = i.get("result")
    result = None if res is None else at.str_(res, f"{p}.result")
    ca = i.get("contract_address")
    contract_address = None if ca is None else at.addr(ca, f"{p}.contract_address")
    logs = []
    for n, item in enumerate(at.lst(i.get("log") or [], f"{p}.log")):
        lp = f"{p}.log[{n}]"
        lg = at.obj(item, lp)
        body = at.hex_(at.req(lg, "address", lp), f"{lp}.address")
        if len(body) == 21 and body[0] == 0x41:
            body = body[1:]  # some nodes give the 0x41-prefixed key
        if len(body) != 20:
            raise at.fail(f"{lp}.address", "is not a 20-byte account body", lg["address"])
        topics = tuple(
            "0x" + at.hex_(tp, f"{lp}.topics[{j}]", 32).hex()
            for j, tp in enumerate(at.lst(lg.get("topics") or [], f"{lp}.topics"))
        )
        data = "0x" + at.hex_(lg.get("data") or "", f"{lp}.data").hex()
        logs.append(Log(n, from_body(body), topics, data))
    internals = []
    for n, item in enumerate(at.lst(i.get("internal_transactions") or [], f"{p}.internal_transactions")):
        ip = f"{p}.internal_transactions[{n}]"
        it = at.obj(item, ip)
        call_value = 0
        for j, cv in enumerate(at.lst(it.get("callValueInfo") or [], f"{ip}.callValueInfo")):
            entry = at.obj(cv, f"{ip}.callValueInfo[{j}]")
            if entry.get("tokenId") is None and entry.get("callValue") is not None:
                call_value += at.int_(entry["callValue"], f"{ip}.callValueInfo[{j}].callValue", signed=True)
        rejected = it.get("rejected", False)
        if not isinstance(rejected, bool):
            raise at.fail(f"{ip}.rejected", "is not true or false", rejected)
        internals.append(
            Internal(
                n,
                at.addr(at.req(it, "caller_address", ip), f"{ip}.caller_address"),
                at.addr(at.req(it, "transferTo_address", ip), f"{ip}.transferTo_address"),
                call_value,
                rejected,
            )
        )
    return TxInfo(
        hash=tx_hash,
        fee=fee,
        receipt_result=receipt_result,
        result=result,
        energy_usage_total=at.opt_int(receipt, "energy_usage_total", f"{p}.receipt", None),
        contract_address=contract_address,
        logs=tuple(logs),
        internals=tuple(internals),
    )


def status(tx: Tx, info: TxInfo | None) -> bool | None:
    """True/false from the receipt or the block's ``ret``; None when neither says."""
    result = info.receipt_result if info is not None else None
    if result is None:
        result = tx.contract_ret
    if result is None:
        return False if info is not None and info.result == "FAILED" else None
    return result == SUCCESS


def block_rows(block: Block, infos: Mapping[bytes, TxInfo]) -> BlockRows:
    """The store's rows for one block (see the module docstring for the rules)."""
    number = block.header.number
    out = BlockRows(block.header)
    for tx in block.txs:
        info = infos.get(tx.hash)
        ok = status(tx, info)
        if tx.tx_type is None:
            out.unknown_types += 1
        if info is None:
            out.missing_infos += 1
        created = (
            info.contract_address if info is not None and tx.type_name == "CreateSmartContract" else None
        )
        out.txs.append(
            TxRow(
                block_number=number,
                position=tx.position,
                hash=tx.hash,
                sender=tx.owner,
                to=tx.to,
                created=created,
                value=tx.value,
                fee=None if info is None else info.fee,
                status=ok,
                tx_type=tx.tx_type,
                method=tx.method,
                gas=tx.fee_limit,
                gas_used=None if info is None else info.energy_usage_total,
            )
        )
        if info is None or ok is False:
            continue  # a failed transaction moves no value
        _token_transfers(out, number, tx.hash, info.logs)
        for it in info.internals:
            if it.rejected or it.call_value == 0:
                continue
            if it.call_value < 0:
                out.negative_call_values += 1
                continue
            out.transfers.append(
                TransferRow(
                    tx.hash, number, "internal", None, str(it.index), None, it.caller, it.to, it.call_value
                )
            )
            out.internal_transfers += 1
    return out


def _token_transfers(out: BlockRows, number: int, tx_hash: bytes, logs: Sequence[Log]) -> None:
    for lg in logs:
        try:
            t = decode_transfer(lg.contract, list(lg.topics), lg.data)
        except ValueError:
            out.odd_transfer_logs += 1  # a Transfer signature with data that is not one uint256, etc.
            continue
        if t is None:
            if lg.topics and lg.topics[0] == TRANSFER_TOPIC_HEX:
                out.odd_transfer_logs += 1  # e.g. TRC-721 (token id as a 4th topic)
            continue
        out.transfers.append(
            TransferRow(
                tx_hash, number, "token", lg.index, None, lg.contract, from_body(t.sender),
                from_body(t.recipient), t.amount,
            )
        )  # fmt: skip
        out.token_transfers += 1
