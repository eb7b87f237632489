"""Which unsure predictions a reviewer should label first: the review queue's order.

A queue usually holds more than reviewers will label, so its order decides which labels the next
training run gets. One definition serves the learning-loop benchmark (``bench/learning_loop.py``),
which chose the default, and the admin's queue (``webapp.review``), which orders its items the same
way with a database query (a test holds the two to the same order).

- ``confidence``: lowest confidence first (the original rule).
- ``margin``: smallest gap between the first and second intents' probabilities first.
- ``balanced``: lowest confidence first within each predicted intent, taken in turns across the
  predicted intents: the first pass gives every intent its most uncertain item, the second pass
  its next one, and so on. A budget then spreads over the whole label space instead of piling up
  on the two or three intents the model confuses most.

What goes to the queue at all is serving's review routing: ``ReviewRouting`` states it once, for
self-training's pseudo-labels (the traffic serving answers with confidence) and the benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mlcore.errors import ConfigError

STRATEGIES = ("balanced", "confidence", "margin")
# The winner of bench/learning_loop.py on CLINC150 at equal label budgets (BENCHMARKS.md, section 11).
DEFAULT_STRATEGY = "confidence"


def check_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise ConfigError(f"The review strategy must be one of {', '.join(STRATEGIES)}, got {name!r}.")
    return name


def needs_review(confidence: np.ndarray, margin: np.ndarray, *, threshold: float, ambiguity_margin: float | None = None) -> np.ndarray:
    """The serving rule: below the confidence threshold, or (when set) a top-two gap under the margin."""
    routed = np.asarray(confidence) < threshold
    if ambiguity_margin is not None:
        routed |= np.asarray(margin) < ambiguity_margin
    return routed


# Serving's REVIEW_ROUTING values (lambda/intentflow_serving/config.py); bench/learning_loop.py also routes by
# "probability", the rule before issue 15 (see routed).
SERVING_ROUTES = ("either", "rule")
ROUTES = (*SERVING_ROUTES, "probability")


@dataclass(frozen=True)
class ReviewRouting:
    """What serving sends to review, and so what it answers with confidence: serving's settings of
    the same names (REVIEW_ROUTING, AMBIGUITY_MARGIN, CONFIDENCE_THRESHOLD, IN_SCOPE_THRESHOLD; the
    defaults are serving's). One definition for self-training's pseudo-labels, which must be exactly
    the traffic serving answers with confidence (tests/mlcore/test_review_strategy.py holds it to
    lambda/intentflow_serving/core.py's ``classify_texts``).

    ``route``: "either" sends, for a model served by its in-scope score, a calibrated probability
    under the model's probability threshold too; "rule" the rule's low confidence alone.
    ``ambiguity_margin``: also a top-two gap under it. ``confidence_threshold``: imposes the
    probability rule with this threshold, even on a model with the score. ``in_scope_threshold``:
    replaces the score's own threshold."""

    route: str = "either"
    ambiguity_margin: float | None = None
    confidence_threshold: float | None = None
    in_scope_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.route not in SERVING_ROUTES:
            raise ConfigError(f"review_routing (REVIEW_ROUTING) must be one of {', '.join(SERVING_ROUTES)}, got {self.route!r}.")
        for name in ("ambiguity_margin", "confidence_threshold", "in_scope_threshold"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and 0 <= value <= 1):
                raise ConfigError(f"{name} must be a number in [0, 1] or unset, got {value!r}.")

    def rule(self, *, threshold: float, score_threshold: float | None) -> tuple[str, float]:
        """Serving's rule and its threshold (ServingCore.rule, PredictorBase.rule) for a model with
        probability ``threshold`` and, where it has the in-scope score, ``score_threshold``."""
        if self.confidence_threshold is not None or score_threshold is None:
            return "confidence", threshold if self.confidence_threshold is None else self.confidence_threshold
        return "in_scope_score", score_threshold if self.in_scope_threshold is None else self.in_scope_threshold

    def routed(self, probabilities: np.ndarray, scores: np.ndarray | None, *, threshold: float,
               score_threshold: float | None) -> np.ndarray:
        """Which rows serving sends to review (the audit draw aside), as a mask; the rest it answers
        with confidence. ``scores`` and ``score_threshold`` are the model's in-scope scores and
        threshold, both None for a model without the score."""
        if (scores is None) != (score_threshold is None):
            raise ValueError("scores and score_threshold go together: both given (a model with the in-scope score) or neither.")
        # float64, as serving compares Python floats: a float32 row compared with a Python float
        # would be compared in float32 (NEP 50), and a value at the threshold could fall either way.
        _, confidence, margin = top_two(np.asarray(probabilities, dtype=np.float64))
        rule, applied = self.rule(threshold=threshold, score_threshold=score_threshold)
        if rule == "in_scope_score":
            unsure = np.asarray(scores, dtype=np.float64) < applied
            if self.route == "either":  # the model's own probability threshold, not an imposed one
                unsure |= confidence < threshold
        else:
            unsure = confidence < applied
        if self.ambiguity_margin is not None:
            unsure |= margin < self.ambiguity_margin
        return unsure


def routed(probabilities: np.ndarray, scores: np.ndarray | None, *, threshold: float, score_threshold: float | None,
           route: str = "either") -> np.ndarray:
    """Which predictions serving sends to review under REVIEW_ROUTING ``route`` (ReviewRouting), or
    under "probability", the calibrated probability under ``threshold`` alone (as CONFIDENCE_THRESHOLD
    set to the model's own threshold does): bench/learning_loop.py's --route."""
    if route not in ROUTES:
        raise ConfigError(f"The review routing must be one of {', '.join(ROUTES)}, got {route!r}.")
    policy = ReviewRouting(confidence_threshold=threshold) if route == "probability" else ReviewRouting(route=route)
    has_score = scores is not None and score_threshold is not None
    return policy.routed(probabilities, scores if has_score else None, threshold=threshold,
                         score_threshold=score_threshold if has_score else None)


def review_order(*, confidence: Sequence[float], margin: Sequence[float], predicted: Sequence[str], strategy: str) -> np.ndarray:
    """The positions of the items in the queue's order under ``strategy``; ties keep arrival order."""
    check_strategy(strategy)
    confidence, margin = np.asarray(confidence, dtype=float), np.asarray(margin, dtype=float)
    arrival = np.arange(len(confidence))
    if strategy == "confidence":
        return np.lexsort((arrival, confidence))
    if strategy == "margin":
        return np.lexsort((arrival, margin))
    turn = turns_within_groups(predicted, confidence)
    return np.lexsort((arrival, confidence, turn))


def turns_within_groups(groups: Sequence[str], confidence: np.ndarray) -> np.ndarray:
    """Each item's place (0, 1, 2, ...) within its group, lowest confidence first."""
    groups = np.asarray(groups, dtype=object)
    order = np.lexsort((np.arange(len(confidence)), confidence, np.unique(groups, return_inverse=True)[1] if len(groups) else groups))
    turn = np.zeros(len(confidence), dtype=int)
    previous, count = None, 0
    for position in order:
        count = count + 1 if groups[position] == previous else 0
        previous = groups[position]
        turn[position] = count
    return turn


def top_two(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's top intent index, its probability, and its margin over the second."""
    probabilities = np.asarray(probabilities)
    best = probabilities.argmax(axis=1)
    ordered = np.sort(probabilities, axis=1)
    second = ordered[:, -2] if probabilities.shape[1] > 1 else np.zeros(len(probabilities))
    return best, ordered[:, -1], ordered[:, -1] - second


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
