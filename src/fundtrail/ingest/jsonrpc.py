"""A JSON-RPC client over HTTP (httpx), chain-neutral: Bitcoin Core and Ethereum nodes speak the same
protocol.

- Batches: :meth:`JsonRpcClient.batch` sends many calls as one JSON array in one HTTP POST and returns
  the results in call order (answers are matched by id, whatever order the node sends them in).
- Retries: connection errors, timeouts, HTTP 5xx without a JSON-RPC error, HTTP 429 and the "warming up"
  error (-28, Bitcoin Core loading its index) are retried with exponential backoff, ``MAX_TRIES`` times
  in all; HTTP 401/403 never are. Every retry is counted in :attr:`JsonRpcClient.stats`.
- Credentials: HTTP basic auth from the URL's ``user:pass`` or from a cookie file (``user:pass`` on one
  line, as Bitcoin Core's ``.cookie``; it is read again after a 401, as the node rewrites it on restart).
  Passwords never appear in messages: an endpoint is shown as ``scheme://host:port[/path]``.
- Errors are :mod:`fundtrail.errors` exceptions with one line naming the problem and the fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

from fundtrail.errors import CorruptData, InvalidInput, SourceUnavailable

MAX_TRIES = 5  # attempts per request, the first included
BACKOFF_S = 0.5  # wait before the first retry; doubled for each further one
MAX_BACKOFF_S = 8.0
TIMEOUT_S = 120.0  # per HTTP request: a batch of large blocks takes a while to serialize
WARMING_UP = -28  # Bitcoin Core's RPC_IN_WARMUP ("Loading block index...")
DEFAULT_UNREACHABLE_FIX = "check --url and that the node is running with its RPC server enabled"
URL_FORMS = "http://user:pass@host:port (or https://...)"


@dataclass(frozen=True)
class Endpoint:
    url: str  # without credentials
    display: str  # scheme://host:port[/path]: safe to show
    host: str
    port: int
    auth: tuple[str, str] | None = field(default=None, repr=False)
    cookie_file: Path | None = None


def read_cookie(path: Path) -> tuple[str, str]:
    """``user:password`` from a cookie file (Bitcoin Core writes ``__cookie__:<random>``)."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not text"
        raise InvalidInput(
            f"cannot read the cookie file {path}: {reason}", "give the node's .cookie file (in its datadir)"
        ) from None
    user, sep, password = text.partition(":")
    if not sep or not user or not password or "\n" in text:
        raise InvalidInput(
            f"the cookie file {path} does not hold user:password", "give the node's .cookie file"
        )
    return user, password


def redact(text: str) -> str:
    """``text`` with any password between ``user:`` and ``@`` replaced by ``***``."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    netloc, slash, path = rest.partition("/")
    creds, at, hostport = netloc.rpartition("@")
    if at and ":" in creds:
        netloc = creds.split(":", 1)[0] + ":***@" + hostport
    return f"{scheme}{sep}{netloc}{slash}{path}"


def parse_url(text: str, default_port: int | None = None, cookie_file: Path | None = None) -> Endpoint:
    """A validated endpoint from ``http(s)://[user:pass@]host[:port][/path]``; strictly, at the edge."""
    shown = redact(text.strip())
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"--url {shown!r} is malformed ({exc})", f"give {URL_FORMS}") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(f"--url {shown!r} is not an http(s) URL", f"give {URL_FORMS}")
    host = parts.hostname
    if not host:
        raise InvalidInput(f"--url {shown!r} names no host", f"give {URL_FORMS}")
    if parts.query or parts.fragment:
        raise InvalidInput(f"--url {shown!r} has a query or fragment", f"give {URL_FORMS}")
    if port is None:
        port = default_port if default_port is not None else (443 if parts.scheme == "https" else 80)
    auth = None
    if parts.username is not None or parts.password is not None:
        auth = (unquote(parts.username or ""), unquote(parts.password or ""))
    if cookie_file is not None:
        if auth is not None:
            raise InvalidInput(
                "credentials given twice: in --url and with --rpc-cookie", "give them one way, not both"
            )
        auth = read_cookie(cookie_file)
    shown_host = f"[{host}]" if ":" in host else host
    path = parts.path if parts.path not in ("", "/") else ""
    base = f"{parts.scheme}://{shown_host}:{port}"
    return Endpoint(base + (path or "/"), base + path, host, port, auth, cookie_file)


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
class RpcStats:
    requests: int = 0  # HTTP requests that got a usable answer
    calls: int = 0  # JSON-RPC calls answered
    retries: int = 0  # attempts repeated after a transient failure


