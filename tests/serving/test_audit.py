"""Audit sampling and traffic counts: a random share of all predictions goes to review as audit
items, and each container reports how many predictions it made per model version."""

import math
import random
import time

import pytest

from intentflow_serving.review import AUDIT, LOW_CONFIDENCE, SAMPLE, TRAFFIC_REPORT, HttpSink, ReviewRouter, TrafficCounter


class RecordingSink:
    name = "recording"

    def __init__(self) -> None:
        self.events: list[dict] = []

    def send(self, event, timeout):
        self.events.append(event)


def within_binomial_bounds(observed: int, trials: int, rate: float, sigmas: float = 5.0) -> bool:
    """Five standard deviations: a correct sampler fails this about once in three million runs."""
    expected = trials * rate
    return abs(observed - expected) <= sigmas * math.sqrt(trials * rate * (1 - rate))


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5])
def test_the_audit_share_is_honoured_over_many_predictions(rate):
    router = ReviewRouter(RecordingSink(), bound_seconds=1, retries=0, ambiguity_margin=None, audit_rate=rate)
    trials = 40_000
    reasons = [router.review_reason(low_confidence=False, confidence=0.99, second=0.005, model_version="v1") for _ in range(trials)]
    audited = reasons.count(AUDIT)
    assert within_binomial_bounds(audited, trials, rate), (audited, trials * rate)
    assert reasons.count(None) == trials - audited  # confident predictions go nowhere else


def test_the_audit_draw_ignores_confidence_so_the_sample_stays_uniform():
    """A low-confidence prediction drawn for the audit is an audit item (not a low-confidence one):
    otherwise the audit sample would under-represent exactly the predictions most often wrong."""
    router = ReviewRouter(RecordingSink(), bound_seconds=1, retries=0, ambiguity_margin=None, audit_rate=0.2, rng=random.Random(7))
    trials = 20_000
    unsure = [router.review_reason(low_confidence=True, confidence=0.3, second=0.2, model_version="v1") for _ in range(trials)]
    assert set(unsure) == {AUDIT, LOW_CONFIDENCE}
    assert within_binomial_bounds(unsure.count(AUDIT), trials, 0.2)


def test_no_sink_means_no_audit_and_no_counting():
    router = ReviewRouter(None, bound_seconds=1, retries=0, ambiguity_margin=None, audit_rate=1.0)
    assert router.review_reason(low_confidence=True, confidence=0.1, second=0.05, model_version="v1") is None
    assert router.traffic.due_reports(force=True) == []


def test_the_app_sends_the_audit_share_of_its_predictions(make_client, model_file):
    client = make_client(model_uri=str(model_file), confidence_threshold=0.0, review_sink="http", review_audit_rate=0.25,
                         review_api_url="http://127.0.0.1:9/api/v1/review-items/", review_api_token="t", traffic_report_seconds=3600)
    sink = client.app.state.router.sink = RecordingSink()
    texts = [f"play song number {i}" for i in range(64)]
    answers = []
    for _ in range(10):
        answers += client.post("/classify/batch", json={"texts": texts}).json()["results"]
    events = [e for e in sink.events if e.get("type") not in (TRAFFIC_REPORT, SAMPLE)]
    assert all(e["reason"] == AUDIT for e in events)  # threshold 0: nothing is low-confidence
    assert within_binomial_bounds(len(events), len(answers), 0.25), len(events)
    assert {e["prediction_id"] for e in events} <= {a["prediction_id"] for a in answers}


def test_traffic_reports_count_every_prediction_per_model_version(make_client, model_file):
    client = make_client(model_uri=str(model_file), confidence_threshold=0.5, review_sink="http", review_audit_rate=0.0,
                         review_api_url="http://127.0.0.1:9/api/v1/review-items/", review_api_token="t", traffic_report_seconds=0)
    sink = client.app.state.router.sink = RecordingSink()
    answers = []
    for text in ["play some jazz", "what's the weather", "set an alarm for six", "news please", "hello there"]:
        answers.append(client.post("/classify", json={"text": text}).json())
    answers += client.post("/classify/batch", json={"texts": ["one more", "and another"]}).json()["results"]
    reports = [e for e in sink.events if e.get("type") == TRAFFIC_REPORT]
    assert sum(r["predictions"] for r in reports) == len(answers) == 7
    assert sum(r["low_confidence"] for r in reports) == sum(a["low_confidence"] for a in answers)
    assert {r["model_version"] for r in reports} == {answers[0]["model_version"]}
    assert len({r["report_id"] for r in reports}) == len(reports)  # each report its own id: stored once


