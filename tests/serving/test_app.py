import json
import logging
import uuid

import numpy as np
import pytest

from mlcore.artifact import file_sha256
from mlcore.predictor import Predictor
from tests.serving.conftest import eventually, health_error, served_version, variant_of

TEXT = "show me today's news"


@pytest.fixture
def client(make_client, model_file):
    return make_client(model_uri=str(model_file))


def test_classify_returns_the_full_distribution(client, tiny_artifact):
    response = client.post("/classify", json={"text": TEXT})
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    predictor = Predictor.from_file(tiny_artifact)
    assert set(body) == {"intent", "confidence", "distribution", "low_confidence", "in_scope_score", "rule", "threshold", "model_version", "prediction_id"}
    assert body["rule"] == "confidence" and body["in_scope_score"] is None  # the tiny model has no in-scope score
    probabilities = [d["probability"] for d in body["distribution"]]
    assert sorted(d["intent"] for d in body["distribution"]) == sorted(predictor.labels)
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) == pytest.approx(1.0)
    assert body["intent"] == body["distribution"][0]["intent"] and body["confidence"] == probabilities[0]
    assert body["low_confidence"] == (body["confidence"] < body["threshold"]) and body["threshold"] == predictor.threshold
    assert body["model_version"] == file_sha256(tiny_artifact)[:12]
    assert uuid.UUID(body["prediction_id"]).version == 4


def test_the_distribution_equals_the_predictor_output(client, tiny_artifact):
    texts = [TEXT, "play some jazz", "zzz", "what is the weather in rome tomorrow", "a much longer text " * 12]
    served = client.post("/classify/batch", json={"texts": texts}).json()["results"]
    predictor = Predictor.from_file(tiny_artifact)
    expected = predictor.probabilities(texts)
    for answer, row in zip(served, expected):
        by_intent = {d["intent"]: d["probability"] for d in answer["distribution"]}
        np.testing.assert_allclose([by_intent[name] for name in predictor.labels], row, atol=1e-4)


def test_a_pt_artifact_can_be_served_too(make_client, tiny_artifact):
    body = make_client(model_uri=str(tiny_artifact)).post("/classify", json={"text": TEXT}).json()
    assert body["model_version"] == file_sha256(tiny_artifact)[:12]
    expected = Predictor.from_file(tiny_artifact).predict([TEXT])[0]
    assert body["intent"] == expected.intent and body["confidence"] == pytest.approx(expected.confidence, abs=1e-12)


@pytest.fixture(scope="module")
def scored_onnx(scored_artifact, tmp_path_factory):
    from mlcore.onnx_export import export_onnx

    return export_onnx(scored_artifact, tmp_path_factory.mktemp("scored") / "model.onnx")


SCORED_TEXTS = [TEXT, "play some jazz", "zzz", "what is the weather in rome tomorrow", "tell me a joke about the sea", "qqq vvv xxx"]


def classified_and_sent(client, texts: list[str]) -> tuple[list[dict], dict[str, dict]]:
    """The answers to ``texts``, and the review events they produced, by prediction id (traffic
    samples and reports left out)."""
    from intentflow_serving.review import SAMPLE
    from tests.serving.test_audit import RecordingSink

    client.app.state.router.sink = sink = RecordingSink()
    results = client.post("/classify/batch", json={"texts": texts}).json()["results"]
    return results, {e["prediction_id"]: e for e in sink.events if "prediction_id" in e and e.get("type") != SAMPLE}


def test_a_model_with_an_in_scope_score_sends_to_review_by_it(make_client, scored_onnx, scored_artifact):
    """The rule, the score and its threshold are in the answer and in the review event."""
    texts = SCORED_TEXTS
    client = make_client(model_uri=str(scored_onnx), review_routing="rule")
    results, sent = classified_and_sent(client, texts)
    predictor = Predictor.from_file(scored_artifact)
    expected = predictor.answer(texts)[1]
    assert [r["rule"] for r in results] == ["in_scope_score"] * len(texts)
    assert [r["threshold"] for r in results] == [predictor.scorer.threshold] * len(texts)
    np.testing.assert_allclose([r["in_scope_score"] for r in results], expected, atol=0.03)
    assert [r["low_confidence"] for r in results] == [r["in_scope_score"] < r["threshold"] for r in results]
    assert set(sent) == {r["prediction_id"] for r in results if r["low_confidence"]}
    for result in results:
        if result["low_confidence"]:
            event = sent[result["prediction_id"]]
            assert (event["rule"], event["in_scope_score"], event["threshold"]) == ("in_scope_score", result["in_scope_score"], result["threshold"])
    described = client.get("/model").json()
    assert (described["rule"], described["threshold"], described["recommended_threshold"]) == ("in_scope_score",) + (predictor.scorer.threshold,) * 2


