"""Out-of-scope scores beyond the maximum calibrated probability: pure numpy functions.

Each returns one number per text, higher meaning more in scope. They are the candidates of issue 15,
measured in bench/oos_scores.py (BENCHMARKS.md, section 13); none is wired into training or serving
yet.

- ``max_logit`` and ``energy`` (the log of the sum of exp(logit)) need nothing but the logits.
- ``MahalanobisScorer``: the negative smallest Mahalanobis distance of the L2-normalised sentence
  embedding to a class mean, with one covariance shared by the classes (Lee et al., 2018), fitted on
  the training embeddings.
- ``nearest_neighbour``: the cosine similarity to the k-th most similar training embedding.
- ``combined``: the sum of scores standardised on the in-scope validation texts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


def max_logit(logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits, dtype=np.float64).max(axis=1)


def energy(logits: np.ndarray) -> np.ndarray:
    """log(sum(exp(logits))), computed stably: the negative free energy of Liu et al. (2020)."""
    values = np.asarray(logits, dtype=np.float64)
    top = values.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(values - top).sum(axis=1, keepdims=True)))[:, 0]


def normalise(embeddings: np.ndarray) -> np.ndarray:
    values = np.asarray(embeddings, dtype=np.float64)
    return values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)


@dataclass
class MahalanobisScorer:
    means: np.ndarray  # (classes, width): the class means of the normalised training embeddings
    precision: np.ndarray  # (width, width): the inverse of the shared covariance

    @classmethod
    def fit(cls, embeddings: np.ndarray, labels: Sequence[int], *, ridge: float = 1e-6) -> "MahalanobisScorer":
        """Class means and one covariance shared by all classes, from labeled training embeddings."""
        values, labels = normalise(embeddings), np.asarray(labels)
        classes = np.unique(labels)
        if len(classes) != labels.max() + 1:
            raise ValueError("every class from 0 to the largest label needs at least one embedding")
        means = np.stack([values[labels == c].mean(axis=0) for c in classes])
        centred = values - means[labels]
        covariance = centred.T @ centred / len(values)
        return cls(means=means, precision=np.linalg.pinv(covariance + ridge * np.eye(values.shape[1])))

    def __post_init__(self) -> None:
        # What every distance needs of the means, computed once: (x - m)'P(x - m) = x'Px - 2 x'Pm + m'Pm.
        self._means_projected = self.means @ self.precision
        self._means_term = (self._means_projected * self.means).sum(axis=1)

    def score(self, embeddings: np.ndarray) -> np.ndarray:
        values = normalise(embeddings)
        distances = ((values @ self.precision) * values).sum(axis=1)[:, None] - 2 * values @ self._means_projected.T + self._means_term[None, :]
        return -distances.min(axis=1)


def nearest_neighbour(embeddings: np.ndarray, training_embeddings: np.ndarray, k: int = 1) -> np.ndarray:
    similarities = normalise(embeddings) @ normalise(training_embeddings).T
    return np.sort(similarities, axis=1)[:, -k]


@dataclass
class Standardiser:
    mean: float
    std: float

    @classmethod
    def fit(cls, in_scope_scores: np.ndarray) -> "Standardiser":
        values = np.asarray(in_scope_scores, dtype=np.float64)
        return cls(float(values.mean()), float(values.std()) or 1.0)

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return (np.asarray(scores, dtype=np.float64) - self.mean) / self.std


def combined(parts: Sequence[np.ndarray], standardisers: Sequence[Standardiser]) -> np.ndarray:
    return sum(standardise(part) for part, standardise in zip(parts, standardisers))


def balanced_threshold(in_scope: np.ndarray, in_scope_correct: np.ndarray, out_of_scope: np.ndarray) -> float:
    """The threshold on any score that the training run's rule picks for the probability
    (mlcore.evaluate.recommend_threshold): the largest mean of the in-scope share accepted and
    correct and the out-of-scope share rejected, over every score seen."""
    in_scope, correct, out_of_scope = np.asarray(in_scope, dtype=np.float64), np.asarray(in_scope_correct, dtype=bool), np.asarray(out_of_scope, dtype=np.float64)
    candidates = np.unique(np.concatenate([in_scope, out_of_scope]))
    order = np.argsort(in_scope)
    # For each candidate t: how many in-scope (correct) scores and out-of-scope scores fall below it.
    below_in = np.searchsorted(in_scope[order], candidates, side="left")
    correct_below = np.concatenate([[0], np.cumsum(correct[order])])[below_in]
    accepted_correct = (correct.sum() - correct_below) / len(in_scope)
    rejected = np.searchsorted(np.sort(out_of_scope), candidates, side="left") / len(out_of_scope)
    objective = 0.5 * accepted_correct + 0.5 * rejected
    return float(candidates[np.flatnonzero(objective == objective.max())[0]])