def test_a_report_waits_for_its_interval_and_counts_since_the_last_one():
    now = [0.0]
    counter = TrafficCounter(60, clock=lambda: now[0])
    for _ in range(5):
        counter.count(model_version="v1", low_confidence=True, audited=False)
    counter.count(model_version="v2", low_confidence=False, audited=True)
    assert counter.due_reports() == []
    now[0] = 61
    reports = {r["model_version"]: r for r in counter.due_reports()}
    assert (reports["v1"]["predictions"], reports["v1"]["low_confidence"], reports["v1"]["audited"]) == (5, 5, 0)
    assert (reports["v2"]["predictions"], reports["v2"]["low_confidence"], reports["v2"]["audited"]) == (1, 0, 1)
    now[0] = 200
    assert counter.due_reports() == []  # nothing counted since


def test_the_http_sink_posts_reports_beside_review_items():
    assert HttpSink("https://admin.example.com/api/v1/review-items/", "t").traffic_url == "https://admin.example.com/api/v1/traffic-reports/"
    assert HttpSink("https://x/api/v1/review-items", "t").traffic_url == "https://x/api/v1/traffic-reports/"
    assert HttpSink("https://x/r/", "t", "https://y/traffic/").traffic_url == "https://y/traffic/"


# Traffic samples: confidently answered predictions sent as unlabeled texts for self-training.


@pytest.mark.parametrize("rate", [0.05, 0.5])
def test_the_sample_share_is_honoured_over_confident_predictions_only(rate):
    router = ReviewRouter(RecordingSink(), bound_seconds=1, retries=0, ambiguity_margin=None, audit_rate=0.1, sample_rate=rate,
                          rng=random.Random(3))
    trials = 40_000
    confident = [router.review_reason(low_confidence=False, confidence=0.99, second=0.005, model_version="v1") for _ in range(trials)]
    assert set(confident) == {AUDIT, SAMPLE, None}
    # Drawn from what the audit left: a share ``rate`` of the 90% not audited.
    assert within_binomial_bounds(confident.count(SAMPLE), trials, 0.9 * rate), confident.count(SAMPLE)
    unsure = [router.review_reason(low_confidence=True, confidence=0.3, second=0.2, model_version="v1") for _ in range(5_000)]
    assert SAMPLE not in unsure  # an unsure prediction is a review item, never an unlabeled sample
    below_probability = [router.review_reason(low_confidence=False, confidence=0.6, second=0.3, model_version="v1",
                                              probability_threshold=0.7) for _ in range(5_000)]
    assert SAMPLE not in below_probability


def test_the_app_sends_samples_of_its_confident_answers(make_client, model_file):
    client = make_client(model_uri=str(model_file), confidence_threshold=0.0, review_sink="http", review_audit_rate=0.0,
                         traffic_sample_rate=0.25, review_api_url="http://127.0.0.1:9/api/v1/review-items/", review_api_token="t",
                         traffic_report_seconds=3600)
    sink = client.app.state.router.sink = RecordingSink()
    texts = [f"play song number {i}" for i in range(64)]
    answers = {}
    for _ in range(10):
        answers.update({a["prediction_id"]: a for a in client.post("/classify/batch", json={"texts": texts}).json()["results"]})
    samples = [e for e in sink.events if e.get("type") == SAMPLE]
    assert len(samples) == len(sink.events)  # threshold 0 and no audit: nothing else is sent
    assert within_binomial_bounds(len(samples), len(answers), 0.25), len(samples)
    for sample in samples:
        answer = answers[sample["prediction_id"]]
        assert sample["text"] in texts and sample["intent"] == answer["intent"] and sample["model_version"] == answer["model_version"]


def test_the_http_sink_posts_samples_beside_review_items():
    assert HttpSink("https://admin.example.com/api/v1/review-items/", "t").sample_url == "https://admin.example.com/api/v1/traffic-samples/"
    assert HttpSink("https://x/api/v1/review-items", "t", "https://y/traffic/").sample_url == "https://x/api/v1/traffic-samples/"


class SlowSink(RecordingSink):
    """Takes ``seconds`` per event, so that a short deadline serves only the first few."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def send(self, event, timeout):
        time.sleep(self.seconds)
        super().send(event, timeout)


def test_review_items_are_delivered_before_samples_when_the_deadline_is_short():
    router = ReviewRouter(SlowSink(0.2), bound_seconds=0.5, retries=0, ambiguity_margin=None, sample_rate=1.0)
    samples = [router.sample_event(prediction_id=f"s{i}", text=f"sample {i}", intent="play_music", model_version="v1")
               for i in range(4)]
    item = router.event(prediction_id="r1", text="unsure", distribution=[{"intent": "play_music", "probability": 0.4}],
                        model_version="v1", threshold=0.5)
    router.submit(samples + [item])  # the item arrives last, as the last text of a batch would
    assert router.sink.events[0]["prediction_id"] == "r1"
    assert router.undelivered >= 1 and all(e.get("type") == SAMPLE for e in router.sink.events[1:])
