"""Self-training: which texts become pseudo-labels, and the run that trains on them."""

from dataclasses import replace

import numpy as np
import pytest

from mlcore import train as training
from mlcore.config import TrainConfig
from mlcore.data import OOS_LABEL, Example, LabeledData, dataset_fingerprint
from mlcore.errors import ConfigError
from mlcore.ood import MIN_REFERENCE_TEXTS
from mlcore.predictor import Predictor
from mlcore.review_strategy import ReviewRouting, routed, top_two
from mlcore.self_training import pseudo_labels
from mlcore.train import _reason_to_reject, train

# Out-of-scope validation texts: what shows whether pseudo-labels hurt review routing (AUROC).
OUT_OF_SCOPE = [Example(text, OOS_LABEL) for text in (
    "what is the meaning of life", "tell me a joke about cats", "how tall is everest", "translate hello to french",
    "who won the war of 1812", "what's two plus two", "how do i bake sourdough bread", "recommend a good novel",
    "what is the speed of light", "how many legs does a spider have", "teach me to knit", "is a tomato a fruit",
    "what language do they speak in brazil", "how old is the universe", "why is the sky blue", "spell necessary",
    "what rhymes with orange", "how far away is the moon", "name a famous painter", "what do pandas eat",
)]

# Rows: confident and in scope; unsure by probability; confident but out of scope by the score.
PROBABILITIES = np.array([[0.95, 0.05], [0.55, 0.45], [0.90, 0.10]])
SCORES = np.array([0.60, 0.50, 0.01])


# bench/learning_loop.py's --route: serving's two, and the probability alone.
@pytest.mark.parametrize(("route", "expected"), [
    ("either", [False, True, True]),
    ("rule", [False, False, True]),
    ("probability", [False, True, False]),
])
def test_the_learning_loops_routes(route, expected):
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
    pseudo = pseudo_labels(predictor, traffic, labeled_texts=[], limit=len(traffic), routing=ReviewRouting())
    assert 0 < len(pseudo) < len(traffic)  # the tiny model is sure of some texts, not of all
    probabilities, scores = predictor.answer([p.text for p in pseudo])
    assert not ReviewRouting().routed(probabilities, scores, threshold=predictor.threshold, score_threshold=None).any()
    assert [p.intent for p in pseudo] == [predictor.labels[i] for i in probabilities.argmax(axis=1)]


def test_pseudo_labels_leave_out_what_serving_sends_to_review_under_its_settings(predictor, traffic):
    """AMBIGUITY_MARGIN and CONFIDENCE_THRESHOLD send more to review: none of it may become a pseudo-label."""
    default = pseudo_labels(predictor, traffic, labeled_texts=[], limit=len(traffic), routing=ReviewRouting())
    rows = dict(zip(traffic, predictor.answer(traffic, batch_size=256)[0]))  # the batches pseudo_labels reads, to the last bit
    _, confidence, margin = top_two(np.array([rows[p.text] for p in default]))
    for routing, figure in [(ReviewRouting(ambiguity_margin=float(np.median(margin))), margin),
                            (ReviewRouting(confidence_threshold=float(np.median(confidence))), confidence)]:
        stricter = pseudo_labels(predictor, traffic, labeled_texts=[], limit=len(traffic), routing=routing)
        bar = routing.ambiguity_margin if figure is margin else routing.confidence_threshold
        assert [p.text for p in stricter] == [p.text for p, value in zip(default, figure) if value >= bar]
        assert 0 < len(stricter) < len(default)


def test_labeled_texts_and_repeats_are_left_out_and_the_limit_keeps_the_most_confident(predictor, traffic):
    serving = ReviewRouting()
    everything = pseudo_labels(predictor, traffic, labeled_texts=[], limit=len(traffic), routing=serving)
    labeled = everything[0].text
    # The labeled text in other case and spacing, and a repeat of another text, are left out too.
    again = pseudo_labels(predictor, traffic + [f"  {traffic[1].upper()} "], labeled_texts=[f" {labeled.upper()}  "], limit=len(traffic),
                          routing=serving)
    assert labeled not in {p.text for p in again}
    assert len({p.text.casefold() for p in again}) == len(again) == len(everything) - 1
    top = pseudo_labels(predictor, traffic, labeled_texts=[], limit=3, routing=serving)
    confidence = dict(zip(traffic, predictor.answer(traffic)[0].max(axis=1)))
    assert len(top) == 3 and min(confidence[p.text] for p in top) >= sorted(confidence[p.text] for p in everything)[-3]
    assert pseudo_labels(predictor, traffic, labeled_texts=[], limit=0, routing=serving) == []


