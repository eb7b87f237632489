"""The Lambda entry point: real-shaped events through Mangum, against the module-level app."""

import json
import logging

import pytest

from tests.serving.events import FakeContext, function_url, http_api_v2, rest_api_v1

EVENT_SHAPES = {"http_api_v2": http_api_v2, "rest_api_v1": rest_api_v1, "function_url": function_url}


@pytest.fixture
def handler_app(fresh_app_module, model_file):
    return fresh_app_module(MODEL_URI=model_file, MODEL_REFRESH_SECONDS=60, API_KEYS="")


@pytest.mark.parametrize("shape", EVENT_SHAPES)
def test_classify_through_each_event_shape(handler_app, shape):
    event = EVENT_SHAPES[shape]("POST", "/classify", {"text": "show me today's news"})
    response = handler_app.handler(event, FakeContext())
    assert response["statusCode"] == 200
    headers = {k.lower(): v for k, v in response["headers"].items()}
    assert headers["content-type"] == "application/json"
    body = json.loads(response["body"])
    assert body["intent"] == body["distribution"][0]["intent"] and len(body["distribution"]) == 10


@pytest.mark.parametrize("shape", EVENT_SHAPES)
def test_errors_keep_their_status_through_each_event_shape(handler_app, shape):
    bad = handler_app.handler(EVENT_SHAPES[shape]("POST", "/classify", {"text": "  "}), FakeContext())
    assert bad["statusCode"] == 422 and "empty or whitespace" in json.loads(bad["body"])["detail"]
    health = handler_app.handler(EVENT_SHAPES[shape]("GET", "/health"), FakeContext())
    assert health["statusCode"] == 200 and json.loads(health["body"])["model_loaded"] is True
    missing = handler_app.handler(EVENT_SHAPES[shape]("GET", "/nope"), FakeContext())
    assert missing["statusCode"] == 404


def test_a_base64_body_is_decoded(handler_app):
    response = handler_app.handler(http_api_v2("POST", "/classify", {"text": "play some jazz"}, base64_body=True), FakeContext())
    assert response["statusCode"] == 200


def test_many_invocations_load_the_artifact_once(handler_app):
    assert handler_app.store.loads == 1  # loaded at import: the init phase pays for it
    for i in range(25):
        event = http_api_v2("POST", "/classify", {"text": f"show me the news number {i}"})
        assert handler_app.handler(event, FakeContext())["statusCode"] == 200
    assert handler_app.store.loads == 1


def test_api_keys_through_the_handler(fresh_app_module, model_file):
    module = fresh_app_module(MODEL_URI=model_file, API_KEYS="s3cret")
    denied = module.handler(http_api_v2("POST", "/classify", {"text": "hi"}), FakeContext())
    assert denied["statusCode"] == 401
    allowed = module.handler(http_api_v2("POST", "/classify", {"text": "hi"}, {"x-api-key": "s3cret"}), FakeContext())
    assert allowed["statusCode"] == 200


def test_without_a_model_the_handler_answers_503(fresh_app_module, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="serving.model")
    module = fresh_app_module(MODEL_URI=tmp_path / "none.pt")
    response = module.handler(http_api_v2("POST", "/classify", {"text": "hi"}), FakeContext())
    assert response["statusCode"] == 503 and "no model file" in json.loads(response["body"])["detail"]
    preload = [json.loads(r.getMessage()) for r in caplog.records if "model_preload_failed" in r.getMessage()]
    assert preload == [{"event": "model_preload_failed", "uri": str(tmp_path / "none.pt"), "reason": f"no model file at {tmp_path / 'none.pt'}"}]


def test_the_serving_process_imports_neither_torch_nor_transformers(model_file):
    import subprocess
    import sys

    from tests.factories import REPO_ROOT

    # The serving package from the development install; tests.serving.events from the repository (cwd).
    code = ("import sys; from intentflow_serving import app; from tests.serving.events import http_api_v2, FakeContext; "
            "r = app.handler(http_api_v2('POST', '/classify', {'text': 'hi'}), FakeContext()); "
            "print(r['statusCode'], *(m in sys.modules for m in ('torch', 'transformers', 'datasets')))")
    env = {"MODEL_URI": str(model_file), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    assert out.stdout.split()[-4:] == ["200", "False", "False", "False"], out.stderr[-2000:]


def test_the_handler_is_mangum_over_the_one_app(handler_app):
    """One request path: Lambda's handler is Mangum over the same FastAPI app uvicorn serves,
    without the ASGI lifespan (the model lives in the module-level store, loaded at import)."""
    from fastapi import FastAPI
    from mangum import Mangum

    assert type(handler_app.handler) is Mangum and handler_app.handler.app is handler_app.app
    assert handler_app.handler.lifespan == "off"
    assert type(handler_app.app) is FastAPI and handler_app.app.user_middleware == []
