"""The torch backend: inference from a ``.pt`` artifact alone (no network, no base-model directory).

Imports only torch, ``tokenizers`` and the encoder architecture; never ``datasets`` or the
``Trainer``. Everything but the forward pass is :class:`mlcore.prediction.PredictorBase`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from mlcore.artifact import file_sha256, load_artifact
from mlcore.errors import ArtifactError
from mlcore.metrics import normalise
from mlcore.modeling import IntentClassifier, MahalanobisDistance, build_encoder_from_config
from mlcore.ood import InScopeScorer
from mlcore.prediction import Prediction, PredictorBase, batched_rows, load_tokenizer

__all__ = ["Predictor", "Prediction", "load_tokenizer"]


class Predictor(PredictorBase):
    backend = "torch"

    def __init__(self, artifact: dict[str, Any], *, sha256: str | None = None) -> None:
        self.artifact = artifact
        try:
            super().__init__(
                labels=artifact["labels"], temperature=artifact["temperature"], threshold=artifact["threshold"],
                max_length=artifact["max_length"], tokenizer=artifact["tokenizer"], sha256=sha256, metrics=artifact["metrics"],
                input_names=artifact["tokenizer"].get("model_input_names", ["input_ids", "attention_mask"]),
                scorer=InScopeScorer.from_dict(artifact["in_scope_rule"]["scorer"]) if "in_scope_rule" in artifact else None,
            )
            rule = artifact.get("in_scope_rule")
            self.distance = MahalanobisDistance(rule["projection"], rule["projected_means"]) if rule else None
            encoder = build_encoder_from_config(artifact["model_config"])
            if getattr(encoder, "pooler", None) is not None:
                encoder.pooler = None  # mean pooling replaces BERT's [CLS] pooler
            self.model = IntentClassifier(encoder, num_labels=len(self.labels), dropout=0.0)
            self.model.load_state_dict(artifact["state_dict"], strict=True)
            width = self.model.encoder.config.hidden_size
            if rule and (tuple(rule["projection"].shape) != (width, width) or tuple(rule["projected_means"].shape) != (len(self.labels), width)):
                raise ValueError("the in-scope rule's statistics do not fit the encoder and the intents")
        except Exception as exc:  # any mismatch between the metadata and the weights
            raise ArtifactError(f"The artifact's model could not be rebuilt: {type(exc).__name__}: {str(exc)[:300]}.") from None
        self.model.eval()

    @classmethod
    def from_file(cls, path: str | Path) -> "Predictor":
        return cls(load_artifact(path), sha256=file_sha256(path))

    def embeddings(self, texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Sentence embeddings (the classifier's mean-pooled encoder output), L2-normalised, one row
        per text: what near-duplicate grouping compares (mlcore.grouping)."""
        width = self.model.encoder.config.hidden_size

        def run(batch: list[str]) -> np.ndarray:
            with torch.inference_mode():
                return self.model.embed(**{name: torch.from_numpy(ids) for name, ids in self.encode(batch).items()}).float().numpy()

        return normalise(batched_rows(list(texts), batch_size, width, run), dtype=np.float32)

    def _forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return self.scored_model(**{name: torch.from_numpy(ids) for name, ids in batch.items()}).float().numpy()

    def scored_model(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """The logits, and the Mahalanobis distance as one more column when the artifact has an
        in-scope rule: what the ONNX export traces, so both backends answer alike."""
        embedded = self.model.embed(input_ids, attention_mask, token_type_ids)
        logits = self.model.classifier(embedded)
        return logits if self.distance is None else torch.cat([logits, self.distance(embedded)[:, None]], dim=1)
