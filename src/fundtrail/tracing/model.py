"""The shared vocabulary of the tracing engine: what a trace is asked (request), where it must stop
(stops, per address id), and what a chain family's tracer returns (a raw flow over integer ids), before
:mod:`fundtrail.tracing.engine` turns it into addresses, labels and the JSON answer.

Amounts are exact Python ints (satoshi, wei, token base units). Conservation is the invariant every
tracer keeps and the engine checks: ``sum(totals.values()) == seed_amount + created`` where ``created``
is the clean value the poison policy pulls in (0 for every other policy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

POLICIES = ("haircut", "poison", "fifo", "lifo", "tiho")
DIRECTIONS = ("forward", "backward")

# Where tainted value ends up. Every unit of the seed ends in exactly one of these (per policy rules).
ENDPOINT_KINDS = (
    "service",  # reached an address attributed to a service (exchange, bridge, mixer, payment processor)
    "super_cluster",  # reached a cluster larger than the limit: not expanded
    "unspent",  # sits unspent at an intermediary address (UTXO: unspent output; account: balance left)
    "below_threshold",  # split below --min-amount: not followed further
    "beyond_limits",  # moved on after --hops or outside the time window: not followed further
    "fees",  # paid as transaction fees
    "origin",  # backward only: minted (coinbase, block reward) or the start of the stored history
)
TOTAL_KEYS = ("at_endpoints", "unspent", "fees", "below_threshold", "beyond_limits")
FEE_ADDRESS = -2  # pseudo address id of the fee sink in raw edges
NO_ADDRESS = -1  # an output without an address (OP_RETURN, bare multisig, non-standard)


@dataclass(frozen=True)
class Limits:
    """``hops``: transactions followed from the seed; ``min_amount``: a tainted amount below it is not
    followed (base units); ``until`` / ``since``: unix times bounding the events followed (forward stops
    at ``until``, backward at ``since``); ``max_cluster_size``: clusters larger than this are end points."""

    hops: int = 10
    min_amount: int = 0
    until: int | None = None
    since: int | None = None
    max_cluster_size: int = 10_000


@dataclass(frozen=True)
class Stops:
    """Per address id (index = address id, length = max id + 1): where a trace ends."""

    service: Bools  # the address (or its cluster) carries a service label
    super_cluster: Bools  # the address is in a cluster larger than the limit


@dataclass
class RawEndpoint:
    address_id: int  # NO_ADDRESS / FEE_ADDRESS for the pseudo ones
    kind: str  # one of ENDPOINT_KINDS
    tainted: int
    hops: int
    path: list[int]  # tx_ids from the seed to here (one representative path: the one carrying most taint)


@dataclass
class RawEdge:
    tx_id: int
    src: int  # address id (NO_ADDRESS when unknown)
    dst: int  # address id, NO_ADDRESS, or FEE_ADDRESS
    time: int  # unix seconds
    amount: int  # value moved by this edge
    tainted: int  # the part of it that is tainted
    hop: int


@dataclass
class RawFlow:
    """What a family tracer returns. ``totals`` has the keys of :data:`TOTAL_KEYS`; they add up to
    ``seed_amount + created``."""

    seed_amount: int
    edges: list[RawEdge] = field(default_factory=list)
    endpoints: list[RawEndpoint] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    created: int = 0  # poison only: clean value the policy marked as tainted
    notes: list[str] = field(default_factory=list)  # what the tracer assumed (e.g. unknown input values)

    def check(self) -> None:
        """The conservation invariant; a violation is a bug in a tracer, never a user error."""
        total = sum(self.totals.get(k, 0) for k in TOTAL_KEYS)
        if total != self.seed_amount + self.created:
            raise AssertionError(
                f"trace does not conserve value: parts {total} != seed {self.seed_amount} + created "
                f"{self.created} ({self.totals})"
            )
