import subprocess
import sys

import numpy as np
import pytest
import torch

from mlcore.config import TrainConfig
from mlcore.data import LabeledData, Example
from mlcore.errors import DataError, TrainingCancelled
from mlcore.metrics import softmax
from mlcore.predictor import Predictor
from mlcore.train import train
from tests.factories import REPO_ROOT

SAMPLE_TEXTS = ["show me today's news", "update my profile", "what's the weather tomorrow", "play some jazz", "zzz qqq"]


def test_training_reports_metrics_and_the_best_epoch(tiny_result, demo_data):
    training = tiny_result.metrics["training"]
    assert training["train_examples"] + training["val_examples"] == len(demo_data.train)
    assert training["best_epoch"] in [h["epoch"] for h in training["history"]]
    best = max(h["macro_f1"] for h in training["history"])
    assert tiny_result.metrics["validation"]["macro_f1"] == pytest.approx(best, abs=1e-6)
    assert tiny_result.metrics["validation"]["accuracy"] > 0.5  # far above the 10% of chance
    assert 0.0 <= tiny_result.threshold <= 0.95 and tiny_result.temperature > 0


def test_round_trip_predictor_matches_the_in_memory_model(tiny_result, tiny_artifact):
    assert set(torch.load(tiny_artifact, weights_only=True)) >= {"state_dict", "labels"}
    model, tokenizer = tiny_result.model.eval(), tiny_result.tokenizer
    with torch.inference_mode():
        batch = tokenizer(SAMPLE_TEXTS, truncation=True, max_length=64, padding=True, return_tensors="pt")
        expected = softmax(model(**batch)["logits"].numpy(), tiny_result.temperature)
    predictor = Predictor.from_file(tiny_artifact)
    np.testing.assert_allclose(predictor.probabilities(SAMPLE_TEXTS), expected, atol=1e-5)
    # One text at a time (no padding) gives the same answer as the padded batch.
    np.testing.assert_allclose(predictor.probabilities(SAMPLE_TEXTS[:1]), expected[:1], atol=1e-5)


def test_predictions_carry_the_full_sorted_distribution(tiny_artifact):
    predictor = Predictor.from_file(tiny_artifact)
    prediction = predictor.predict(["show me today's news"])[0]
    probabilities = [p for _, p in prediction.distribution]
    assert sorted(name for name, _ in prediction.distribution) == sorted(predictor.labels)
    assert probabilities == sorted(probabilities, reverse=True)
    assert sum(probabilities) == pytest.approx(1.0)
    assert prediction.intent == prediction.distribution[0][0]
    assert predictor.predict(["show me today's news"], threshold=1.01)[0].low_confidence is True
    assert len(predictor.version) == 12


def test_progress_is_reported_and_cancel_stops_between_steps(tiny_config, demo_data):
    seen = []

    def cancel_after_three_steps() -> bool:
        return len(seen) >= 3

    with pytest.raises(TrainingCancelled, match="step 3 of"):
        train(tiny_config, demo_data, progress=seen.append, should_cancel=cancel_after_three_steps)
    assert [p.step for p in seen] == [1, 2, 3]
    assert all(p.total_steps == seen[0].total_steps > 3 for p in seen)
    assert seen[-1].elapsed_seconds > 0


def test_small_data_gets_enough_steps(tiny_config, demo_data):
    seen = []
    config = TrainConfig(**{**tiny_config.to_dict(), "epochs": 1, "min_train_steps": 40, "batch_size": 32})
    with pytest.raises(TrainingCancelled):
        train(config, demo_data, progress=seen.append, should_cancel=lambda: True)
    assert seen[0].total_steps >= 40


def test_one_intent_is_refused(tiny_config):
    with pytest.raises(DataError, match="one intent only"):
        train(tiny_config, LabeledData(train=[Example(f"t {i}", "only") for i in range(10)]))


def test_oos_as_a_class_adds_the_label(tiny_config, demo_data):
    oos = [Example(t, "oos") for t in ("what is the meaning of life", "tell me a joke about cats", "how tall is everest",
                                       "translate hello to french", "who won the war of 1812", "what's two plus two")]
    data = LabeledData(train=demo_data.train, oos_train=oos)
    config = TrainConfig(**{**tiny_config.to_dict(), "oos_mode": "class", "epochs": 1})
    result = train(config, data)
    assert "oos" in result.labels and result.metrics["training"]["intent_counts"]["oos"] >= 5


