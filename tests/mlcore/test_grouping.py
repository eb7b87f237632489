import numpy as np
import pytest

from mlcore.grouping import leader_groups, pair_purity
from mlcore.metrics import normalise


def unit(*rows):
    return normalise(np.array(rows, dtype=np.float32), dtype=np.float32)


def test_items_join_the_most_similar_leader_above_the_threshold():
    vectors = unit([1, 0, 0], [0, 1, 0], [0.99, 0.1, 0], [0.1, 0.99, 0], [0, 0, 1])
    assert leader_groups(vectors, 0.9).tolist() == [0, 1, 0, 1, 4]
    assert leader_groups(vectors, 0.999).tolist() == [0, 1, 2, 3, 4]


def test_members_are_compared_with_leaders_only_so_groups_do_not_chain():
    # Each step is 20 degrees: neighbours are similar (cos 0.94), the ends are not (cos 0.77 at 40).
    angles = np.radians([0, 20, 40])
    vectors = unit(*[[np.cos(a), np.sin(a)] for a in angles])
    assert leader_groups(vectors, 0.9).tolist() == [0, 0, 2]


def test_existing_leaders_never_join_one_another():
    vectors = unit([1, 0], [1, 0.01], [1, -0.001])
    assert leader_groups(vectors, 0.5, leaders=2).tolist() == [0, 1, 0]


def test_a_bad_threshold_is_refused():
    with pytest.raises(ValueError):
        leader_groups(unit([1, 0]), 0.0)


def test_pair_purity_counts_pairs_within_groups():
    assert pair_purity(["a", "a", "a", "b"], ["x", "x", "y", "z"]) == (pytest.approx(1 / 3), 3)
    assert pair_purity(["a", "b"], ["x", "y"]) == (None, 0)


def test_the_torch_predictor_embeds_unit_vectors_and_identical_texts_alike(tiny_artifact):
    from mlcore.predictor import Predictor

    predictor = Predictor.from_file(tiny_artifact)
    vectors = predictor.embeddings(["what is the news", "play a song", "what is the news"])
    assert vectors.shape == (3, predictor.model.encoder.config.hidden_size)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert np.allclose(vectors[0], vectors[2], atol=1e-5) and float(vectors[0] @ vectors[1]) < 0.9999
