"""The service's settings, each with its default (``fundtrail serve`` options override some)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fundtrail.errors import InvalidInput


@dataclass(frozen=True)
class ServiceSettings:
    """How the service runs.

    ``max_body_bytes``: bodies above this are refused with 413 before they are read whole (package
    uploads have their own ``max_upload_bytes``). ``max_batch``: items per screening request.
    ``page_default`` / ``page_max``: pagination limits. ``rate_limit_per_s``: requests per second per key
    when the key carries no limit of its own (the burst is one second's worth). ``auth_cache_s``: how long
    a verified key is remembered (revoking a key through this service forgets it at once).
    ``trace_workers``: traces run at the same time (each in its own thread; more wait their turn).
    ``policy``: the risk policy YAML for screening (None: the shipped policy). ``max_hops``: the largest
    ``hops`` a trace request may ask for. ``inline_screen``: batches up to this many addresses are
    screened on the event loop (microseconds each); larger ones and transactions go to a thread.
    ``duckdb_threads``: DuckDB's threads per query (None: one fewer than the cores, at least one:
    a core is left to the event loop). ``trace_nice``: how much lower
    the trace threads' OS priority is (0: the same; Linux only): busy cores serve screening first."""

    max_body_bytes: int = 1 << 20
    max_upload_bytes: int = 64 << 20
    max_batch: int = 10_000
    page_default: int = 100
    page_max: int = 1_000
    rate_limit_per_s: float = 100.0
    auth_cache_s: float = 30.0
    trace_workers: int = 2
    policy: Path | None = None
    max_hops: int = 100
    inline_screen: int = 64
    duckdb_threads: int | None = None
    trace_nice: int = 10
    title: str = "fundtrail"

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_upload_bytes", "max_batch", "page_default", "page_max"):
            if getattr(self, name) < 1:
                raise InvalidInput(f"{name} {getattr(self, name)} is below 1", f"give {name} >= 1")
        if self.trace_workers < 1:
            raise InvalidInput(f"trace_workers {self.trace_workers} is below 1", "give 1 or more")
        if self.rate_limit_per_s <= 0:
            raise InvalidInput(f"rate_limit_per_s {self.rate_limit_per_s} is not positive", "give > 0")
        if self.page_default > self.page_max:
            raise InvalidInput("page_default is above page_max", "lower page_default or raise page_max")
