"""The learned scorer's features: one row per transaction of a chain, built in bulk from a detection
context (the UTXO view, or the account transfers), never row by row.

Two feature sets, one per chain family (docs/detectors/scorer.md lists every feature):

- UTXO chains (:mod:`.utxo_features`): local features of the transaction (shape, values, fee, output
  entropy and equality, round amounts, fresh and reused addresses, the age of the coins it spends and how
  soon its outputs are spent, labelled-service counterparties, cluster sizes) and, in the spirit of the
  Elliptic dataset's aggregated features (Weber et al., 2019), the mean and max of a subset of them over
  the transactions it spends from (parents) and those spending it (children), and their mean two hops
  away;
- account chains (:mod:`.account_features`): features of the transaction's main transfer (amount, kind,
  roundness, gap below reporting thresholds), of its sender and recipient as entities (degrees,
  counterparties, age, categories, cluster size, pass-through speed, share forwarded within a day) and of
  the flow's neighbours (the transfer that funded the sender last, the recipient's next outgoing one, and
  one hop further each way).

Unknown is NaN (LightGBM routes missing values on its own); no absolute time or height is a feature, so
a model carries over to a world of other dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fundtrail.errors import InvalidInput

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

FEATURES_VERSION = 1

# risk/service categories (detection/context.py's RISK_ORDER) grouped into the counterparty features
CATEGORY_GROUPS: dict[str, tuple[str, ...]] = {
    "exchange": ("exchange",),
    "mixer": ("mixer",),
    "risky": (
        "sanctioned",
        "terrorist_financing",
        "child_abuse_material",
        "ransomware",
        "darknet_market",
        "hack",
        "stolen_funds",
        "scam",
        "phishing",
        "gambling",
    ),
    "bridge": ("bridge", "defi"),
    "service": ("payment_processor", "miner", "merchant"),
}
GROUP_NAMES = tuple(CATEGORY_GROUPS)


@dataclass(frozen=True)
class FeatureTable:
    """Features of every transaction of one chain: ``X[i]`` describes store transaction ``tx_id[i]``;
    ``txids[i]`` is how fundtrail shows it (display hex or 0x hash)."""

    chain: str
    family: str  # "utxo" or "account": which feature set
    tx_id: I64
    txids: tuple[str, ...]
    names: tuple[str, ...]
    X: F64

    def __post_init__(self) -> None:
        if self.X.shape != (len(self.tx_id), len(self.names)) or len(self.txids) != len(self.tx_id):
            raise ValueError("FeatureTable: rows and columns do not match")

    def __len__(self) -> int:
        return len(self.tx_id)

    def column(self, name: str) -> F64:
        return self.X[:, self.names.index(name)]


def feature_family(chain_family: str) -> str:
    return "utxo" if chain_family == "bitcoin" else "account"


def build_features(ctx: Any) -> FeatureTable:
    """The feature table of ``ctx.chain`` (a :class:`~fundtrail.detection.context.StoreContext`)."""
    from fundtrail.detection.scorer.account_features import account_features
    from fundtrail.detection.scorer.utxo_features import utxo_features

    table = utxo_features(ctx) if feature_family(ctx.family) == "utxo" else account_features(ctx)
    if len(table) == 0:
        raise InvalidInput(
            f"the store holds no transactions of {ctx.chain}",
            "ingest the world's chains first, or pass the --chain it holds",
        )
    return table


def describe(name: str) -> str:
    """A feature name in plain words (for explanations)."""
    from fundtrail.detection.scorer.account_features import ACCOUNT_WORDS
    from fundtrail.detection.scorer.utxo_features import UTXO_WORDS

    for prefix, words in (
        ("par_mean_", "mean over the transactions it spends from of"),
        ("par_max_", "max over the transactions it spends from of"),
        ("chi_mean_", "mean over the transactions spending it of"),
        ("chi_max_", "max over the transactions spending it of"),
        ("hop2_", "mean two hops away of"),
        ("par_", "the sender's last funding transfer:"),
        ("par2_", "two funding transfers back:"),
        ("chi_", "the recipient's next outgoing transfer:"),
        ("chi2_", "two outgoing transfers on:"),
    ):
        if name.startswith(prefix):
            return f"{words} {describe(name[len(prefix) :])}"
    return UTXO_WORDS.get(name) or ACCOUNT_WORDS.get(name) or name.replace("_", " ")


# --- vectorised helpers ----------------------------------------------------------------------------------


def log10p(x: F64) -> F64:
    """log10(1 + x) for x >= 0, NaN where x is NaN or negative (unknown)."""
    out = np.full(x.shape, np.nan)
    ok = ~np.isnan(x) & (x >= 0)
    out[ok] = np.log10(1.0 + x[ok])
    return out


def row_of(off: I64) -> I64:
    """The row each CSR element belongs to."""
    return np.repeat(np.arange(len(off) - 1, dtype=np.int64), np.diff(off))


def group_sum(row: I64, w: F64, n: int) -> F64:
    return np.bincount(row, weights=w, minlength=n).astype(np.float64)


def group_max(row: I64, vals: F64, n: int, empty: float = np.nan) -> F64:
    """Max of ``vals`` per row (``row`` sorted), ``empty`` where a row has none."""
    out = np.full(n, empty)
    if len(row):
        starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
        out[row[starts]] = np.maximum.reduceat(vals, starts)
    return out


def group_min(row: I64, vals: F64, n: int) -> F64:
    """Min of ``vals`` per row (``row`` sorted), NaNs skipped; NaN where a row has no known value."""
    m = -group_max(row, np.where(np.isnan(vals), -np.inf, -vals), n)
    m[~np.isfinite(m)] = np.nan
    return m


def trailing_zeros(v: F64, most: int = 12) -> F64:
    """Decimal trailing zeros of whole numbers (0 for 0 or a fraction; NaN stays NaN)."""
    out = np.zeros(v.shape)
    ok = ~np.isnan(v) & (v > 0) & (v == np.round(v))
    for k in range(1, most + 1):
        ok &= np.mod(v, 10.0**k) == 0
        out[ok] = k
    out[np.isnan(v)] = np.nan
    return out


def neighbour_mean_max(src: I64, dst: I64, vals: F64, n: int) -> tuple[F64, F64]:
    """Per node ``d``, the mean and max of ``vals[s]`` over the edges ``s -> d`` (NaNs skipped; NaN where
    a node has no neighbour with a known value). ``vals`` is (nodes, k)."""
    k = vals.shape[1]
    mean = np.full((n, k), np.nan)
    mx = np.full((n, k), np.nan)
    if len(src) == 0:
        return mean, mx
    order = np.argsort(dst, kind="stable")
    d = dst[order]
    v = vals[src[order]]
    starts = np.flatnonzero(np.r_[True, d[1:] != d[:-1]])
    groups = d[starts]
    ok = ~np.isnan(v)
    s = np.add.reduceat(np.where(ok, v, 0.0), starts, axis=0)
    c = np.add.reduceat(ok.astype(np.float64), starts, axis=0)
    m = np.maximum.reduceat(np.where(ok, v, -np.inf), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean[groups] = np.where(c > 0, s / np.maximum(c, 1), np.nan)
    mx[groups] = np.where(np.isfinite(m), m, np.nan)
    return mean, mx


def category_codes(categories: Any, n_addresses: int) -> I64:
    """Address id -> index of its category group in GROUP_NAMES (-1: no labelled category)."""
    group_of = {c: g for g, (_, cats) in enumerate(CATEGORY_GROUPS.items()) for c in cats}
    codes = np.full(max(n_addresses, 1), -1, np.int64)
    for aid, cat in categories.items():
        g = group_of.get(cat)
        if g is not None and 0 <= aid < len(codes):
            codes[aid] = g
    return codes


def cluster_sizes(clusters: I64) -> I64:
    """Address id -> size of its cluster (1 for an address without a cluster)."""
    sizes = np.ones(len(clusters), np.int64)
    has = clusters >= 0
    if has.any():
        counts = np.bincount(clusters[has])
        sizes[has] = counts[clusters[has]]
    return sizes


def lookup(arr: I64, ids: I64, missing: int) -> I64:
    """``arr[ids]`` where ``0 <= id < len(arr)``, else ``missing``."""
    out = np.full(len(ids), missing, np.int64)
    ok = (ids >= 0) & (ids < len(arr))
    out[ok] = arr[ids[ok]]
    return out
