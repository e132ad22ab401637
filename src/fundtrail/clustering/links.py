"""What every clustering heuristic produces: candidate links between two addresses, each with the
transaction that is its evidence. The cluster engine (:mod:`fundtrail.clustering.engine`) applies them
with a union-find; the heuristics never touch the cluster tables themselves.

Arrays, not objects: a heuristic over millions of transactions returns three int64 arrays of equal
length (address id ``a``, address id ``b``, ``tx_id`` of the evidence) and its name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Links:
    """Candidate merges found by one heuristic: ``a[i]`` and ``b[i]`` belong to one entity, because of
    transaction ``tx_id[i]``."""

    heuristic: str
    a: I64
    b: I64
    tx_id: I64

    def __post_init__(self) -> None:
        if not (len(self.a) == len(self.b) == len(self.tx_id)):
            raise ValueError("Links arrays must have equal lengths")

    def __len__(self) -> int:
        return len(self.a)

    @staticmethod
    def empty(heuristic: str) -> Links:
        z = np.zeros(0, dtype=np.int64)
        return Links(heuristic, z, z.copy(), z.copy())
