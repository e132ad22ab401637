"""A local Bitcoin Core JSON-RPC look-alike for offline tests.

:class:`ReplayNode` serves a chain of real (or builder-made) raw blocks on 127.0.0.1 at an ephemeral port,
from a thread: ``getblockcount``, ``getblockhash``, ``getbestblockhash`` and ``getblock`` (verbosity 0
from the raw bytes; verbosity 1/2 from recorded answers where given). It behaves like bitcoind where the
tests look: HTTP basic auth (401 with an empty body), batches as JSON arrays answered with HTTP 200,
single-request errors with HTTP 500 (404 for an unknown method), error -8 past the tip, -5 for an
unknown hash, -28 while "warming up". Tests can switch its chain (a reorg; blocks of the old chain stay
retrievable by hash, as on a node), queue transient failures, tamper with a block's bytes and count the
requests and calls it served.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import struct
from collections import Counter
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from fundtrail.chains.bitcoin.blockfile import read_block_file
from fundtrail.chains.bitcoin.builder import compact_size
from fundtrail.chains.bitcoin.network import Network
from tests.http_server import JsonHandler, LocalServer

Failure = int | str  # an HTTP status to answer with, "drop" (close without answering) or "warmup" (-28)


def block_hash(raw: bytes) -> str:
    return hashlib.sha256(hashlib.sha256(raw[:80]).digest()).digest()[::-1].hex()


def blocks_from_file(path: Path, network: Network) -> list[bytes]:
    """The blocks of a blk*.dat file, checked to form one chain from its first block."""
    bf = read_block_file(path, network)
    raws = [bytes(bf.buf[s:e]) for s, e in zip(bf.starts.tolist(), bf.ends.tolist())]
    for prev, raw in itertools.pairwise(raws):
        assert raw[4:36][::-1].hex() == block_hash(prev), "blocks of the file do not chain"
    return raws


def raw_block_from_verbose(answer: Mapping[str, Any]) -> bytes:
    """Rebuild a raw block from a recorded ``getblock <hash> 2`` answer: header fields + every tx's hex."""
    prev = bytes.fromhex(answer.get("previousblockhash", "00" * 32))[::-1]
    header: bytes = struct.pack(
        "<I32s32sIII",
        answer["version"],
        prev,
        bytes.fromhex(answer["merkleroot"])[::-1],
        answer["time"],
        int(answer["bits"], 16),
        answer["nonce"],
    )
    txs = [bytes.fromhex(t["hex"]) for t in answer["tx"]]
    return bytes(header + compact_size(len(txs)) + b"".join(txs))


def recorded_blocks(directories: Sequence[Path]) -> dict[int, tuple[bytes, dict[str, Any]]]:
    """Height -> (rebuilt raw block, recorded verbose answer) for every ``*getblock_<hash>_2.json``."""
    out: dict[int, tuple[bytes, dict[str, Any]]] = {}
    for d in directories:
        for path in sorted(d.glob("rpc_response_getblock_*_2.json")):
            answer = json.loads(path.read_text())
            out[int(answer["height"])] = (raw_block_from_verbose(answer), answer)
    return out


