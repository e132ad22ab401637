"""A JSON-RPC client over HTTP (httpx), chain-neutral: Bitcoin Core and Ethereum nodes speak the same
protocol.

- Batches: :meth:`JsonRpcClient.batch` sends many calls as one JSON array in one HTTP POST and returns
  the results in call order (answers are matched by id, whatever order the node sends them in).
- Retries: connection errors, timeouts, HTTP 5xx without a JSON-RPC error, HTTP 429 and the "warming up"
  error (-28, Bitcoin Core loading its index) are retried with exponential backoff, ``MAX_TRIES`` times
  in all (:mod:`fundtrail.ingest.http_client`); HTTP 401/403 never are. Every retry is counted in
  :attr:`JsonRpcClient.stats`.
- Credentials: HTTP basic auth from the URL's ``user:pass`` or from a cookie file (``user:pass`` on one
  line, as Bitcoin Core's ``.cookie``; it is read again after a 401, as the node rewrites it on restart).
  Passwords never appear in messages: an endpoint (:mod:`fundtrail.ingest.endpoint`) is shown as
  ``scheme://host:port[/path]``.
- Errors are :mod:`fundtrail.errors` exceptions with one line naming the problem and the fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from fundtrail.errors import CorruptData, SourceUnavailable
from fundtrail.ingest.endpoint import URL_FORMS, Endpoint, parse_url, read_cookie, redact, with_auth
from fundtrail.ingest.http_client import (
    BACKOFF_S,
    MAX_BACKOFF_S,
    MAX_TRIES,
    HttpStats,
    RetryingHttpClient,
    Transient,
)

__all__ = [  # the endpoint and retry names are re-exported: callers know them from here
    "BACKOFF_S",
    "MAX_BACKOFF_S",
    "MAX_TRIES",
    "URL_FORMS",
    "Endpoint",
    "JsonRpcClient",
    "RpcError",
    "SourceUnavailable",
    "parse_url",
    "read_cookie",
    "redact",
]

TIMEOUT_S = 120.0  # per HTTP request: a batch of large blocks takes a while to serialize
WARMING_UP = -28  # Bitcoin Core's RPC_IN_WARMUP ("Loading block index...")


class RpcError(SourceUnavailable):
    """The node answered a call with a JSON-RPC error object."""

    def __init__(self, endpoint: Endpoint, method: str, code: int, message: str) -> None:
        self.method = method
        self.code = code
        self.message = message
        super().__init__(
            f"the node at {endpoint.display} answered {method} with error {code}: {message}",
            "check the node's state and the request (see its debug.log)",
        )


@dataclass
class RpcStats(HttpStats):
    calls: int = 0  # JSON-RPC calls answered


class JsonRpcClient(RetryingHttpClient):
    """Options: :class:`~fundtrail.ingest.http_client.ClientOptions` (timeout default ``TIMEOUT_S``)."""

    timeout_s = TIMEOUT_S
    stats: RpcStats
    _next_id = 0  # the last request id sent

    def new_stats(self) -> RpcStats:
        return RpcStats()

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One call, sent as a single JSON-RPC request object."""
        self._next_id += 1
        request = {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": list(params)}
        answer = self._send(request, [method])
        if not isinstance(answer, dict):
            raise self._garbled(f"a {type(answer).__name__} for one call")
        return self._result(answer, method)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]], *, return_errors: bool = False) -> list[Any]:
        """Many calls in one HTTP request (a JSON array); results in call order. A call the node answers
        with an error raises :class:`RpcError`, or with ``return_errors`` stands in the list as one (for
        calls that may fail one by one, such as ``eth_call``)."""
        if not calls:
            return []
        first = self._next_id + 1
        self._next_id += len(calls)
        request = [
            {"jsonrpc": "2.0", "id": first + k, "method": m, "params": list(p)}
            for k, (m, p) in enumerate(calls)
        ]
        answer = self._send(request, [m for m, _ in calls])
        if not isinstance(answer, list):
            raise self._garbled(f"a {type(answer).__name__} for a batch of {len(calls)} calls")
        by_id: dict[Any, Any] = {a.get("id"): a for a in answer if isinstance(a, dict)}
        if len(by_id) != len(calls) or any(first + k not in by_id for k in range(len(calls))):
            raise self._garbled(f"{len(answer)} answers for a batch of {len(calls)} calls")
        if not return_errors:
            return [self._result(by_id[first + k], m) for k, (m, _) in enumerate(calls)]
        out: list[Any] = []
        for k, (m, _) in enumerate(calls):
            try:
                out.append(self._result(by_id[first + k], m))
            except RpcError as exc:
                out.append(exc)
        return out

    # -- internals --------------------------------------------------------------------------------------

    def _result(self, answer: dict[str, Any], method: str) -> Any:
        error = answer.get("error")
        if error is not None:
            code, message = _error_fields(error)
            raise RpcError(self.endpoint, method, code, message)
        if "result" not in answer:
            raise self._garbled(f"an answer to {method} with neither result nor error")
        return answer["result"]

    def _garbled(self, what: str) -> CorruptData:
        return CorruptData(
            f"the node at {self.endpoint.display} answered {what}",
            "check that --url points at the node's JSON-RPC port",
        )

    def _send(self, request: Any, methods: list[str]) -> Any:
        cookie_reloaded = False

        def attempt() -> Any:
            nonlocal cookie_reloaded
            try:
                return self._attempt(request, methods)
            except _Unauthorized:
                if self.endpoint.cookie_file is not None and not cookie_reloaded:
                    cookie_reloaded = True  # the node rewrites its cookie when it restarts
                    auth = read_cookie(self.endpoint.cookie_file)
                    if auth != self.endpoint.auth:
                        self.endpoint = with_auth(self.endpoint, auth)
                        return attempt()
                raise SourceUnavailable(
                    f"the node at {self.endpoint.display} refused the credentials (HTTP 401)",
                    "check user:pass in --url (the node's rpcuser/rpcpassword or rpcauth) or the "
                    "--rpc-cookie file",
                ) from None

        return self.retrying(attempt)

    def gave_up(self, last: Transient, what: str) -> SourceUnavailable:
        if last.kind == "warmup":
            return SourceUnavailable(
                f"the node at {self.endpoint.display} is still starting ({last.reason}) after {self.tries} "
                "tries",
                "wait until it has loaded its index, then re-run",
            )
        return super().gave_up(last, what)

    def _attempt(self, request: Any, methods: list[str]) -> Any:
        ep = self.endpoint
        auth = httpx.BasicAuth(*ep.auth) if ep.auth is not None else httpx.USE_CLIENT_DEFAULT
        resp = self.post_json(ep.url, request, auth)
        status = resp.status_code
        if status == 401:
            raise _Unauthorized
        if status == 403:
            raise SourceUnavailable(
                f"the node at {ep.display} forbids RPC from this host (HTTP 403)",
                "allow this host on the node (bitcoind: -rpcallowip=...) or connect from an allowed one",
            )
        try:
            body = resp.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("error") is not None:
            code, message = _error_fields(body["error"])  # Bitcoin Core sends these with HTTP 500/404
            if code == WARMING_UP:
                raise Transient(f"RPC error {code}: {message}", "warmup")
            what = methods[0] if not isinstance(request, list) else f"a batch of {len(methods)} calls"
            raise RpcError(ep, what, code, message)
        if status >= 500 or status == 429:
            raise Transient(f"HTTP {status}", "http")
        if status != 200:
            raise SourceUnavailable(
                f"the node at {ep.display} answered HTTP {status}",
                "check that --url points at the node's JSON-RPC port (and wallet path, if any)",
            )
        if body is None:
            raise self._garbled("something that is not JSON")
        answers = body if isinstance(body, list) else [body]
        for a in answers:
            if isinstance(a, dict) and a.get("error") is not None:
                code, message = _error_fields(a["error"])
                if code == WARMING_UP:
                    raise Transient(f"RPC error {code}: {message}", "warmup")
        self.stats.requests += 1
        self.stats.calls += len(methods)
        return body


class _Unauthorized(Exception):
    pass


def _error_fields(error: Any) -> tuple[int, str]:
    if isinstance(error, dict):
        code = error.get("code")
        return (code if isinstance(code, int) else 0), str(error.get("message", ""))
    return 0, str(error)