class _Transient(Exception):
    """A failure worth retrying; ``reason`` goes into the final error."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # "connect", "http", "warmup"


class JsonRpcClient:
    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float = TIMEOUT_S,
        tries: int = MAX_TRIES,
        backoff: float = BACKOFF_S,
        max_backoff: float = MAX_BACKOFF_S,
        unreachable_fix: str = DEFAULT_UNREACHABLE_FIX,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if tries < 1:
            raise ValueError("tries must be at least 1")
        self.endpoint = endpoint
        self.tries = tries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.unreachable_fix = unreachable_fix
        self.sleep = sleep
        self.stats = RpcStats()
        self._next_id = 0
        self._http = httpx.Client(timeout=timeout, transport=transport, headers={"User-Agent": "fundtrail"})

    def __enter__(self) -> JsonRpcClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

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
        last: _Transient | None = None
        cookie_reloaded = False
        attempt = 0
        while attempt < self.tries:
            attempt += 1
            if attempt > 1:
                self.stats.retries += 1
                self.sleep(min(self.backoff * 2 ** (attempt - 2), self.max_backoff))
            try:
                return self._attempt(request, methods)
            except _Transient as exc:
                last = exc
            except _Unauthorized:
                if self.endpoint.cookie_file is not None and not cookie_reloaded:
                    cookie_reloaded = True  # the node rewrites its cookie when it restarts
                    auth = read_cookie(self.endpoint.cookie_file)
                    if auth != self.endpoint.auth:
                        self.endpoint = _with_auth(self.endpoint, auth)
                        attempt -= 1
                        continue
                raise SourceUnavailable(
                    f"the node at {self.endpoint.display} refused the credentials (HTTP 401)",
                    "check user:pass in --url (the node's rpcuser/rpcpassword or rpcauth) or the "
                    "--rpc-cookie file",
                ) from None
        assert last is not None
        raise self._gave_up(last)

    def _gave_up(self, last: _Transient) -> SourceUnavailable:
        where = self.endpoint.display
        if last.kind == "connect":
            return SourceUnavailable(
                f"cannot reach the node at {where}: {last.reason} ({self.tries} tries)", self.unreachable_fix
            )
        if last.kind == "warmup":
            return SourceUnavailable(
                f"the node at {where} is still starting ({last.reason}) after {self.tries} tries",
                "wait until it has loaded its index, then re-run",
            )
        return SourceUnavailable(
            f"the node at {where} failed {self.tries} times, last with {last.reason}",
            "the node is overloaded or failing: check its log, retry later",
        )

    def _attempt(self, request: Any, methods: list[str]) -> Any:
        ep = self.endpoint
        try:
            auth = httpx.BasicAuth(*ep.auth) if ep.auth is not None else httpx.USE_CLIENT_DEFAULT
            resp = self._http.post(ep.url, json=request, auth=auth)
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out ({type(exc).__name__})", "connect") from None
        except httpx.TransportError as exc:
            raise _Transient(str(exc) or type(exc).__name__, "connect") from None
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
                raise _Transient(f"RPC error {code}: {message}", "warmup")
            what = methods[0] if not isinstance(request, list) else f"a batch of {len(methods)} calls"
            raise RpcError(ep, what, code, message)
        if status >= 500 or status == 429:
            raise _Transient(f"HTTP {status}", "http")
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
                    raise _Transient(f"RPC error {code}: {message}", "warmup")
        self.stats.requests += 1
        self.stats.calls += len(methods)
        return body


class _Unauthorized(Exception):
    pass


def _with_auth(ep: Endpoint, auth: tuple[str, str]) -> Endpoint:
    return Endpoint(ep.url, ep.display, ep.host, ep.port, auth, ep.cookie_file)


def _error_fields(error: Any) -> tuple[int, str]:
    if isinstance(error, dict):
        code = error.get("code")
        return (code if isinstance(code, int) else 0), str(error.get("message", ""))
    return 0, str(error)