def test_the_torch_backend_never_imports_the_training_stack(tiny_artifact):
    """It builds the encoder with transformers (only the worker and the CLI use it; serving runs the
    ONNX export and imports neither, tests/serving/test_cold_start.py), but never datasets or the Trainer."""
    code = ("import sys, mlcore.predictor as p; p.Predictor.from_file(sys.argv[1]).predict(['hi']); "
            "print('datasets' in sys.modules, 'transformers.trainer' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, tiny_artifact], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_label_smoothing_reaches_the_loss(tiny_config, tiny_result, demo_data):
    """Heavy smoothing trains the logits closer together than plain cross-entropy does."""
    import torch

    smoothed = train(TrainConfig(**{**tiny_config.to_dict(), "label_smoothing": 0.9}), demo_data)
    texts = [e.text for e in demo_data.train[:40]]

    def spread(result):
        batch = result.tokenizer(texts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = result.model.eval()(**batch)["logits"]
        return float((logits.max(dim=1).values - logits.mean(dim=1)).mean())

    assert spread(smoothed) < 0.5 * spread(tiny_result)


def test_a_run_with_enough_validation_texts_fits_the_in_scope_score(scored_result, scored_artifact, tiny_config):
    """The score's statistics travel in the artifact, the validation report is the score's rule (the
    review budget's share of in-scope texts) with the probability rule's figures kept beside it."""
    from mlcore.artifact import load_artifact

    validation = scored_result.metrics["validation"]
    assert validation["rule"] == "in_scope_score" and validation["threshold"] == tiny_config.review_budget
    assert validation["in_scope_review_rate"] <= tiny_config.review_budget
    assert validation["confidence_rule"]["threshold"] == scored_result.threshold
    assert scored_result.metrics["training"]["label_smoothing"] == 0.1  # smoothing goes with the score
    rule = load_artifact(scored_artifact)["in_scope_rule"]
    width = scored_result.model.encoder.config.hidden_size
    assert tuple(rule["projection"].shape) == (width, width) and tuple(rule["projected_means"].shape) == (len(scored_result.labels), width)
    predictor = Predictor.from_file(scored_artifact)
    probabilities, scores = predictor.answer(SAMPLE_TEXTS)
    assert scores.shape == (len(SAMPLE_TEXTS),) and ((0 <= scores) & (scores <= 1)).all()
    predictions = predictor.predict(SAMPLE_TEXTS)
    assert [p.in_scope_score for p in predictions] == scores.tolist()
    assert [p.low_confidence for p in predictions] == (scores < tiny_config.review_budget).tolist()
    # A probability threshold, when given, imposes the probability rule.
    assert [p.low_confidence for p in predictor.predict(SAMPLE_TEXTS, threshold=1.0)] == [True] * len(SAMPLE_TEXTS)


@pytest.mark.parametrize("changes, rows", [({"oos_score": "probability", "validation_fraction": 0.25}, None), ({}, None),
                                           ({"validation_fraction": 0.4}, 150)])
def test_the_probability_rule_stays_where_the_score_cannot_be_fitted(tiny_config, tiny_result, demo_data, changes, rows):
    """Asked for; too few validation texts to set a review share with (the demo's 27); too few
    training texts for the covariance (90 texts of 10 intents, 128 dimensions)."""
    data = demo_data if rows is None else LabeledData(train=sorted(demo_data.train, key=lambda e: e.intent)[::2][:rows])
    result = tiny_result if not changes else train(TrainConfig(**{**tiny_config.to_dict(), **changes}), data)
    if rows is not None:
        assert result.metrics["training"]["val_examples"] >= 50  # the reference would have been big enough
    assert result.in_scope_rule is None and "confidence_rule" not in result.metrics["validation"]
    assert "in_scope_rule" not in result.to_artifact()
    # Smoothing would flatten the probability this rule reads, so the default trains without it.
    assert result.metrics["training"]["label_smoothing"] == 0.0
