"""Following a node: the part every node-following ingest job (Bitcoin Core RPC, EVM RPC, TRON HTTP) shares.

A job subclasses :class:`Follower` and supplies the chain-specific parts: the node's tip
(:meth:`Follower.ask_tip`), the node's block hashes at some heights (:meth:`Follower.ask_hashes`), how one
batch of heights is fetched, checked and written (:meth:`Follower.store_batch`) and how stored blocks
above a height are removed (:meth:`Follower.remove_above`). The follower runs the rest:

- Resume: without ``start``, the run starts after the highest stored height whose hash the node agrees
  with. A run stopped by an error or Ctrl-C loses only its uncommitted batch; a re-run resumes.
- Reorgs: before batches the stored tip's hash is compared with the node's hash at that height. If they
  differ, the follower walks back through the stored heights (``WALKBACK_WINDOW`` at a time, doubling)
  to the fork point, removes every stored block above it (one transaction) and goes on from there.
  A batch that finds the node's chain changed under it raises :class:`ChainChanged`: the follower looks
  at the node again, reconciles and starts the batch again (``max_restarts`` times in a row at most).
- Follow: after reaching the node's tip, poll every ``poll_seconds`` for new blocks until interrupted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import duckdb

from fundtrail.errors import FundtrailError, InvalidInput
from fundtrail.ingest.http_client import HttpStats
from fundtrail.ingest.progress import Progress, ProgressFn
from fundtrail.store import chain_state
from fundtrail.store.db import transaction

WALKBACK_WINDOW = 16  # stored heights compared per look while searching a fork point (doubles each time)


@dataclass(kw_only=True)
class FollowSummary:
    """What every node-following run reports (jobs add their own fields)."""

    blocks: int = 0  # blocks stored by this run
    skipped: int = 0  # blocks already stored (same hash)
    txs: int = 0
    start_height: int | None = None  # first height this run looked at
    stored_tip: int | None = None  # highest height stored (and agreed with the node) at the end
    node_tip: int | None = None
    fetched: int = 0  # blocks downloaded
    rolled_back: int = 0  # blocks removed by reorgs
    reorgs: int = 0
    requests: int = 0  # HTTP requests answered
    retries: int = 0  # requests repeated after a transient failure


S = TypeVar("S", bound=FollowSummary)


class ChainChanged(Exception):
    """The node's chain changed under a batch (or the node is inconsistent): reconcile and retry."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


def check_options(
    start: int | None,
    stop: int | None,
    batch_size: int,
    poll_seconds: float,
    batch_example: int,
    poll_example: float,
    unit: str = "height",
) -> None:
    """--from/--to/--batch-size/--poll-seconds, checked before anything is asked (the error names the
    option; the examples are the job's defaults)."""
    if start is not None and start < 0:
        raise InvalidInput(f"--from {start} is negative", f"give a {unit} of 0 or more")
    if stop is not None and (stop < 0 or (start is not None and stop < start)):
        raise InvalidInput(f"--to {stop} is below --from {start or 0}", "give --to >= --from")
    if batch_size < 1:
        raise InvalidInput(
            f"--batch-size {batch_size} is below 1", f"give a number of blocks, e.g. {batch_example}"
        )
    if poll_seconds <= 0:
        raise InvalidInput(
            f"--poll-seconds {poll_seconds} is not positive", f"give seconds, e.g. {poll_example:g}"
        )


