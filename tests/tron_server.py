"""A local java-tron HTTP API look-alike for offline tests, and the chains it serves.

:class:`TronNode` answers ``POST /wallet/getnowblock``, ``getblockbynum``, ``getblockbylimitnext`` (blocks
``[startNum, endNum)``, at most 100, as java-tron) and ``gettransactioninfobyblocknum`` on 127.0.0.1 at an
ephemeral port, from a thread. Like java-tron it answers ``{}`` for a block it does not have and
``{"Error": ...}`` for a request it cannot parse. Tests can switch its chain (a reorg), queue transient
failures (an HTTP status, or ``"drop"``: close without answering), turn ``getblockbylimitnext`` off
(``limitnext = "404"``, ``"error"`` or ``"empty"``), require an API key, and count the requests served.

No recorded TRON answers exist, so the answers are built here in java-tron's documented JSON shapes
(``visible=false``: addresses as ``41``-prefixed hex, log addresses as the 20-byte body, hashes as hex)
from the real TRON data of graphsense-lib (../shared/data/graphsense-lib, see its SOURCES.md):

- :func:`chain_2018`: heights 0..9,997 around the 2,172 real TRX transfers of 2018
  (trx_0to10000/transactions.json, tx_fee.json). Real: txID, the 661 blockIDs, block number, timestamp,
  owner/to addresses, amounts, transaction order, fees and bandwidth figures. Constructed: the other
  9,337 blocks (blockID = height + sha256 of a label), every parentHash (each block names the one below,
  so the chain is consistent), witnesses, the contract type of the 214 transfers GraphSense records
  without a recipient and of the 5 with value 0, ref_block fields.
- :func:`chain_2023`: heights 56,804,500..56,805,500, the 1,001 real block headers
  (trx_56804500to56805500/blocks.json: blockID, parentHash, number, timestamp, witness, txTrieRoot) with
  the 4,957 real internal transactions (traces.json) in TriggerSmartContract transactions carrying their
  real txIDs, plus constructed TRC-20 transfers (the real USDT, USDC and WTRX contracts of
  token_configuration.json, real addresses from traces.json, constructed amounts) and a few constructed
  special cases. The blocks hold only these transactions, not the real 77,090.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from fundtrail.chains.evm.logs import TRANSFER_TOPIC_HEX
from tests.http_server import JsonHandler, LocalServer

DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "graphsense-lib").resolve()
TRX_2018 = DATA / "trx_0to10000"
TRX_2023 = DATA / "trx_56804500to56805500"

Block = dict[str, Any]
Info = dict[str, Any]
Chain = dict[int, tuple[Block, list[Info]]]  # height -> (block answer, transaction-info answer)
Failure = int | str


# -- the server ------------------------------------------------------------------------------------------


class TronNode(LocalServer[Failure]):
    def __init__(self, api_key: str | None = None) -> None:
        super().__init__(_handler(self))
        self.api_key = api_key
        self.limitnext = "on"  # or "404", "error", "empty"
        self._blocks: dict[int, str] = {}
        self._infos: dict[int, str] = {}
        self.served: Counter[str] = Counter()
        self.headers_seen: list[dict[str, str]] = []

    def set_chain(self, chain: Chain) -> None:
        blocks = {h: json.dumps(b, separators=(",", ":")) for h, (b, _) in chain.items()}
        infos = {h: json.dumps(i, separators=(",", ":")) for h, (_, i) in chain.items()}
        with self._lock:
            self._blocks, self._infos = blocks, infos

    def reset_counts(self) -> None:
        with self._lock:
            self.posts = 0
            self.served = Counter()

    def answer(self, path: str, body: Any) -> tuple[int, str]:
        name = path.removeprefix("/wallet/")
        with self._lock:
            tip = max(self._blocks) if self._blocks else -1
            if name == "getnowblock":
                self.served[name] += 1
                return 200, self._blocks[tip] if tip >= 0 else "{}"
            if name == "getblockbynum" or name == "gettransactioninfobyblocknum":
                num = body.get("num") if isinstance(body, dict) else None
                if not isinstance(num, int):
                    return 200, json.dumps({"Error": "class java.lang.NullPointerException : null"})
                self.served[name] += 1
                table = self._blocks if name == "getblockbynum" else self._infos
                return 200, table.get(num, "{}" if name == "getblockbynum" else "[]")
            if name == "getblockbylimitnext":
                if self.limitnext == "404":
                    return 404, "<html><body>Not Found</body></html>"
                if self.limitnext == "error":
                    return 200, json.dumps({"Error": "class java.lang.UnsupportedOperationException : off"})
                self.served[name] += 1
                start = body.get("startNum") if isinstance(body, dict) else None
                end = body.get("endNum") if isinstance(body, dict) else None
                if self.limitnext == "empty" or not isinstance(start, int) or not isinstance(end, int):
                    return 200, "{}"
                if end <= start or end - start > 100:
                    return 200, "{}"
                got = [self._blocks[h] for h in range(start, end) if h in self._blocks]
                return 200, '{"block":[' + ",".join(got) + "]}" if got else "{}"
        return 404, "<html><body>Not Found</body></html>"


def _handler(node: TronNode) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        disable_nagle_algorithm = True  # one small answer per request: no 40 ms delayed-ACK stalls
        wbufsize = -1  # headers and body leave in one write (flushed after each request)

        def do_POST(self) -> None:
            raw = self.body()
            with node._lock:
                node.headers_seen.append(dict(self.headers))
            if self.fail(node.take_failure()):
                return
            if node.api_key is not None and self.headers.get("TRON-PRO-API-KEY") != node.api_key:
                self.reply(401, b'{"Error":"ApiKey not exists"}')
                return
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                self.reply(200, b'{"Error":"com.google.gson.JsonSyntaxException"}')
                return
            status, text = node.answer(self.path, body)
            self.reply(status, text.encode(), "application/json" if status == 200 else "text/html")

    return Handler


def tron_node(chain: Chain | None = None, api_key: str | None = None) -> TronNode:
    """A node serving ``chain``, to use as a context manager (started on entry, stopped on exit)."""
    node = TronNode(api_key)
    node.set_chain(chain or {})
    return node


# -- JSON in java-tron's shapes ----------------------------------------------------------------------------


def b64(text: str) -> bytes:
    return base64.b64decode(text)


def key_hex(body: bytes) -> str:
    """A 20-byte account body as the API shows it (visible=false): 41 + 40 hex digits."""
    assert len(body) == 20
    return "41" + body.hex()


def label_hash(*parts: object) -> bytes:
    return hashlib.sha256("|".join(map(str, ("fundtrail-constructed", *parts))).encode()).digest()


def filler_block_id(height: int, variant: str) -> bytes:
    """A constructed blockID with TRON's shape: 8 bytes of height, then 24 bytes of hash."""
    return height.to_bytes(8, "big") + label_hash("block", variant, height)[:24]


