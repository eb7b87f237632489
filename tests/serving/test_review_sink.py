"""Routing unsure predictions to review: the rule, both sinks, and a sink that is down."""

import json
import logging
import socket
import threading
import time

import pytest

from serving_review import UNDELIVERED_EVENT, ReviewRouter

BOUND_MS = 200


def test_the_rule_threshold_and_ambiguity_margin():
    plain = ReviewRouter(None, bound_seconds=0.2, retries=0, ambiguity_margin=None)
    assert plain.needs_review(0.6, 0.1, threshold=0.7) and not plain.needs_review(0.8, 0.19, threshold=0.7)
    strict = ReviewRouter(None, bound_seconds=0.2, retries=0, ambiguity_margin=0.7)
    assert strict.needs_review(0.8, 0.19, threshold=0.7) and not strict.needs_review(0.95, 0.01, threshold=0.7)


@pytest.fixture
def silent_server():
    """Accepts connections and never answers: the worst kind of sink outage."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/api/v1/review-items/"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def closed_port_url() -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}/api/v1/review-items/"


@pytest.mark.parametrize("outage", ["refused", "silent"])
def test_a_sink_that_is_down_costs_at_most_the_bound_and_loses_nothing(make_client, model_file, caplog, silent_server, outage):
    url = closed_port_url() if outage == "refused" else silent_server
    client = make_client(model_uri=str(model_file), confidence_threshold=1.0, review_sink="http",
                         review_api_url=url, review_api_token="t", review_timeout_ms=BOUND_MS)
    client.post("/classify", json={"text": "warm up"})  # the first request pays one-off costs
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="serving.review")
    started = time.perf_counter()
    response = client.post("/classify", json={"text": "show me today's news"})
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert response.status_code == 200 and response.json()["low_confidence"] is True
    assert elapsed_ms < BOUND_MS + 400  # the bound, plus the model call and generous slack for a busy CI machine
    [line] = [json.loads(r.getMessage()) for r in caplog.records if UNDELIVERED_EVENT in r.getMessage()]
    event = line["review_event"]
    assert event["prediction_id"] == response.json()["prediction_id"] and event["text"] == "show me today's news"
    assert len(event["distribution"]) == 10 and event["threshold"] == 1.0 and event["model_version"] and event["time"]
    health = client.get("/health").json()["review"]
    assert health == {"sink": "http", "delivered": 0, "undelivered": 2}


def test_confident_predictions_are_not_sent(make_client, model_file, caplog):
    caplog.set_level(logging.WARNING, logger="serving.review")
    client = make_client(model_uri=str(model_file), confidence_threshold=0.0, review_sink="http",
                         review_api_url=closed_port_url(), review_api_token="t")
    assert client.post("/classify", json={"text": "play some jazz"}).status_code == 200
    assert client.get("/health").json()["review"]["undelivered"] == 0 and not caplog.records


def test_the_sqs_sink_sends_the_event(make_client, model_file, aws, moto_server, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_server)
    sqs = aws("sqs")
    queue_url = sqs.create_queue(QueueName="review")["QueueUrl"]
    client = make_client(model_uri=str(model_file), confidence_threshold=1.0, review_sink="sqs", review_queue_url=queue_url)
    answers = client.post("/classify/batch", json={"texts": ["first text", "second text"]}).json()["results"]
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    bodies = sorted((json.loads(m["Body"]) for m in messages), key=lambda e: e["text"])
    assert [b["text"] for b in bodies] == ["first text", "second text"]
    assert {b["prediction_id"] for b in bodies} == {a["prediction_id"] for a in answers}
    assert client.get("/health").json()["review"]["delivered"] == 2


def test_an_sqs_endpoint_that_refuses_is_logged_within_the_bound(make_client, model_file, monkeypatch, caplog):
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", closed_port_url().rsplit("/api", 1)[0])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    caplog.set_level(logging.WARNING, logger="serving.review")
    client = make_client(model_uri=str(model_file), confidence_threshold=1.0, review_sink="sqs",
                         review_queue_url="https://sqs.us-east-1.amazonaws.com/123456789012/review", review_timeout_ms=BOUND_MS)
    client.post("/classify", json={"text": "warm up"})
    started = time.perf_counter()
    assert client.post("/classify", json={"text": "hello"}).status_code == 200
    assert (time.perf_counter() - started) * 1000 < BOUND_MS + 400
    assert sum(UNDELIVERED_EVENT in r.getMessage() for r in caplog.records) == 2


def test_an_incomplete_sink_setting_fails_at_start():
    from pydantic import ValidationError

    from serving_config import ServingSettings

    with pytest.raises(ValidationError, match="REVIEW_SINK=http needs REVIEW_API_URL"):
        ServingSettings(review_sink="http")
    with pytest.raises(ValidationError, match="REVIEW_SINK=sqs needs REVIEW_QUEUE_URL"):
        ServingSettings(review_sink="sqs")
