"""The inference core shared by every backend (torch, ONNX): what a prediction is, and the predictor
base that holds the model's metadata, tokenization, calibration, ranking and the threshold rule.
A backend only turns a batch of token ids into logits (and, for a model with an in-scope score, the
Mahalanobis distance as one more column). No heavy imports here: the serving package uses this with
onnxruntime and never imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mlcore.metrics import softmax
from mlcore.ood import InScopeScorer


@dataclass(frozen=True)
class Prediction:
    intent: str
    confidence: float
    # Every intent with its calibrated probability, most likely first.
    distribution: list[tuple[str, float]]
    low_confidence: bool
    # The share of in-scope validation texts that looked less in scope (mlcore.ood.InScopeScorer),
    # for a model that has the score; low_confidence then means it is under the model's threshold.
    in_scope_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "confidence": self.confidence,
            "distribution": [{"intent": name, "probability": p} for name, p in self.distribution],
            "low_confidence": self.low_confidence,
            "in_scope_score": self.in_scope_score,
        }


def ranked_distribution(row: np.ndarray, labels: Sequence[str]) -> list[dict[str, Any]]:
    """One text's distribution as JSON-ready dicts, most likely first (what serving returns)."""
    values = row.tolist()
    return [{"intent": labels[i], "probability": values[i]} for i in np.argsort(-row, kind="stable").tolist()]


def is_low_confidence(*, rule: str, confidence: float, in_scope_score: float | None, threshold: float) -> bool:
    """Whether a prediction goes to review: the ``rule``'s figure (the calibrated probability, or the
    in-scope score) under ``threshold``. The predictors and serving both decide with it."""
    return (in_scope_score if rule == "in_scope_score" else confidence) < threshold


def rank(probabilities: np.ndarray, labels: Sequence[str], threshold: float, in_scope_scores: np.ndarray | None = None,
         *, rule: str = "confidence") -> list[Prediction]:
    """Predictions, low in confidence when the ``rule``'s figure (the calibrated probability, or the
    in-scope score) is under ``threshold``."""
    predictions = []
    for index, row in enumerate(probabilities):
        values = row.tolist()
        ranked = [(labels[i], values[i]) for i in np.argsort(-row, kind="stable").tolist()]
        intent, confidence = ranked[0]
        share = None if in_scope_scores is None else float(in_scope_scores[index])
        low_confidence = is_low_confidence(rule=rule, confidence=confidence, in_scope_score=share, threshold=threshold)
        predictions.append(Prediction(intent, confidence, ranked, low_confidence, share))
    return predictions


def batched_rows(texts: Sequence[str], batch_size: int, width: int, run: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """``run`` over batches of texts of similar length (less padding), rows back in the texts' order."""
    if not texts:
        return np.zeros((0, width), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    stacked = np.concatenate([run([texts[i] for i in order[start : start + batch_size]]) for start in range(0, len(order), batch_size)])
    result = np.empty_like(stacked)
    result[order] = stacked
    return result


def load_tokenizer(settings: dict[str, Any], max_length: int):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(settings["tokenizer_json"])
    tokenizer.no_padding()
    # Pad to the longest text of each batch, as the training collator did.
    tokenizer.enable_padding(pad_id=int(settings["pad_token_id"]), pad_token=settings["pad_token"])
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


DEFAULT_BATCH_SIZE = 64
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class PredictorBase:
    """Everything but the forward pass. Subclasses set ``backend`` and implement ``_forward``.

    ``threshold`` applies to the calibrated probability; a model with an in-scope ``scorer`` sends
    a prediction to review by that score instead, under ``scorer.threshold`` (see :meth:`rule`)."""

    backend = "abstract"

    def __init__(self, *, labels: Sequence[str], temperature: float, threshold: float, max_length: int,
                 tokenizer: Mapping[str, Any], sha256: str | None, metrics: dict[str, Any] | None, input_names: Sequence[str],
                 scorer: InScopeScorer | None = None) -> None:
        self.labels: list[str] = list(labels)
        self.scorer = scorer
        self.temperature = float(temperature)
        self.threshold = float(threshold)
        self.max_length = int(max_length)
        self.sha256 = sha256
        self.metrics: dict[str, Any] = metrics or {}
        self.input_names = tuple(name for name in MODEL_INPUTS if name in set(input_names))
        self.tokenizer = load_tokenizer(tokenizer, self.max_length)

    @property
    def version(self) -> str:
        """The model version: the prefix of the ``.pt`` artifact's SHA-256 (an export carries its source's)."""
        return (self.sha256 or "")[:12]

    def encode(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Token ids as int64 arrays, padded to the batch's longest text, for the model's inputs only."""
        encodings = self.tokenizer.encode_batch(list(texts))
        columns = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
        return {name: np.array([getattr(e, columns[name]) for e in encodings], dtype=np.int64) for name in self.input_names}

    def _forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """The logits, with the Mahalanobis distance as one more column when the model has a scorer."""
        raise NotImplementedError

    def outputs(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw (uncalibrated) logits, one row per text, and the Mahalanobis distances (None without a scorer)."""
        width = len(self.labels) + (1 if self.scorer is not None else 0)
        rows = batched_rows(list(texts), batch_size, width, lambda batch: self._forward(self.encode(batch)))
        return (rows[:, :-1], rows[:, -1]) if self.scorer is not None else (rows, None)

    def logits(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        return self.outputs(texts, batch_size=batch_size)[0]

    def probabilities(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Calibrated probabilities (temperature-scaled softmax), one row per text."""
        return softmax(self.logits(texts, batch_size=batch_size), self.temperature)

    def answer(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated probabilities and the in-scope scores (None without a scorer), from one model call."""
        logits, distances = self.outputs(texts, batch_size=batch_size)
        scores = self.scorer.score(logits, distances) if self.scorer is not None else None
        return softmax(logits, self.temperature), scores

    def rule(self, confidence_threshold: float | None = None) -> tuple[str, float]:
        """What decides low confidence, and its threshold: the in-scope score where the model has one
        and no probability threshold is imposed, else the calibrated probability."""
        if confidence_threshold is not None:
            return "confidence", confidence_threshold
        rule = "in_scope_score" if self.scorer is not None else "confidence"
        return rule, self.own_threshold(rule)

    def own_threshold(self, rule: str) -> float:
        """The threshold the model recommends for ``rule``, fitted on its validation split."""
        return self.scorer.threshold if rule == "in_scope_score" else self.threshold

    def predict(self, texts: Sequence[str], *, threshold: float | None = None) -> list[Prediction]:
        """``threshold``, when given, is a probability threshold and imposes the probability rule."""
        probabilities, scores = self.answer(texts)
        rule, applied = self.rule(threshold)
        return rank(probabilities, self.labels, applied, scores, rule=rule)
