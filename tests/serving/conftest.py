from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from mlcore.artifact import load_artifact, save_artifact
from mlcore.onnx_export import export_onnx
from tests.serving.servers import Behaviour, Server

# Imported anew by fresh_app_module (the package's __init__ and its core stay).
SERVING_MODULES = tuple(f"intentflow_serving.{name}" for name in ("app", "aws", "config", "model", "review"))


def forget_serving_modules() -> None:
    """Drop the serving modules from sys.modules and from their package's attributes, so that the
    next import of one runs it anew whatever its form: ``from intentflow_serving import app`` takes
    the package's attribute as it is, even when sys.modules no longer holds that module."""
    package = sys.modules.get("intentflow_serving")
    for name in SERVING_MODULES:
        sys.modules.pop(name, None)
        if package is not None:
            vars(package).pop(name.rpartition(".")[2], None)


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


def eventually(condition: Callable[[], Any], *, within: float = 20.0, what: str = "the condition") -> Any:
    """Poll until ``condition()`` is truthy and return it. For what a background thread does
    (a model check): the bound is generous, a busy CI machine must not make it flaky."""
    deadline = time.monotonic() + within
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {within} s")
        time.sleep(0.05)
    return value


def served_version(client) -> str:
    response = client.post("/classify", json={"text": "show me the news"})
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def health_error(client) -> str:
    return client.get("/health").json()["error"] or ""


@pytest.fixture
def start_server():
    """Start a misbehaving local TCP server (tests/serving/servers.py); returns its base URL."""
    started: list[Server] = []

    def start(behaviour: Behaviour) -> str:
        started.append(Server(behaviour))
        return started[-1].url

    yield start
    for server in started:
        server.close()


@pytest.fixture
def bucket(aws, moto_server, monkeypatch):
    """An empty bucket "models" in moto, where serving's S3 client looks."""
    point_s3_at(moto_server, monkeypatch)
    s3 = aws("s3")
    s3.create_bucket(Bucket="models")
    return s3


def point_s3_at(endpoint: str, monkeypatch) -> None:
    """Send serving's S3 calls from now on to this endpoint (a fresh client reads it)."""
    import intentflow_serving.model

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", endpoint)
    monkeypatch.setattr(intentflow_serving.model, "_client", None)


@pytest.fixture
def make_client():
    """A TestClient on a fresh app built from the given settings (no module-level state involved)."""
    from fastapi.testclient import TestClient

    from intentflow_serving import app as app_module
    from intentflow_serving.config import ServingSettings
    from intentflow_serving.model import ModelStore

    def make(**settings):
        # No audit or sample draw unless a test asks for one: other tests count the events they expect.
        config = ServingSettings(**{"preload_model": False, "model_refresh_seconds": 0, "review_audit_rate": 0.0,
                                    "traffic_sample_rate": 0.0, **settings})
        store = ModelStore(config.model_uri, refresh_seconds=config.model_refresh_seconds, load_wait_seconds=config.model_load_wait_seconds)
        client = TestClient(app_module.create_app(config, store), raise_server_exceptions=False)
        client.store = store
        return client

    return make


@pytest.fixture
def fresh_app_module(monkeypatch):
    """Import intentflow_serving.app anew with the environment given, as a cold Lambda container would."""

    def load(**env):
        env = {"REVIEW_AUDIT_RATE": "0", "TRAFFIC_SAMPLE_RATE": "0", **env}  # no audit or sample draw unless a test asks for one
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        forget_serving_modules()
        return importlib.import_module("intentflow_serving.app")

    yield load
    forget_serving_modules()
