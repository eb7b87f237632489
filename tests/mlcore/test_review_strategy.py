"""The review queue's order under each strategy, on a constructed queue; and what serving sends to
the queue (ReviewRouting), held to serving's own code."""

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlcore.errors import ConfigError
from mlcore.prediction import PredictorBase
from mlcore.review_strategy import ReviewRouting, check_strategy, needs_review, review_order, top_two

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


# Rows: confident and in scope; unsure by probability; confident but out of scope by the score; a near tie.
PROBABILITIES = np.array([[0.95, 0.05], [0.55, 0.45], [0.90, 0.10], [0.81, 0.19]])
SCORES = np.array([0.60, 0.50, 0.01, 0.40])


@pytest.mark.parametrize(("routing", "expected"), [
    (ReviewRouting(), [False, True, True, False]),  # the score, or the model's probability threshold
    (ReviewRouting(route="rule"), [False, False, True, False]),  # the score alone
    (ReviewRouting(ambiguity_margin=0.7), [False, True, True, True]),
    (ReviewRouting(confidence_threshold=0.85), [False, True, False, True]),  # the probability rule, imposed
    (ReviewRouting(in_scope_threshold=0.55), [False, True, True, True]),  # the score's threshold, overridden
    (ReviewRouting(route="rule", in_scope_threshold=0.45), [False, False, True, True]),
])
def test_what_serving_sends_to_review(routing, expected):
    assert routing.routed(PROBABILITIES, SCORES, threshold=0.8, score_threshold=0.05).tolist() == expected


def test_a_model_without_the_score_is_routed_by_its_probability():
    for route in ("either", "rule"):
        assert ReviewRouting(route=route).routed(PROBABILITIES, None, threshold=0.8, score_threshold=None).tolist() == [False, True, False, False]
    imposed = ReviewRouting(confidence_threshold=0.92)
    assert imposed.routed(PROBABILITIES, None, threshold=0.8, score_threshold=None).tolist() == [False, True, True, True]
    with pytest.raises(ValueError, match="go together"):
        ReviewRouting().routed(PROBABILITIES, SCORES, threshold=0.8, score_threshold=None)


@pytest.mark.parametrize(("field", "value"), [
    ("route", "probability"), ("route", "EITHER"), ("ambiguity_margin", -0.1), ("confidence_threshold", 1.5),
    ("in_scope_threshold", float("nan")), ("confidence_threshold", True), ("ambiguity_margin", "0.1"),
])
def test_bad_routing_settings_are_refused_by_name(field, value):
    with pytest.raises(ConfigError, match="review_routing" if field == "route" else field):
        ReviewRouting(**{field: value})


class GeneratedModel:
    """What serving reads of a predictor, with generated outputs: its rule (PredictorBase's own),
    thresholds, labels, and one answer."""

    rule, own_threshold = PredictorBase.rule, PredictorBase.own_threshold
    version = "generated"

    def __init__(self, probabilities: np.ndarray, scores: np.ndarray | None, threshold: float, score_threshold: float | None) -> None:
        self.labels = [f"intent_{i}" for i in range(probabilities.shape[1])]
        self.threshold = threshold
        self.scorer = None if score_threshold is None else SimpleNamespace(threshold=score_threshold)
        self.outputs = probabilities, scores

    def answer(self, texts):
        return self.outputs


def serving_routes(model: GeneratedModel, **settings) -> tuple[list[bool], tuple[str, float]]:
    """Which rows intentflow_serving.core's classify_texts sends to review under ``settings`` (every
    other row it sends as a traffic sample, TRAFFIC_SAMPLE_RATE=1: what it answered with
    confidence), and its rule (ServingCore.rule)."""
    from intentflow_serving.config import ServingSettings
    from intentflow_serving.core import ServingCore
    from intentflow_serving.review import SAMPLE, ReviewRouter

    settings = ServingSettings(**settings)
    router = ReviewRouter(SimpleNamespace(name="recording"), bound_seconds=1, retries=0, ambiguity_margin=settings.ambiguity_margin,
                          audit_rate=0.0, sample_rate=1.0)
    events = []
    router.submit = events.extend  # what would be delivered, without delivering it
    core = ServingCore(settings, None, router)
    results = core.classify_texts(model, [f"text {i}" for i in range(len(model.outputs[0]))])
    samples = {event["prediction_id"] for event in events if event.get("type") == SAMPLE}
    assert len(events) == len(results)  # each row either reviewed or sampled: nothing audited, nothing dropped
    return [result["prediction_id"] not in samples for result in results], core.rule(model)


# Values on and near the thresholds and margins drawn below, so ties are tried, not only luck.
FRACTIONS = st.one_of(st.sampled_from([0.0, 0.05, 0.1, 0.3, 0.5, 0.55, 0.7, 1.0]), st.floats(0, 1))
OPTIONAL = st.one_of(st.none(), FRACTIONS)


def rows_of(width: int, count: int):
    return st.lists(st.lists(FRACTIONS, min_size=width, max_size=width), min_size=count, max_size=count).map(np.array)


@st.composite
def outputs(draw, *, scored: bool):
    """Probability rows and, for a model with the in-scope score, the scores; float32 too, which
    serving reads as Python floats (a backend could hand it float32 rows)."""
    count, width, dtype = draw(st.integers(1, 12)), draw(st.integers(1, 5)), draw(st.sampled_from([np.float64, np.float32]))
    return draw(rows_of(width, count)).astype(dtype), draw(rows_of(1, count)).ravel().astype(dtype) if scored else None


# Each combination of the settings that choose the rule gets its own generated cases.
@pytest.mark.parametrize("route", ["either", "rule"])
@pytest.mark.parametrize("scored", [True, False], ids=["with_score", "probability_only"])
@pytest.mark.parametrize("imposed", [True, False], ids=["confidence_threshold", "no_confidence_threshold"])
def test_the_routing_is_servings_for_any_outputs_and_settings(route, scored, imposed):
    """ReviewRouting decides exactly as serving does, for any model outputs and settings."""

    @settings(max_examples=100, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(outputs(scored=scored), FRACTIONS, FRACTIONS, OPTIONAL, FRACTIONS if imposed else st.none(), OPTIONAL)
    @example((np.array([[0.7, 0.3]]), np.array([0.5]) if scored else None), 0.7, 0.5, 0.4, 0.7 if imposed else None, 0.5)  # all at their thresholds
    # float32's 0.7 is under the float 0.7: serving routes it, a float32 comparison would not.
    @example((np.array([[0.7, 0.3]], dtype=np.float32), np.array([0.7], dtype=np.float32) if scored else None), 0.5 if scored else 0.7, 0.7,
             None, None, None)
    def check(model_outputs, threshold, score_threshold, margin, confidence, in_scope):
        probabilities, scores = model_outputs
        own_score_threshold = score_threshold if scored else None
        model = GeneratedModel(probabilities, scores, threshold, own_score_threshold)
        routing = ReviewRouting(route=route, ambiguity_margin=margin, confidence_threshold=confidence, in_scope_threshold=in_scope)
        routed, rule = serving_routes(model, review_routing=route, ambiguity_margin=margin, confidence_threshold=confidence,
                                      in_scope_threshold=in_scope)
        assert routing.routed(probabilities, scores, threshold=threshold, score_threshold=own_score_threshold).tolist() == routed
        assert routing.rule(threshold=threshold, score_threshold=own_score_threshold) == rule

    check()