@pytest.fixture(scope="module")
def self_trained(tiny_config, demo_data, traffic):
    return train(tiny_config, replace(demo_data, oos_val=OUT_OF_SCOPE, unlabeled=traffic))


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
    assert report.get("reason") == _reason_to_reject(second, first)
    assert (report["kept"] == "self_trained") == (_reason_to_reject(second, first) is None)
    # Both passes serve the rule the reviewed labels allow (the demo's 27 validation texts: the probability).
    assert report["reviewed_only"]["rule"] == report["self_trained"]["rule"] == "confidence"
    # The second pass validates on the first pass's split: no pseudo-label ever validates.
    assert self_trained.metrics["training"]["val_examples"] == tiny_result.metrics["training"]["val_examples"]
    if report["kept"] == "self_trained":
        assert self_trained.metrics["training"]["train_examples"] == tiny_result.metrics["training"]["train_examples"] + report["pseudo_labels"]
        assert self_trained.metrics["validation"]["accuracy"] >= report["reviewed_only"]["validation_accuracy"]
    assert self_trained.fingerprint == tiny_result.fingerprint  # the labeled data's


def test_held_out_texts_never_come_back_as_pseudo_labels(tiny_config, demo_data):
    """A text of the test split sent as traffic must not train: it would inflate the held-out figures."""
    held_out = demo_data.train[:20]
    data = replace(demo_data, train=demo_data.train[20:], test=held_out, oos_val=OUT_OF_SCOPE, unlabeled=[e.text.upper() for e in held_out])
    result = train(replace(tiny_config, epochs=1), data)
    report = result.metrics["self_training"]
    assert report["pseudo_labels"] == 0 and report["kept"] == "reviewed_only" and "labeled already" in report["reason"]


@pytest.mark.parametrize(("second", "first_auroc", "reason"), [
    ({"accuracy": 0.90, "oos_auroc": 0.95}, 0.95, None),
    ({"accuracy": 0.89, "oos_auroc": 0.99}, 0.95, "less accurately"),
    ({"accuracy": 0.91, "oos_auroc": 0.94}, 0.95, "AUROC was more than 0.005 lower"),  # more accurate, but routes out-of-scope texts worse
    ({"accuracy": 0.91, "oos_auroc": 0.946}, 0.95, None),  # within the tolerance
    ({"accuracy": 0.91, "oos_auroc": None}, 0.95, "no out-of-scope validation texts"),
    ({"accuracy": 0.91, "oos_auroc": None}, None, "no out-of-scope validation texts"),  # nothing shows routing did not get worse
])
def test_the_second_pass_is_kept_only_if_it_validates_as_well(second, first_auroc, reason):
    rejected = _reason_to_reject(second, {"accuracy": 0.90, "oos_auroc": first_auroc})
    assert rejected is None if reason is None else reason in rejected


def test_without_out_of_scope_validation_texts_the_reviewed_labels_model_is_kept(tiny_config, demo_data, traffic):
    """Nothing would show that the pseudo-labels did not hurt review routing: no second pass is kept
    (none is trained), and the report says why."""
    result = train(replace(tiny_config, epochs=1), replace(demo_data, unlabeled=traffic))
    report = result.metrics["self_training"]
    assert report["kept"] == "reviewed_only" and "out-of-scope validation" in report["reason"]
    assert "self_trained" not in report and report["pseudo_labels"] == 0
    assert result.metrics["validation"].get("oos_auroc") is None


def test_the_second_pass_fits_the_in_scope_score_only_as_the_reviewed_labels_allow(tiny_config, demo_data, monkeypatch):
    """Too few reviewed labels for the score's covariance (81 texts of 10 intents, 128 dimensions),
    enough pseudo-labels to pass it: the kept model, the second pass here, keeps the probability rule
    and trains without smoothing, as the first pass did."""
    ordered = sorted(demo_data.train, key=lambda e: e.intent)
    data = LabeledData(train=ordered[::2], oos_val=OUT_OF_SCOPE,
                       unlabeled=[e.text for e in ordered[1::2]] + [f"{e.text} please" for e in ordered])
    monkeypatch.setattr(training, "_reason_to_reject", lambda second, first: None)  # keep the second pass, however it validates
    result = train(TrainConfig(**{**tiny_config.to_dict(), "validation_fraction": 0.4}), data)
    report, trained = result.metrics["self_training"], result.metrics["training"]
    assert report["kept"] == "self_trained"
    # What the score would need, but for the pseudo-labels counted as training texts.
    assert trained["val_examples"] >= MIN_REFERENCE_TEXTS
    width, reviewed = result.model.encoder.config.hidden_size, trained["train_examples"] - report["pseudo_labels"]
    assert reviewed - len(result.labels) < width <= trained["train_examples"] - len(result.labels)
    assert result.in_scope_rule is None and "confidence_rule" not in result.metrics["validation"]
    assert trained["label_smoothing"] == 0.0
    assert report["reviewed_only"]["rule"] == report["self_trained"]["rule"] == "confidence"
    assert report["reviewed_only"]["label_smoothing"] == report["self_trained"]["label_smoothing"] == 0.0


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
