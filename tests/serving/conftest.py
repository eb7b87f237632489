from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path

import pytest

from mlcore.artifact import load_artifact, save_artifact
from tests.factories import REPO_ROOT

LAMBDA_ROOT = REPO_ROOT / "lambda"
if str(LAMBDA_ROOT) not in sys.path:
    sys.path.insert(0, str(LAMBDA_ROOT))  # `lambda` is a keyword: its files are top-level modules, as on Lambda

SERVING_MODULES = ("app", "serving_config", "serving_model", "serving_review")


@pytest.fixture
def model_file(tiny_artifact, tmp_path) -> Path:
    """A copy of the tiny model where serving looks for it."""
    target = tmp_path / "serving" / "model.pt"
    target.parent.mkdir()
    shutil.copy(tiny_artifact, target)
    return target


def variant_of(artifact_path: str | Path, target: Path, **changes) -> Path:
    """Write a different valid artifact (e.g. another temperature): another version, other probabilities."""
    artifact = load_artifact(artifact_path)
    artifact.update(changes)
    save_artifact(artifact, target)
    return target


@pytest.fixture
def make_client():
    """A TestClient on a fresh app built from the given settings (no module-level state involved)."""
    from fastapi.testclient import TestClient

    from serving_config import ServingSettings
    from serving_model import ModelStore

    import app as app_module

    def make(**settings):
        config = ServingSettings(**{"preload_model": False, "model_refresh_seconds": 0, **settings})
        store = ModelStore(config.model_uri, refresh_seconds=config.model_refresh_seconds)
        client = TestClient(app_module.create_app(config, store), raise_server_exceptions=False)
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
