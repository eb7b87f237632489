"""Serving-side inference from an artifact alone: no network, no base-model directory.

Imports only torch, ``tokenizers`` and the encoder architecture; never ``datasets``
or the ``Trainer``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mlcore.artifact import file_sha256, load_artifact
from mlcore.errors import ArtifactError
from mlcore.modeling import IntentClassifier, build_encoder_from_config
from mlcore.prediction import Prediction, batched_rows, calibrated_probabilities, load_tokenizer, rank

__all__ = ["Predictor", "Prediction", "load_tokenizer"]

DEFAULT_BATCH_SIZE = 64


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
        def run(batch: list[str]) -> np.ndarray:
            return self.model(**self.encode(batch))["logits"].float().numpy()

        with torch.inference_mode():
            return batched_rows(list(texts), batch_size, len(self.labels), run)

    def probabilities(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        """Calibrated probabilities (temperature-scaled softmax), one row per text."""
        return calibrated_probabilities(self.logits(texts, batch_size=batch_size), self.temperature)

    def predict(self, texts: Sequence[str], *, threshold: float | None = None) -> list[Prediction]:
        return rank(self.probabilities(texts), self.labels, self.threshold if threshold is None else threshold)
