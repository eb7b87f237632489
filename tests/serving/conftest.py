from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from mlcore.artifact import load_artifact, save_artifact
from mlcore.onnx_export import export_onnx
from tests.factories import REPO_ROOT

LAMBDA_ROOT = REPO_ROOT / "lambda"
if str(LAMBDA_ROOT) not in sys.path:
    sys.path.insert(0, str(LAMBDA_ROOT))  # `lambda` is a keyword: its files are top-level modules, as on Lambda

SERVING_MODULES = ("app", "serving_config", "serving_fast_path", "serving_model", "serving_review")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_artifact, tmp_path_factory) -> Path:
    """The ONNX export of the tiny model, as a promotion publishes it."""
    return export_onnx(tiny_artifact, tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture
def model_file(tiny_onnx, tmp_path) -> Path:
    """A copy of the tiny model's export where serving looks for it."""
    target = tmp_path / "serving" / "model.onnx"
    target.parent.mkdir()
    shutil.copy(tiny_onnx, target)
    return target


def variant_of(artifact_path: str | Path, target: Path, **changes) -> str:
    """Write a different valid model (e.g. another temperature) at ``target`` (.pt, or its .onnx
    export); return the new version (the artifact's SHA-256 prefix)."""
    artifact = load_artifact(artifact_path)
    artifact.update(changes)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "variant.pt"
        sha256 = save_artifact(artifact, source)
        if str(target).endswith(".onnx"):
            export_onnx(source, target)
        else:
            shutil.copy(source, target)
    return sha256[:12]


@pytest.fixture
def make_client():
    """A TestClient on a fresh app built from the given settings (no module-level state involved)."""
    from fastapi.testclient import TestClient

    from serving_config import ServingSettings
    from serving_model import ModelStore

    import app as app_module

    def make(*, fast_path: bool = True, **settings):
        config = ServingSettings(**{"preload_model": False, "model_refresh_seconds": 0, **settings})
        store = ModelStore(config.model_uri, refresh_seconds=config.model_refresh_seconds)
        client = TestClient(app_module.create_app(config, store, fast_path=fast_path), raise_server_exceptions=False)
        client.store = store
        return client

    return make


@pytest.fixture
def fresh_app_module(monkeypatch):
    """Import lambda/app.py anew with the environment given, as a cold Lambda container would."""

    def load(**env):
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        for name in SERVING_MODULES:
            sys.modules.pop(name, None)
        return importlib.import_module("app")

    yield load
    for name in SERVING_MODULES:
        sys.modules.pop(name, None)
