"""Screening in the service: the in-memory snapshots, shared by every request.

A :class:`~fundtrail.screening.snapshot.ChainView` (address index, labels, exposure) is loaded once per
(chain, asset) in a worker thread and kept while the store's ``generation`` does not move (a label
change moves it; the next screen of that chain loads a fresh snapshot, requests arriving meanwhile wait
for that one load). Addresses are then screened on the event loop itself: a screen is a few binary
searches and dictionary lookups (microseconds), cheaper than a hop to a thread. Transactions (their
counterparties are queried) and large batches go to a worker thread with its own cursor. Nothing here
waits on a trace.
"""

from __future__ import annotations

import asyncio
import gc
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import duckdb

from fundtrail.api.store import StoreAccess
from fundtrail.chains.registry import CHAINS
from fundtrail.screening.policy import Policy
from fundtrail.screening.screen import Screener, looks_like_txid
from fundtrail.screening.snapshot import ChainView, load_view

JSON = dict[str, Any]
T = TypeVar("T")
MAX_VIEWS = 8  # snapshots kept (chain, asset); the least recently used goes first


@dataclass
class _Entry:
    generation: int
    view: ChainView


class _Bound(Screener):
    """A screener whose snapshots are the service's shared ones."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, policy: Policy, asset: str | None, views: dict[str, ChainView]
    ) -> None:
        super().__init__(con, policy, asset=asset)
        self._shared = views

    def view(self, chain: str) -> ChainView:
        return self._shared[chain]


class ScreeningService:
    def __init__(self, store: StoreAccess, policy: Policy) -> None:
        self.store = store
        self.policy = policy
        self._views: OrderedDict[tuple[str, str | None], _Entry] = OrderedDict()
        self._loading: dict[tuple[str, str | None], asyncio.Future[_Entry]] = {}
        self._inline: dict[str | None, _Bound] = {}

    @staticmethod
    def _key(chain: str, asset: str | None) -> tuple[str, str | None]:
        return chain, None if asset is None else asset.strip().lower()

    async def view(self, chain: str, asset: str | None) -> ChainView:
        """The current snapshot of (chain, asset), loading it when missing or stale."""
        key = self._key(chain, asset)
        hit = self._views.get(key)
        gen = self.store.generation
        if hit is not None and hit.generation == gen:
            self._views.move_to_end(key)
            return hit.view
        task = self._loading.get(key)
        if task is None or task.done():
            # its own task: a request that goes away (a client hanging up) does not cancel the load
            task = self._loading[key] = asyncio.ensure_future(self._load(key, chain, asset, gen))
        return (await asyncio.shield(task)).view

    async def _load(self, key: tuple[str, str | None], chain: str, asset: str | None, gen: int) -> _Entry:
        try:
            view = await self.store.read(lambda cur: load_view(cur, chain, asset))
        finally:
            self._loading.pop(key, None)
        gc.freeze()  # the snapshot's millions of objects leave the collector's generations
        entry = _Entry(gen, view)
        self._views[key] = entry
        self._views.move_to_end(key)
        while len(self._views) > MAX_VIEWS:
            self._views.popitem(last=False)
        return entry

    def _screener(
        self, con: duckdb.DuckDBPyConnection, chain: str, asset: str | None, view: ChainView
    ) -> _Bound:
        return _Bound(con, self.policy, asset, {chain: view})

    def inline_ok(self, chain: str, items: list[str], limit: int) -> bool:
        """Whether these items can be screened on the event loop: few, and no transaction among them."""
        if len(items) > limit:
            return False
        return CHAINS.get(chain) is None or not any(looks_like_txid(t) for t in items)

    def screen_one_inline(self, chain: str, asset: str | None, view: ChainView, item: str) -> JSON:
        s = self._inline_screener(asset)
        s._shared = {chain: view}
        return s.screen(chain, item)

    def screen_many_inline(
        self, chain: str, asset: str | None, view: ChainView, items: list[str]
    ) -> list[JSON]:
        s = self._inline_screener(asset)
        s._shared = {chain: view}
        return list(s.screen_many(items, chain))

    def _inline_screener(self, asset: str | None) -> _Bound:
        key = self._key("", asset)[1]
        s = self._inline.get(key)
        if s is None:
            s = self._inline[key] = _Bound(self.store.con, self.policy, asset, {})
        return s

    async def in_thread(
        self, chain: str, asset: str | None, view: ChainView, work: Callable[[Screener], T]
    ) -> T:
        """Run ``work(screener)`` in a worker thread on that thread's cursor and the shared snapshot."""
        return await self.store.read(lambda cur: work(self._screener(cur, chain, asset, view)))
