"""The learned scorer: a LightGBM binary classifier over :mod:`.features`, trained on a simulated
world's truth (:mod:`.labels`), calibrated on a held-out split (:mod:`.calibration`), saved to and loaded
from a directory, scoring every transaction of a chain and explaining a score by its top feature
contributions (LightGBM's ``pred_contrib``: exact SHAP values of the trees, in log-odds).

A model directory holds ``model.txt`` (LightGBM's text format), ``calibration.json``, ``features.json``
(names, order, version and feature set) and ``metadata.json`` (the training world's scenario and seed,
rows, positives, held-out metrics, the LightGBM version, the time of training).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import numpy.typing as npt

from fundtrail.detection.scorer.calibration import Calibration, fit_isotonic
from fundtrail.detection.scorer.features import F64, FEATURES_VERSION, FeatureTable, build_features, describe
from fundtrail.errors import CorruptData, InvalidInput, NotFound

B = npt.NDArray[np.bool_]
SEED = 8
HELD_OUT = 0.25  # share of the training world's transactions kept apart to calibrate on
ROUNDS = 300
PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 10,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "deterministic": True,
    "force_col_wise": True,
    "num_threads": 2,
    "verbose": -1,
}
FILES = ("model.txt", "calibration.json", "features.json", "metadata.json")


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: float  # the feature's value in this row (NaN: unknown)
    contribution: float  # its SHAP value, in log-odds
    words: str  # the contribution in plain words

    def as_json(self) -> dict[str, Any]:
        v = None if np.isnan(self.value) else self.value
        return {"feature": self.feature, "value": v, "contribution": self.contribution, "text": self.words}


@dataclass(frozen=True)
class Scores:
    """Every transaction of a chain with its calibrated probability of being illicit."""

    table: FeatureTable
    raw: F64  # the booster's raw score (log-odds)
    probability: F64


@dataclass
class Scorer:
    booster: lgb.Booster
    calibration: Calibration
    names: tuple[str, ...]
    family: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def raw(self, X: F64) -> F64:
        return np.asarray(self.booster.predict(X, raw_score=True, num_threads=2), dtype=np.float64)

    def predict(self, X: F64) -> F64:
        """Calibrated probabilities of the rows of ``X`` (columns in :attr:`names` order)."""
        return self.calibration(self.raw(X))

    def score_table(self, table: FeatureTable) -> Scores:
        self._check(table)
        raw = self.raw(table.X)
        return Scores(table, raw, self.calibration(raw))

    def score(self, ctx: Any) -> Scores:
        """Score every transaction of ``ctx.chain`` (a detection context)."""
        return self.score_table(build_features(ctx))

    def contributions(self, X: F64) -> F64:
        """SHAP values per row and feature, the bias in the last column; each row sums to its raw score."""
        return np.asarray(self.booster.predict(X, pred_contrib=True, num_threads=2), dtype=np.float64)

    def explain(self, row: F64, k: int = 5) -> list[Contribution]:
        """The ``k`` features that moved this row's score most, largest first, in plain words."""
        contrib = self.contributions(row.reshape(1, -1))[0, :-1]
        top = np.argsort(-np.abs(contrib), kind="stable")[:k]
        out = []
        for j in top:
            name, c, v = self.names[j], float(contrib[j]), float(row[j])
            shown = "unknown" if np.isnan(v) else f"{v:.4g}"
            way = "raises" if c > 0 else "lowers"
            words = f"{describe(name)} = {shown} {way} the score ({c:+.2f} log-odds)"
            out.append(Contribution(name, v, c, words))
        return out

    def _check(self, table: FeatureTable) -> None:
        if table.names != self.names:
            raise InvalidInput(
                f"this model was trained on the {self.family} features, not those of {table.chain}",
                "train a model on this chain's family (`fundtrail model train --chain ...`)",
            )

    def save(self, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(out / "model.txt"))
        (out / "calibration.json").write_text(json.dumps(self.calibration.as_json(), indent=1) + "\n")
        features = {"version": FEATURES_VERSION, "family": self.family, "names": list(self.names)}
        (out / "features.json").write_text(json.dumps(features, indent=1) + "\n")
        (out / "metadata.json").write_text(json.dumps(self.metadata, indent=1) + "\n")
        return out


