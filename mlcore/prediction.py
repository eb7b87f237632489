"""What a prediction is, shared by the torch and the ONNX predictors (no heavy imports here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

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