class ReplayNode(LocalServer[Failure]):
    def __init__(self, user: str = "rpcuser", password: str = "s3cret-p4ss") -> None:
        super().__init__(_handler(self))
        self.user = user
        self.password = password
        self._chain: dict[int, str] = {}  # height -> hash of the active chain
        self._raw: dict[str, bytes] = {}  # every block ever served, by hash
        self._verbose: dict[str, dict[str, Any]] = {}
        self.unauthorized = 0
        self.bodies: list[Any] = []  # parsed bodies of the requests answered
        self.calls: Counter[str] = Counter()  # JSON-RPC calls answered, by method

    @property
    def url(self) -> str:
        return f"http://{self.user}:{self.password}@127.0.0.1:{self.port}"

    # -- what it serves --------------------------------------------------------------------------------

    def set_chain(self, blocks: Sequence[bytes] | Mapping[int, bytes]) -> None:
        """Make ``blocks`` (by height; a sequence starts at 0) the active chain: a reorg when it differs."""
        items = blocks.items() if isinstance(blocks, Mapping) else enumerate(blocks)
        with self._lock:
            self._chain = {}
            for height, raw in items:
                h = block_hash(raw)
                self._chain[height] = h
                self._raw[h] = raw

    def add_verbose(self, answer: dict[str, Any]) -> None:
        with self._lock:
            self._verbose[answer["hash"]] = answer

    def tamper(self, height: int, raw: bytes) -> None:
        """Serve ``raw`` for the block at ``height`` while getblockhash keeps the real hash."""
        with self._lock:
            self._raw[self._chain[height]] = raw

    def chain_hashes(self) -> dict[int, str]:
        with self._lock:
            return dict(self._chain)

    def reset_counts(self) -> None:
        with self._lock:
            self.posts = 0
            self.unauthorized = 0
            self.bodies = []
            self.calls = Counter()

    # -- JSON-RPC --------------------------------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"

    def answer(self, call: Any, warmup: bool) -> dict[str, Any]:
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return {
                "result": None,
                "error": {"code": -32600, "message": "Invalid Request object"},
                "id": None,
            }
        cid = call.get("id")
        if warmup:
            return {"result": None, "error": {"code": -28, "message": "Loading block index..."}, "id": cid}
        try:
            result = self._execute(call["method"], list(call.get("params") or []))
        except _RpcFailure as exc:
            return {"result": None, "error": {"code": exc.code, "message": exc.message}, "id": cid}
        with self._lock:
            self.calls[call["method"]] += 1
        return {"result": result, "error": None, "id": cid}

    def _execute(self, method: str, params: list[Any]) -> Any:
        with self._lock:
            if method == "getblockcount":
                return max(self._chain) if self._chain else -1
            if method == "getbestblockhash":
                return self._chain[max(self._chain)]
            if method == "getblockhash":
                if len(params) != 1 or not isinstance(params[0], int):
                    raise _RpcFailure(-1, "getblockhash height")
                if params[0] not in self._chain:
                    raise _RpcFailure(-8, "Block height out of range")
                return self._chain[params[0]]
            if method == "getblock":
                h, verbosity = params[0], params[1] if len(params) > 1 else 1
                if h not in self._raw:
                    raise _RpcFailure(-5, "Block not found")
                if verbosity == 0:
                    return self._raw[h].hex()
                if h in self._verbose:
                    return self._verbose[h]
                raise _RpcFailure(-8, "the replay serves verbosity 0 only for this block")
        raise _RpcFailure(-32601, "Method not found")


class _RpcFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _handler(node: ReplayNode) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def do_POST(self) -> None:
            raw = self.body()
            failure = node.take_failure()
            if self.fail(failure):
                return
            if not node.authorized(self.headers.get("Authorization")):
                with node._lock:
                    node.unauthorized += 1
                self.reply(401, b"", headers=(("WWW-Authenticate", 'Basic realm="jsonrpc"'),))
                return
            try:
                body = json.loads(raw)
            except ValueError:
                err = {"result": None, "error": {"code": -32700, "message": "Parse error"}, "id": None}
                self.reply_json(500, err)
                return
            with node._lock:
                node.bodies.append(body)
            warmup = failure == "warmup"
            if isinstance(body, list):
                self.reply_json(200, [node.answer(c, warmup) for c in body])
                return
            reply = node.answer(body, warmup)
            status = 200
            if reply["error"] is not None:
                status = 404 if reply["error"]["code"] == -32601 else 500
            self.reply_json(status, reply)

    return Handler


def replay_node(blocks: Sequence[bytes] | Mapping[int, bytes] = (), **kwargs: str) -> ReplayNode:
    """A node serving ``blocks``, to use as a context manager (started on entry, stopped on exit)."""
    node = ReplayNode(**kwargs)
    node.set_chain(blocks)
    return node