def test_by_default_the_queue_also_gets_what_the_probability_calls_unsure(make_client, scored_artifact, tmp_path):
    """REVIEW_ROUTING=either: the in-scope score's low-confidence items and those whose calibrated
    probability is under the model's probability threshold, and nothing else; the answer's
    low_confidence still follows the rule alone."""
    from tests.serving.conftest import variant_of

    probability_threshold = 0.7  # the tiny model's answers fall on both sides of it, none within 0.08
    model = tmp_path / "model.onnx"
    variant_of(scored_artifact, model, threshold=probability_threshold)
    texts = SCORED_TEXTS + ["book a table", "what's my balance", "set an alarm for six", "hmm"]
    results, sent = classified_and_sent(make_client(model_uri=str(model)), texts)
    by_probability = {r["prediction_id"] for r in results if r["confidence"] < probability_threshold and not r["low_confidence"]}
    assert by_probability, "no text is unsure by the probability alone: the test would not tell the routings apart"
    assert set(sent) == {r["prediction_id"] for r in results if r["low_confidence"]} | by_probability
    assert [r["low_confidence"] for r in results] == [r["in_scope_score"] < r["threshold"] for r in results]
    assert all(sent[i]["reason"] == "low_confidence" and sent[i]["rule"] == "in_scope_score" for i in by_probability)


def test_the_threshold_settings_choose_and_override_the_rule(make_client, scored_onnx):
    body = make_client(model_uri=str(scored_onnx), in_scope_threshold=1.0).post("/classify", json={"text": "zzz qqq"}).json()
    assert (body["rule"], body["threshold"]) == ("in_scope_score", 1.0) and body["low_confidence"] == (body["in_scope_score"] < 1.0)
    body = make_client(model_uri=str(scored_onnx), in_scope_threshold=0.0).post("/classify", json={"text": "zzz qqq"}).json()
    assert (body["threshold"], body["low_confidence"]) == (0.0, False)
    body = make_client(model_uri=str(scored_onnx), confidence_threshold=0.0).post("/classify", json={"text": TEXT}).json()
    assert (body["rule"], body["threshold"], body["low_confidence"]) == ("confidence", 0.0, False)
    assert body["in_scope_score"] is not None  # still reported
    described = make_client(model_uri=str(scored_onnx), confidence_threshold=0.5).get("/model").json()
    from mlcore.onnx_predictor import OnnxPredictor

    assert (described["rule"], described["threshold"], described["recommended_threshold"]) == ("confidence", 0.5, OnnxPredictor.from_file(scored_onnx).threshold)


def test_the_threshold_setting_overrides_the_artifact(make_client, model_file):
    body = make_client(model_uri=str(model_file), confidence_threshold=1.0).post("/classify", json={"text": TEXT}).json()
    assert body["threshold"] == 1.0 and body["low_confidence"] is True


@pytest.mark.parametrize(
    "payload, problem",
    [
        ({}, "text: Field required"),
        ({"text": 42}, "text: Input should be a valid string"),
        ({"text": None}, "text: Input should be a valid string"),
        ({"text": ["a"]}, "text: Input should be a valid string"),
        ({"text": ""}, "text: text must not be empty or whitespace only"),
        ({"text": " \n\t "}, "text: text must not be empty or whitespace only"),
        ({"text": "x" * 1001}, "text: text has 1001 characters; at most 1000 are allowed"),
        ({"text": "\x00\x1b \x7f\t"}, "text: text holds nothing but control characters and whitespace"),
        ([1, 2], "body: Input should be a valid dictionary"),
    ],
)
def test_bad_input_is_422_with_the_problem_named(client, payload, problem):
    response = client.post("/classify", json=payload)
    assert response.status_code == 422
    assert problem in response.json()["detail"]


@pytest.mark.parametrize(
    "path, body, problem",
    [
        ("/classify", b'{"text": "\\ud800"}', "text: text is not valid Unicode: a lone surrogate (U+D800) at character 0"),
        ("/classify/batch", b'{"texts": ["fine", "bad \\udfff"]}', "texts: texts[1]: text is not valid Unicode: a lone surrogate (U+DFFF) at character 4"),
    ],
)
def test_a_lone_surrogate_is_422_with_the_reason(client, path, body, problem):
    """A JSON escape of half a surrogate pair decodes to a str that is not Unicode text."""
    response = client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and response.json()["detail"] == problem


