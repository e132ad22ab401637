"""The ground truth as the evaluation reads it: :func:`fundtrail.simulate.truth.read_truth` plus the
checks scoring relies on (amounts are exact ints and present, every address names a known actor, no
address belongs to two actors), each failure a one-line :class:`~fundtrail.errors.CorruptData`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from fundtrail.errors import CorruptData
from fundtrail.simulate.truth import Truth, read_truth

Row = Mapping[str, Any]
_FIX = "re-run `fundtrail simulate`"


def load_truth(path: Path) -> Truth:
    """``read_truth`` with a malformed ``manifest.json`` reported as corrupt data, not a traceback."""
    try:
        return read_truth(path)
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        raise CorruptData(f"the truth's manifest.json in {path} is not valid JSON ({exc})", _FIX) from None


def amount(row: Row, table: str) -> int:
    """A truth amount (decimal128(38, 0)) as an exact int; a missing one is corrupt truth."""
    v = row.get("amount")
    if v is None:
        raise CorruptData(f"a row of the truth's {table} table has no amount ({_where(row)})", _FIX)
    if isinstance(v, Decimal):
        if v != v.to_integral_value():
            raise CorruptData(f"a {table} amount {v} is not a whole number of base units", _FIX)
        return int(v)
    return int(v)


def required(row: Row, table: str, *columns: str) -> None:
    for c in columns:
        if row.get(c) is None:
            raise CorruptData(f"a row of the truth's {table} table has no {c} ({_where(row)})", _FIX)


def _where(row: Row) -> str:
    keys = ("operation_id", "leg", "chain", "address", "seed", "actor_id")
    return ", ".join(f"{k} {row[k]}" for k in keys if row.get(k) is not None) or "no key columns"


@dataclass(frozen=True)
class Actor:
    actor_id: int
    name: str | None
    kind: str
    role: str | None
    illicit: bool | None


def actors(truth: Truth) -> dict[int, Actor]:
    out: dict[int, Actor] = {}
    for r in truth.rows("actors"):
        required(r, "actors", "actor_id", "kind")
        aid = int(r["actor_id"])
        if aid in out:
            raise CorruptData(f"actor {aid} appears twice in the truth's actors table", _FIX)
        out[aid] = Actor(aid, r["name"], str(r["kind"]), r["role"], r["illicit"])
    return out


def owned_addresses(truth: Truth, known: dict[int, Actor]) -> dict[str, dict[str, int]]:
    """Per chain, address text -> its actor (a repeated row is one address; two owners are corrupt)."""
    out: dict[str, dict[str, int]] = {}
    for r in truth.rows("addresses"):
        required(r, "addresses", "chain", "address", "actor_id")
        chain, addr, actor = str(r["chain"]), str(r["address"]), int(r["actor_id"])
        if actor not in known:
            raise CorruptData(f"address {addr} ({chain}) belongs to actor {actor}, not in the actors", _FIX)
        owners = out.setdefault(chain, {})
        prev = owners.setdefault(addr, actor)
        if prev != actor:
            raise CorruptData(f"address {addr} ({chain}) belongs to two actors, {prev} and {actor}", _FIX)
    return out
