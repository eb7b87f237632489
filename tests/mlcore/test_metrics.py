import numpy as np
import pytest

from mlcore import metrics


def test_accuracy_and_macro_f1_on_a_known_case():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    assert metrics.accuracy(y_true, y_pred) == pytest.approx(4 / 6)
    # F1 per class: 0 -> 0.5, 1 -> 0.8, 2 -> 2/3
    assert metrics.macro_f1(y_true, y_pred, 3) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    matrix = metrics.confusion_matrix(y_true, y_pred, 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    rows = metrics.per_intent_scores(matrix, ["a", "b", "c"])
    assert rows[1] == {"intent": "b", "precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8), "support": 2}


def test_auroc_extremes_and_ties():
    assert metrics.auroc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert metrics.auroc([0.1], [0.9]) == 0.0
    assert metrics.auroc([0.5, 0.5], [0.5]) == 0.5
    assert metrics.auroc([], [0.5]) is None


def test_ece_is_zero_when_confidence_matches_accuracy():
    confidence = np.array([0.75] * 4)
    assert metrics.expected_calibration_error(confidence, np.array([1, 1, 1, 0])) == pytest.approx(0.0)
    assert metrics.expected_calibration_error(np.array([1.0, 1.0]), np.array([0, 0])) == pytest.approx(1.0)


def test_normalise_scales_rows_to_unit_length_and_leaves_a_zero_row_zero():
    rows = np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, 0.0]])
    unit = metrics.normalise(rows)
    assert unit.dtype == np.float64 and unit.tolist() == [[0.6, 0.8], [0.0, 0.0], [1.0, 0.0]]
    assert metrics.normalise(rows, dtype=np.float32).dtype == np.float32


def test_softmax_rows_sum_to_one_and_a_temperature_flattens_them():
    logits = np.array([[1000.0, 999.0, 0.0], [1.0, 2.0, 3.0]])
    sharp, flat = metrics.softmax(logits), metrics.softmax(logits, 10.0)
    assert np.allclose(sharp.sum(axis=1), 1.0) and np.isfinite(sharp).all()
    assert flat[1].max() < sharp[1].max()
