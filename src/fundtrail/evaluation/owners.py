"""Who owns the end points of a trace, by the truth's ``addresses`` table (chain, address, actor_id):
what the entity-level tracing score (:mod:`fundtrail.evaluation.tracing`) needs, for a handful of
addresses out of a world's millions.

An :data:`Owners` lookup is given the end points as ``(chain, key, text)`` (the key of
:mod:`fundtrail.evaluation.keys`, the text as the trace showed it) and answers ``(chain, key) -> actor``
for those the truth names; addresses are compared by key, never by text alone. Two ways, same answers:

- :func:`owners_from_table` filters the Arrow table itself (one vectorised pass over the address column,
  lower-cased, against the end points' texts and canonical texts, lower-cased; the few rows it keeps are
  parsed and compared by key), so no dict of every address is built;
- :func:`owners_from_map` reuses the chain -> text -> actor dict that
  :func:`fundtrail.evaluation.inputs.owned_addresses` builds for clustering when it is in memory anyway,
  looking up the end point's text, its canonical text and their lower/upper-case forms (the texts one key
  can have: bech32 and hex are case-insensitive, base58 has one), each hit checked by key.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from contextlib import suppress

import pyarrow as pa
import pyarrow.compute as pc

from fundtrail.chains.registry import CHAINS
from fundtrail.errors import CorruptData, InvalidInput
from fundtrail.evaluation.keys import address_key

EndPoint = tuple[str, bytes, str]  # (chain, key, text as the trace shows it)
Owned = dict[tuple[str, bytes], int]  # (chain, key) -> actor
Owners = Callable[[Collection[EndPoint]], Owned]
_FIX = "re-run `fundtrail simulate`"


def _texts(chain: str, key: bytes, text: str) -> set[str]:
    """The end point's text and canonical text (on a chain fundtrail knows)."""
    out = {text.strip()}
    c = CHAINS.get(chain)
    if c is not None:
        with suppress(InvalidInput, ValueError):  # a key the codec cannot show: its text is all there is
            out.add(c.show(key))
    return out


def _truth_key(chain: str, text: str) -> bytes:
    try:
        return address_key(chain, text)
    except InvalidInput as exc:
        raise CorruptData(
            f"the truth's address {text!r} is not a {chain} address ({exc.problem})", _FIX
        ) from None


def _claim(out: Owned, chain: str, key: bytes, text: str, actor: int) -> None:
    prev = out.setdefault((chain, key), actor)
    if prev != actor:
        raise CorruptData(f"address {text} ({chain}) belongs to two actors, {prev} and {actor}", _FIX)


def owners_from_table(addresses: pa.Table) -> Owners:
    """A lookup over the truth's ``addresses`` table (columns chain, address, actor_id)."""

    def lookup(points: Collection[EndPoint]) -> Owned:
        wanted = {(c, k) for c, k, _ in points}
        chains = {c for c, _ in wanted}
        lowered = sorted({t.lower() for c, k, text in points for t in _texts(c, k, text)})
        out: Owned = {}
        if not lowered or addresses.num_rows == 0:
            return out
        mask = pc.is_in(pc.ascii_lower(addresses.column("address")), value_set=pa.array(lowered, pa.string()))
        hits = addresses.filter(mask).select(["chain", "address", "actor_id"]).to_pylist()
        for r in hits:
            chain, text, actor = r["chain"], r["address"], r["actor_id"]
            if chain is None or actor is None:
                raise CorruptData(
                    f"a row of the truth's addresses table has no chain or actor_id ({text})", _FIX
                )
            if chain not in chains:  # the same text on a chain no end point is on
                continue
            key = _truth_key(chain, text)
            if (chain, key) in wanted:
                _claim(out, chain, key, text, int(actor))
        return out

    return lookup


def owners_from_map(owned: Mapping[str, Mapping[str, int]]) -> Owners:
    """A lookup over :func:`fundtrail.evaluation.inputs.owned_addresses` (chain -> address text -> actor)."""

    def lookup(points: Collection[EndPoint]) -> Owned:
        out: Owned = {}
        for chain, key, text in points:
            texts = owned.get(chain)
            if not texts:
                continue
            for t in _texts(chain, key, text):
                for form in {t, t.lower(), t.upper(), t[:2] + t[2:].upper()}:
                    actor = texts.get(form)
                    if actor is not None and _truth_key(chain, form) == key:
                        _claim(out, chain, key, form, actor)
        return out

    return lookup
