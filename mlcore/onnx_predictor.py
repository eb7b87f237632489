"""Serving-side inference from an ONNX export: onnxruntime, ``tokenizers`` and numpy only.

This is what the Lambda function runs: no torch, no transformers, so a cold start pays for
neither. The answers match :class:`mlcore.predictor.Predictor` on the same artifact (to 1e-4).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mlcore.errors import ArtifactError
from mlcore.prediction import Prediction, batched_rows, calibrated_probabilities, load_tokenizer, rank

METADATA_KEY = "intentflow"
DEFAULT_BATCH_SIZE = 64


class OnnxPredictor:
    def __init__(self, session, metadata: dict[str, Any]) -> None:
        self.session = session
        self.metadata = metadata
        self.labels: list[str] = list(metadata["labels"])
        self.temperature = float(metadata["temperature"])
        self.threshold = float(metadata["threshold"])
        self.max_length = int(metadata["max_length"])
        self.sha256: str = metadata["artifact_sha256"]
        self.metrics: dict[str, Any] = metadata.get("metrics", {})
        self.tokenizer = load_tokenizer(metadata["tokenizer"], self.max_length)
        self._inputs = {i.name for i in session.get_inputs()}

    @classmethod
    def from_file(cls, path: str | Path, *, threads: int | None = None) -> "OnnxPredictor":
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"Model file not found: {path}.")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
            metadata = json.loads(session.get_modelmeta().custom_metadata_map[METADATA_KEY])
        except KeyError:
            raise ArtifactError(f"{path} is an ONNX model without intentflow metadata (not exported by mlcore).") from None
        except Exception as exc:  # onnxruntime raises its own error types for unreadable files
            raise ArtifactError(f"{path} is not a readable ONNX model (truncated or corrupt): {type(exc).__name__}.") from None
        try:
            return cls(session, metadata)
        except Exception as exc:  # missing or mistyped metadata fields
            raise ArtifactError(f"{path} has unusable intentflow metadata: {type(exc).__name__}: {exc}.") from None

    @property
    def version(self) -> str:
        """The prefix of the SHA-256 of the ``.pt`` artifact this export came from."""
        return self.sha256[:12]

    def logits(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        def run(batch: list[str]) -> np.ndarray:
            encodings = self.tokenizer.encode_batch(batch)
            feeds = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
            return self.session.run(["logits"], {k: v for k, v in feeds.items() if k in self._inputs})[0]

        return batched_rows(list(texts), batch_size, len(self.labels), run)

    def probabilities(self, texts: Sequence[str], *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        return calibrated_probabilities(self.logits(texts, batch_size=batch_size), self.temperature)

    def predict(self, texts: Sequence[str], *, threshold: float | None = None) -> list[Prediction]:
        return rank(self.probabilities(texts), self.labels, self.threshold if threshold is None else threshold)
