import numpy as np
import pytest

from mlcore.metrics import normalise
from mlcore.ood import MahalanobisScorer, Standardiser, balanced_threshold, combined, energy, max_logit, nearest_neighbour


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


def test_the_model_side_distance_is_the_mahalanobis_scorers(rng):
    """mahalanobis_projection + MahalanobisDistance (what the artifact and the ONNX graph run) give
    the distances of the numpy scorer the bench chose on."""
    import torch

    from mlcore.modeling import MahalanobisDistance
    from mlcore.ood import mahalanobis_projection

    embeddings = rng.normal(size=(300, 8)) + np.repeat(np.eye(8)[:3] * 4, 100, axis=0)
    labels = np.repeat([0, 1, 2], 100)
    projection, projected_means = mahalanobis_projection(embeddings, labels)
    queries = rng.normal(size=(20, 8))
    distances = MahalanobisDistance(torch.from_numpy(projection), torch.from_numpy(projected_means))(torch.from_numpy(queries).float())
    np.testing.assert_allclose(-distances.numpy(), MahalanobisScorer.fit(embeddings, labels).score(queries), rtol=1e-4, atol=1e-3)


def scorer_on(rng, threshold=0.1):
    from mlcore.ood import InScopeScorer

    logits, distances = rng.normal(size=(200, 5)) + 3 * np.eye(5)[rng.integers(0, 5, 200)], rng.gamma(4.0, size=200)
    return InScopeScorer.fit(logit_score="energy", logits=logits, distances=distances, threshold=threshold), logits, distances


def test_the_in_scope_score_is_the_share_of_reference_texts_scoring_no_higher(rng):
    scorer, logits, distances = scorer_on(rng)
    shares = scorer.score(logits, distances)
    combined_scores = scorer.combined(logits, distances)
    assert shares.tolist() == [float((combined_scores <= value).mean()) for value in combined_scores]
    # The threshold is the share of in-scope texts like the reference ones that go to review.
    assert scorer.threshold - 1.01 / len(shares) <= (shares < scorer.threshold).mean() <= scorer.threshold
    # Farther from every class and lower logits: less in scope.
    far = scorer.score(logits[:1] - 5, distances[:1] + 50)
    assert far[0] == 0.0 and scorer.score(logits[:1] + 5, distances[:1] * 0)[0] == 1.0


def test_the_in_scope_scorer_goes_through_plain_types(rng):
    import json

    from mlcore.ood import InScopeScorer

    scorer, logits, distances = scorer_on(rng)
    again = InScopeScorer.from_dict(json.loads(json.dumps(scorer.to_dict())))
    np.testing.assert_allclose(again.score(logits, distances), scorer.score(logits, distances), atol=1e-2)
    moved = scorer.with_reference(logits + 1, distances)  # int8's outputs of the same texts
    assert (moved.score(logits + 1, distances) < moved.threshold).mean() == pytest.approx(scorer.threshold, abs=0.01)


@pytest.mark.parametrize("changes, message", [({"logit_score": "softmax"}, "logit_score"), ({"threshold": 1.5}, "share"),
                                              ({"reference": np.array([])}, "empty")])
def test_a_malformed_in_scope_scorer_is_refused(rng, changes, message):
    from dataclasses import replace

    scorer, _, _ = scorer_on(rng)
    with pytest.raises(ValueError, match=message):
        replace(scorer, **changes)
