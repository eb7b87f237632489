from pathlib import Path

import pytest
import torch

from mlcore.artifact import file_sha256, load_artifact, save_artifact
from mlcore.errors import ArtifactError
from mlcore.predictor import Predictor


def test_artifact_loads_with_weights_only_and_holds_what_serving_needs(tiny_artifact):
    artifact = torch.load(tiny_artifact, weights_only=True)
    for key in ("format_version", "base_model", "model_config", "state_dict", "labels", "tokenizer", "max_length",
                "temperature", "threshold", "train_config", "metrics", "dataset_fingerprint", "created_at", "versions"):
        assert key in artifact
    assert "tokenizer_json" in artifact["tokenizer"] and len(artifact["dataset_fingerprint"]) == 64
    assert not any("pooler" in name for name in artifact["state_dict"])


def test_save_is_atomic_and_reports_the_sha(tmp_path, tiny_artifact):
    artifact = load_artifact(tiny_artifact)
    target = tmp_path / "models" / "copy.pt"
    digest = save_artifact(artifact, target)
    assert digest == file_sha256(target)
    assert [p.name for p in target.parent.iterdir()] == ["copy.pt"]  # no temp file left behind


def test_missing_truncated_corrupt_and_foreign_files_are_artifact_errors(tmp_path, tiny_artifact):
    with pytest.raises(ArtifactError, match="not found"):
        load_artifact(tmp_path / "nope.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(open(tiny_artifact, "rb").read()[:5000])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 100)
    for path in (truncated, corrupt):
        with pytest.raises(ArtifactError, match="not a readable model artifact"):
            Predictor.from_file(path)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(ArtifactError, match="foreign"):
        load_artifact(foreign)


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickled_object_is_refused_not_executed(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"format": _RunsCodeWhenUnpickled(marker)}, path)
    with pytest.raises(ArtifactError, match="not a readable model artifact"):
        load_artifact(path)
    assert not marker.exists()


def test_a_future_format_version_is_named(tmp_path, tiny_artifact):
    artifact = load_artifact(tiny_artifact)
    artifact["format_version"] = 99
    path = tmp_path / "future.pt"
    torch.save(artifact, path)
    with pytest.raises(ArtifactError, match="version 99"):
        load_artifact(path)