class Follower(Generic[S]):
    """One run over a node: resume, batches, reorgs, --follow polling and progress."""

    max_restarts: int | None = None  # ChainChanged this often in a row is an error (None: no limit)
    reorg_resets_restarts = False  # a rolled-back reorg explains the restarts before it
    walkback_max: int | None = None  # cap on the walk-back window

    def __init__(self, con: duckdb.DuckDBPyConnection, chain: str, where: str, summary: S, batch_size: int,
                 progress: ProgressFn) -> None:  # fmt: skip
        self.con = con
        self.chain = chain
        self.where = where  # the node, as shown in messages
        self.summary = summary
        self.batch_size = batch_size
        self.progress = progress
        self._rolled = False  # a reorg was rolled back since the run loop last looked

    # -- what a job supplies ---------------------------------------------------------------------------

    def ask_tip(self) -> int:
        """The node's tip height."""
        raise NotImplementedError

    def ask_hashes(self, heights: Sequence[int]) -> Sequence[bytes | None]:
        """The node's block hashes at ``heights`` (None: it has no block there)."""
        raise NotImplementedError

    def store_batch(self, lo: int, hi: int, node_tip: int) -> None:
        """Fetch, check and write heights lo..hi; raise :class:`ChainChanged` when the node's chain
        changed under the batch."""
        raise NotImplementedError

    def remove_above(self, fork: int) -> int:
        """Delete the stored blocks above ``fork`` (inside a transaction); the number removed."""
        raise NotImplementedError

    def restarts_exhausted(self, lo: int, hi: int, why: str) -> FundtrailError:
        """The error once a batch was started again ``max_restarts`` times in a row."""
        raise NotImplementedError

    # -- the run ---------------------------------------------------------------------------------------

    def run(self, start: int | None, stop: int | None, follow: bool, poll_seconds: float,
            sleep: Callable[[float], None], stats: HttpStats) -> S:  # fmt: skip
        """Ingest from ``start`` (None: resume) to ``stop`` (None: the node's tip), then with ``follow``
        keep polling; the summary counts the client's requests and retries even when the run fails."""
        try:
            self._loop(start, stop, follow, poll_seconds, sleep)
        finally:
            self.summary.requests = stats.requests
            self.summary.retries = stats.retries
        return self.summary

    def _loop(self, start: int | None, stop: int | None, follow: bool, poll_seconds: float,
              sleep: Callable[[float], None]) -> None:  # fmt: skip
        nxt = start
        restarts = 0
        while True:
            node_tip = self.node_tip()
            agreed = self.reconcile(node_tip)
            if self._rolled and self.reorg_resets_restarts:
                restarts = 0
            if nxt is None:
                nxt = agreed + 1
            elif self._rolled:
                nxt = min(nxt, agreed + 1)  # re-ingest what the reorg removed
            self._rolled = False
            if self.summary.start_height is None:
                self.summary.start_height = nxt
            target = node_tip if stop is None else min(stop, node_tip)
            while nxt <= target:
                end = min(nxt + self.batch_size - 1, target)
                try:
                    self.store_batch(nxt, end, node_tip)
                except ChainChanged as exc:
                    restarts += 1
                    if self.max_restarts is not None and restarts > self.max_restarts:
                        raise self.restarts_exhausted(nxt, end, exc.why) from None
                    break  # look at the node again: a reorg is rolled back there
                restarts = 0
                nxt = end + 1
                self.report(end, target)
            else:
                self.summary.stored_tip = self.stored_tip()
                if not follow or (stop is not None and nxt > stop):
                    return
                self.report(nxt - 1, target, "waiting for new blocks")
                sleep(poll_seconds)

    def node_tip(self) -> int:
        tip = self.ask_tip()
        self.summary.node_tip = tip
        return tip

    # -- store -----------------------------------------------------------------------------------------

    def stored_tip(self) -> int | None:
        return chain_state.stored_tip(self.con, self.chain)

    def stored(self, lo: int, hi: int) -> dict[int, set[bytes]]:
        return chain_state.stored_hashes(self.con, self.chain, lo, hi)

    # -- reorgs ----------------------------------------------------------------------------------------

    def reconcile(self, node_tip: int) -> int:
        """The highest stored height the node agrees with (-1: none); rolls back what lies above it
        when the stored tip is not on the node's chain."""
        tip = self.stored_tip()
        if tip is None:
            return -1
        check = min(tip, node_tip)
        stored = self.stored(check, check).get(check)
        if stored is not None and self.ask_hashes([check])[0] in stored:
            return check if tip <= node_tip else node_tip  # a node behind the store: nothing to undo
        fork = self.fork_point(check)
        self.rollback(fork)
        return fork

    def fork_point(self, below: int) -> int:
        """The highest stored height <= ``below`` whose stored hash is the node's (-1: none)."""
        window, hi = WALKBACK_WINDOW, below
        while hi >= 0:
            stored = chain_state.top_stored_hashes(self.con, self.chain, hi, window)
            if not stored:
                return -1
            heights = sorted(stored, reverse=True)
            for height, node_hash in zip(heights, self.ask_hashes(heights)):
                if node_hash in stored[height]:
                    return height
            hi, window = heights[-1] - 1, window * 2
            if self.walkback_max is not None:
                window = min(window, self.walkback_max)
        return -1

    def rollback(self, fork: int) -> None:
        with transaction(self.con):
            n = self.remove_above(fork)
        self.summary.rolled_back += n
        self.summary.reorgs += 1
        self._rolled = True
        self.report(fork, self.summary.node_tip, f"reorg: rolled back {n} blocks above height {fork}")

    # -- progress --------------------------------------------------------------------------------------

    def report(self, height: int, target: int | None, note: str = "") -> None:
        s = self.summary
        self.progress(Progress(max(height, 0), target, s.blocks + s.skipped, s.txs, note))

    def batch_not_stored(self, lo: int, hi: int) -> str:
        """The fix's tail for an error that stops a batch: what is and is not stored."""
        return f"nothing of heights {lo}..{hi} was stored" + (
            f"; {self.summary.blocks} blocks of earlier batches are, a re-run resumes after them"
            if self.summary.blocks else ""
        )  # fmt: skip
