"""An int8 copy of the fp32 ONNX export, and the gate that decides whether it may be served.

Dynamic quantization (onnxruntime): the weights of the matrix multiplications are stored as int8
and activations are quantized on the fly, which makes the file about a quarter of the size and the
CPU call faster. It also moves the logits a little, so the int8 model is served only where the
run's own data shows it answers as the fp32 one does:

- on every split given (the validation split and the held-out set), its accuracy is within
  ``max_accuracy_drop`` of fp32's, and its top-1 intent agrees with fp32's on at least
  ``min_agreement`` of the texts;
- its temperature is refitted on the validation split, so its confidences stay calibrated (the
  expected calibration error of both is reported), and it keeps fp32's threshold;
- for a model with an in-scope score, int8 keeps the rule and its threshold, with the reference
  distribution taken from int8's own scores of the validation split.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from mlcore.evaluate import fit_temperature
from mlcore.files import atomic_write
from mlcore.metrics import expected_calibration_error, softmax
from mlcore.onnx_predictor import DISTANCE_OUTPUT, METADATA_KEY
from mlcore.prediction import PredictorBase

DEFAULT_MAX_ACCURACY_DROP = 0.003  # 0.3 points
DEFAULT_MIN_AGREEMENT = 0.99


def quantize_int8(fp32_path: str | Path, out_path: str | Path, *, temperature: float | None = None) -> Path:
    """Write the int8 model (atomically), with the fp32 export's metadata, ``precision`` set to
    "int8" and, when given, the refitted temperature."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = onnx.load(str(fp32_path))
    metadata = json.loads({p.key: p.value for p in source.metadata_props}[METADATA_KEY])
    with tempfile.TemporaryDirectory() as folder:
        raw = Path(folder) / "int8.onnx"
        # The fused export holds onnxruntime's own operators, whose outputs ONNX shape inference
        # cannot type: they are float.
        quantize_dynamic(str(fp32_path), str(raw), weight_type=QuantType.QInt8, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                         nodes_to_exclude=distance_only_nodes(source.graph))
        model = onnx.load(str(raw))
    metadata = {**metadata, "precision": "int8", **({"temperature": float(temperature)} if temperature is not None else {})}
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata)
    return atomic_write(out_path, lambda handle: handle.write(model.SerializeToString()))


def distance_only_nodes(graph) -> list[str]:
    """The nodes that compute the Mahalanobis distance and not the logits: they stay fp32. Its
    projection's columns differ in scale by orders of magnitude (the square roots of the precision's
    eigenvalues), which one int8 scale per tensor would crush."""
    producers = {output: node for node in graph.node for output in node.output}

    def ancestors(output: str) -> dict[int, str]:
        seen, stack = {}, [output]
        while stack:
            node = producers.get(stack.pop())
            if node is not None and id(node) not in seen:
                seen[id(node)] = node.name
                stack.extend(node.input)
        return seen

    if DISTANCE_OUTPUT not in {o.name for o in graph.output}:
        return []
    shared = ancestors("logits")
    return sorted(name for key, name in ancestors(DISTANCE_OUTPUT).items() if key not in shared and name)


def rewrite_metadata(path: str | Path, **changes) -> Path:
    """Change fields of an export's metadata in place (atomically), e.g. the refitted temperature."""
    import onnx

    model = onnx.load(str(path))
    props = {p.key: p for p in model.metadata_props}
    entry = props[METADATA_KEY]
    entry.value = json.dumps({**json.loads(entry.value), **changes})
    return atomic_write(path, lambda handle: handle.write(model.SerializeToString()))


@dataclass
class SplitCheck:
    examples: int
    fp32_accuracy: float
    int8_accuracy: float
    agreement: float


