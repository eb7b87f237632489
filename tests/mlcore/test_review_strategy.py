"""The review queue's order under each strategy, on a constructed queue."""

import numpy as np
import pytest

from mlcore.errors import ConfigError
from mlcore.review_strategy import check_strategy, needs_review, review_order, top_two

# Six unsure predictions: three of "a" (the model's favourite confusion), two of "b", one of "c".
CONFIDENCE = [0.30, 0.20, 0.25, 0.50, 0.40, 0.45]
MARGIN = [0.05, 0.10, 0.01, 0.30, 0.02, 0.20]
PREDICTED = ["a", "a", "a", "b", "b", "c"]


def test_confidence_orders_lowest_first():
    assert review_order(confidence=CONFIDENCE, margin=MARGIN, predicted=PREDICTED, strategy="confidence").tolist() == [1, 2, 0, 4, 5, 3]


def test_margin_orders_the_closest_top_two_first():
    assert review_order(confidence=CONFIDENCE, margin=MARGIN, predicted=PREDICTED, strategy="margin").tolist() == [2, 4, 0, 1, 5, 3]


def test_balanced_gives_each_predicted_intent_a_turn():
    # First turn: the least confident of a (0.20), b (0.40), c (0.45), by confidence; then a's and b's next ones.
    order = review_order(confidence=CONFIDENCE, margin=MARGIN, predicted=PREDICTED, strategy="balanced").tolist()
    assert order == [1, 4, 5, 2, 3, 0]
    # With a budget of three, every predicted intent gets a label; lowest confidence first would spend all three on "a".
    assert {PREDICTED[i] for i in order[:3]} == {"a", "b", "c"}
    assert {PREDICTED[i] for i in review_order(confidence=CONFIDENCE, margin=MARGIN, predicted=PREDICTED, strategy="confidence")[:3]} == {"a"}


def test_ties_keep_arrival_order_and_an_empty_queue_is_fine():
    assert review_order(confidence=[0.3, 0.3, 0.3], margin=[0.1] * 3, predicted=["x"] * 3, strategy="balanced").tolist() == [0, 1, 2]
    assert review_order(confidence=[], margin=[], predicted=[], strategy="balanced").tolist() == []


def test_the_routing_rule_and_top_two():
    best, confidence, margin = top_two(np.array([[0.1, 0.7, 0.2], [0.5, 0.45, 0.05]]))
    assert best.tolist() == [1, 0] and confidence.tolist() == [0.7, 0.5] and margin == pytest.approx([0.5, 0.05])
    assert needs_review(confidence, margin, threshold=0.6).tolist() == [False, True]
    assert needs_review(np.array([0.9]), np.array([0.05]), threshold=0.6, ambiguity_margin=0.1).tolist() == [True]


def test_an_unknown_strategy_is_refused_by_name():
    with pytest.raises(ConfigError, match="one of balanced, confidence, margin, got 'smart'"):
        check_strategy("smart")