def test_control_characters_inside_a_text_are_classified_as_the_text_without_them(client):
    plain, with_controls = (client.post("/classify/batch", json={"texts": [t]}).json()["results"][0]
                            for t in ("show me the news", "show me\x00 the\x1b news\x7f"))
    assert with_controls["distribution"] == plain["distribution"]


def test_malformed_json_is_422(client):
    response = client.post("/classify", content=b'{"text": ', headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON decode error" in response.json()["detail"]


@pytest.mark.parametrize(
    "payload, problem",
    [
        ({"texts": []}, "texts must hold at least one text"),
        ({"texts": ["a", "b", "c"]}, "texts holds 3 items; at most 2 are allowed"),
        ({"texts": ["fine", "  "]}, "texts[1]: text must not be empty"),
        ({"texts": "not a list"}, "texts: Input should be a valid list"),
    ],
)
def test_bad_batches_are_422(make_client, model_file, payload, problem):
    response = make_client(model_uri=str(model_file), max_batch_size=2).post("/classify/batch", json=payload)
    assert response.status_code == 422 and problem in response.json()["detail"]


def test_a_batch_answers_each_text(client):
    results = client.post("/classify/batch", json={"texts": [TEXT, "play some jazz"]}).json()["results"]
    assert len(results) == 2 and results[0]["prediction_id"] != results[1]["prediction_id"]


def test_api_keys_are_required_when_set(make_client, model_file):
    client = make_client(model_uri=str(model_file), api_keys="key-one, key-two")
    assert client.post("/classify", json={"text": TEXT}).status_code == 401
    assert client.post("/classify", json={"text": TEXT}, headers={"x-api-key": "wrong"}).status_code == 401
    assert client.post("/classify", json={"text": TEXT}, headers={"x-api-key": "key-two"}).status_code == 200
    assert client.get("/model").status_code == 401
    assert client.get("/health").status_code == 200  # the health check stays open for load balancers


def test_without_a_model_classify_is_503_and_the_container_keeps_trying(make_client, tmp_path, tiny_onnx):
    missing = tmp_path / "later" / "model.onnx"
    client = make_client(model_uri=str(missing))
    response = client.post("/classify", json={"text": TEXT})
    assert response.status_code == 503 and f"no model file at {missing}" in response.json()["detail"]
    health = client.get("/health")
    assert health.status_code == 503 and health.json()["model_loaded"] is False and "no model file" in health.json()["error"]
    missing.parent.mkdir()
    missing.write_bytes(b"garbage")
    assert "cannot be loaded" in client.post("/classify", json={"text": TEXT}).json()["detail"]
    missing.write_bytes(open(tiny_onnx, "rb").read())
    assert client.post("/classify", json={"text": TEXT}).status_code == 200
    assert client.get("/health").json()["model_loaded"] is True


def test_a_new_model_is_swapped_in_and_a_corrupt_one_is_ignored(client, model_file, tiny_artifact):
    first = served_version(client)
    version = variant_of(tiny_artifact, model_file, temperature=7.5)
    assert version != first
    # The check runs in the background; until it is done, the model already loaded answers.
    eventually(lambda: served_version(client) == version, what="the swap to the new model")
    model_file.write_bytes(b"truncated")
    eventually(lambda: "cannot be loaded" in health_error(client), what="the corrupt file's error in /health")
    assert served_version(client) == version


def test_the_model_endpoint_describes_the_model(client, tiny_artifact):
    body = client.get("/model").json()
    predictor = Predictor.from_file(tiny_artifact)
    assert body["intents"] == predictor.labels and body["model_version"] == predictor.version
    assert body["metrics"]["accuracy"] == predictor.metrics["validation"]["accuracy"]
    assert {"threshold", "temperature", "base_model", "created_at"} <= set(body)
    assert (body["precision"], body["backend"]) == ("fp32", "onnx")


def test_one_json_log_line_per_request_without_the_text(make_client, model_file, caplog):
    caplog.set_level(logging.INFO, logger="serving.request")
    make_client(model_uri=str(model_file)).post("/classify", json={"text": "secret utterance"})
    [record] = [json.loads(r.getMessage()) for r in caplog.records if r.name == "serving.request"]
    assert record["event"] == "classify" and record["latency_ms"] > 0 and record["model_version"]
    [prediction] = record["predictions"]
    assert {"prediction_id", "intent", "confidence", "low_confidence"} <= set(prediction) and "text" not in prediction
    caplog.clear()
    make_client(model_uri=str(model_file), log_text=True).post("/classify", json={"text": "secret utterance"})
    assert "secret utterance" in caplog.text


def test_each_log_line_carries_the_lambda_request_id_and_the_cold_start_flag(fresh_app_module, model_file, caplog):
    from tests.serving.events import FakeContext, http_api_v2

    caplog.set_level(logging.INFO, logger="serving.request")
    module = fresh_app_module(MODEL_URI=model_file)
    for path, body in (("/classify", {"text": "play some jazz"}), ("/classify/batch", {"texts": ["hi", "news"]})):
        assert module.handler(http_api_v2("POST", path, body), FakeContext())["statusCode"] == 200
    records = [json.loads(r.getMessage()) for r in caplog.records if r.name == "serving.request"]
    assert [r["cold_start"] for r in records] == [True, False]
    assert {r["request_id"] for r in records} == {FakeContext.aws_request_id}


def test_log_level_warning_turns_the_request_line_off(fresh_app_module, model_file, caplog):
    from tests.serving.events import FakeContext, http_api_v2

    root = logging.getLogger()
    level = root.level
    try:
        module = fresh_app_module(MODEL_URI=model_file, LOG_LEVEL="warning")
        assert module.handler(http_api_v2("POST", "/classify", {"text": "play some jazz"}), FakeContext())["statusCode"] == 200
        assert [r for r in caplog.records if r.name == "serving.request"] == []
        assert module.settings.log_level == "WARNING"
    finally:
        root.setLevel(level)


def test_inference_threads_share_the_cores_among_uvicorn_workers(monkeypatch):
    import os

    from intentflow_serving.config import ServingSettings

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("INFERENCE_THREADS", raising=False)
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    assert ServingSettings().inference_threads == 8  # Lambda: one process, every vCPU
    for workers, threads in (("2", 4), ("3", 2), ("8", 1), ("16", 1)):
        monkeypatch.setenv("WEB_CONCURRENCY", workers)
        assert ServingSettings().inference_threads == threads
    monkeypatch.setenv("INFERENCE_THREADS", "3")
    assert ServingSettings().inference_threads == 3  # set, it wins
    monkeypatch.delenv("INFERENCE_THREADS")
    for bad in ("two", "0", "-1"):
        monkeypatch.setenv("WEB_CONCURRENCY", bad)
        with pytest.raises(ValueError, match="WEB_CONCURRENCY must be a whole number"):
            ServingSettings()


@pytest.mark.parametrize("payload", [b"", b"null", b"[]", b'{"text": {"a": 1}}', b'{"text": 1e400}', "ü".encode("latin-1")])
def test_no_input_produces_a_500(client, payload):
    response = client.post("/classify", content=payload, headers={"content-type": "application/json"})
    assert response.status_code in (400, 422) and response.json()["detail"]


def test_the_schema_states_the_limits_and_every_error_answer(make_client, model_file):
    schema = make_client(model_uri=str(model_file), max_text_chars=300, max_batch_size=8).get("/openapi.json").json()
    components = schema["components"]["schemas"]
    text, texts = components["ClassifyRequest"]["properties"]["text"], components["BatchRequest"]["properties"]["texts"]
    assert (text["minLength"], text["maxLength"]) == (1, 300) and (texts["minItems"], texts["maxItems"]) == (1, 8)
    assert (texts["items"]["minLength"], texts["items"]["maxLength"]) == (1, 300)
    for path in ("/classify", "/classify/batch"):
        responses = schema["paths"][path]["post"]["responses"]
        assert set(responses) == {"200", "422", "503"}  # no keys set: no 401
        assert responses["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/InputProblem")
    assert set(components["InputProblem"]["properties"]) == {"detail", "errors"}
    keyed = make_client(model_uri=str(model_file), api_keys="k").get("/openapi.json").json()
    assert set(keyed["paths"]["/classify"]["post"]["responses"]) == {"200", "401", "422", "503"}
    assert set(keyed["paths"]["/model"]["get"]["responses"]) == {"200", "401", "503"}
    assert keyed["components"]["securitySchemes"]["APIKeyHeader"] == {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "One of the keys in API_KEYS."}


def test_bad_settings_fail_at_start(monkeypatch):
    from pydantic import ValidationError

    from intentflow_serving.config import ServingSettings

    for name, value in [("CONFIDENCE_THRESHOLD", "1.5"), ("MODEL_REFRESH_SECONDS", "-1"), ("MAX_BATCH_SIZE", "zero"), ("LOG_LEVEL", "loud")]:
        monkeypatch.setenv(name, value)
        with pytest.raises(ValidationError, match=name.lower()):
            ServingSettings()
        monkeypatch.delenv(name)
