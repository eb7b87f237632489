"""Serving when its neighbours fail: Django (the review sink), SQS, S3 (the model's source) down,
hanging, slow or answering garbage, and a corrupt model published. Each case ends in a documented
state with nothing lost: the classify answer is what it would have been, within the bound; an
event that could not be delivered is logged whole, for replay; the loaded model keeps answering
and /health says what is wrong.

The neighbours are real local servers (tests/serving/servers.py) and moto's server. The time
bounds are correctness bounds, generous for a busy CI machine, not benchmarks.
"""

import json
import logging
import time

import pytest

from intentflow_serving.review import UNDELIVERED_EVENT
from tests.serving import servers
from tests.serving.conftest import eventually, health_error, point_s3_at, served_version, variant_of

TEXT = "show me today's news"
BOUND_MS = 200
SLACK_MS = 600  # the model call and the test client, on a busy machine
KEY = "production/model.onnx"
# A serving app that waits on a hung neighbour would hang the test: fail it instead (the session's
# first test also builds the tiny model, which takes a while on a busy machine).
pytestmark = pytest.mark.timeout(300)

# How a neighbour misbehaves: a ready URL, or a server to start (its base URL is then used).
DJANGO_OUTAGES = {
    "down": lambda start: servers.closed_port_url(),
    "hanging": lambda start: start(servers.silent),
    "trickling": lambda start: start(servers.trickling),
    "answering 500": lambda start: start(servers.HTTP_500),
    "bad status line": lambda start: start(servers.answering(b"garbage\r\n\r\n")),
    "cut-off body": lambda start: start(servers.answering(b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{\"id\"")),
    "header line too long": lambda start: start(servers.answering(b"HTTP/1.1 201 Created\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n")),
    "port out of range": lambda start: "http://127.0.0.1:99999",
    "port not a number": lambda start: "http://127.0.0.1:http",
}


def timed(call):
    started = time.perf_counter()
    result = call()
    return result, (time.perf_counter() - started) * 1000


def the_answer(response) -> dict:
    """What the answer says, less its fresh prediction id."""
    assert response.status_code == 200, response.text
    return {k: v for k, v in response.json().items() if k != "prediction_id"}


def undelivered_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if UNDELIVERED_EVENT in r.getMessage()]


@pytest.fixture
def reference(make_client, model_file):
    """The answer the same model gives with no review sink at all."""
    return the_answer(make_client(model_uri=str(model_file), confidence_threshold=1.0).post("/classify", json={"text": TEXT}))


@pytest.mark.parametrize("outage", DJANGO_OUTAGES)
def test_django_failing_in_any_way_never_changes_the_answer_nor_delays_it_past_the_bound(make_client, model_file, start_server, caplog, reference, outage):
    url = DJANGO_OUTAGES[outage](start_server) + "/api/v1/review-items/"
    client = make_client(model_uri=str(model_file), confidence_threshold=1.0, review_sink="http",
                         review_api_url=url, review_api_token="t", review_timeout_ms=BOUND_MS)
    client.post("/classify", json={"text": "warm up"})  # the first request pays one-off costs
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="serving.review")
    response, elapsed_ms = timed(lambda: client.post("/classify", json={"text": TEXT}))
    assert the_answer(response) == reference
    assert elapsed_ms < BOUND_MS + SLACK_MS
    # Nothing lost: the whole event is in one JSON line, which `manage.py replay_review_events` ingests.
    [line] = undelivered_lines(caplog)
    event = line["review_event"]
    assert line["sink"] == "http" and line["reason"]
    assert event["prediction_id"] == response.json()["prediction_id"] and event["text"] == TEXT
    assert event["distribution"] == reference["distribution"] and event["threshold"] == 1.0
    assert event["model_version"] == reference["model_version"] and event["time"]
    assert client.get("/health").json()["review"] == {"sink": "http", "delivered": 0, "undelivered": 2}


def test_a_batch_to_a_hanging_django_is_bounded_as_a_whole(make_client, model_file, start_server, caplog):
    """The bound is per request, retries and every event of a batch included."""
    url = start_server(servers.silent) + "/api/v1/review-items/"
    client = make_client(model_uri=str(model_file), confidence_threshold=1.0, review_sink="http", review_api_url=url,
                         review_api_token="t", review_timeout_ms=BOUND_MS, review_retries=5)
    client.post("/classify", json={"text": "warm up"})
    caplog.set_level(logging.WARNING, logger="serving.review")
    caplog.clear()
    texts = [f"{TEXT} {i}" for i in range(8)]
    response, elapsed_ms = timed(lambda: client.post("/classify/batch", json={"texts": texts}))
    assert response.status_code == 200 and elapsed_ms < BOUND_MS + SLACK_MS
    assert sorted(line["review_event"]["text"] for line in undelivered_lines(caplog)) == sorted(texts)


SQS_OUTAGES = {
    "down": lambda start: servers.closed_port_url(),
    "hanging": lambda start: start(servers.silent),
    "trickling": lambda start: start(servers.trickling),
    "answering 500": lambda start: start(servers.HTTP_500),
}


