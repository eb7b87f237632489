"""The int8 export and its gate: served only when it answers as fp32 does on the run's own data."""

import json

import numpy as np
import pytest

from mlcore.onnx_export import export_onnx
from mlcore.onnx_predictor import OnnxPredictor
from mlcore.predictor import Predictor
from mlcore.quantize import check_quantized, quantize_int8, rewrite_metadata


@pytest.fixture(scope="module")
def exports(tiny_artifact, tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantize")
    fp32 = export_onnx(tiny_artifact, folder / "model.onnx")
    return fp32, quantize_int8(fp32, folder / "model.int8.onnx")


def splits_of(data):
    return {"validation": ([e.text for e in data.train], [e.intent for e in data.train])}


def test_the_int8_export_is_smaller_and_carries_the_same_metadata(exports, tiny_artifact):
    fp32_path, int8_path = exports
    fp32, int8 = OnnxPredictor.from_file(fp32_path), OnnxPredictor.from_file(int8_path)
    assert int8_path.stat().st_size < 0.5 * fp32_path.stat().st_size
    assert (int8.metadata["precision"], fp32.metadata["precision"]) == ("int8", "fp32")
    import onnx

    assert "QAttention" in {node.op_type for node in onnx.load(str(int8_path)).graph.node}  # the fused attention, quantized
    assert int8.version == fp32.version == Predictor.from_file(tiny_artifact).version and int8.labels == fp32.labels


def test_the_three_backends_answer_alike(exports, tiny_artifact, demo_data):
    texts = [e.text for e in demo_data.train][:64]
    torch_backend, fp32, int8 = Predictor.from_file(tiny_artifact), *(OnnxPredictor.from_file(p) for p in exports)
    np.testing.assert_allclose(fp32.probabilities(texts), torch_backend.probabilities(texts), atol=1e-4)
    agreement = (int8.logits(texts).argmax(axis=1) == torch_backend.logits(texts).argmax(axis=1)).mean()
    assert agreement >= 0.95  # int8 moves the logits a little, not the answers


def test_the_gate_accepts_an_int8_model_that_answers_as_fp32(exports, demo_data):
    fp32, int8 = (OnnxPredictor.from_file(p) for p in exports)
    check = check_quantized(fp32, int8, splits_of(demo_data), max_accuracy_drop=0.02, min_agreement=0.95)
    assert check.accepted, check.reasons
    assert check.splits["validation"].examples == len(demo_data.train) and check.ece_int8 is not None


def test_the_gate_refuses_an_int8_model_that_disagrees(exports, demo_data, tmp_path):
    """An "int8 model" whose intents are shifted by one: the same weights, every answer different."""
    bad_path = tmp_path / "disagrees.onnx"
    bad_path.write_bytes(exports[1].read_bytes())
    labels = OnnxPredictor.from_file(bad_path).labels
    rewrite_metadata(bad_path, labels=labels[1:] + labels[:1])
    fp32, bad = OnnxPredictor.from_file(exports[0]), OnnxPredictor.from_file(bad_path)
    check = check_quantized(fp32, bad, {**splits_of(demo_data), "held-out": (["play some jazz"], ["play_music"])})
    assert not check.accepted
    assert any("agrees with fp32's on" in reason for reason in check.reasons)
    assert any("points worse" in reason for reason in check.reasons)
    json.dumps(check.to_dict())  # stored with the promotion as JSON


def test_with_nothing_to_compare_on_int8_is_refused(exports):
    fp32, int8 = (OnnxPredictor.from_file(p) for p in exports)
    check = check_quantized(fp32, int8, {"validation": ([], []), "held-out": ([], [])})
    assert not check.accepted and check.reasons == ["there were no texts to compare the two models on"]


def test_int8_keeps_the_distance_in_fp32_and_its_own_reference(scored_artifact, demo_data, tmp_path):
    """The Mahalanobis projection's columns differ in scale by orders of magnitude: int8 would
    crush them, so those nodes stay fp32; the gate refits the score's reference on int8's outputs."""
    import onnx

    from mlcore.quantize import distance_only_nodes

    fp32_path = export_onnx(scored_artifact, tmp_path / "model.onnx")
    assert distance_only_nodes(onnx.load(str(fp32_path)).graph)  # what stays fp32
    fp32, int8 = OnnxPredictor.from_file(fp32_path), OnnxPredictor.from_file(quantize_int8(fp32_path, tmp_path / "model.int8.onnx"))
    texts = [e.text for e in demo_data.train][:64]
    # The distance moves only as much as the embedding int8 computes does (not by the projection's rounding).
    np.testing.assert_allclose(int8.outputs(texts)[1], fp32.outputs(texts)[1], rtol=0.15)
    check = check_quantized(fp32, int8, splits_of(demo_data), max_accuracy_drop=0.02, min_agreement=0.95)
    assert check.accepted and check.in_scope_scorer_int8["threshold"] == fp32.scorer.threshold
    assert "in_scope_scorer_int8" not in check.to_dict()  # the promotion's record stays small
    rewrite_metadata(tmp_path / "model.int8.onnx", in_scope_scorer=check.in_scope_scorer_int8)
    refitted = OnnxPredictor.from_file(tmp_path / "model.int8.onnx")
    # On the texts its reference was refitted on, int8 sends the budget's share to review, to within
    # a text or two (the reference is stored to six decimals).
    reference_texts = splits_of(demo_data)["validation"][0]
    shares = refitted.answer(reference_texts)[1]
    assert abs((shares < refitted.scorer.threshold).mean() - refitted.scorer.threshold) <= 2 / len(reference_texts)