def contract(type_name: str, value: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "parameter": {"value": value, "type_url": f"type.googleapis.com/protocol.{type_name}"},
            "type": type_name,
        }
    ]


def transaction(tx_id: bytes, type_name: str, value: dict[str, Any], ref: tuple[int, bytes], ts_ms: int,
                ret: str | None = "SUCCESS", fee_limit: int | None = None) -> dict[str, Any]:  # fmt: skip
    """A transaction as java-tron shows it in a block (without raw_data_hex and signature: fundtrail
    does not read them and no real ones are at hand)."""
    raw: dict[str, Any] = {
        "contract": contract(type_name, value),
        "ref_block_bytes": (ref[0] & 0xFFFF).to_bytes(2, "big").hex(),
        "ref_block_hash": ref[1][8:16].hex(),
        "expiration": ts_ms + 60_000,
        "timestamp": ts_ms,
    }
    if fee_limit is not None:
        raw["fee_limit"] = fee_limit
    tx: dict[str, Any] = {"txID": tx_id.hex(), "raw_data": raw}
    if ret is not None:
        tx["ret"] = [{"contractRet": ret}]
    return tx


def block(number: int, block_id: bytes, parent: bytes, ts_ms: int, witness: bytes,
          txs: list[dict[str, Any]], tx_root: bytes | None = None) -> Block:  # fmt: skip
    raw: dict[str, Any] = {
        "txTrieRoot": (tx_root or bytes(32)).hex(),
        "witness_address": key_hex(witness),
        "parentHash": parent.hex(),
        "version": 3 if number < 10_000 else 29,
        "timestamp": ts_ms,
    }
    if number:
        raw["number"] = number  # protobuf's JSON omits zeros: the genesis block has no "number"
    b: Block = {
        "blockID": block_id.hex(),
        "block_header": {"raw_data": raw, "witness_signature": label_hash("sig", block_id.hex()).hex()},
    }
    if txs:
        b["transactions"] = txs
    return b


