"""Pure functions of numpy arrays: the metrics, and the array helpers the rest of mlcore shares.

Labels, predictions, probabilities or scores in; plain Python types (or arrays) out; no state.

- Metrics: accuracy, the confusion matrix, per-intent precision/recall/F1, macro-F1, the coverage
  curve, the expected calibration error, the AUROC, and the Wilson interval of a proportion.
- Helpers: ``softmax`` (with a temperature: the calibrated probabilities that evaluation, training
  and both predictors compute) and ``normalise`` (L2 row normalisation: the sentence embeddings
  grouping compares and the ones the out-of-scope scores fit on).

Only numpy and the standard library: the serving package ships this module (mlcore.prediction and
mlcore.ood import it) and never installs torch. :mod:`mlcore.evaluate` builds the reports from
these; :mod:`mlcore.ood` has the out-of-scope scores.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(20))  # 0.00, 0.05, ..., 0.95
ECE_BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Temperature-scaled softmax in float64, row by row."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def normalise(embeddings: np.ndarray, *, dtype: type = np.float64) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), as ``dtype``: float64 for the statistics
    fitted on them (mlcore.ood), float32 for the embeddings grouping stores and compares."""
    values = np.asarray(embeddings, dtype=dtype)
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.where(norms == 0, 1.0, norms)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if len(y_true) else 0.0


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (95% by default), or None without trials.

    Unlike the normal approximation it stays inside [0, 1] and is honest for small samples and
    proportions near 0 or 1, which is where an audit of a good model lives (say 48 of 50 right)."""
    if trials <= 0:
        return None
    if not 0 <= successes <= trials:
        raise ValueError(f"successes must be from 0 to trials ({trials}), got {successes}")
    share = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (share + z2 / (2 * trials)) / denominator
    half = z * math.sqrt(share * (1 - share) / trials + z2 / (4 * trials * trials)) / denominator
    # At 0 and 100% the bound is exactly the share; computed, it lands a rounding error past it.
    low = 0.0 if successes == 0 else min(share, max(0.0, centre - half))
    high = 1.0 if successes == trials else max(share, min(1.0, centre + half))
    return low, high


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> np.ndarray:
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def per_intent_scores(matrix: np.ndarray, labels: Sequence[str]) -> list[dict]:
    """Precision, recall, F1 and support for each intent, from a confusion matrix (rows = truth)."""
    true_positive = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return [
        {"intent": label, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support)
    ]


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> float:
    """Mean F1 over the intents present in the truth (an intent absent from the truth is not scored)."""
    matrix = confusion_matrix(y_true, y_pred, num_labels)
    scores = per_intent_scores(matrix, [str(i) for i in range(num_labels)])
    present = [s["f1"] for s in scores if s["support"] > 0]
    return float(np.mean(present)) if present else 0.0


def coverage_curve(confidence: np.ndarray, correct: np.ndarray, thresholds: Sequence[float] = THRESHOLD_GRID) -> list[dict]:
    """For each threshold: the share of predictions kept, and the accuracy of those kept."""
    confidence, correct = np.asarray(confidence), np.asarray(correct, dtype=bool)
    curve = []
    for threshold in thresholds:
        kept = confidence >= threshold
        curve.append({
            "threshold": float(threshold),
            "coverage": float(kept.mean()) if len(kept) else 0.0,
            "accuracy": float(correct[kept].mean()) if kept.any() else None,
        })
    return curve


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    confidence, correct = np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    if not len(confidence):
        return 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            error += in_bin.mean() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return float(error)


def auroc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float | None:
    """Area under the ROC curve: the chance that a positive scores above a negative (ties count half)."""
    pos, neg = np.asarray(positive_scores, dtype=np.float64), np.asarray(negative_scores, dtype=np.float64)
    if not len(pos) or not len(neg):
        return None
    scores = np.concatenate([pos, neg])
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    # Average the ranks of tied scores.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    sums = np.zeros(len(counts))
    np.add.at(sums, inverse, ranks)
    ranks = (sums / counts)[inverse]
    rank_sum = ranks[: len(pos)].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
