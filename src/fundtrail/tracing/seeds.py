"""What a trace starts from, parsed strictly: a transaction output (``TXID:VOUT``, UTXO chains), a
transaction (a txid / tx hash), an address, or a cluster (``cluster:ID``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fundtrail.chains.registry import Chain
from fundtrail.errors import InvalidInput

_HEX64 = re.compile(r"(0x)?([0-9a-fA-F]{64})")
_OUTPUT = re.compile(r"([0-9a-fA-F]{64}):(\d{1,6})")
_CLUSTER = re.compile(r"cluster:(\d+)")


@dataclass(frozen=True)
class Seed:
    kind: str  # output | tx | address | cluster
    text: str
    txid: bytes | None = None
    vout: int | None = None
    key: bytes | None = None  # address key
    cluster_id: int | None = None


def parse_seed(text: str, c: Chain) -> Seed:
    s = text.strip()
    if m := _CLUSTER.fullmatch(s):
        return Seed("cluster", s, cluster_id=int(m.group(1)))
    if m := _OUTPUT.fullmatch(s):
        if c.family != "bitcoin":
            raise InvalidInput(
                f"seed {s!r} names a transaction output, which {c.name} does not have",
                "give a transaction hash, an address or cluster:ID",
            )
        return Seed("output", s, txid=bytes.fromhex(m.group(1)), vout=int(m.group(2)))
    if m := _HEX64.fullmatch(s):
        return Seed("tx", s, txid=bytes.fromhex(m.group(2)))
    try:
        key = c.parse(s)
    except InvalidInput:
        outputs = "TXID:VOUT, " if c.family == "bitcoin" else ""
        raise InvalidInput(
            f"seed {s!r} is not a transaction, an address or a cluster of {c.name}",
            f"give {outputs}a txid (64 hex digits), an address ({c.address_formats}) or cluster:ID",
        ) from None
    return Seed("address", s, key=key)
