"""Change-address heuristics: which output of a payment returns the rest to the payer, so its address can
join the cluster of the inputs. Each heuristic is switched on by name and returns :class:`Links`
(change output's address, the transaction's *first* input address, evidence ``tx_id``).

Eligible transactions (every heuristic): not a coinbase, not a CoinJoin (``coinjoin_codes != 0``), not a
PayJoin candidate when a PayJoin mask is given, every input resolved (address and value known), every
output with an address, at least two outputs. Rules marked "2 outputs" need exactly two.

- ``change_one_time``: the only output whose address appears here for the first time on the chain, every
  other output's address seen before, and that address never receives again in the stored chain
  (Meiklejohn's refinement: a change address is one-time) (Meiklejohn et al. 2013; Androulaki et al.
  2013, shadow addresses). The refinement reads later blocks: a run judges with the blocks stored then.
- ``change_round_number`` (2 outputs): exactly one output is a round amount (a multiple of
  ``ROUND_NUMBER_SAT``); the other is change (Möser & Narayanan 2022).
- ``change_optimal`` (2 outputs): the only output smaller than every input; an optimal wallet spends no
  input it does not need (Möser & Narayanan 2022, after Nick 2015).
- ``change_address_type`` (2 outputs): all inputs of one script type and exactly one output of that
  type (Möser & Narayanan 2022).
- ``change_address_reuse``: the one output paying back to an input address (self-change); then no other
  output is change (Möser & Narayanan 2022; Meiklejohn et al. 2013, condition 3).
- ``change_fingerprint`` (2 outputs, both spent): exactly one output is spent by a transaction with this
  transaction's fingerprint (version; locktime set or not) (Möser & Narayanan 2022).

Self-change guard: when any output pays an input address, no heuristic but ``change_address_reuse``
may name an output of that transaction (Meiklejohn's condition 3).

Combination: per transaction, the enabled heuristics that have an opinion must all name the same
output; if they disagree, no heuristic links in that transaction. Every agreeing heuristic records its
own link. A link whose two addresses are equal (self-change to the first input address) says nothing
and is dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from numba import njit

from fundtrail.clustering.links import Links
from fundtrail.errors import InvalidInput
from fundtrail.store.utxo_view import UtxoView

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]

HEURISTICS: Final[tuple[str, ...]] = (
    "change_one_time",
    "change_round_number",
    "change_optimal",
    "change_address_type",
    "change_address_reuse",
    "change_fingerprint",
)
CONFIG_NAMES: Final[tuple[str, ...]] = tuple(h.removeprefix("change_") for h in HEURISTICS)
"""The names ``[clustering] change = [...]`` takes."""

SOURCES: Final[dict[str, str]] = {
    "change_one_time": "Meiklejohn et al. 2013, A Fistful of Bitcoins; Androulaki et al. 2013",
    "change_round_number": "Möser & Narayanan 2022, Resurrecting Address Clustering in Bitcoin",
    "change_optimal": "Möser & Narayanan 2022 (optimal change, after Nick 2015)",
    "change_address_type": "Möser & Narayanan 2022",
    "change_address_reuse": "Möser & Narayanan 2022; Meiklejohn et al. 2013",
    "change_fingerprint": "Möser & Narayanan 2022 (wallet fingerprints: version, locktime)",
}

ROUND_NUMBER_SAT: Final = 100_000
"""An amount is round when it is a multiple of 0.001 BTC (at most three decimals in BTC)."""

_ONE_TIME, _ROUND, _OPTIMAL, _TYPE, _REUSE, _FINGERPRINT = range(6)


@njit(cache=True)
def _opinions(
    tx_id: Any,
    version: Any,
    locktime: Any,
    skip: Any,
    in_off: Any,
    in_addr: Any,
    in_value: Any,
    in_type: Any,
    out_off: Any,
    out_addr: Any,
    out_value: Any,
    out_type: Any,
    first_seen: Any,
    second_seen: Any,
    sp_version: Any,
    sp_locktime: Any,
) -> Any:
    n = tx_id.shape[0]
    op = np.full((n, 6), -1, np.int64)
    for i in range(n):
        if skip[i]:
            continue
        a, b = in_off[i], in_off[i + 1]
        c, d = out_off[i], out_off[i + 1]
        if b - a < 1 or d - c < 2:
            continue
        ok = True
        min_in = np.int64(-1)
        for k in range(a, b):
            if in_addr[k] < 0 or in_value[k] < 0:
                ok = False
            elif min_in < 0 or in_value[k] < min_in:
                min_in = in_value[k]
        for k in range(c, d):
            if out_addr[k] < 0:
                ok = False
        if not ok:
            continue
        # self-change: outputs paying an input address
        self_n = 0
        self_o = -1
        for k in range(c, d):
            for j in range(a, b):
                if out_addr[k] == in_addr[j]:
                    self_n += 1
                    self_o = k
                    break
        if self_n > 0:
            if self_n == 1:
                op[i, _REUSE] = self_o
            continue
        # one-time change (any number of outputs)
        fresh_n = 0
        fresh_o = -1
        seen_n = 0
        for k in range(c, d):
            if first_seen[k] == tx_id[i]:
                dup = False
                for q in range(c, d):
                    if q != k and out_addr[q] == out_addr[k]:
                        dup = True
                if not dup:
                    fresh_n += 1
                    fresh_o = k
            elif 0 <= first_seen[k] < tx_id[i]:
                seen_n += 1
        # Meiklejohn's refinement: the change address is one-time, it never receives again
        if fresh_n == 1 and seen_n == d - c - 1 and second_seen[fresh_o] < 0:
            op[i, _ONE_TIME] = fresh_o
        if d - c != 2:
            continue
        o0, o1 = c, c + 1
        # round number: the non-round output is change
        r0 = out_value[o0] % ROUND_NUMBER_SAT == 0
        r1 = out_value[o1] % ROUND_NUMBER_SAT == 0
        if r0 and not r1:
            op[i, _ROUND] = o1
        elif r1 and not r0:
            op[i, _ROUND] = o0
        # optimal change: the only output smaller than every input
        s0 = out_value[o0] < min_in
        s1 = out_value[o1] < min_in
        if s0 and not s1:
            op[i, _OPTIMAL] = o0
        elif s1 and not s0:
            op[i, _OPTIMAL] = o1
        # address type: inputs of one type, exactly one output of it
        t = in_type[a]
        same = t >= 0
        for k in range(a, b):
            if in_type[k] != t:
                same = False
        if same:
            m0 = out_type[o0] == t
            m1 = out_type[o1] == t
            if m0 and not m1:
                op[i, _TYPE] = o0
            elif m1 and not m0:
                op[i, _TYPE] = o1
        # fingerprint of the spending transactions
        if sp_version[o0] >= 0 and sp_version[o1] >= 0:
            v, lt = version[i], locktime[i] > 0
            f0 = sp_version[o0] == v and (sp_locktime[o0] > 0) == lt
            f1 = sp_version[o1] == v and (sp_locktime[o1] > 0) == lt
            if f0 and not f1:
                op[i, _FINGERPRINT] = o0
            elif f1 and not f0:
                op[i, _FINGERPRINT] = o1
    return op


def parse_enabled(names: Iterable[str]) -> set[str]:
    """Heuristic names as configured (``one_time`` or ``change_one_time``) -> full names; an unknown
    name raises InvalidInput."""
    out = set()
    for name in names:
        full = name if name.startswith("change_") else f"change_{name}"
        if full not in HEURISTICS:
            raise InvalidInput(
                f"unknown change heuristic {name!r}", f"choose from: {', '.join(CONFIG_NAMES)}"
            )
        out.add(full)
    return out


def _skip(view: UtxoView, coinjoin_codes: Any, payjoin: B | None) -> B:
    skip: B = np.asarray(view.is_coinbase, np.bool_) | (np.asarray(coinjoin_codes) != 0)
    if payjoin is not None:
        skip = skip | np.asarray(payjoin, np.bool_)
    return skip


def change_opinions(view: UtxoView, coinjoin_codes: Any, payjoin: B | None = None) -> I64:
    """Per transaction and heuristic (columns in the order of ``HEURISTICS``): the output (index into
    the view's outputs) the heuristic names as change, or -1 (no opinion, or ineligible)."""
    v = view
    op: I64 = _opinions(
        v.tx_id, v.version, v.locktime, _skip(v, coinjoin_codes, payjoin), v.in_off, v.in_addr,
        v.in_value, v.in_type, v.out_off, v.out_addr, v.out_value, v.out_type, v.first_seen_out,
        v.second_seen_out, v.spender_version, v.spender_locktime,
    )  # fmt: skip
    return op


def _combine(op: I64, enabled: set[str]) -> tuple[I64, npt.NDArray[np.bool_]]:
    """(chosen output per tx or -1, columns enabled)."""
    cols = np.array([h in enabled for h in HEURISTICS], np.bool_)
    sub = np.where(cols[None, :], op, -1)
    has = sub >= 0
    any_ = has.any(axis=1)
    hi = sub.max(axis=1)
    lo = np.where(has, sub, np.iinfo(np.int64).max).min(axis=1)
    chosen = np.where(any_ & (hi == lo), hi, -1).astype(np.int64)
    return chosen, cols


def change_outputs(
    view: UtxoView, enabled: Iterable[str], coinjoin_codes: Any, payjoin: B | None = None
) -> I64:
    """The output each transaction's enabled heuristics agree is change (index into the view's
    outputs), or -1."""
    chosen, _ = _combine(change_opinions(view, coinjoin_codes, payjoin), parse_enabled(enabled))
    return chosen


def change_links(
    view: UtxoView, enabled: Iterable[str], coinjoin_codes: Any, payjoin: B | None = None
) -> list[Links]:
    """One :class:`Links` per enabled heuristic (in the order of ``HEURISTICS``): the change output's
    address linked to the first input address, for every transaction where the enabled heuristics
    agree and this one named the output. ``payjoin`` (a mask, e.g. :func:`payjoin_candidates`)
    excludes transactions from every heuristic."""
    names = parse_enabled(enabled)
    op = change_opinions(view, coinjoin_codes, payjoin)
    chosen, _ = _combine(op, names)
    first_in = np.full(len(view), -1, np.int64)
    has_in = view.in_off[1:] > view.in_off[:-1]
    first_in[has_in] = view.in_addr[view.in_off[:-1][has_in]]
    out: list[Links] = []
    for col, name in enumerate(HEURISTICS):
        if name not in names:
            continue
        rows = np.flatnonzero((chosen >= 0) & (op[:, col] == chosen))
        a = view.out_addr[chosen[rows]]
        b = first_in[rows]
        keep = a != b
        out.append(Links(name, a[keep].astype(np.int64), b[keep].astype(np.int64), view.tx_id[rows][keep]))
    return out


# --- PayJoin (BIP78) awareness -----------------------------------------------------------------------

PAYJOIN_FIRST_HEIGHT: Final = 500_000
"""No PayJoin candidate below this block height (block 500,000 was mined on 2017-12-18). Every
PayJoin protocol came later: Samourai's first Stowaway/Cahoots notes (April 2018), the Pay-to-EndPoint
workshop write-ups (Ficsor, Jul 31 2018; Blockstream/Haywood, Aug 8 2018), Bustapay (bitcoin-dev,
Aug 30 2018; BIP79, Oct 2018), the first real PayJoins (block 557792, Jan 2019; Samourai's Cahoots
release, Mar 2019) and BIP78 (2020). The gate sits some four months before the earliest of them, so
it only removes look-alikes from years when nobody built PayJoins (see docs/heuristics/payjoin.md)."""

PAYJOIN_FIRST_TIME: Final = 1_513_555_200
"""2017-12-18T00:00:00Z, the day of block 500,000: the gate for a transaction whose block has a time
but no known height."""


def _before(view: UtxoView, first_height: int, first_time: int) -> B:
    """Transactions mined before the gate (height below ``first_height``, or with the height unknown,
    time below ``first_time``); unknown height and time (loose) is never before it."""
    h, t = np.asarray(view.height), np.asarray(view.time)
    before: B = np.where(h >= 0, h < first_height, (t >= 0) & (t < first_time))
    return before


@njit(cache=True)
def _payjoin(skip: Any, in_off: Any, in_addr: Any, in_value: Any, in_type: Any, out_off: Any,
             out_addr: Any, out_value: Any) -> Any:  # fmt: skip
    n = skip.shape[0]
    flags = np.zeros(n, np.bool_)
    for i in range(n):
        if skip[i]:
            continue
        a, b = in_off[i], in_off[i + 1]
        c, d = out_off[i], out_off[i + 1]
        if b - a < 2 or d - c != 2:
            continue
        ok = out_addr[c] >= 0 and out_addr[c + 1] >= 0
        total = np.int64(0)
        min_in = np.int64(-1)
        for k in range(a, b):
            if in_addr[k] < 0 or in_value[k] < 0 or in_type[k] != in_type[a]:
                ok = False
            if in_addr[k] == out_addr[c] or in_addr[k] == out_addr[c + 1]:
                ok = False  # internal address reuse: not a PayJoin (Ghesmati et al.)
            total += in_value[k]
            if min_in < 0 or in_value[k] < min_in:
                min_in = in_value[k]
        if not ok:
            continue
        min_out = min(out_value[c], out_value[c + 1])
        max_out = max(out_value[c], out_value[c + 1])
        uih1 = min_out < min_in  # one output smaller than every input: an ordinary optimal-change payment
        uih2 = total - min_in >= max_out  # the largest output is payable without the smallest input
        flags[i] = uih2 and not uih1
    return flags


def payjoin_candidates(
    view: UtxoView,
    coinjoin_codes: Any = None,
    first_height: int = PAYJOIN_FIRST_HEIGHT,
    first_time: int = PAYJOIN_FIRST_TIME,
) -> B:
    """PayJoin (BIP78) candidates by the unnecessary-input heuristics of Ghesmati, Kern, Judmayer,
    Stifter and Weippl ("Unnecessary Input Heuristics & PayJoin Transactions", 2021/2022): at least two
    inputs, exactly two outputs, every input resolved and of one script type (BIP78 asks the receiver
    to contribute an input of the sender's type), no output paying an input address, UIH2 (the largest
    output could have been paid without the smallest input) and not UIH1 (no output smaller than every
    input, i.e. no optimal-change reading). A candidate's inputs may belong to two owners: it must be
    left out of multi-input clustering and no change heuristic may link in it.

    Date gate: a transaction mined before PayJoin existed is never a candidate: block height below
    ``first_height`` or, where the height is unknown, block time below ``first_time`` (defaults
    :data:`PAYJOIN_FIRST_HEIGHT`, :data:`PAYJOIN_FIRST_TIME`; pass 0 and 0 to switch the gate off). A
    transaction with neither (loose, not yet in a block) is recent and passes the gate."""
    skip = np.asarray(view.is_coinbase, np.bool_) | _before(view, first_height, first_time)
    if coinjoin_codes is not None:
        skip = skip | (np.asarray(coinjoin_codes) != 0)
    flags: B = np.asarray(_payjoin(
        skip, view.in_off, view.in_addr, view.in_value, view.in_type, view.out_off, view.out_addr,
        view.out_value,
    ), np.bool_)  # fmt: skip
    return flags