@dataclass
class QuantizationCheck:
    accepted: bool
    reasons: list[str]
    splits: dict[str, SplitCheck]
    temperature_fp32: float
    temperature_int8: float
    ece_fp32: float | None
    ece_int8: float | None
    max_accuracy_drop: float
    min_agreement: float
    notes: list[str] = field(default_factory=list)
    # int8's in-scope rule (mlcore.ood.InScopeScorer.to_dict), its reference taken anew from int8's
    # scores of the calibration split, so the rule sends the same share to review; None without one.
    in_scope_scorer_int8: dict | None = None

    def to_dict(self) -> dict:
        """The figures (what a promotion records); the scorer goes into the int8 file's metadata."""
        return {key: value for key, value in asdict(self).items() if key != "in_scope_scorer_int8"}


def check_quantized(
    fp32: PredictorBase,
    int8: PredictorBase,
    splits: dict[str, tuple[Sequence[str], Sequence[str]]],
    *,
    max_accuracy_drop: float = DEFAULT_MAX_ACCURACY_DROP,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    calibration_split: str = "validation",
) -> QuantizationCheck:
    """Compare the two models on each split's (texts, true intents); refit int8's temperature on
    ``calibration_split``. Splits with no texts are skipped; with none at all, int8 is refused."""
    reasons, checks = [], {}
    temperature_int8, ece_fp32, ece_int8, scorer_int8 = int8.temperature, None, None, None
    for name, (texts, intents) in splits.items():
        if not texts:
            continue
        fp32_logits, (int8_logits, int8_distances) = fp32.logits(texts), int8.outputs(texts)
        truth = np.array([fp32.labels.index(i) if i in fp32.labels else -1 for i in intents])
        # Compared by intent name (as fp32's index): a model is judged by what it answers.
        int8_as_fp32 = np.array([fp32.labels.index(name) if name in fp32.labels else -2 for name in int8.labels])
        fp32_top, int8_top = fp32_logits.argmax(axis=1), int8_as_fp32[int8_logits.argmax(axis=1)]
        check = SplitCheck(examples=len(texts), fp32_accuracy=float((fp32_top == truth).mean()),
                           int8_accuracy=float((int8_top == truth).mean()), agreement=float((fp32_top == int8_top).mean()))
        checks[name] = check
        if check.fp32_accuracy - check.int8_accuracy > max_accuracy_drop + 1e-12:
            reasons.append(f"on the {name} set int8 answers {check.int8_accuracy:.2%} correctly and fp32 {check.fp32_accuracy:.2%}: "
                           f"more than {max_accuracy_drop * 100:.1f} points worse")
        if check.agreement < min_agreement:
            reasons.append(f"on the {name} set int8's top intent agrees with fp32's on {check.agreement:.2%} of the texts; "
                           f"at least {min_agreement:.0%} is required")
        if name == calibration_split:
            known = truth >= 0
            int8_truth = np.array([int8.labels.index(fp32.labels[t]) if fp32.labels[t] in int8.labels else -1 for t in truth[known]])
            temperature_int8 = fit_temperature(int8_logits[known][int8_truth >= 0], int8_truth[int8_truth >= 0])
            ece_fp32 = _ece(fp32_logits[known], truth[known], fp32.temperature)
            ece_int8 = _ece(int8_logits[known][int8_truth >= 0], int8_truth[int8_truth >= 0], temperature_int8)
            if int8.scorer is not None and known.any():
                scorer_int8 = int8.scorer.with_reference(int8_logits[known], int8_distances[known]).to_dict()
    if not checks:
        reasons.append("there were no texts to compare the two models on")
    return QuantizationCheck(
        accepted=not reasons, reasons=reasons, splits=checks, temperature_fp32=fp32.temperature, temperature_int8=temperature_int8,
        ece_fp32=ece_fp32, ece_int8=ece_int8, max_accuracy_drop=max_accuracy_drop, min_agreement=min_agreement,
        in_scope_scorer_int8=scorer_int8,
    )


def _ece(logits: np.ndarray, truth: np.ndarray, temperature: float) -> float | None:
    if not len(truth):
        return None
    probabilities = softmax(logits, temperature)
    return expected_calibration_error(probabilities.max(axis=1), probabilities.argmax(axis=1) == truth)
