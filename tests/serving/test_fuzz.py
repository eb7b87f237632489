"""Fuzzing the serving app against its own OpenAPI schema (schemathesis): whatever a client sends,
the app answers without a 5xx, with a status code the schema declares, and a body its schema
describes. The schema is the one the app serves at /openapi.json, with API keys set and the tiny
model loaded."""

import os
import shutil
import tempfile
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis import checks

KEY = "fuzz-key"
# Where the app looks for its model; the fixture below puts the tiny model there before each test.
# (The schema is loaded at collection, before fixtures run: schemathesis' fixture-based loader,
# from_fixture, does not work with pytest 9.)
MODEL = Path(tempfile.gettempdir()) / f"intentflow-fuzz-{os.getpid()}" / "model.onnx"


def serving_app():
    from intentflow_serving import app
    from intentflow_serving.config import ServingSettings
    from intentflow_serving.model import ModelStore

    settings = ServingSettings(model_uri=str(MODEL), api_keys=KEY, preload_model=False)
    return app.create_app(settings, ModelStore(settings.model_uri, refresh_seconds=settings.model_refresh_seconds))


schema = schemathesis.openapi.from_asgi("/openapi.json", serving_app())


@pytest.fixture(autouse=True)
def a_model_to_serve(tiny_onnx):
    MODEL.parent.mkdir(exist_ok=True)
    shutil.copy(tiny_onnx, MODEL)
    yield
    shutil.rmtree(MODEL.parent, ignore_errors=True)


# Named, so that a schemathesis upgrade adding checks cannot change what CI asserts unnoticed.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,  # only status codes the schema declares
    checks.content_type_conformance,
    checks.response_schema_conformance,  # bodies as the schema describes them
    checks.response_headers_conformance,
    checks.negative_data_rejection,  # what the schema forbids is refused with a 4xx
    checks.positive_data_acceptance,  # what it allows is answered 2xx: the schema is not stricter than the app
]


# Bounded for CI: at most 50 generated examples per operation, the same ones every run (derandomized):
# a few seconds here, besides the tiny model the session builds once.
@schema.parametrize()
@hypothesis.settings(max_examples=50, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_any_request_gets_an_answer_the_schema_declares(case):
    case.call_and_validate(headers={"x-api-key": KEY}, checks=CHECKS)
