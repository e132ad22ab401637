"""Progress reporting for ingest jobs: the library reports events, the CLI draws them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Progress:
    done: int  # units done (bytes for files, blocks for RPC)
    total: int | None  # None: open-ended (following a node)
    blocks: int
    txs: int
    note: str = ""


ProgressFn = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    return None
