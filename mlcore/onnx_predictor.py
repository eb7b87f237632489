"""Serving-side inference from an ONNX export: onnxruntime, ``tokenizers`` and numpy only.

This is what the Lambda function runs: no torch, no transformers, so a cold start pays for
neither. The answers match :class:`mlcore.predictor.Predictor` on the same artifact (to 1e-4).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mlcore.errors import ArtifactError
from mlcore.ood import InScopeScorer
from mlcore.prediction import PredictorBase

METADATA_KEY = "intentflow"
DISTANCE_OUTPUT = "in_scope_distance"  # the export's second output, for a model with an in-scope score


class OnnxPredictor(PredictorBase):
    """The ONNX backend (fp32 or int8): everything but the forward pass is PredictorBase."""

    backend = "onnx"

    def __init__(self, session, metadata: dict[str, Any]) -> None:
        self.session = session
        self.metadata = metadata
        super().__init__(
            labels=metadata["labels"], temperature=metadata["temperature"], threshold=metadata["threshold"],
            max_length=metadata["max_length"], tokenizer=metadata["tokenizer"], sha256=metadata["artifact_sha256"],
            metrics=metadata.get("metrics", {}), input_names=[i.name for i in session.get_inputs()],
            scorer=InScopeScorer.from_dict(metadata["in_scope_scorer"]) if "in_scope_scorer" in metadata else None,
        )
        self.output_names = ["logits"] + ([DISTANCE_OUTPUT] if self.scorer is not None else [])
        if not set(self.output_names) <= {o.name for o in session.get_outputs()}:
            raise ValueError(f"the model has no {' or '.join(self.output_names)} output")

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

    def _forward(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        outputs = self.session.run(self.output_names, batch)
        return outputs[0] if len(outputs) == 1 else np.concatenate([outputs[0], outputs[1][:, None]], axis=1)
