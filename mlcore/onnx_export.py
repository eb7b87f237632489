"""Export a ``.pt`` artifact to one self-contained ONNX file for serving.

The ``.pt`` stays the artifact of record; the ONNX file is derived from it when a model is
promoted. It carries, as ONNX metadata, everything the serving predictor needs besides the
weights: labels, temperature, threshold, the tokenizer, and the SHA-256 of the ``.pt`` it came
from (the model version). Serving it needs onnxruntime, ``tokenizers`` and numpy: no torch.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from mlcore.artifact import file_sha256
from mlcore.files import atomic_write
from mlcore.onnx_predictor import DISTANCE_OUTPUT
from mlcore.predictor import Predictor

METADATA_KEY = "intentflow"
OPSET = 17


class _Outputs(torch.nn.Module):
    """The logits and, for an artifact with an in-scope rule, the Mahalanobis distance (output
    ``in_scope_distance``), computed in the graph from the statistics the artifact carries."""

    def __init__(self, predictor: Predictor, with_token_types: bool) -> None:
        super().__init__()
        self.model, self.distance, self.with_token_types = predictor.model, predictor.distance, with_token_types

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        embedded = self.model.embed(input_ids, attention_mask, token_type_ids if self.with_token_types else None)
        logits = self.model.classifier(embedded)
        return logits if self.distance is None else (logits, self.distance(embedded))


def serving_metadata(predictor: Predictor) -> dict:
    artifact = predictor.artifact
    metrics = artifact["metrics"]
    report = metrics.get("test") or metrics.get("validation") or {}
    return {
        "format_version": 1,
        "precision": "fp32",
        "artifact_sha256": predictor.sha256,
        "labels": predictor.labels,
        "temperature": predictor.temperature,
        "threshold": predictor.threshold,
        "max_length": predictor.max_length,
        "tokenizer": artifact["tokenizer"],
        "base_model": artifact["base_model"],
        "created_at": artifact["created_at"],
        "dataset_fingerprint": artifact["dataset_fingerprint"],
        "metrics": {k: report.get(k) for k in ("examples", "accuracy", "macro_f1", "ece", "rule", "in_scope_review_rate", "oos_recall", "oos_auroc")},
        **({"in_scope_scorer": artifact["in_scope_rule"]["scorer"]} if "in_scope_rule" in artifact else {}),
    }


def onnx_uri_for(uri: str) -> str:
    """Where the ONNX export of the artifact at ``uri`` goes: beside it, ending in .onnx."""
    stem = uri[: -len(".pt")] if uri.endswith(".pt") else uri
    return stem + ".onnx"


def _use_eager_attention(encoder: torch.nn.Module) -> None:
    """Trace attention as its plain operations (MatMul, Softmax), not as PyTorch's fused SDPA call:
    onnxruntime's transformer optimizer recognises the plain pattern and fuses it into one
    Attention node, which dynamic quantization then turns into QAttention. Same numbers either way."""
    if hasattr(encoder, "set_attn_implementation"):
        encoder.set_attn_implementation("eager")
    else:  # pragma: no cover - older transformers
        encoder.config._attn_implementation = "eager"


def fuse_transformer(model, model_config: dict):
    """onnxruntime's transformer fusions (embeddings + LayerNorm, attention, bias + GELU, skip +
    LayerNorm) for BERT-shaped encoders: fewer, bigger kernels. Measured in BENCHMARKS.md section 4:
    the fused int8 call is 0.77 times the unfused int8 one and loads in less than half the time.
    Other architectures are left as exported (onnxruntime still applies its generic fusions)."""
    if model_config.get("model_type") != "bert":
        return model
    from onnxruntime.transformers.optimizer import optimize_model

    optimized = optimize_model(model, model_type="bert", num_heads=int(model_config["num_attention_heads"]),
                               hidden_size=int(model_config["hidden_size"]))
    return optimized.model


def export_onnx(artifact_path: str | Path, out_path: str | Path, *, fuse: bool = True) -> Path:
    """Write ``out_path`` (atomically) from the artifact at ``artifact_path``; ``fuse=False`` skips
    the transformer fusions (the benchmark's "before" model)."""
    import onnx

    predictor = Predictor.from_file(artifact_path)
    if predictor.sha256 is None:  # pragma: no cover - from_file always sets it
        predictor.sha256 = file_sha256(artifact_path)
    _use_eager_attention(predictor.model.encoder)
    names = list(predictor.input_names)
    sample = {name: torch.from_numpy(ids) for name, ids in predictor.encode(["an example to trace", "another"]).items()}
    module = _Outputs(predictor, "token_type_ids" in names).eval()
    outputs = ["logits"] + ([DISTANCE_OUTPUT] if predictor.distance is not None else [])
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "model.onnx"
        with torch.inference_mode():
            torch.onnx.export(
                module, tuple(sample[name] for name in names), str(raw), dynamo=False, opset_version=OPSET,
                input_names=names, output_names=outputs,
                dynamic_axes={**{name: {0: "batch", 1: "sequence"} for name in names}, **{name: {0: "batch"} for name in outputs}},
            )
        model = onnx.load(str(raw))
        if fuse:
            model = fuse_transformer(model, predictor.artifact["model_config"])
        del model.metadata_props[:]
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA_KEY, json.dumps(serving_metadata(predictor))
        atomic_write(out_path, lambda handle: handle.write(model.SerializeToString()))
    return out_path


