"""Isotonic calibration of the booster's raw scores (log-odds) into probabilities, fitted with the
pool-adjacent-violators algorithm (PAV) in NumPy.

Why isotonic and not Platt scaling: the booster is trained with ``scale_pos_weight`` (the illicit class
is about 1 % of transactions), which shifts and bends its raw scores in a way a two-parameter sigmoid
does not undo; isotonic regression only assumes that a higher raw score means a higher probability.
Its known weakness, overfitting with few positives, is bounded here by requiring a minimum block weight
(``min_block``: a step of the calibration curve rests on at least that many held-out transactions).

The fitted curve is a non-decreasing step function of the raw score; between the ends of adjacent steps
it is interpolated linearly (as scikit-learn's ``IsotonicRegression`` does), and it is constant beyond the
ends. It is saved as JSON (``calibration.json``: ``x``, ``y``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fundtrail.errors import CorruptData

F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Calibration:
    x: tuple[float, ...]  # raw scores, non-decreasing
    y: tuple[float, ...]  # probabilities, non-decreasing, in [0, 1]
    method: str = "isotonic"

    def __call__(self, raw: F64) -> F64:
        return np.asarray(np.interp(raw, np.asarray(self.x), np.asarray(self.y)), dtype=np.float64)

    def as_json(self) -> dict[str, Any]:
        return {"method": self.method, "x": list(self.x), "y": list(self.y)}

    @staticmethod
    def from_json(data: Any) -> Calibration:
        try:
            x = tuple(float(v) for v in data["x"])
            y = tuple(float(v) for v in data["y"])
            method = str(data.get("method", "isotonic"))
        except (KeyError, TypeError, ValueError):
            raise CorruptData(
                "calibration.json is malformed", "retrain with `fundtrail model train`"
            ) from None
        ok = len(x) == len(y) >= 1 and all(0.0 <= v <= 1.0 for v in y)
        ok = (
            ok
            and all(a <= b for a, b in itertools.pairwise(x))
            and all(a <= b for a, b in itertools.pairwise(y))
        )
        if not ok:
            raise CorruptData(
                "calibration.json is not a monotone curve within [0, 1]",
                "retrain with `fundtrail model train`",
            )
        return Calibration(x, y, method)


def pav(y: F64, w: F64 | None = None) -> tuple[F64, F64, npt.NDArray[np.int64]]:
    """Pool adjacent violators over ``y`` (already in the order of the score): the blocks' values,
    weights and start positions of the non-decreasing least-squares fit."""
    w = np.ones(len(y)) if w is None else w
    vals: list[float] = []
    wts: list[float] = []
    starts: list[int] = []
    for i, (yi, wi) in enumerate(zip(y.tolist(), w.tolist())):
        vals.append(yi)
        wts.append(wi)
        starts.append(i)
        while len(vals) > 1 and vals[-2] >= vals[-1]:
            wsum = wts[-2] + wts[-1]
            vals[-2] = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / wsum
            wts[-2] = wsum
            del vals[-1], wts[-1], starts[-1]
    return np.array(vals), np.array(wts), np.array(starts, dtype=np.int64)


def fit_isotonic(raw: F64, label: npt.NDArray[np.bool_], min_block: int = 20) -> Calibration:
    """Fit the calibration on held-out raw scores and labels. Ties in the raw score are pooled first
    (one point per distinct score), then PAV runs with the extra constraint that each block weighs at
    least ``min_block`` transactions (a lighter block is merged with its neighbour)."""
    if len(raw) == 0:
        raise ValueError("no rows to calibrate on")
    order = np.argsort(raw, kind="stable")
    xs, ys = raw[order], label[order].astype(np.float64)
    ux, first, counts = np.unique(xs, return_index=True, return_counts=True)
    sums = np.add.reduceat(ys, first)
    vals, wts, starts = pav(sums / counts, counts.astype(np.float64))
    vals, wts, starts = _merge_light(vals, wts, starts, float(min_block))
    ends = np.r_[starts[1:], len(ux)] - 1
    x = np.column_stack([ux[starts], ux[ends]]).ravel()
    y = np.repeat(np.clip(vals, 0.0, 1.0), 2)
    return Calibration(tuple(float(v) for v in x), tuple(float(v) for v in y))


def _merge_light(
    vals: F64, wts: F64, starts: npt.NDArray[np.int64], least: float
) -> tuple[F64, F64, npt.NDArray[np.int64]]:
    """Merge blocks lighter than ``least`` into a neighbour (the lower one, or the upper one for the
    first block); merging adjacent blocks of a monotone fit keeps it monotone."""
    v, w, s = vals.tolist(), wts.tolist(), starts.tolist()
    i = 0
    while len(v) > 1 and i < len(v):
        if w[i] >= least:
            i += 1
            continue
        j = i - 1 if i > 0 else i + 1
        lo, hi = min(i, j), max(i, j)
        total = w[lo] + w[hi]
        v[lo] = (v[lo] * w[lo] + v[hi] * w[hi]) / total
        w[lo] = total
        del v[hi], w[hi], s[hi]
        i = lo
    return np.array(v), np.array(w), np.array(s, dtype=np.int64)
