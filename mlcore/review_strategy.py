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
"""

from __future__ import annotations

from typing import Sequence

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


ROUTES = ("either", "rule", "probability")


def routed(probabilities: np.ndarray, scores: np.ndarray | None, *, threshold: float, score_threshold: float | None,
           route: str = "either") -> np.ndarray:
    """Which predictions serving sends to review (REVIEW_ROUTING), as a mask over the rows.

    ``either``: the in-scope score under ``score_threshold`` or the calibrated probability under
    ``threshold``; ``rule``: the score alone (the probability where the model has no score);
    ``probability``: the probability alone. The rest is what serving answers with confidence."""
    if route not in ROUTES:
        raise ConfigError(f"The review routing must be one of {', '.join(ROUTES)}, got {route!r}.")
    _, confidence, margin = top_two(probabilities)
    unsure = needs_review(confidence, margin, threshold=threshold)
    if route != "probability" and scores is not None and score_threshold is not None:
        out_of_scope_like = np.asarray(scores) < score_threshold
        unsure = out_of_scope_like if route == "rule" else unsure | out_of_scope_like
    return unsure


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
