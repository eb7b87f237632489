"""Self-training: which texts become pseudo-labels, and the run that trains on them."""

from dataclasses import replace

import numpy as np
import pytest

from mlcore.config import TrainConfig
from mlcore.data import Example, dataset_fingerprint
from mlcore.errors import ConfigError
from mlcore.predictor import Predictor
from mlcore.review_strategy import routed
from mlcore.self_training import pseudo_labels
from mlcore.train import _validates_as_well, train

# Rows: confident and in scope; unsure by probability; confident but out of scope by the score.
PROBABILITIES = np.array([[0.95, 0.05], [0.55, 0.45], [0.90, 0.10]])
SCORES = np.array([0.60, 0.50, 0.01])


@pytest.mark.parametrize(("route", "expected"), [
    ("either", [False, True, True]),
    ("rule", [False, False, True]),
    ("probability", [False, True, False]),
])
def test_routing_matches_serving(route, expected):
    assert routed(PROBABILITIES, SCORES, threshold=0.8, score_threshold=0.05, route=route).tolist() == expected


def test_without_a_score_every_route_reads_the_probability():
    for route in ("either", "rule", "probability"):
        assert routed(PROBABILITIES, None, threshold=0.8, score_threshold=None, route=route).tolist() == [False, True, False]


def test_an_unknown_route_is_refused():
    with pytest.raises(ConfigError, match="either, rule, probability"):
        routed(PROBABILITIES, SCORES, threshold=0.8, score_threshold=0.05, route="sometimes")


@pytest.fixture(scope="module")
def predictor(tiny_artifact):
    return Predictor.from_file(tiny_artifact)


@pytest.fixture(scope="module")
def traffic(demo_data):
    """Unlabeled texts like the demo's: each training text with a word added."""
    return [f"{e.text} please" for e in demo_data.train]


def test_pseudo_labels_are_the_confident_predictions(predictor, traffic):
    pseudo = pseudo_labels(predictor, traffic, labeled_texts=[], limit=len(traffic))
    assert 0 < len(pseudo) < len(traffic)  # the tiny model is sure of some texts, not of all
    probabilities, scores = predictor.answer([p.text for p in pseudo])
    assert not routed(probabilities, scores, threshold=predictor.threshold, score_threshold=None).any()
    assert [p.intent for p in pseudo] == [predictor.labels[i] for i in probabilities.argmax(axis=1)]


def test_labeled_texts_and_repeats_are_left_out_and_the_limit_keeps_the_most_confident(predictor, traffic):
    everything = pseudo_labels(predictor, traffic, labeled_texts=[], limit=len(traffic))
    labeled = everything[0].text
    # The labeled text in other case and spacing, and a repeat of another text, are left out too.
    again = pseudo_labels(predictor, traffic + [f"  {traffic[1].upper()} "], labeled_texts=[f" {labeled.upper()}  "], limit=len(traffic))
    assert labeled not in {p.text for p in again}
    assert len({p.text.casefold() for p in again}) == len(again) == len(everything) - 1
    top = pseudo_labels(predictor, traffic, labeled_texts=[], limit=3)
    confidence = dict(zip(traffic, predictor.answer(traffic)[0].max(axis=1)))
    assert len(top) == 3 and min(confidence[p.text] for p in top) >= sorted(confidence[p.text] for p in everything)[-3]
    assert pseudo_labels(predictor, traffic, labeled_texts=[], limit=0) == []


@pytest.fixture(scope="module")
def self_trained(tiny_config, demo_data, traffic):
    return train(tiny_config, replace(demo_data, unlabeled=traffic))


def test_a_run_with_unlabeled_texts_trains_again_on_its_confident_ones(self_trained, tiny_result, demo_data, traffic):
    report = self_trained.metrics["self_training"]
    assert report["unlabeled_texts"] == len(demo_data.train) and report["pseudo_labels"] > 0
    # Which samples a run used, whatever order they came in (the samples may be pruned later).
    assert report["unlabeled_fingerprint"] == dataset_fingerprint(Example(t, "") for t in reversed(traffic))
    assert report["reviewed_only"]["validation_accuracy"] == tiny_result.metrics["validation"]["accuracy"]
    assert report["kept"] in ("self_trained", "reviewed_only")
    kept = report["self_trained"] if report["kept"] == "self_trained" else report["reviewed_only"]
    assert kept["validation_accuracy"] == self_trained.metrics["validation"]["accuracy"]
    # Kept only if it validates as well: the rule, whichever model won.
    first, second = ({"accuracy": r["validation_accuracy"], "oos_auroc": r["validation_oos_auroc"]}
                     for r in (report["reviewed_only"], report["self_trained"]))
    assert (report["kept"] == "self_trained") == _validates_as_well(second, first)
    # The second pass validates on the first pass's split: no pseudo-label ever validates.
    assert self_trained.metrics["training"]["val_examples"] == tiny_result.metrics["training"]["val_examples"]
    if report["kept"] == "self_trained":
        assert self_trained.metrics["training"]["train_examples"] == tiny_result.metrics["training"]["train_examples"] + report["pseudo_labels"]
        assert self_trained.metrics["validation"]["accuracy"] >= report["reviewed_only"]["validation_accuracy"]
    assert self_trained.fingerprint == tiny_result.fingerprint  # the labeled data's


def test_held_out_texts_never_come_back_as_pseudo_labels(tiny_config, demo_data):
    """A text of the test split sent as traffic must not train: it would inflate the held-out figures."""
    held_out = demo_data.train[:20]
    data = replace(demo_data, train=demo_data.train[20:], test=held_out, unlabeled=[e.text.upper() for e in held_out])
    result = train(replace(tiny_config, epochs=1), data)
    assert result.metrics["self_training"]["pseudo_labels"] == 0 and result.metrics["self_training"]["kept"] == "reviewed_only"


@pytest.mark.parametrize(("second", "kept"), [
    ({"accuracy": 0.90, "oos_auroc": 0.95}, True),
    ({"accuracy": 0.89, "oos_auroc": 0.99}, False),  # less accurate
    ({"accuracy": 0.91, "oos_auroc": 0.94}, False),  # more accurate, but routes out-of-scope texts worse
    ({"accuracy": 0.91, "oos_auroc": 0.946}, True),  # within the tolerance
    ({"accuracy": 0.90, "oos_auroc": None}, True),
])
def test_the_second_pass_is_kept_only_if_it_validates_as_well(second, kept):
    assert _validates_as_well(second, {"accuracy": 0.90, "oos_auroc": 0.95}) is kept


def test_self_training_off_ignores_unlabeled_texts(tiny_config, demo_data, traffic):
    result = train(replace(tiny_config, self_training=False, epochs=1), replace(demo_data, unlabeled=traffic))
    assert "self_training" not in result.metrics


@pytest.mark.parametrize(("field", "value", "message"), [
    ("self_training", "yes", "self_training must be true or false"),
    ("pseudo_label_ratio", -1, "pseudo_label_ratio must be a number from 0 to 100"),
])
def test_bad_self_training_options_are_refused(field, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{field: value})
