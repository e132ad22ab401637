"""CoinJoin detection: which transactions join the coins of several owners, by family.

A CoinJoin breaks the common-input-ownership assumption, so its inputs must not be merged into one
cluster and no change heuristic applies to it. Each family is a named detector with its source; one
compiled pass (Numba) over the CSR arrays of a :class:`~fundtrail.store.utxo_view.UtxoView` gives an
``int8`` code per transaction, ``FAMILIES[code]`` its name (0: none). The first family that matches, in
the order of ``FAMILIES``, wins. Thresholds are named constants below; docs/heuristics/coinjoin.md
explains each rule, its parameters and its known false positives.

- ``wasabi1`` — Wasabi 1.x (ZeroLink), after the Dumplings scanner (nopara73/Dumplings, and the
  crocs-muni fork used by Svenda et al., PETS 2025): at least 10 equal outputs of about 0.1 BTC
  (±0.02 BTC), at least as many inputs, at least two outputs of a unique value (change, coordinator
  fee), native SegWit (P2WPKH) inputs and outputs only.
- ``wasabi2`` — Wasabi 2.x (WabiSabi), after crocs-muni/Dumplings: at least 20 inputs, all P2WPKH or
  P2TR, inputs and outputs ordered by value, descending (the coordinator's order), and more than 80 %
  of the outputs of a WabiSabi standard denomination (WalletWasabi ``DenominationBuilder``: 2^n, 3^n,
  2·3^n, 10^n, 2·10^n, 5·10^n satoshi, from 5,000 sat to 1,343.75 BTC).
- ``whirlpool`` — Samourai Whirlpool mix, after the Samourai CoinJoin Detection Heuristic (SCDH) of
  Stockinger, Haslhofer, Moreno-Sanchez and Maffei ("Pinpointing and Measuring Wasabi and Samourai
  CoinJoins in the Bitcoin Ecosystem", 2023) as refined in crocs-muni/Dumplings: 5 to 10 inputs, as
  many outputs, all equal to one pool denomination (0.001, 0.01, 0.05, 0.5 BTC), P2WPKH only; where
  input values are known, at least one input equals the pool (a remix) and the others lie just above it
  (fresh premix outputs: pool + at most 0.0011 BTC of mining-fee allowance). The Tx0 that feeds a pool
  is a single owner's transaction, not a CoinJoin: :func:`whirlpool_tx0` flags it separately.
- ``joinmarket`` — JoinMarket, after the "other CoinJoin" rule of Dumplings (and Möser & Narayanan
  2022 on its shape): exactly one repeated output value, k >= 3 times (taker and at least two makers),
  n_out in {2k-1, 2k} (one change per participant, the taker may sweep), at least k distinct output and
  input addresses, and, where input values are known, no input larger than the equal value plus the
  largest other output minus 0.0001 BTC.
- ``generic`` — the BlockSci rule (Kalodner et al., "BlockSci", USENIX Security 2020,
  heuristics/tx_identification.cpp ``isCoinjoin``) that GraphSense ports as ``is_coinjoin``: >= 2 inputs,
  >= 3 outputs, participants p = (n_out + 1) // 2, p <= n_in and p <= distinct input addresses, and the
  most frequent output value (the lowest one on a tie) occurs exactly p times; that value must not be
  dust (<= 546 sat, the standard dust limit), nor 2,730 sat (BlockSci's second excluded value) nor
  5,430 sat (Counterparty's dust output). Known false positives (kept for GraphSense compatibility):
  Omni Layer and Open Assets transfers, whose marker/reference outputs repeat one small value.

An input whose address is unknown (not resolved) counts as a distinct address: it cannot be shown to be
another input's, and calling a transaction a CoinJoin only withholds links.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import numpy.typing as npt
from numba import njit

from fundtrail.chains.bitcoin import script as st

FAMILIES: Final[tuple[str, ...]] = ("none", "wasabi1", "wasabi2", "whirlpool", "joinmarket", "generic")
NONE, WASABI1, WASABI2, WHIRLPOOL, JOINMARKET, GENERIC = range(6)

SOURCES: Final[dict[str, str]] = {
    "wasabi1": "Dumplings (nopara73/Dumplings, crocs-muni/Dumplings); Svenda et al., PETS 2025",
    "wasabi2": "crocs-muni/Dumplings; WalletWasabi DenominationBuilder (standard denominations)",
    "whirlpool": "Stockinger et al. 2023 (SCDH); crocs-muni/Dumplings",
    "joinmarket": "Dumplings 'other CoinJoin' rule; Möser & Narayanan 2022",
    "generic": "BlockSci isCoinjoin (Kalodner et al. 2020), as GraphSense is_coinjoin",
}

DUST_LIMIT_SAT: Final = 546
"""Outputs at or below this value are dust (Bitcoin Core's limit for P2PKH): never a mixing value."""
BLOCKSCI_DUST_SAT: Final = 2730
"""The second dust value BlockSci's ``isCoinjoin`` excludes."""
COUNTERPARTY_DUST_SAT: Final = 5430
"""Counterparty's regular dust output (its transfers pay 5,430 sat outputs beside a bare-multisig data
output): excluded like BlockSci's 2,730 (seen in the mainnet fixture, block 383616, tx 6769c16d…)."""

WASABI1_DENOMINATION_SAT: Final = 10_000_000  # ~0.1 BTC base denomination
WASABI1_TOLERANCE_SAT: Final = 2_000_000  # ±0.02 BTC (the coordinator adjusted it)
WASABI1_MIN_EQUAL: Final = 10
WASABI1_MIN_UNIQUE_OUTPUTS: Final = 2  # change + coordinator fee

WASABI2_MIN_INPUTS: Final = 20  # coordinators started at 50 and later lowered their minimum
WASABI2_MIN_DENOM_SAT: Final = 5_000
WASABI2_MAX_DENOM_SAT: Final = 134_375_000_000
WASABI2_DENOM_SHARE: Final = 0.8  # more than this share of outputs are standard denominations

WHIRLPOOL_POOLS_SAT: Final[tuple[int, ...]] = (100_000, 1_000_000, 5_000_000, 50_000_000)
WHIRLPOOL_MIN_IO: Final = 5
WHIRLPOOL_MAX_IO: Final = 10
WHIRLPOOL_PREMIX_EXTRA_SAT: Final = 110_000  # a premix output is pool + at most 0.0011 BTC

JOINMARKET_MIN_EQUAL: Final = 3
JOINMARKET_MARGIN_SAT: Final = 10_000  # Dumplings' 0.0001 BTC margin on the largest input


def wasabi2_denominations() -> npt.NDArray[np.int64]:
    """WabiSabi standard denominations (sorted, satoshi): 2^n, 3^n, 2·3^n, 10^n, 2·10^n, 5·10^n in
    [WASABI2_MIN_DENOM_SAT, WASABI2_MAX_DENOM_SAT]."""
    out: set[int] = set()
    for base, mult in ((2, 1), (3, 1), (3, 2), (10, 1), (10, 2), (10, 5)):
        v = mult
        while v <= WASABI2_MAX_DENOM_SAT:
            if v >= WASABI2_MIN_DENOM_SAT:
                out.add(v)
            v *= base
    return np.array(sorted(out), np.int64)


_WASABI2_DENOMS = wasabi2_denominations()
_POOLS = np.array(WHIRLPOOL_POOLS_SAT, np.int64)
_P2WPKH, _P2TR, _NULLDATA = st.P2WPKH, st.P2TR, st.NULLDATA


@njit(cache=True)
def _value_stats(vals: Any) -> tuple[int, int, int, int]:
    """(mode value (lowest on a tie), its count, groups of >= 2 equal values, values occurring once)."""
    s = np.sort(vals)
    n = s.shape[0]
    best_v, best_c, groups, singles = -1, 0, 0, 0
    k = 0
    while k < n:
        j = k
        while j < n and s[j] == s[k]:
            j += 1
        c = j - k
        if c > best_c:
            best_c, best_v = c, s[k]
        if c >= 2:
            groups += 1
        else:
            singles += 1
        k = j
    return best_v, best_c, groups, singles


@njit(cache=True)
def _distinct(addrs: Any) -> int:
    """Distinct addresses; every unknown (-1) counts as its own."""
    s = np.sort(addrs)
    n = s.shape[0]
    d = 0
    for k in range(n):
        if s[k] < 0 or k == 0 or s[k] != s[k - 1]:
            d += 1
    return d


@njit(cache=True)
def _in_sorted(arr: Any, v: int) -> bool:
    k = np.searchsorted(arr, v)
    found: bool = k < arr.shape[0] and arr[k] == v
    return found


@njit(cache=True)
def _descending(vals: Any) -> bool:
    for k in range(1, vals.shape[0]):  # noqa: SIM110 (compiled: no generators)
        if vals[k] > vals[k - 1]:
            return False
    return True


@njit(cache=True)
def _all_types(types: Any, a: int, b: int) -> bool:
    for k in range(types.shape[0]):  # noqa: SIM110 (compiled: no generators)
        if types[k] != a and types[k] != b:
            return False
    return True


@njit(cache=True)
def _detect_tx(ia: Any, iv: Any, it: Any, oa: Any, ov: Any, ot: Any, denoms: Any, pools: Any) -> int:
    n_in, n_out = ia.shape[0], oa.shape[0]
    if n_in < 2 or n_out < 2:
        return 0
    mode_v, mode_c, groups, singles = _value_stats(ov)
    values_known = True
    for k in range(n_in):
        if iv[k] < 0:
            values_known = False
    # wasabi2
    if n_in >= WASABI2_MIN_INPUTS and _all_types(it, _P2WPKH, _P2TR) and _descending(ov):
        if not values_known or _descending(iv):
            std = 0
            for k in range(n_out):
                if _in_sorted(denoms, ov[k]):
                    std += 1
            if std > WASABI2_DENOM_SHARE * n_out:
                return 2
    # wasabi1
    if (
        mode_c >= WASABI1_MIN_EQUAL
        and n_in >= mode_c
        and abs(mode_v - WASABI1_DENOMINATION_SAT) <= WASABI1_TOLERANCE_SAT
        and singles >= WASABI1_MIN_UNIQUE_OUTPUTS
        and _all_types(it, _P2WPKH, _P2WPKH)
        and _all_types(ot, _P2WPKH, _P2WPKH)
    ):
        return 1
    # whirlpool
    if (
        WHIRLPOOL_MIN_IO <= n_in <= WHIRLPOOL_MAX_IO
        and n_in == n_out
        and mode_c == n_out
        and _in_sorted(pools, mode_v)
        and _all_types(it, _P2WPKH, _P2WPKH)
        and _all_types(ot, _P2WPKH, _P2WPKH)
    ):
        ok = True
        if values_known:
            remix = 0
            for k in range(n_in):
                if iv[k] == mode_v:
                    remix += 1
                elif iv[k] < mode_v or iv[k] > mode_v + WHIRLPOOL_PREMIX_EXTRA_SAT:
                    ok = False
            ok = ok and remix >= 1
        if ok:
            return 3
    # joinmarket
    all_addr = True
    for k in range(n_out):
        if oa[k] < 0:
            all_addr = False
    if (
        groups == 1
        and mode_c >= JOINMARKET_MIN_EQUAL
        and (n_out == 2 * mode_c or n_out == 2 * mode_c - 1)
        and mode_v > DUST_LIMIT_SAT
        and all_addr
        and _distinct(oa) >= mode_c
        and n_in >= mode_c
        and _distinct(ia) >= mode_c
    ):
        ok = True
        if values_known:
            other_max = 0
            for k in range(n_out):
                if ov[k] != mode_v and ov[k] > other_max:
                    other_max = ov[k]
            in_max = 0
            for k in range(n_in):
                if iv[k] > in_max:
                    in_max = iv[k]
            ok = in_max <= mode_v + other_max - JOINMARKET_MARGIN_SAT
        if ok:
            return 4
    # generic (BlockSci / GraphSense)
    if n_out >= 3:
        p = (n_out + 1) // 2
        if (
            p <= n_in
            and p <= _distinct(ia)
            and mode_c == p
            and mode_v > DUST_LIMIT_SAT
            and mode_v != BLOCKSCI_DUST_SAT
            and mode_v != COUNTERPARTY_DUST_SAT
        ):
            return 5
    return 0


@njit(cache=True)
def _detect(
    is_coinbase: Any,
    in_off: Any,
    in_addr: Any,
    in_value: Any,
    in_type: Any,
    out_off: Any,
    out_addr: Any,
    out_value: Any,
    out_type: Any,
    denoms: Any,
    pools: Any,
) -> Any:
    n = is_coinbase.shape[0]
    codes = np.zeros(n, np.int8)
    for i in range(n):
        if is_coinbase[i]:
            continue
        a, b = in_off[i], in_off[i + 1]
        c, d = out_off[i], out_off[i + 1]
        codes[i] = _detect_tx(
            in_addr[a:b], in_value[a:b], in_type[a:b], out_addr[c:d], out_value[c:d], out_type[c:d],
            denoms, pools,
        )  # fmt: skip
    return codes


@njit(cache=True)
def _tx0(is_coinbase: Any, out_off: Any, out_value: Any, out_type: Any, pools: Any) -> Any:
    n = is_coinbase.shape[0]
    flags = np.zeros(n, np.bool_)
    for i in range(n):
        if is_coinbase[i]:
            continue
        c, d = out_off[i], out_off[i + 1]
        nulldata = 0
        others = 0
        for k in range(c, d):
            if out_type[k] == _NULLDATA:
                nulldata += 1
            elif out_type[k] != _P2WPKH:
                others = 99
        if nulldata != 1 or others:
            continue
        vals = np.empty(d - c - 1, np.int64)
        m = 0
        for k in range(c, d):
            if out_type[k] != _NULLDATA:
                vals[m] = out_value[k]
                m += 1
        mode_v, _count, groups, singles = _value_stats(vals)
        if groups > 1 or singles < 1 or singles > 2:
            continue
        for p in pools:
            if p < mode_v <= p + WHIRLPOOL_PREMIX_EXTRA_SAT:
                flags[i] = True
    return flags


def detect(view: Any) -> npt.NDArray[np.int8]:
    """The CoinJoin family code of every transaction of ``view`` (``FAMILIES[code]``; 0: none)."""
    codes: npt.NDArray[np.int8] = _detect(
        view.is_coinbase, view.in_off, view.in_addr, view.in_value, view.in_type, view.out_off,
        view.out_addr, view.out_value, view.out_type, _WASABI2_DENOMS, _POOLS,
    )  # fmt: skip
    return codes


def whirlpool_tx0(view: Any) -> npt.NDArray[np.bool_]:
    """Whirlpool Tx0 candidates: one OP_RETURN output (the fee payload), the other outputs P2WPKH: one
    group of equal premix outputs worth a pool denomination plus at most WHIRLPOOL_PREMIX_EXTRA_SAT,
    and one or two outputs of a unique value (coordinator fee, change). A Tx0 is one owner's
    transaction: it is *not* a CoinJoin, its inputs may be merged; this only marks the pool entry."""
    flags: npt.NDArray[np.bool_] = _tx0(view.is_coinbase, view.out_off, view.out_value, view.out_type, _POOLS)
    return flags


def detect_one(view: Any, i: int) -> str | None:
    """The CoinJoin family of row ``i`` of ``view``, or None."""
    a, b = int(view.in_off[i]), int(view.in_off[i + 1])
    c, d = int(view.out_off[i]), int(view.out_off[i + 1])
    if view.is_coinbase[i]:
        return None
    code = int(
        _detect_tx(
            view.in_addr[a:b], view.in_value[a:b], view.in_type[a:b], view.out_addr[c:d],
            view.out_value[c:d], view.out_type[c:d], _WASABI2_DENOMS, _POOLS,
        )
    )  # fmt: skip
    return FAMILIES[code] if code else None