@pytest.mark.parametrize("outage", SQS_OUTAGES)
def test_sqs_failing_never_changes_the_answer_nor_delays_it_past_the_bound(make_client, model_file, start_server, monkeypatch, caplog, reference, outage):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", SQS_OUTAGES[outage](start_server))
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    client = make_client(model_uri=str(model_file), confidence_threshold=1.0, review_sink="sqs",
                         review_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/review", review_timeout_ms=BOUND_MS)
    client.post("/classify", json={"text": "warm up"})
    caplog.set_level(logging.WARNING, logger="serving.review")
    caplog.clear()
    response, elapsed_ms = timed(lambda: client.post("/classify", json={"text": TEXT}))
    assert the_answer(response) == reference and elapsed_ms < BOUND_MS + SLACK_MS
    [line] = undelivered_lines(caplog)
    assert line["sink"] == "sqs" and line["review_event"]["prediction_id"] == response.json()["prediction_id"]


@pytest.fixture
def s3_client(bucket, make_client, tiny_onnx):
    """A client serving the tiny model from moto's S3, checking for a new one on every request."""
    bucket.upload_file(str(tiny_onnx), "models", KEY)
    client = make_client(model_uri=f"s3://models/{KEY}")
    client.version = served_version(client)
    return client


@pytest.fixture
def short_s3_timeouts(monkeypatch):
    """Shorter S3 client timeouts than production's, so a hung check gives up within the test."""
    import intentflow_serving.model

    monkeypatch.setattr(intentflow_serving.model, "S3_CONNECT_TIMEOUT_SECONDS", 1)
    monkeypatch.setattr(intentflow_serving.model, "S3_READ_TIMEOUT_SECONDS", 1)


S3_OUTAGES = {
    "down": (lambda start: servers.closed_port_url(), "cannot be reached"),
    "hanging": (lambda start: start(servers.silent), "cannot be reached: Read timeout"),
    "answering 500": (lambda start: start(servers.HTTP_500), "cannot be reached"),
}


@pytest.mark.parametrize("outage", S3_OUTAGES)
def test_s3_failing_leaves_the_loaded_model_answering_at_once_and_health_says_why(s3_client, start_server, monkeypatch, short_s3_timeouts, outage):
    endpoint, reason = S3_OUTAGES[outage]
    point_s3_at(endpoint(start_server), monkeypatch)
    for _ in range(5):  # each one finds a check due (MODEL_REFRESH_SECONDS=0) and must not wait for it
        response, elapsed_ms = timed(lambda: s3_client.post("/classify", json={"text": TEXT}))
        assert response.status_code == 200 and response.json()["model_version"] == s3_client.version
        assert elapsed_ms < BOUND_MS + SLACK_MS
    health = eventually(lambda: (h := s3_client.get("/health")).json()["error"] and h, what="the S3 error in /health")
    assert health.status_code == 200 and health.json()["model_loaded"] is True
    assert reason in health.json()["error"] and f"s3://models/{KEY}" in health.json()["error"]


def test_with_no_model_yet_a_hanging_s3_is_503_with_the_reason_within_the_wait(make_client, start_server, monkeypatch, aws, short_s3_timeouts):
    point_s3_at(start_server(servers.silent), monkeypatch)
    client = make_client(model_uri=f"s3://models/{KEY}", model_load_wait_seconds=1)
    response, elapsed_ms = timed(lambda: client.post("/classify", json={"text": TEXT}))
    assert response.status_code == 503 and elapsed_ms < 1000 + SLACK_MS + 1000
    assert response.json()["detail"] == f"no model is available: the model at s3://models/{KEY} is still loading after 1 s (a slow or unreachable source)"
    health = client.get("/health")
    assert health.status_code == 503 and "still loading" in health.json()["error"]
    # The load gives up once its tries have timed out (read without starting another): a load
    # still running after this test would log its failure into the next one's records.
    eventually(lambda: "cannot be reached: Read timeout" in (client.store.error or ""), what="the load giving up")


def test_with_no_model_yet_a_down_s3_is_503_with_the_reason(make_client, monkeypatch, aws, short_s3_timeouts):
    point_s3_at(servers.closed_port_url(), monkeypatch)
    client = make_client(model_uri=f"s3://models/{KEY}")
    response, elapsed_ms = timed(lambda: client.post("/classify", json={"text": TEXT}))
    assert response.status_code == 503 and elapsed_ms < 5000
    assert f"the model at s3://models/{KEY} cannot be reached" in response.json()["detail"]


@pytest.mark.parametrize("where", ["local file", "s3"])
def test_a_corrupt_model_is_ignored_until_a_good_one_is_published(where, make_client, model_file, tiny_onnx, tiny_artifact, tmp_path, request, caplog):
    caplog.set_level(logging.INFO, logger="serving.model")
    if where == "s3":
        bucket = request.getfixturevalue("bucket")
        bucket.upload_file(str(tiny_onnx), "models", KEY)
        client = make_client(model_uri=f"s3://models/{KEY}")

        def publish(path):
            bucket.upload_file(str(path), "models", KEY)
    else:
        client = make_client(model_uri=str(model_file))

        def publish(path):
            model_file.write_bytes(path.read_bytes())

    loaded = served_version(client)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00garbage, not an ONNX model" * 100)
    publish(garbage)
    eventually(lambda: "cannot be loaded" in health_error(client), what="the corrupt model's error in /health")
    for _ in range(3):
        assert served_version(client) == loaded  # the loaded model keeps answering
    assert client.get("/health").status_code == 200 and client.store.loads == 1
    good = tmp_path / "good.onnx"
    version = variant_of(tiny_artifact, good, temperature=2.5)
    publish(good)
    eventually(lambda: served_version(client) == version, what="the swap to the good model")
    assert client.get("/health").json()["error"] is None
    # What happened is in the log, one JSON object per line (the reasons quote freely).
    events = [json.loads(r.getMessage()) for r in caplog.records if r.name == "serving.model"]
    events = [e for e in events if e["uri"] == client.store.uri]  # not a check an earlier test left running
    assert [e["event"] for e in events] == ["model_loaded", "model_refresh_failed", "model_swapped"]
    assert "cannot be loaded" in events[1]["reason"] and events[2]["to"] == version
