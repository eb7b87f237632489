import numpy as np
import pytest

from mlcore.ood import MahalanobisScorer, Standardiser, balanced_threshold, combined, energy, max_logit, nearest_neighbour, normalise


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_energy_is_the_log_of_the_summed_exponentials_without_overflow():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -5.0]])
    assert energy(logits)[0] == pytest.approx(np.log(np.exp(logits[0]).sum()))
    assert energy(logits)[1] == pytest.approx(1000.0 + np.log(2.0))
    assert list(max_logit(logits)) == [3.0, 1000.0]


def test_the_mahalanobis_score_is_the_negative_distance_to_the_nearest_class_mean(rng):
    embeddings = rng.normal(size=(300, 8)) + np.repeat(np.eye(8)[:3] * 4, 100, axis=0)
    labels = np.repeat([0, 1, 2], 100)
    scorer = MahalanobisScorer.fit(embeddings, labels)
    queries = rng.normal(size=(20, 8))
    by_hand = [-min(float((q - m) @ scorer.precision @ (q - m)) for m in scorer.means) for q in normalise(queries)]
    assert scorer.score(queries) == pytest.approx(by_hand, rel=1e-6, abs=1e-6)
    # A text like the training texts scores above one in a direction no class takes.
    assert scorer.score(np.eye(8)[[0]] * 4)[0] > scorer.score(np.eye(8)[[7]] * 4)[0]


def test_a_class_without_embeddings_is_refused(rng):
    with pytest.raises(ValueError, match="every class"):
        MahalanobisScorer.fit(rng.normal(size=(4, 3)), [0, 0, 2, 2])


def test_the_nearest_neighbour_of_a_training_text_is_itself(rng):
    training = rng.normal(size=(50, 6))
    assert nearest_neighbour(training[:5] * 3.0, training) == pytest.approx(np.ones(5))
    assert (nearest_neighbour(rng.normal(size=(5, 6)), training) < 1.0).all()


def test_combined_scores_are_sums_of_standardised_parts():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([10.0, 30.0, 20.0])
    parts = [Standardiser.fit(a), Standardiser.fit(b)]
    assert combined([a, b], parts) == pytest.approx((a - 2) / a.std() + (b - 20) / b.std())


def test_the_balanced_threshold_maximises_the_rule_over_every_score_seen(rng):
    in_scope, correct, oos = rng.normal(1.0, 1.0, 400), rng.random(400) < 0.9, rng.normal(-1.0, 1.0, 100)

    def objective(t):
        return 0.5 * ((in_scope >= t) & correct).mean() + 0.5 * (oos < t).mean()

    best = max(np.unique(np.concatenate([in_scope, oos])), key=lambda t: (objective(t), -t))
    assert balanced_threshold(in_scope, correct, oos) == best
