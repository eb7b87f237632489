import numpy as np
import pytest

from mlcore import evaluate as ev
from mlcore.metrics import softmax


def test_temperature_fit_recovers_an_overconfident_model():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 5)) * 2.0
    labels = np.array([rng.choice(5, p=p) for p in softmax(true_logits)])
    fitted = ev.fit_temperature(true_logits * 3.0, labels)  # 3x sharper than the truth
    assert fitted == pytest.approx(3.0, rel=0.1)


def test_a_perfectly_answered_validation_set_leaves_the_logits_as_trained():
    """Every text right: the likelihood rises without end as the temperature falls; a fit would
    saturate every probability, out-of-scope ones too."""
    logits = np.array([[2.0, 0.5, 0.1], [0.2, 1.5, 0.3], [0.1, 0.4, 1.2]])
    assert ev.fit_temperature(logits, np.array([0, 1, 2])) == 1.0
    assert ev.fit_temperature(logits, np.array([0, 1, 0])) != 1.0  # one mistake: a finite optimum


def test_threshold_without_oos_respects_the_review_budget():
    confidence = np.linspace(0.5, 1.0, 100)
    threshold = ev.recommend_threshold(confidence, np.ones(100, bool), review_budget=0.1)
    assert (confidence < threshold).mean() <= 0.1
    assert threshold == 0.55


def test_threshold_with_oos_separates_the_two_groups():
    in_scope = np.full(50, 0.9)
    oos = np.full(50, 0.3)
    threshold = ev.recommend_threshold(in_scope, np.ones(50, bool), oos)
    assert 0.3 < threshold <= 0.9


def test_report_counts_oos_predicted_as_class_as_rejected():
    probabilities = np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1]])
    oos = np.array([[0.05, 0.05, 0.9], [0.6, 0.3, 0.1]])
    report = ev.classification_report(
        probabilities=probabilities, labels=np.array([0, 1]), label_names=["a", "b", "oos"], threshold=0.7,
        oos_probabilities=oos, oos_label_id=2,
    )
    assert report["accuracy"] == 1.0 and report["oos_recall"] == 1.0
    assert report["coverage"][0] == {"threshold": 0.0, "coverage": 1.0, "accuracy": 1.0}
