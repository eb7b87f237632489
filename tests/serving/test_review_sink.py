"""Routing unsure predictions to review: the rule, both sinks, the bound (outages: test_faults.py)."""

import json
import logging
import threading
import time

import pytest

from intentflow_serving.review import UNDELIVERED_EVENT, HttpSink, ReviewRouter
from tests.serving import servers
from tests.serving.servers import Recorder, http_answer

BOUND_MS = 200


def test_the_rule_threshold_and_ambiguity_margin():
    plain = ReviewRouter(None, bound_seconds=0.2, retries=0, ambiguity_margin=None)
    assert plain.needs_review(True, 0.6, 0.1) and not plain.needs_review(False, 0.8, 0.19)
    strict = ReviewRouter(None, bound_seconds=0.2, retries=0, ambiguity_margin=0.7)
    assert strict.needs_review(False, 0.8, 0.19) and not strict.needs_review(False, 0.95, 0.01)
    # REVIEW_ROUTING=either: a probability under the model's probability threshold, whatever the rule said
    assert plain.needs_review(False, 0.6, 0.1, probability_threshold=0.7)
    assert not plain.needs_review(False, 0.8, 0.1, probability_threshold=0.7)


def test_confident_predictions_are_not_sent(make_client, model_file, caplog):
    caplog.set_level(logging.WARNING, logger="serving.review")
    client = make_client(model_uri=str(model_file), confidence_threshold=0.0, review_sink="http",
                         review_api_url=servers.closed_port_url() + "/api/v1/review-items/", review_api_token="t")
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


def test_an_event_still_in_flight_at_the_deadline_is_logged_and_may_still_arrive(start_server, caplog):
    """At least once: the request stops waiting at the bound and logs the event for replay; the
    attempt under way may still land (Django's ingestion is idempotent by prediction id)."""
    received = threading.Event()

    def slow_but_fine(connection, stop):
        servers.read_request(connection)
        received.set()
        if not stop.wait(0.5):
            connection.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")

    url = start_server(slow_but_fine) + "/api/v1/review-items/"
    router = ReviewRouter(HttpSink(url, "t"), bound_seconds=BOUND_MS / 1000, retries=3, ambiguity_margin=None)
    caplog.set_level(logging.WARNING, logger="serving.review")
    started = time.perf_counter()
    router.submit([{"prediction_id": "p1", "text": "hello"}])
    assert (time.perf_counter() - started) * 1000 < BOUND_MS + 150
    [record] = [json.loads(r.getMessage()) for r in caplog.records]
    assert record["event"] == UNDELIVERED_EVENT and record["review_event"]["prediction_id"] == "p1"
    assert record["reason"] == "no answer within the review bound (REVIEW_TIMEOUT_MS)"
    assert received.wait(5) and (router.delivered, router.undelivered) == (0, 1)


def test_an_incomplete_sink_setting_fails_at_start():
    from pydantic import ValidationError

    from intentflow_serving.config import ServingSettings

    with pytest.raises(ValidationError, match="REVIEW_SINK=http needs REVIEW_API_URL"):
        ServingSettings(review_sink="http")
    with pytest.raises(ValidationError, match="REVIEW_SINK=sqs needs REVIEW_QUEUE_URL"):
        ServingSettings(review_sink="sqs")
    with pytest.raises(ValidationError, match="REVIEW_API_URL must be an http:// or https:// URL"):
        ServingSettings(review_sink="http", review_api_url="localhost:8000/api/v1/review-items/", review_api_token="t")


def undelivered(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if UNDELIVERED_EVENT in r.getMessage()]


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_the_event_is_kept_for_replay(start_server, caplog, status):
    """urllib would turn a 301/302 into a GET (a 405, the event taken as refused) with the token
    sent along to the host the redirect names. A redirect is a wrong REVIEW_API_URL: the log says
    where it points, and keeps the event for replay."""
    elsewhere = Recorder(lambda request: http_answer(201, {}, b"{}"))
    location = start_server(elsewhere) + "/api/v1/review-items/"
    django = Recorder(lambda request: http_answer(status, {"Location": location}))
    router = ReviewRouter(HttpSink(start_server(django) + "/api/v1/review-items/", "secret-token"), bound_seconds=2, retries=2,
                          ambiguity_margin=None)
    caplog.set_level(logging.WARNING, logger="serving.review")
    router.submit([{"prediction_id": "p1", "text": "hello"}])
    assert elsewhere.requests == []  # nothing went where the redirect points: nor the event, nor the token
    assert [r.method for r in django.requests] == ["POST"]  # trying again cannot help
    [line] = undelivered(caplog)
    assert line["review_event"] == {"prediction_id": "p1", "text": "hello"}
    assert line["reason"].startswith("configuration error") and f"HTTP {status}" in line["reason"] and location in line["reason"]
    assert (router.delivered, router.undelivered) == (0, 1)


def test_a_review_api_url_without_its_trailing_slash_reaches_djangos_route(make_client, model_file, start_server, caplog):
    """Django's routes end in a slash (APPEND_SLASH answers a POST without one with a 301): the
    setting is given the slash at start."""

    def django(request):
        if not request.target.endswith("/"):
            return http_answer(301, {"Location": request.target + "/"})
        return http_answer(201, {"Content-Type": "application/json"}, b"{}")

    api = Recorder(django)
    caplog.set_level(logging.WARNING, logger="serving.review")
    client = make_client(model_uri=str(model_file), confidence_threshold=1.0, review_sink="http",
                         review_api_url=start_server(api) + "/api/v1/review-items", review_api_token="t", review_timeout_ms=2000)
    assert client.post("/classify", json={"text": "show me the news"}).status_code == 200
    assert [(r.method, r.target) for r in api.requests] == [("POST", "/api/v1/review-items/")]
    assert client.get("/health").json()["review"]["delivered"] == 1 and not undelivered(caplog)


@pytest.mark.parametrize("given, used", [
    ("https://admin.example.com/api/v1/review-items", "https://admin.example.com/api/v1/review-items/"),
    ("https://admin.example.com/api/v1/review-items/", "https://admin.example.com/api/v1/review-items/"),
    ("http://127.0.0.1:8000/api/v1/review-items?source=lambda", "http://127.0.0.1:8000/api/v1/review-items/?source=lambda"),
])
def test_the_api_urls_are_given_their_trailing_slash(given, used):
    from intentflow_serving.config import ServingSettings

    settings = ServingSettings(review_sink="http", review_api_url=given, review_api_token="t", traffic_api_url=given.replace("review-items", "traffic-reports"))
    assert settings.review_api_url == used
    assert settings.traffic_api_url == used.replace("review-items", "traffic-reports")
