"""Per-key rate limits: one token bucket per API key id, in this process.

A key limited to ``r`` requests per second has a bucket of ``max(r, 1)`` tokens, refilled at ``r`` per
second; a request takes one token; an empty bucket answers 429 with ``Retry-After``: the whole seconds
until a token is back (at least 1). Buckets live in memory: a restart refills them, which errs on the
side of serving.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fundtrail.api.errors import ApiError


@dataclass
class _Bucket:
    tokens: float
    stamp: float
    rate: float


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def take(self, key_id: str, rate: float) -> float:
        """Take one token of ``key_id``'s bucket: 0.0 when allowed, else the seconds until one is back."""
        now = self._clock()
        burst = max(rate, 1.0)
        with self._lock:
            b = self._buckets.get(key_id)
            if b is None or b.rate != rate:
                b = self._buckets[key_id] = _Bucket(burst, now, rate)
            else:
                b.tokens = min(burst, b.tokens + (now - b.stamp) * rate)
                b.stamp = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / rate

    def check(self, key_id: str, rate: float) -> None:
        """Raise the 429 when ``key_id`` is over its limit."""
        wait = self.take(key_id, rate)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                "rate_limited",
                f"this key is limited to {rate:g} requests per second",
                f"retry after {seconds} s, or ask an admin for a higher limit",
                None,
                {"Retry-After": str(seconds)},
            )

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._buckets.pop(key_id, None)
