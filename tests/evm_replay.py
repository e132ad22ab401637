"""A local Ethereum JSON-RPC look-alike for offline tests, on 127.0.0.1 at an ephemeral port (a thread).

It answers from two sources:

- **Recorded real answers**: the ``web3_response.<method>_<params>.json`` files of ethereum-etl's test
  resources (../shared/data/ethereum-etl), looked up by the file name ethereum-etl's own mock provider
  builds from a call (:func:`file_name`: method, then each parameter lower-cased, objects as sorted
  ``key_value`` pairs, joined by ``_``). Where a block was recorded with full transactions only, the
  hashes-only answer is that block with each transaction replaced by its hash (what a node answers).
  ``eth_getBlockReceipts`` is answered, if asked to, from the recorded per-transaction receipts.
- **A real node upstream** (anvil): every call is passed on, except the methods it is told to refuse,
  which get -32601 "method not found", as from a node that lacks them (geth without ``trace_block``, an
  old node without ``eth_getBlockReceipts``).

A call with no recorded answer gets -32601 for a method never recorded, else -32000. Batches are JSON
arrays answered with HTTP 200; tests can queue transient HTTP failures and count the calls served.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx

from tests.http_server import JsonHandler, LocalServer

PREFIX = "web3_response."


def param_to_str(param: Any) -> str:
    """One parameter as ethereum-etl's mock provider writes it into a file name."""
    if isinstance(param, dict):
        return "_".join(f"{key}_{param_to_str(param[key])}" for key in sorted(param))
    if isinstance(param, list):
        return "_".join(param_to_str(p) for p in param)
    return str(param).lower()


def file_name(method: str, params: Sequence[Any]) -> str:
    return f"{PREFIX}{method}_{'_'.join(param_to_str(p) for p in params)}.json"


class EvmReplay(LocalServer[int]):
    def __init__(
        self,
        directories: Sequence[Path] = (),
        *,
        upstream: str | None = None,
        refuse: Iterable[str] = (),
        chain_id: int | None = None,
        tip: int | None = None,
        block_receipts: bool = False,
    ) -> None:
        super().__init__(_handler(self))
        self.files: dict[str, Any] = {}
        for d in directories:
            for path in sorted(d.glob(f"{PREFIX}*.json")):
                self.files[path.name.lower()] = json.loads(path.read_text())
        self.recorded_methods = {n[len(PREFIX) :].split("_", 1)[0] for n in self.files}
        self.upstream = upstream
        self.refuse = set(refuse)
        self.chain_id = chain_id
        self.tip = tip
        self.block_receipts = block_receipts
        self.overrides: dict[str, Any] = {}  # file name (lower case) -> result to answer instead
        self.calls: Counter[str] = Counter()  # calls answered (with a result or an error), by method
        self._http = httpx.Client(timeout=30) if upstream else None

    def stop(self) -> None:
        super().stop()
        if self._http is not None:
            self._http.close()

    # -- answers ---------------------------------------------------------------------------------------

    def answer(self, call: Any) -> dict[str, Any]:
        cid = call.get("id") if isinstance(call, dict) else None
        method = call.get("method") if isinstance(call, dict) else None
        if not isinstance(method, str):
            return {"jsonrpc": "2.0", "id": cid, "error": {"code": -32600, "message": "Invalid Request"}}
        params = list(call.get("params") or [])
        with self._lock:
            self.calls[method] += 1
        if method in self.refuse:
            return _error(cid, -32601, f"the method {method} does not exist/is not available")
        if self.upstream is not None:
            assert self._http is not None
            reply: dict[str, Any] = self._http.post(self.upstream, json=call).json()
            return reply
        try:
            return {"jsonrpc": "2.0", "id": cid, "result": self._recorded(method, params)}
        except _NoAnswer as exc:
            return _error(cid, exc.code, exc.message)

    def _recorded(self, method: str, params: list[Any]) -> Any:
        name = file_name(method, params).lower()  # file names are compared without case
        if name in self.overrides:
            return self.overrides[name]
        if name in self.files:
            return self._result(self.files[name])
        if method == "eth_chainId" and self.chain_id is not None:
            return hex(self.chain_id)
        if method == "eth_blockNumber":
            return hex(self.tip if self.tip is not None else max(self._recorded_heights()))
        if method == "eth_getBlockByNumber" and len(params) == 2 and params[1] is False:
            full = file_name(method, [params[0], True]).lower()
            if full in self.overrides or full in self.files:
                block = dict(self._recorded(method, [params[0], True]))
                block["transactions"] = [t["hash"] for t in block["transactions"]]
                return block
            if int(params[0], 16) > max(self._recorded_heights()):
                return None  # past the tip, as a node answers
        if method == "eth_getBlockReceipts" and self.block_receipts:
            block = self._recorded("eth_getBlockByNumber", [params[0], True])
            return [self._recorded("eth_getTransactionReceipt", [t["hash"]]) for t in block["transactions"]]
        if method.lower() not in self.recorded_methods:
            raise _NoAnswer(-32601, f"the method {method} does not exist/is not available")
        raise _NoAnswer(-32000, f"no recorded answer for {name}")

    def _result(self, recorded: Any) -> Any:
        if "error" in recorded:
            raise _NoAnswer(int(recorded["error"]["code"]), str(recorded["error"]["message"]))
        return recorded["result"]

    def _recorded_heights(self) -> list[int]:
        out = [-1]
        answers = [*(a.get("result") for a in self.files.values()), *self.overrides.values()]
        names = [*self.files, *self.overrides]
        for name, answer in zip(names, answers):
            if name.startswith(f"{PREFIX}eth_getblockbynumber_0x") and isinstance(answer, dict):
                out.append(int(answer["number"], 16))
        return out


class _NoAnswer(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _error(cid: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": cid, "error": {"code": code, "message": message}}


def _handler(node: EvmReplay) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def do_POST(self) -> None:
            raw = self.body()
            failure = node.take_failure()
            if failure is not None:
                self.reply(failure, b"transient failure")
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self.reply_json(200, _error(None, -32700, "Parse error"))
                return
            reply = [node.answer(c) for c in body] if isinstance(body, list) else node.answer(body)
            self.reply_json(200, reply)

    return Handler


def evm_replay(directories: Sequence[Path] = (), **kwargs: Any) -> EvmReplay:
    """A replay of ``directories``, to use as a context manager (started on entry, stopped on exit)."""
    return EvmReplay(directories, **kwargs)
