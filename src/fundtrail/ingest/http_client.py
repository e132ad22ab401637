"""An HTTP client (httpx) that retries transient failures: the part the JSON-RPC client
(:mod:`fundtrail.ingest.jsonrpc`) and the TRON HTTP client (:mod:`fundtrail.ingest.tron_http`) share.

An attempt raises :class:`Transient` for a failure worth retrying (connection errors and timeouts, which
:meth:`RetryingHttpClient.post_json` maps; HTTP 5xx and 429, which the caller decides); the client waits
``backoff`` seconds before the first retry, doubling up to ``max_backoff``, ``tries`` attempts in all,
counts every retry in :attr:`RetryingHttpClient.stats` and then gives up with one
:class:`~fundtrail.errors.SourceUnavailable` naming the node (never its credentials) and the fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypedDict, TypeVar

import httpx

from fundtrail.errors import SourceUnavailable
from fundtrail.ingest.endpoint import Endpoint

MAX_TRIES = 5  # attempts per request, the first included
BACKOFF_S = 0.5  # wait before the first retry; doubled for each further one
MAX_BACKOFF_S = 8.0
DEFAULT_UNREACHABLE_FIX = "check --url and that the node is running with its RPC server enabled"

T = TypeVar("T")


@dataclass
class HttpStats:
    requests: int = 0  # HTTP requests that got a usable answer
    retries: int = 0  # attempts repeated after a transient failure


class Transient(Exception):
    """A failure worth retrying; ``reason`` goes into the final error."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # "connect", "http" (or a client's own, e.g. "warmup")


class ClientOptions(TypedDict, total=False):
    """The keyword options every client takes (defaults: the class's)."""

    timeout: float  # seconds per HTTP request
    tries: int  # attempts per request, the first included
    backoff: float
    max_backoff: float
    unreachable_fix: str  # the fix named when the node cannot be reached
    sleep: Callable[[float], None]
    transport: httpx.BaseTransport | None  # tests: an in-process transport


class RetryingHttpClient:
    timeout_s = 60.0
    unreachable_fix = DEFAULT_UNREACHABLE_FIX
    overloaded_fix = "the node is overloaded or failing: check its log, retry later"

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        timeout: float | None = None,
        tries: int = MAX_TRIES,
        backoff: float = BACKOFF_S,
        max_backoff: float = MAX_BACKOFF_S,
        unreachable_fix: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> None:
        if tries < 1:
            raise ValueError("tries must be at least 1")
        self.endpoint = endpoint
        self.tries = tries
        self.backoff = backoff
        self.max_backoff = max_backoff
        if unreachable_fix is not None:
            self.unreachable_fix = unreachable_fix
        self.sleep = sleep
        self.stats = self.new_stats()
        self._http = httpx.Client(
            timeout=self.timeout_s if timeout is None else timeout,
            transport=transport,
            headers={"User-Agent": "fundtrail", **(headers or {})},
            auth=auth,
        )

    def new_stats(self) -> HttpStats:
        return HttpStats()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def retrying(self, attempt: Callable[[], T], what: str = "") -> T:
        """``attempt()``, repeated with backoff while it raises :class:`Transient`; ``what`` (e.g.
        " on /wallet/x") goes into the error when it never succeeds."""
        last: Transient | None = None
        for n in range(1, self.tries + 1):
            if n > 1:
                self.stats.retries += 1
                self.sleep(min(self.backoff * 2 ** (n - 2), self.max_backoff))
            try:
                return attempt()
            except Transient as exc:
                last = exc
        assert last is not None
        raise self.gave_up(last, what)

    def gave_up(self, last: Transient, what: str) -> SourceUnavailable:
        where = self.endpoint.display
        if last.kind == "connect":
            return SourceUnavailable(
                f"cannot reach the node at {where}: {last.reason} ({self.tries} tries)", self.unreachable_fix
            )
        return SourceUnavailable(
            f"the node at {where} failed {self.tries} times{what}, last with {last.reason}",
            self.overloaded_fix,
        )

    def post_json(self, url: str, body: Any, auth: Any = httpx.USE_CLIENT_DEFAULT) -> httpx.Response:
        """One HTTP POST of ``body`` as JSON; connection failures and timeouts raise :class:`Transient`."""
        try:
            return self._http.post(url, json=body, auth=auth)
        except httpx.TimeoutException as exc:
            raise Transient(f"timed out ({type(exc).__name__})", "connect") from None
        except httpx.TransportError as exc:
            raise Transient(str(exc) or type(exc).__name__, "connect") from None
