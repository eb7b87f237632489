"""Evaluation: the calibration (temperature), the review threshold, and the report of one split.

The metrics themselves are :mod:`mlcore.metrics`; the out-of-scope rule's figures are
:func:`mlcore.ood.score_report`. Read by the web process (:func:`headline`) without torch: only
:func:`fit_temperature`, which training and quantization call, imports it.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from mlcore.metrics import (
    THRESHOLD_GRID,
    accuracy,
    auroc,
    confusion_matrix,
    coverage_curve,
    expected_calibration_error,
    macro_f1,
    per_intent_scores,
    softmax,
)
from mlcore.ood import score_report



def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> float:
    """The temperature that minimises the validation negative log-likelihood (Guo et al., 2017).

    When every validation text is answered right, the likelihood keeps rising as the temperature
    falls to zero: the data cannot tell how sharp the model should be, and a fit would saturate every
    probability (in-scope and out-of-scope alike) at the lower bound. The logits are then left as
    trained (1.0). A small, easy validation set does this: 10 intents x 20 texts with label smoothing.
    """
    if not len(labels) or bool((np.asarray(logits).argmax(axis=1) == np.asarray(labels)).all()):
        return 1.0
    import torch  # only training needs it; the web process reads metrics without loading torch

    logits_t = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits_t / log_t.exp(), labels_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    temperature = float(log_t.exp().item())
    # Guard against a degenerate fit (e.g. a perfectly separated tiny validation set).
    if not math.isfinite(temperature):
        return 1.0
    return min(max(temperature, 0.05), 20.0)


def recommend_threshold(
    in_scope_confidence: np.ndarray,
    in_scope_correct: np.ndarray,
    oos_confidence: np.ndarray | None = None,
    *,
    review_budget: float = 0.1,
    thresholds: Sequence[float] = THRESHOLD_GRID,
) -> float:
    """Pick the confidence threshold on validation data.

    With out-of-scope examples: the threshold that maximises the mean of the in-scope
    rate (accepted and correct) and the out-of-scope recall (rejected). Without them:
    the highest threshold that still accepts at least ``1 - review_budget`` of the
    in-scope validation predictions, so that at most that share goes to review.
    """
    confidence = np.asarray(in_scope_confidence, dtype=np.float64)
    correct = np.asarray(in_scope_correct, dtype=bool)
    if oos_confidence is not None and len(oos_confidence) and len(confidence):
        oos = np.asarray(oos_confidence, dtype=np.float64)
        def score(t: float) -> float:
            return 0.5 * float(((confidence >= t) & correct).mean()) + 0.5 * float((oos < t).mean())
        return float(max(thresholds, key=lambda t: (score(t), -t)))
    if not len(confidence):
        return float(thresholds[0])
    best = thresholds[0]
    for threshold in thresholds:
        if (confidence >= threshold).mean() >= 1 - review_budget:
            best = threshold
    return float(best)


def classification_report(
    *,
    probabilities: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    threshold: float,
    oos_probabilities: np.ndarray | None = None,
    oos_label_id: int | None = None,
) -> dict:
    """All the numbers for one evaluation set, as plain JSON-ready types.

    ``oos_probabilities`` are the distributions the model gave to out-of-scope texts.
    ``oos_label_id`` is set when out-of-scope was trained as a class: a prediction of
    that class then counts as a rejection, like a confidence under the threshold.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    correct = predicted == labels
    matrix = confusion_matrix(labels, predicted, len(label_names))
    report = {
        "examples": int(len(labels)),
        "accuracy": accuracy(labels, predicted),
        "macro_f1": macro_f1(labels, predicted, len(label_names)),
        "per_intent": per_intent_scores(matrix, label_names),
        "confusion_matrix": matrix.tolist(),
        "coverage": coverage_curve(confidence, correct),
        "ece": expected_calibration_error(confidence, correct),
        "threshold": float(threshold),
        "in_scope_review_rate": float((confidence < threshold).mean()) if len(labels) else 0.0,
    }
    if oos_probabilities is not None and len(oos_probabilities):
        oos_probabilities = np.asarray(oos_probabilities, dtype=np.float64)
        rejected = oos_probabilities.max(axis=1) < threshold
        if oos_label_id is not None:
            rejected |= oos_probabilities.argmax(axis=1) == oos_label_id
        report["oos_examples"] = int(len(oos_probabilities))
        report["oos_recall"] = float(rejected.mean())
        report["oos_auroc"] = auroc(in_scope_score(probabilities, oos_label_id), in_scope_score(oos_probabilities, oos_label_id))
    return report


def in_scope_score(probabilities: np.ndarray, oos_label_id: int | None) -> np.ndarray:
    """How in-scope a text looks: its highest probability among the real intents."""
    probabilities = np.asarray(probabilities)
    if oos_label_id is None:
        return probabilities.max(axis=1)
    return np.delete(probabilities, oos_label_id, axis=1).max(axis=1)


def report_from_logits(
    *,
    logits: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    temperature: float,
    threshold: float,
    oos_logits: np.ndarray | None = None,
    oos_label_id: int | None = None,
    scorer=None,
    distances: np.ndarray | None = None,
    oos_distances: np.ndarray | None = None,
) -> dict:
    """Evaluate raw logits: the calibrated report, plus the ECE the model had before calibration.

    With an in-scope ``scorer`` (mlcore.ood.InScopeScorer) and the texts' Mahalanobis distances, the
    review figures (threshold, in-scope review rate, out-of-scope recall and AUROC) are the score's,
    the rule the model serves with; the probability rule's stay under ``confidence_rule``."""
    report = classification_report(
        probabilities=softmax(logits, temperature), labels=labels, label_names=label_names, threshold=threshold,
        oos_probabilities=None if oos_logits is None else softmax(oos_logits, temperature), oos_label_id=oos_label_id,
    )
    uncalibrated = softmax(logits, 1.0)
    report["ece_uncalibrated"] = expected_calibration_error(
        uncalibrated.max(axis=1), uncalibrated.argmax(axis=1) == np.asarray(labels)
    )
    report["temperature"] = float(temperature)
    if scorer is not None:
        report["confidence_rule"] = {"rule": "confidence", **{key: report[key] for key in RULE_KEYS if key in report}}
        report.update(score_report(scorer, (logits, distances), None if oos_logits is None else (oos_logits, oos_distances)))
    return report


# The figures that depend on the rule that sends a prediction to review.
RULE_KEYS = ("threshold", "in_scope_review_rate", "oos_recall", "oos_auroc")


def headline(report: dict) -> dict:
    """The few numbers worth a glance, for tables and logs."""
    keys = ("examples", "accuracy", "macro_f1", "ece_uncalibrated", "ece", "rule", "threshold", "in_scope_review_rate", "oos_recall", "oos_auroc")
    return {key: report[key] for key in keys if key in report}
