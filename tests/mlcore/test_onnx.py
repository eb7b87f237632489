import numpy as np
import pytest

from mlcore.errors import ArtifactError
from mlcore.onnx_export import export_onnx, onnx_uri_for
from mlcore.onnx_predictor import OnnxPredictor
from mlcore.predictor import Predictor

TEXTS = ["show me today's news", "update my profile", "zzz", "a much longer text that goes on " * 8, "play"]


@pytest.fixture(scope="module")
def exported(tiny_artifact, tmp_path_factory):
    return export_onnx(tiny_artifact, tmp_path_factory.mktemp("onnx") / "m.onnx")


def test_the_onnx_export_answers_as_the_artifact_does(tiny_artifact, exported):
    served, reference = OnnxPredictor.from_file(exported), Predictor.from_file(tiny_artifact)
    np.testing.assert_allclose(served.probabilities(TEXTS), reference.probabilities(TEXTS), atol=1e-4)
    assert served.version == reference.version and served.labels == reference.labels
    assert served.threshold == reference.threshold and served.temperature == reference.temperature
    assert [p.intent for p in served.predict(TEXTS)] == [p.intent for p in reference.predict(TEXTS)]


def test_broken_onnx_files_are_artifact_errors(tmp_path, exported):
    with pytest.raises(ArtifactError, match="not found"):
        OnnxPredictor.from_file(tmp_path / "none.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(exported.read_bytes()[:4000])
    with pytest.raises(ArtifactError, match="not a readable ONNX model"):
        OnnxPredictor.from_file(broken)


def test_the_onnx_file_sits_beside_the_artifact():
    assert onnx_uri_for("s3://models/production/model.pt") == "s3://models/production/model.onnx"
    assert onnx_uri_for("/srv/model.pt") == "/srv/model.onnx"


def test_a_bert_export_is_fused_and_still_answers_as_the_unfused_one(tiny_artifact, exported, tmp_path):
    import onnx

    operators = {node.op_type for node in onnx.load(str(exported)).graph.node}
    # onnxruntime's transformer fusions: one node per attention block and per embeddings + LayerNorm.
    assert {"Attention", "EmbedLayerNormalization", "SkipLayerNormalization"} <= operators
    plain = export_onnx(tiny_artifact, tmp_path / "plain.onnx", fuse=False)
    assert "Attention" not in {node.op_type for node in onnx.load(str(plain)).graph.node}
    np.testing.assert_allclose(OnnxPredictor.from_file(exported).probabilities(TEXTS), OnnxPredictor.from_file(plain).probabilities(TEXTS), atol=1e-5)


def test_the_export_of_a_scored_model_computes_the_distance_in_the_graph(scored_artifact, tmp_path):
    reference = Predictor.from_file(scored_artifact)
    served = OnnxPredictor.from_file(export_onnx(scored_artifact, tmp_path / "scored.onnx"))
    (logits, distances), (expected_logits, expected_distances) = served.outputs(TEXTS), reference.outputs(TEXTS)
    np.testing.assert_allclose(logits, expected_logits, atol=1e-4)
    np.testing.assert_allclose(distances, expected_distances, rtol=1e-4, atol=1e-3)
    # The score is a share of the reference texts: float rounding may move a text one reference text at most.
    np.testing.assert_allclose(served.answer(TEXTS)[1], reference.answer(TEXTS)[1], atol=1.0 / len(reference.scorer.reference) + 1e-9)
    assert served.rule() == reference.rule() == ("in_scope_score", reference.scorer.threshold)
