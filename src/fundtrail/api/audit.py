"""The service's side of the audit trail: every investigative query (screen, trace, label change) is
appended to the hash-chained log of :mod:`fundtrail.platform.audit` through the one writer.

**Group commit.** A request queues its entry; the writer thread takes every entry queued so far and
appends them with :func:`fundtrail.platform.audit.append_many`: one transaction, the head read and moved
once, the rows inserted together. A DuckDB statement costs a fraction of a millisecond, so appending entry
by entry (a transaction each) would cap the service near 250 audited requests a second; one batch costs
about the same whatever its size. Entries nobody waits for (screening's) linger up to ``LINGER_S`` to
be written together: the writer then works in short bursts instead of holding the GIL in turns with the
event loop at every request.

**Waiting.** Traces and label changes are answered once their entry is committed. Screening is answered
as soon as its entry is queued (``wait=False``): the writer also runs long case operations (a trace
snapshot holds it for the trace's duration), and a screen must not wait for those. Its entry is committed
within milliseconds of the answer under normal load; a crash of the process in between loses those few
entries (a graceful shutdown writes every queued entry first). Reading the log through the service
(``GET /v1/audit``, ``GET /v1/audit/verify``) first writes every queued entry, so it shows every answer
given. Case actions are audited by the case library itself, in the transaction of the action.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

import duckdb

from fundtrail.api.store import StoreAccess
from fundtrail.platform import audit
from fundtrail.platform.principal import Principal

log = logging.getLogger("fundtrail.api")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TARGET_MAX = 500
LINGER_S = 0.02  # entries nobody waits for are collected this long before they are written


def clean_target(text: str) -> str:
    """A target as the log takes it: control characters replaced, at most TARGET_MAX characters."""
    s = _CONTROL.sub("?", text).strip() or "-"
    return s if len(s) <= TARGET_MAX else s[: TARGET_MAX - 1] + "…"


@dataclass
class Pending:
    actor: Principal
    action: str
    target: str
    params: dict[str, Any]
    digest: str
    loop: asyncio.AbstractEventLoop | None = None
    done: asyncio.Future[None] | None = None


def _append(con: duckdb.DuckDBPyConnection, items: list[Pending]) -> None:
    audit.append_many(con, [(p.actor, p.action, p.target, p.params, p.digest) for p in items])


class AuditTrail:
    def __init__(self, store: StoreAccess, linger_s: float = LINGER_S) -> None:
        self.store = store
        self.linger_s = linger_s
        self._pending: list[Pending] = []
        self._scheduled = False
        self._now = False
        self._mu = threading.Lock()
        self.appended = 0
        self.batches = 0

    async def record(
        self,
        actor: Principal,
        action: str,
        target: str,
        params: dict[str, Any],
        result_digest: str,
        wait: bool = True,
    ) -> None:
        """Append one entry (``result_digest``: the SHA-256 of the answer's canonical JSON). ``wait``:
        return once it is committed (else once it is queued)."""
        item = Pending(actor, action, clean_target(target), params, result_digest)
        if wait:
            item.loop = asyncio.get_running_loop()
            item.done = item.loop.create_future()
        with self._mu:
            self._pending.append(item)
            schedule = not self._scheduled
            self._scheduled = True
            if wait and not self._now:
                self._now = schedule = True  # a waiter: flush without lingering
        if schedule:
            if wait or self.linger_s <= 0:
                self.store.submit_write(self._flush)
            else:
                asyncio.get_running_loop().call_later(self.linger_s, self.store.submit_write, self._flush)
        if item.done is not None:
            await item.done

    async def flush(self) -> None:
        """Write every queued entry now (what reading the log does first, so it reads every answer given)."""
        await self.store.write(self._flush)

    def close(self) -> None:
        """Queue a last flush (the store's close waits for it): no queued entry is lost at shutdown."""
        self.store.submit_write(self._flush)

    def _flush(self, con: duckdb.DuckDBPyConnection) -> None:
        with self._mu:
            batch, self._pending = self._pending, []
            self._scheduled = self._now = False
        if not batch:
            return
        try:
            _append(con, batch)
            self.appended += len(batch)
            self.batches += 1
            for p in batch:
                _settle(p, None)
            return
        except Exception:  # one bad entry must not cost the others theirs: append them one by one
            log.exception("audit batch of %d entries failed; appending one by one", len(batch))
        for p in batch:
            try:
                _append(con, [p])
                self.appended += 1
                _settle(p, None)
            except Exception as exc:
                log.error("audit entry %s %s not appended: %s", p.action, p.target, exc)
                _settle(p, exc)


def _settle(p: Pending, exc: BaseException | None) -> None:
    if p.done is None or p.loop is None:
        return
    fut = p.done

    def settle() -> None:
        if fut.done():
            return
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)

    with contextlib.suppress(RuntimeError):  # a closed loop (shutdown): nobody waits any more
        p.loop.call_soon_threadsafe(settle)
