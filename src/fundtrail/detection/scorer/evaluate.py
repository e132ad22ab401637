"""How good the learned scorer is on a world it was not trained on: precision, recall and F1 of the
illicit class at the calibrated 0.5 threshold, the best-F1 threshold (reported apart: it is chosen on the
test world itself, so it is an upper bound, not a result), and PR-AUC (average precision), next to two
published anchors given as context:

- random forest on the Elliptic dataset, illicit F1 0.79 (Weber et al., 2019, "Anti-Money Laundering in
  Bitcoin: Experimenting with Graph Convolutional Networks for Financial Forensics");
- the best GNN on IBM's AMLworld HI-Small, minority-class F1 0.68 (Altman et al., 2023, "Realistic
  Synthetic Financial Transactions for Anti-Money Laundering Models").

They are not like-for-like: Elliptic labels real Bitcoin transactions of known illicit services (its
positives are whole categories of entities, with a temporal train/test split on one chain), AMLworld is
a simulated bank ledger of account-to-account payments, and fundtrail's worlds are simulated blockchains
where every step of an embedded laundering operation (including gas top-ups and cash-outs that look
ordinary) is a positive, at a different positive rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from fundtrail.detection.scorer.features import F64, build_features
from fundtrail.detection.scorer.labels import transaction_labels
from fundtrail.simulate.truth import Truth

B = npt.NDArray[np.bool_]
THRESHOLD = 0.5
ANCHORS = (
    {
        "name": "random forest, Elliptic dataset (Weber et al., 2019)",
        "illicit_f1": 0.79,
        "data": "real Bitcoin transactions, about 2% labelled illicit by their entity, temporal split",
    },
    {
        "name": "best GNN, IBM AMLworld HI-Small (Altman et al., 2023)",
        "illicit_f1": 0.68,
        "data": "simulated bank transfers, about 0.1% laundering",
    },
)
NOT_LIKE_FOR_LIKE = (
    "context, not a like-for-like comparison: other data (real Bitcoin entities / simulated bank "
    "payments), other label definitions and positive rates than a fundtrail world, where every step of "
    "an operation, gas top-ups and cash-outs included, is a positive"
)


def _prf(tp: int, fp: int, fn: int) -> dict[str, float | None]:
    p = tp / (tp + fp) if tp + fp else None
    r = tp / (tp + fn) if tp + fn else None
    f1 = None if p is None or r is None else (0.0 if p + r == 0 else 2 * p * r / (p + r))
    return {"precision": p, "recall": r, "f1": f1}


def average_precision(labels: B, prob: F64) -> float | None:
    """PR-AUC as average precision: the mean of the precision at each illicit row's rank (ties in the
    score are ranked together, as scikit-learn's ``average_precision_score`` does)."""
    pos = int(labels.sum())
    if pos == 0:
        return None
    order = np.argsort(-prob, kind="stable")
    p, y = prob[order], labels[order].astype(np.float64)
    last = np.r_[p[1:] != p[:-1], True]  # the last row of each tie group
    tp, seen = np.cumsum(y)[last], np.flatnonzero(last) + 1.0
    recall_step = np.diff(np.r_[0.0, tp]) / pos
    return float(np.sum(recall_step * tp / seen))


def metrics(labels: B, prob: F64, threshold: float = THRESHOLD) -> dict[str, Any]:
    """Scores of the illicit class at ``threshold``, the best-F1 threshold, and PR-AUC."""
    flag = prob >= threshold
    tp, fp = int((flag & labels).sum()), int((flag & ~labels).sum())
    fn = int((~flag & labels).sum())
    out: dict[str, Any] = {
        "rows": len(labels),
        "positives": int(labels.sum()),
        "positive_rate": float(labels.mean()) if len(labels) else None,
        "threshold": threshold,
        **_prf(tp, fp, fn),
        "flagged": int(flag.sum()),
        "pr_auc": average_precision(labels, prob),
    }
    best: dict[str, Any] = {"threshold": None, "precision": None, "recall": None, "f1": None}
    pos = int(labels.sum())
    if pos and len(prob):
        order = np.argsort(-prob, kind="stable")
        p, y = prob[order], labels[order]
        last = np.r_[p[1:] != p[:-1], True]  # flag everything scoring at least p[k] of a tie group's end
        tp_all = np.cumsum(y)[last].astype(np.float64)
        flagged = (np.flatnonzero(last) + 1).astype(np.float64)
        f1 = 2 * tp_all / (flagged + pos)
        k = int(np.argmax(f1))
        if f1[k] > 0:
            best = {
                "threshold": float(p[last][k]),
                "precision": float(tp_all[k] / flagged[k]),
                "recall": float(tp_all[k] / pos),
                "f1": float(f1[k]),
            }
    out["best_f1"] = best
    return out


def evaluate_world(scorer: Any, ctx: Any, truth: Truth, top: int = 10) -> dict[str, Any]:
    """Score every transaction of ``ctx.chain`` and compare with ``truth``: the metrics, the world, the
    anchors, and the ``top`` highest-scoring transactions with their explanations."""
    table = build_features(ctx)
    scores = scorer.score_table(table)
    labels = transaction_labels(ctx.con, truth, ctx.chain, ctx.family, table.tx_id)
    result = metrics(labels, scores.probability)
    train_world = scorer.metadata.get("world", {})
    world = {"scenario": truth.manifest.get("scenario"), "seed": truth.manifest.get("seed")}
    order = np.argsort(-scores.probability, kind="stable")[:top]
    return {
        "chain": ctx.chain,
        "model": {"chain": scorer.metadata.get("chain"), "trained_on": train_world},
        "world": world,
        "same_seed": world.get("seed") is not None and world.get("seed") == train_world.get("seed"),
        "illicit": result,
        "anchors": list(ANCHORS),
        "anchors_note": NOT_LIKE_FOR_LIKE,
        "top": [
            {
                "txid": table.txids[i],
                "probability": float(scores.probability[i]),
                "illicit": bool(labels[i]),
                "reasons": [c.as_json() for c in scorer.explain(table.X[i], 3)],
            }
            for i in order
        ],
    }


def model_dirs(path: Path) -> list[Path]:
    """A model directory, or a directory of per-chain model directories (as ``model train`` writes)."""
    if (path / "model.txt").is_file():
        return [path]
    return sorted(p for p in path.iterdir() if (p / "model.txt").is_file()) if path.is_dir() else []