def nonzero(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` without zero numbers, as protobuf's JSON form prints it."""
    return {k: v for k, v in d.items() if v != 0}


def info(tx_id: bytes, number: int, ts_ms: int, *, fee: int = 0, receipt: dict[str, Any] | None = None,
         contract_address: bytes | None = None, logs: list[dict[str, Any]] | None = None,
         internal: list[dict[str, Any]] | None = None, failed: bool = False) -> Info:  # fmt: skip
    i: Info = {"id": tx_id.hex(), "fee": fee, "blockNumber": number, "blockTimeStamp": ts_ms}
    i = nonzero(i)
    i["contractResult"] = [""]
    if contract_address is not None:
        i["contract_address"] = key_hex(contract_address)
    i["receipt"] = nonzero(receipt or {})
    if logs:
        i["log"] = logs
    if failed:
        i["result"] = "FAILED"
        i["resMessage"] = b"REVERT opcode executed".hex()
    if internal:
        i["internal_transactions"] = internal
    return i


def transfer_log(token: bytes, sender: bytes, to: bytes, amount: int) -> dict[str, Any]:
    """A TRC-20 Transfer event as gettransactioninfo shows it: 20-byte bodies, hex without 0x."""
    return {
        "address": token.hex(),
        "topics": [TRANSFER_TOPIC_HEX[2:], bytes(12).hex() + sender.hex(), bytes(12).hex() + to.hex()],
        "data": amount.to_bytes(32, "big").hex(),
    }


def internal_tx(
    caller: bytes, to: bytes, call_value: int, note: str, rejected: bool, h: bytes
) -> dict[str, Any]:
    return {
        "hash": h.hex(),
        "caller_address": key_hex(caller),
        "transferTo_address": key_hex(to),
        "callValueInfo": [nonzero({"callValue": call_value})],
        "note": note.encode().hex(),
        **({"rejected": True} if rejected else {}),
    }


# -- 2018: the real TRX transfers ----------------------------------------------------------------------


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def transactions_2018() -> list[dict[str, Any]]:
    return read_lines(TRX_2018 / "transactions.json")


def fees_2018() -> dict[str, dict[str, Any]]:
    return {f["txHash"]: f for f in read_lines(TRX_2018 / "tx_fee.json")}


WITNESS_CREATE_COST = 9_999_000_000  # sun: the fee a 2018 WitnessCreateContract paid
ASSET_ISSUE_COST = 1_024_000_000  # sun: the fee a 2018 AssetIssueContract paid


def type_2018(tx: dict[str, Any], fee: int) -> tuple[str, dict[str, Any]]:
    """The contract served for a GraphSense transaction (constructed where GraphSense keeps no type)."""
    owner = key_hex(b64(tx["fromAddress"]))
    value = tx["value"]
    if "toAddress" in tx:
        to = key_hex(b64(tx["toAddress"]))
        if value > 0:
            return "TransferContract", {"amount": value, "owner_address": owner, "to_address": to}
        # value 0 with a recipient: GraphSense zeroes TRC-10 transfers (its TransferAssetContract rule)
        asset = b"fundtrail-test-asset".hex()
        return "TransferAssetContract", {
            "amount": 1,
            "asset_name": asset,
            "owner_address": owner,
            "to_address": to,
        }
    if value == fee == WITNESS_CREATE_COST:
        return "WitnessCreateContract", {"owner_address": owner, "url": b"http://constructed.example".hex()}
    if value == fee == ASSET_ISSUE_COST:
        return "AssetIssueContract", {"owner_address": owner, "name": b"CONSTRUCTED".hex(), "total_supply": 1}
    if value > 0:
        return "FreezeBalanceContract", {
            "owner_address": owner,
            "frozen_balance": value,
            "frozen_duration": 3,
        }
    return "AccountUpdateContract", {"owner_address": owner, "account_name": b"constructed".hex()}


def chain_2018() -> Chain:
    txs = transactions_2018()
    fees = fees_2018()
    by_block: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for t in txs:
        by_block[t["blockId"]].append(t)
    tip = max(by_block)
    real_ts = {h: v[0]["blockTimestamp"] * 1000 for h, v in by_block.items()}
    known = sorted(real_ts)
    ids = {h: b64(v[0]["blockHash"]) for h, v in by_block.items()}
    chain: Chain = {}
    prev_id = label_hash("block", "2018", -1)
    k = 0
    for h in range(tip + 1):
        while k < len(known) and known[k] < h:
            k += 1
        ts = real_ts.get(h) or _between(h, known, real_ts, k)
        block_id = ids.get(h) or filler_block_id(h, "2018")
        block_txs, infos = [], []
        for t in sorted(by_block.get(h, []), key=lambda t: t["transactionIndex"]):
            f = fees[t["txHash"]]
            type_name, value = type_2018(t, f["fee"])
            tx_id = b64(t["txHash"])
            block_txs.append(transaction(tx_id, type_name, value, (h - 1, prev_id), ts))
            receipt = {"net_usage": f["netUsage"], "net_fee": f["netFee"], "energy_fee": f["energyFee"],
                       "energy_usage_total": f["energyUsageTotal"]}  # fmt: skip
            infos.append(info(tx_id, h, ts, fee=f["fee"], receipt=receipt))
        witness = label_hash("witness", h % 27)[:20]
        chain[h] = (block(h, block_id, prev_id, ts, witness, block_txs), infos)
        prev_id = block_id
    return chain


def _between(h: int, known: list[int], ts: Mapping[int, int], k: int) -> int:
    """A constructed timestamp for a height without real data: 3 s slots, kept between the real ones."""
    if k == 0:
        return ts[known[0]] - 3000 * (known[0] - h)
    lo = known[k - 1]
    if k == len(known):
        return ts[lo] + 3000 * (h - lo)
    hi = known[k]
    return ts[lo] + (ts[hi] - ts[lo]) * (h - lo) // (hi - lo)


# -- 2023: the real headers, internal transactions and USDT --------------------------------------------


def headers_2023() -> list[dict[str, Any]]:
    return read_lines(TRX_2023 / "blocks.json")


def traces_2023() -> list[dict[str, Any]]:
    return read_lines(TRX_2023 / "traces.json")


def tokens_2023() -> dict[str, bytes]:
    return {
        t["currencyTicker"]: b64(t["tokenAddress"]) for t in read_lines(TRX_2023 / "token_configuration.json")
    }


UINT256_MAX = 2**256 - 1
FIRST_2023, LAST_2023 = 56_804_500, 56_805_500


@dataclass
class Special:
    """The constructed special cases of :func:`chain_2023`, by what they test (tx ids)."""

    max_amount: bytes = b""  # a USDT Transfer of 2^256-1
    failed: bytes = b""  # a USDT transfer with call_value that reverted: fee paid, nothing moved
    failed_fee: int = 0
    call_value: bytes = b""  # a successful TriggerSmartContract with call_value
    call_value_amount: int = 0
    create: bytes = b""  # CreateSmartContract with call_value
    created: bytes = b""  # its contract (20-byte body)
    odd_log: bytes = b""  # a Transfer-signature log with empty data (not a TRC-20 transfer)
    nft_log: bytes = b""  # a 4-topic Transfer (TRC-721)
    unknown_token: bytes = b""  # a TRC-20 contract not in the registry
    unknown_contract: bytes = b""


@dataclass
class Chain2023:
    chain: Chain
    token_transfers: list[tuple[bytes, int, bytes, bytes, bytes, int]] = field(default_factory=list)
    # (tx id, log index, contract body, from body, to body, amount) of every constructed TRC-20 transfer
    special: Special = field(default_factory=Special)
    fees: dict[bytes, int] = field(default_factory=dict)  # constructed fees, by tx id


def chain_2023(fork_above: int | None = None, variant: str = "a", first: int = FIRST_2023,
               last: int = LAST_2023) -> Chain2023:  # fmt: skip
    """The real headers first..last with the real internal transactions and constructed TRC-20 transfers;
    with ``fork_above``, the blocks above that height are a constructed other branch (``variant``)."""
    headers = {h["blockId"]: h for h in headers_2023()}
    traces: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in traces_2023():
        traces[t["txHash"]].append(t)
    by_block: dict[int, list[list[dict[str, Any]]]] = defaultdict(list)
    for v in traces.values():
        v.sort(key=lambda t: t["traceIndex"])
        by_block[v[0]["blockId"]].append(v)
    for v2 in by_block.values():
        v2.sort(key=lambda tr: tr[0]["internalIndex"])
    receivers = sorted(
        {b64(t["transfertoAddress"]) for v in traces.values() for t in v if t["callValue"] > 0}
    )
    pool = sorted(
        {b64(t[a]) for v in traces.values() for t in v for a in ("callerAddress", "transfertoAddress")}
    )
    tokens = tokens_2023()
    usdt = tokens["USDT"]
    out = Chain2023({})
    prev_id = b64(headers[first]["parentHash"])
    for h in range(first, last + 1):
        forked = fork_above is not None and h > fork_above
        hd = headers[h]
        ts = hd["timestamp"] * 1000
        block_id = filler_block_id(h, f"fork-{variant}") if forked else b64(hd["blockHash"])
        parent = prev_id if forked else b64(hd["parentHash"])
        acc = _Txs()
        add = acc.add
        ref = (h - 1, parent)
        rng = random.Random(f"tron-2023-{variant if forked else 'a'}-{h}")
        if not forked:
            for tr in by_block.get(h, []):
                tx_id = b64(tr[0]["txHash"])
                reverted = all(t["rejected"] for t in tr)
                called = b64(tr[0]["callerAddress"])
                owner = receivers[int.from_bytes(tx_id[:4], "big") % len(receivers)]
                value = {"owner_address": key_hex(owner), "contract_address": key_hex(called)}
                internal = [_internal(t) for t in tr]
                result = "REVERT" if reverted else "SUCCESS"
                add(
                    transaction(tx_id, "TriggerSmartContract", value, ref, ts, result, 150_000_000),
                    info(tx_id, h, ts, receipt={"result": result}, contract_address=called,
                         internal=internal, failed=reverted),
                )  # fmt: skip
        for n in range(2 if h % 5 == 0 else 0):
            tx_id = label_hash("usdt", variant if forked else "a", h, n)
            sender, to = rng.choice(pool), rng.choice(pool)
            logs, amounts = [], [rng.randrange(1, 10**12)]
            if h % 50 == 0 and n == 1:
                amounts.append(rng.randrange(1, 10**9))  # two Transfers in one transaction
            for j, amount in enumerate(amounts):
                logs.append(transfer_log(usdt, sender, to, amount))
                out.token_transfers.append((tx_id, j, usdt, sender, to, amount))
            fee = 345_000 * (1 + n) if h % 10 == 0 else 0
            out.fees[tx_id] = fee
            data = "a9059cbb" + bytes(12).hex() + to.hex() + amounts[0].to_bytes(32, "big").hex()
            call = {"data": data, "owner_address": key_hex(sender), "contract_address": key_hex(usdt)}
            add(
                transaction(tx_id, "TriggerSmartContract", call, ref, ts, "SUCCESS", 30_000_000),
                info(tx_id, h, ts, fee=fee, receipt={"energy_fee": fee, "energy_usage_total": 13_045,
                     "net_usage": 345, "result": "SUCCESS"}, contract_address=usdt, logs=logs),
            )  # fmt: skip
        if not forked and h in _SPECIAL_HEIGHTS:
            _special(out, h, ts, ref, pool, tokens, add)
        out.chain[h] = (
            block(h, block_id, parent, ts, b64(hd["miner"]), acc.txs, b64(hd["transactionsRoot"])),
            acc.infos,
        )
        prev_id = block_id
    return out


class _Txs:
    def __init__(self) -> None:
        self.txs: list[dict[str, Any]] = []
        self.infos: list[Info] = []

    def add(self, tx: dict[str, Any], i: Info) -> None:
        self.txs.append(tx)
        self.infos.append(i)


def _internal(t: dict[str, Any]) -> dict[str, Any]:
    """A real internal transaction of traces.json in java-tron's shape (its hash is constructed)."""
    h = label_hash("internal", t["txHash"], t["traceIndex"])
    caller, to = b64(t["callerAddress"]), b64(t["transfertoAddress"])
    return internal_tx(caller, to, t["callValue"], t["note"], t["rejected"], h)


_SPECIAL_HEIGHTS = {56_804_501, 56_804_777, 56_805_003, 56_805_250, 56_805_499}


def _special(out: Chain2023, h: int, ts: int, ref: tuple[int, bytes], pool: list[bytes],
             tokens: dict[str, bytes], add: Any) -> None:  # fmt: skip
    s = out.special
    a, b, c = pool[h % len(pool)], pool[(h * 7) % len(pool)], pool[(h * 13) % len(pool)]

    def call(sender: bytes, target: bytes, call_value: int = 0) -> dict[str, Any]:
        v = {"data": "a9059cbb", "owner_address": key_hex(sender), "contract_address": key_hex(target)}
        return v | ({"call_value": call_value} if call_value else {})

    if h == 56_804_501:  # 2^256-1 USDT, and a USDC transfer
        s.max_amount = label_hash("max", h)
        out.token_transfers.append((s.max_amount, 0, tokens["USDT"], a, b, UINT256_MAX))
        out.token_transfers.append((s.max_amount, 1, tokens["USDC"], b, c, 1_000_000))
        logs = [
            transfer_log(tokens["USDT"], a, b, UINT256_MAX),
            transfer_log(tokens["USDC"], b, c, 1_000_000),
        ]
        add(
            transaction(s.max_amount, "TriggerSmartContract", call(a, tokens["USDT"]), ref, ts),
            info(
                s.max_amount, h, ts, receipt={"result": "SUCCESS"}, contract_address=tokens["USDT"], logs=logs
            ),
        )
    elif h == 56_804_777:  # reverted USDT transfer with call_value: pays its fee, moves nothing
        s.failed, s.failed_fee = label_hash("failed", h), 27_255_900
        add(
            transaction(
                s.failed, "TriggerSmartContract", call(a, tokens["USDT"], 5_000_000), ref, ts, "REVERT"
            ),
            info(
                s.failed,
                h,
                ts,
                fee=s.failed_fee,
                receipt={"energy_fee": s.failed_fee, "result": "REVERT"},
                contract_address=tokens["USDT"],
                failed=True,
            ),
        )
        out.fees[s.failed] = s.failed_fee
    elif h == 56_805_003:  # successful call with call_value (TRX to WTRX), a Transfer log with empty data
        s.call_value, s.call_value_amount = label_hash("deposit", h), 123_456_789
        odd = {**transfer_log(tokens["WTRX"], a, b, 1), "data": ""}
        add(
            transaction(
                s.call_value, "TriggerSmartContract", call(a, tokens["WTRX"], s.call_value_amount), ref, ts
            ),
            info(
                s.call_value,
                h,
                ts,
                receipt={"result": "SUCCESS"},
                contract_address=tokens["WTRX"],
                logs=[odd],
            ),
        )
        s.odd_log = s.call_value
    elif h == 56_805_250:  # contract creation with call_value; a 4-topic (TRC-721) Transfer
        s.create, s.created = label_hash("create", h), label_hash("created", h)[:20]
        value = {"owner_address": key_hex(a), "new_contract": {"bytecode": "6080", "call_value": 7_000_000,
                 "name": "Constructed", "origin_address": key_hex(a)}}  # fmt: skip
        nft = transfer_log(s.created, a, b, 42)
        nft = {**nft, "topics": [*nft["topics"], (42).to_bytes(32, "big").hex()], "data": ""}
        add(
            transaction(s.create, "CreateSmartContract", value, ref, ts),
            info(s.create, h, ts, receipt={"result": "SUCCESS"}, contract_address=s.created, logs=[nft]),
        )
        s.nft_log = s.create
    elif h == 56_805_499:  # a token contract not in the registry
        s.unknown_token, s.unknown_contract = label_hash("unknown", h), label_hash("token", h)[:20]
        out.token_transfers.append((s.unknown_token, 0, s.unknown_contract, c, a, 10**30))
        add(
            transaction(s.unknown_token, "TriggerSmartContract", call(c, s.unknown_contract), ref, ts),
            info(
                s.unknown_token,
                h,
                ts,
                receipt={"result": "SUCCESS"},
                contract_address=s.unknown_contract,
                logs=[transfer_log(s.unknown_contract, c, a, 10**30)],
            ),
        )
