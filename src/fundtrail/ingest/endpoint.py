"""Node endpoints: a URL parsed strictly at the edge, its credentials kept out of every message.

An endpoint is shown as ``scheme://host:port[/path]``; credentials come from the URL's ``user:pass`` or
from a cookie file (``user:pass`` on one line, as Bitcoin Core's ``.cookie``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fundtrail.errors import InvalidInput

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


def with_auth(ep: Endpoint, auth: tuple[str, str]) -> Endpoint:
    """``ep`` with other credentials (a cookie file the node rewrote)."""
    return Endpoint(ep.url, ep.display, ep.host, ep.port, auth, ep.cookie_file)
