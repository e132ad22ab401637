"""What the local HTTP look-alikes of the tests share (rpc_replay, evm_replay, tron_server).

:class:`LocalServer` serves one handler class on 127.0.0.1 at an ephemeral port, from a daemon thread once
started (or entered as a context manager), with a queue of failures for the next requests and a count of
the requests served. :class:`JsonHandler` is the handler's base: HTTP/1.1, no request log, the body read
whole, answers written with their length, and the queued transient failures every server answers alike.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

F = TypeVar("F")  # what a queued failure is: an HTTP status, or a word a server understands

TRANSIENT_PAGE = b"<html>transient failure</html>"


class LocalServer(Generic[F]):
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._lock = threading.Lock()
        self._failures: list[F] = []
        self.posts = 0  # every request, failed ones included
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.stop()

    def fail_next(self, *failures: F) -> None:
        """Answer the next requests with these failures, one each, in order."""
        with self._lock:
            self._failures.extend(failures)

    def take_failure(self) -> F | None:
        """Count a request, and return the failure queued for it (None: answer it)."""
        with self._lock:
            self.posts += 1
            return self._failures.pop(0) if self._failures else None


class JsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return None

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def reply(self, status: int, body: bytes, content_type: str = "application/json",
              headers: tuple[tuple[str, str], ...] = ()) -> None:  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def reply_json(self, status: int, answer: Any) -> None:
        self.reply(status, json.dumps(answer).encode())

    def fail(self, failure: object) -> bool:
        """Answer a queued failure: ``"drop"`` closes the connection without answering, an HTTP status
        gets an HTML page. False (nothing done) for no failure, or one the server handles itself."""
        if failure == "drop":
            self.close_connection = True
            return True
        if isinstance(failure, int):
            self.reply(failure, TRANSIENT_PAGE, "text/html")
            return True
        return False
