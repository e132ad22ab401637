"""The service's access to the store: one process, one DuckDB database, one writer, concurrent readers.

DuckDB lets one process open a store file for writing. The service opens it once (migrating it forward)
and then:

* **reads** run in worker threads (anyio's pool), each thread on its own cursor (``con.cursor()``: a
  connection of its own to the same database, so reads run in parallel and each sees the last committed
  state);
* **writes** (labels, cases, keys, the audit log) go through one writer thread with its own cursor, in
  submission order: they never run at the same time, so they never conflict;
* **traces** (CPU-heavy: compiled walks that release the GIL, then building the answer) run in their own
  small pool (``trace_workers`` threads), so a burst of traces waits for a trace thread instead of taking
  every worker thread, and screening, answered from memory on the event loop, never waits for one. The
  trace threads run at a lower OS priority (``trace_nice``, Linux): when the cores are busy the event
  loop gets them first, so screening keeps its latency while traces take longer. DuckDB runs a query on
  one thread fewer than there are cores (``duckdb_threads``), leaving one to the event loop.

``generation`` counts the writes that change what screening reads (labels); the screening snapshots
reload when it moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import anyio.to_thread
import duckdb

from fundtrail.store.db import connect

T = TypeVar("T")
Cursor = duckdb.DuckDBPyConnection


def _lower_priority(nice: int) -> None:
    """Raise this thread's niceness (Linux: priorities are per thread) so the OS schedules the event loop
    first when the cores are busy; elsewhere, or when refused, the thread keeps its priority."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + nice)


class StoreAccess:
    def __init__(
        self, path: Path, trace_workers: int = 2, duckdb_threads: int | None = None, trace_nice: int = 0
    ) -> None:
        self.path = path
        self.con = connect(path)
        self.duckdb_threads = duckdb_threads or max(1, (os.cpu_count() or 2) - 1)
        self.con.execute(f"SET threads = {int(self.duckdb_threads)}")
        self._local = threading.local()
        self._cursors: list[Cursor] = []
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="fundtrail-writer")
        self._traces = ThreadPoolExecutor(
            trace_workers,
            thread_name_prefix="fundtrail-trace",
            initializer=_lower_priority,
            initargs=(trace_nice,),
        )
        self.generation = 0
        self.closed = False

    def cursor(self) -> Cursor:
        """This thread's cursor (created on first use, closed with the store)."""
        cur: Cursor | None = getattr(self._local, "cursor", None)
        if cur is None:
            with self._lock:
                cur = self.con.cursor()
                self._cursors.append(cur)
            self._local.cursor = cur
        return cur

    async def read(self, fn: Callable[[Cursor], T]) -> T:
        """Run ``fn(cursor)`` in a worker thread, concurrently with other reads."""
        return await anyio.to_thread.run_sync(lambda: fn(self.cursor()))

    async def write(self, fn: Callable[[Cursor], T], screening: bool = False) -> T:
        """Run ``fn(cursor)`` on the writer thread, after every write submitted before it. ``screening``:
        the write changes what screening reads (the snapshots reload)."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._writer, lambda: fn(self.cursor()))
        finally:
            if screening:
                self.generation += 1

    def submit_write(self, fn: Callable[[Cursor], None]) -> None:
        """Queue ``fn(cursor)`` on the writer thread without waiting for it."""
        self._writer.submit(lambda: fn(self.cursor()))

    async def trace(self, fn: Callable[[Cursor], T]) -> T:
        """Run ``fn(cursor)`` on a trace thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._traces, lambda: fn(self.cursor()))

    def close(self) -> None:
        """Finish queued writes, then close every cursor and the store."""
        if self.closed:
            return
        self.closed = True
        self._writer.shutdown(wait=True)
        self._traces.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for cur in self._cursors:
                with contextlib.suppress(duckdb.Error):
                    cur.close()
            self._cursors.clear()
        self.con.close()
