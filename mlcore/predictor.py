"""Serving-side inference from an artifact alone: no network, no base-model directory.

Imports only torch, ``tokenizers`` and the encoder architecture; never ``datasets``
or the ``Trainer``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mlcore.artifact import file_sha256, load_artifact
from mlcore.errors import ArtifactError
from mlcore.modeling import IntentClassifier, build_encoder_from_config

DEFAULT_BATCH_SIZE = 64


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


def load_tokenizer(settings: dict[str, Any], max_length: int):
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(settings["tokenizer_json"])
    tokenizer.no_padding()
    # Pad to the longest text of each batch, as the training collator did.
    tokenizer.enable_padding(pad_id=int(settings["pad_token_id"]), pad_token=settings["pad_token"])
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


class Predictor:
    def __init__(self, artifact: dict[str, Any], *, sha256: str | None = None) -> None:
        self.artifact = artifact
        self.sha256 = sha256
        self.labels: list[str] = list(artifact["labels"])
        self.temperature = float(artifact["temperature"])
        self.threshold = float(artifact["threshold"])
        self.max_length = int(artifact["max_length"])
        self.metrics: dict[str, Any] = artifact["metrics"]
        self._input_names = set(artifact["tokenizer"].get("model_input_names", ["input_ids", "attention_mask"]))
        try:
            self.tokenizer = load_tokenizer(artifact["tokenizer"], self.max_length)
            encoder = build_encoder_from_config(artifact["model_config"])
            if getattr(encoder, "pooler", None) is not None:
                encoder.pooler = None  # mean pooling replaces BERT's [CLS] pooler
            self.model = IntentClassifier(encoder, num_labels=len(self.labels), dropout=0.0)
            self.model.load_state_dict(artifact["state_dict"], strict=True)
        except Exception as exc:  # any mismatch between the metadata and the weights
            raise ArtifactError(f"The artifact's model could not be rebuilt: {type(exc).__name__}: {str(exc)[:300]}.") from None
        self.model.eval()

    @classmethod
    def from_file(cls, path: str | Path) -> "Predictor":
        return cls(load_artifact(path), sha256=file_sha256(path))

    @property
    def version(self) -> str:
        """A short id of the artifact: the prefix of its SHA-256."""
        return (self.sha256 or "")[:12]

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        encodings = self.tokenizer.encode_batch(list(texts))
        batch = {
            "input_ids": torch.tensor([e.ids for e in encodings], dtype=torch.long),
            "attention_mask": torch.tensor([e.attention_mask for e in encodings], dtype=torch.long),
        }
        if "token_type_ids" in self._input_names:
            batch["token_type_ids"] = torch.tensor([e.type_ids for e in encodings], dtype=torch.long)
        return batch

    def logits(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Raw (uncalibrated) logits, one row per text."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        # Sort by length so each batch pads little; restore the order at the end.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        rows: list[np.ndarray] = []
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = [texts[i] for i in order[start : start + batch_size]]
                rows.append(self.model(**self.encode(chunk))["logits"].float().numpy())
        stacked = np.concatenate(rows)
        result = np.empty_like(stacked)
        result[order] = stacked
        return result

    def probabilities(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Calibrated probabilities (temperature-scaled softmax), one row per text."""
        logits = torch.from_numpy(self.logits(texts, batch_size=batch_size)).double()
        return torch.softmax(logits / self.temperature, dim=-1).numpy()

    def predict(self, texts: Sequence[str], *, threshold: float | None = None) -> list[Prediction]:
        cutoff = self.threshold if threshold is None else threshold
        predictions = []
        for row in self.probabilities(texts):
            ranked = sorted(zip(self.labels, row.tolist()), key=lambda pair: -pair[1])
            intent, confidence = ranked[0]
            predictions.append(Prediction(intent, confidence, ranked, confidence < cutoff))
        return predictions
