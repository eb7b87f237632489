"""The inference core shared by every backend (torch, ONNX): what a prediction is, and the predictor
base that holds the model's metadata, tokenization, calibration, ranking and the threshold rule.
A backend only turns a batch of token ids into logits. No heavy imports here: the serving
package uses this with onnxruntime and never imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class Prediction:
    intent: str
    confidence: float
    # Every intent with its calibrated probability, most likely first.
    distribution: list[tuple[str, float]]
    low_confidence: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "confidence": self.confidence,
            "distribution": [{"intent": name, "probability": p} for name, p in self.distribution],
            "low_confidence": self.low_confidence,
        }


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature-scaled softmax in float64, row by row."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def ranked_distribution(row: np.ndarray, labels: Sequence[str]) -> list[dict[str, Any]]:
    """One text's distribution as JSON-ready dicts, most likely first (what serving returns)."""
    values = row.tolist()
    return [{"intent": labels[i], "probability": values[i]} for i in np.argsort(-row, kind="stable").tolist()]


def rank(probabilities: np.ndarray, labels: Sequence[str], threshold: float) -> list[Prediction]:
    predictions = []
    for row in probabilities:
        values = row.tolist()
        ranked = [(labels[i], values[i]) for i in np.argsort(-row, kind="stable").tolist()]
        intent, confidence = ranked[0]
        predictions.append(Prediction(intent, confidence, ranked, confidence < threshold))
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
    """Everything but the forward pass. Subclasses set ``backend`` and implement ``_forward``."""

    backend = "abstract"

    def __init__(self, *, labels: Sequence[str], temperature: float, threshold: float, max_length: int,
                 tokenizer: Mapping[str, Any], sha256: str | None, metrics: dict[str, Any] | None, input_names: Sequence[str]) -> None:
        self.labels: list[str] = list(labels)
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
        raise NotImplementedError

    def logits(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Raw (uncalibrated) logits, one row per text."""
        return batched_rows(list(texts), batch_size, len(self.labels), lambda batch: self._forward(self.encode(batch)))

    def probabilities(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Calibrated probabilities (temperature-scaled softmax), one row per text."""
        return calibrated_probabilities(self.logits(texts, batch_size=batch_size), self.temperature)

    def predict(self, texts: Sequence[str], *, threshold: float | None = None) -> list[Prediction]:
        return rank(self.probabilities(texts), self.labels, self.threshold if threshold is None else threshold)