def load_model(path: Path) -> Scorer:
    """Load a model directory written by :meth:`Scorer.save`."""
    if not path.is_dir():
        raise NotFound(f"no model directory at {path}", "train one with `fundtrail model train --out DIR`")
    missing = [f for f in FILES if not (path / f).is_file()]
    if missing:
        raise NotFound(f"{path} is not a model directory (missing {', '.join(missing)})", "pass --model DIR")
    fix = "retrain with `fundtrail model train`"
    try:
        features = json.loads((path / "features.json").read_text())
        calibration = Calibration.from_json(json.loads((path / "calibration.json").read_text()))
        metadata = json.loads((path / "metadata.json").read_text())
        booster = lgb.Booster(model_file=str(path / "model.txt"))
    except (ValueError, lgb.basic.LightGBMError) as exc:  # json.JSONDecodeError is a ValueError
        raise CorruptData(f"the model in {path} does not load ({exc})", fix) from None
    if features.get("version") != FEATURES_VERSION:
        raise InvalidInput(
            f"the model in {path} uses features version {features.get('version')}, "
            f"this fundtrail computes version {FEATURES_VERSION}",
            fix,
        )
    names = tuple(str(n) for n in features.get("names", []))
    if tuple(booster.feature_name()) != names:
        raise CorruptData(f"features.json in {path} does not match model.txt", fix)
    return Scorer(booster, calibration, names, str(features.get("family")), metadata)


def split(labels: B, held_out: float, seed: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """A stratified random split: the same share of illicit and licit rows is held out."""
    rng = np.random.default_rng(seed)
    train: list[npt.NDArray[np.int64]] = []
    test: list[npt.NDArray[np.int64]] = []
    for cls in (False, True):
        rows = np.flatnonzero(labels == cls)
        rng.shuffle(rows)
        k = round(len(rows) * held_out)
        test.append(rows[:k])
        train.append(rows[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def train(table: FeatureTable, labels: B, world: dict[str, Any] | None = None, seed: int = SEED) -> Scorer:
    """Train on one chain's feature table and labels; calibrate on a held-out stratified split."""
    from fundtrail.detection.scorer.evaluate import metrics

    positives = int(labels.sum())
    if positives < 10 or positives == len(labels):
        raise InvalidInput(
            f"{table.chain} has {positives} illicit transactions of {len(labels)}: too few to learn from",
            "simulate a larger world (more laundering operations) or pick another --chain",
        )
    tr, ho = split(labels, HELD_OUT, seed)
    neg, pos = float((~labels[tr]).sum()), float(labels[tr].sum())
    params = {**PARAMS, "seed": seed, "scale_pos_weight": neg / pos}
    data = lgb.Dataset(table.X[tr], label=labels[tr].astype(np.float64), feature_name=list(table.names))
    booster = lgb.train(params, data, num_boost_round=ROUNDS)
    scorer = Scorer(booster, Calibration((0.0,), (0.0,)), table.names, table.family)
    raw_ho = scorer.raw(table.X[ho])
    scorer.calibration = fit_isotonic(raw_ho, labels[ho])
    world = world or {}
    scorer.metadata = {
        "chain": table.chain,
        "family": table.family,
        "world": {"scenario": world.get("scenario"), "seed": world.get("seed")},
        "rows": len(labels),
        "positives": positives,
        "train_rows": len(tr),
        "held_out_rows": len(ho),
        "held_out_metrics": metrics(labels[ho], scorer.calibration(raw_ho)),
        "params": {k: v for k, v in params.items() if k != "verbose"},
        "rounds": ROUNDS,
        "calibration": "isotonic (pool adjacent violators) on the held-out split",
        "lightgbm": lgb.__version__,
        "features_version": FEATURES_VERSION,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return scorer


def train_world(con: Any, truth: Any, chain: str, seed: int = SEED) -> Scorer:
    """Train on the store's ``chain``, labelled by a simulated world's ``truth`` (the store holds that
    world, ingested and clustered)."""
    from fundtrail.detection.context import StoreContext
    from fundtrail.detection.scorer.labels import transaction_labels

    ctx = StoreContext(con, chain)
    table = build_features(ctx)
    labels = transaction_labels(con, truth, chain, ctx.family, table.tx_id)
    return train(table, labels, dict(truth.manifest), seed)
