"""Out-of-scope scores beyond the maximum calibrated probability: pure numpy functions.

Each returns one number per text, higher meaning more in scope. They are the candidates measured in
bench/oos_scores.py (BENCHMARKS.md, section 13). The one chosen there on validation is what training
fits and serving runs: :class:`InScopeScorer` (energy + Mahalanobis, as a share of the in-scope
validation texts).

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

from mlcore.metrics import auroc, normalise


def max_logit(logits: np.ndarray) -> np.ndarray:
    return np.asarray(logits, dtype=np.float64).max(axis=1)


def energy(logits: np.ndarray) -> np.ndarray:
    """log(sum(exp(logits))), computed stably: the negative free energy of Liu et al. (2020)."""
    values = np.asarray(logits, dtype=np.float64)
    top = values.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(values - top).sum(axis=1, keepdims=True)))[:, 0]


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


LOGIT_SCORES = {"max_logit": max_logit, "energy": energy}
# Below this many in-scope validation texts the score's reference distribution is too coarse to set
# a review share with: such runs keep the calibrated-probability rule. So do runs whose shared
# covariance is singular (rank at most training texts minus intents, under the embedding's width):
# the distance would then measure mostly the ridge (mlcore.train._fit_in_scope_rule).
MIN_REFERENCE_TEXTS = 50


def mahalanobis_projection(embeddings: np.ndarray, labels: Sequence[int], *, ridge: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """The Mahalanobis scorer's statistics in the form the model runs them (mlcore.modeling.
    MahalanobisDistance): W with W Wᵀ = the shared precision, and the class means projected by W."""
    fitted = MahalanobisScorer.fit(embeddings, labels, ridge=ridge)
    eigenvalues, eigenvectors = np.linalg.eigh((fitted.precision + fitted.precision.T) / 2)
    projection = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))[None, :]
    return projection, fitted.means @ projection


@dataclass
class InScopeScorer:
    """How in scope a text looks, as a share: the fraction of the run's in-scope validation texts
    whose combined score (a logit score plus the negative Mahalanobis distance, each standardised on
    those texts) is at most this text's. A text scoring below ``threshold`` goes to review, so
    ``threshold`` is the share of in-scope traffic sent there (the run's review budget); what that
    share buys in out-of-scope recall is in the run's validation report."""

    logit_score: str
    logit_standard: Standardiser
    distance_standard: Standardiser
    reference: np.ndarray  # the combined scores of the in-scope validation texts, sorted
    threshold: float

    def __post_init__(self) -> None:
        if self.logit_score not in LOGIT_SCORES:
            raise ValueError(f"logit_score must be one of {', '.join(LOGIT_SCORES)}, got {self.logit_score!r}")
        self.reference = np.sort(np.asarray(self.reference, dtype=np.float64))
        if not len(self.reference):
            raise ValueError("the reference distribution is empty")
        if not 0 <= self.threshold <= 1:
            raise ValueError(f"threshold is a share in [0, 1], got {self.threshold!r}")

    @classmethod
    def fit(cls, *, logit_score: str, logits: np.ndarray, distances: np.ndarray, threshold: float) -> "InScopeScorer":
        """From the in-scope validation texts' logits and Mahalanobis distances."""
        logit_part = LOGIT_SCORES[logit_score](logits)
        logit_standard, distance_standard = Standardiser.fit(logit_part), Standardiser.fit(-np.asarray(distances, dtype=np.float64))
        reference = logit_standard(logit_part) + distance_standard(-np.asarray(distances, dtype=np.float64))
        return cls(logit_score, logit_standard, distance_standard, reference, float(threshold))

    def combined(self, logits: np.ndarray, distances: np.ndarray) -> np.ndarray:
        return self.logit_standard(LOGIT_SCORES[self.logit_score](logits)) + self.distance_standard(-np.asarray(distances, dtype=np.float64))

    def score(self, logits: np.ndarray, distances: np.ndarray) -> np.ndarray:
        """The in-scope score of each text, in [0, 1]."""
        return np.searchsorted(self.reference, self.combined(logits, distances), side="right") / len(self.reference)

    def with_reference(self, logits: np.ndarray, distances: np.ndarray) -> "InScopeScorer":
        """The same rule with its reference taken from other outputs of the same texts (the int8 model's)."""
        return InScopeScorer(self.logit_score, self.logit_standard, self.distance_standard, self.combined(logits, distances), self.threshold)

    def to_dict(self) -> dict:
        return {"logit_score": self.logit_score, "logit_standard": [self.logit_standard.mean, self.logit_standard.std],
                "distance_standard": [self.distance_standard.mean, self.distance_standard.std],
                "reference": [round(float(v), 6) for v in self.reference], "threshold": float(self.threshold)}

    @classmethod
    def from_dict(cls, values: dict) -> "InScopeScorer":
        return cls(values["logit_score"], Standardiser(*map(float, values["logit_standard"])),
                   Standardiser(*map(float, values["distance_standard"])), np.asarray(values["reference"], dtype=np.float64),
                   float(values["threshold"]))


def score_report(scorer: InScopeScorer, in_scope: tuple[np.ndarray, np.ndarray], out_of_scope: tuple[np.ndarray, np.ndarray] | None) -> dict:
    """The rule's figures on one split, from the (logits, distances) of its in-scope and out-of-scope
    texts: the in-scope share sent to review and, with out-of-scope texts, their recall and the
    AUROC of the combined score (the share ties every text beyond the reference's ends)."""
    shares = scorer.score(*in_scope)
    report = {"rule": "in_scope_score", "threshold": scorer.threshold,
              "in_scope_review_rate": float((shares < scorer.threshold).mean()) if len(shares) else 0.0}
    if out_of_scope is not None and len(out_of_scope[0]):
        report.update(oos_recall=float((scorer.score(*out_of_scope) < scorer.threshold).mean()),
                      oos_auroc=auroc(scorer.combined(*in_scope), scorer.combined(*out_of_scope)))
    return report
