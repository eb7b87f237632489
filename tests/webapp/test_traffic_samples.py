"""Traffic samples: confidently answered predictions serving sends as unlabeled texts, stored once,
and the unlabeled texts a training run self-trains on."""

import json
import os
import subprocess
import sys
import uuid

import pytest

from tests.factories import REPO_ROOT, read_demo_rows, write_csv
from tests.webapp_fixtures import traffic_sample
from webapp.labeling import services as labeling
from webapp.review import selectors, services
from webapp.review.models import TrafficSample

SAMPLES_URL = "/api/v1/traffic-samples/"


def test_a_sample_is_stored_once(api_for, reporter):
    sample = traffic_sample(text="  play   some jazz please ")
    client = api_for(reporter)
    first = client.post(SAMPLES_URL, sample, format="json")
    assert first.status_code == 201 and first.json()["created"] is True
    again = client.post(SAMPLES_URL, sample, format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    stored = TrafficSample.objects.get()
    assert (stored.text, stored.predicted_intent, stored.model_version) == ("play some jazz please", "play_music", "abc123def456")


def test_only_the_service_token_posts_samples(api_for, labeler, db):
    assert api_for(None).post(SAMPLES_URL, traffic_sample(), format="json").status_code == 401
    assert api_for(labeler).post(SAMPLES_URL, traffic_sample(), format="json").status_code == 403


@pytest.mark.parametrize(
    "change, field, reason",
    [
        ({"prediction_id": "nope"}, "prediction_id", "must be a UUID"),
        ({"text": "   "}, "text", "non-empty string"),
        ({"text": 7}, "text", "non-empty string"),
        ({"intent": ""}, "intent", "1 to 100 characters"),
        ({"model_version": "x" * 65}, "model_version", "1 to 64 characters"),
        ({"time": "2026-12-01T10:00:00"}, "time", "without a UTC offset"),
        ({"time": None}, "time", "ISO 8601"),
    ],
)
def test_a_malformed_sample_is_400_with_a_reason(api_for, reporter, change, field, reason):
    response = api_for(reporter).post(SAMPLES_URL, traffic_sample(**change), format="json")
    assert response.status_code == 400 and reason in " ".join(response.json()[field])
    assert not TrafficSample.objects.exists()


def test_a_missing_field_is_named(api_for, reporter):
    sample = traffic_sample()
    del sample["intent"]
    response = api_for(reporter).post(SAMPLES_URL, sample, format="json")
    assert response.status_code == 400 and "required" in " ".join(response.json()["intent"])


def test_the_replay_of_undelivered_lines_takes_samples_too(db):
    """Undelivered samples are logged like review events, and replayed the same way (the SQS drain: test_review.py)."""
    sample = traffic_sample()
    line = json.dumps({"event": "review_event_undelivered", "reason": "down", "review_event": sample})
    for _ in range(2):
        services.review_events_replay(lines=[line])
    assert TrafficSample.objects.get().prediction_id == uuid.UUID(sample["prediction_id"])


def test_training_takes_the_most_recent_samples(db, settings):
    for i in range(5):
        services.traffic_sample_ingest(sample=traffic_sample(text=f"sample {i}"))
    assert selectors.traffic_sample_texts(limit=3) == ["sample 4", "sample 3", "sample 2"]
    assert selectors.traffic_sample_texts(limit=0) == []


@pytest.mark.parametrize("repeats", [2, 50])
def test_a_text_asked_again_and_again_holds_one_place_in_the_pool(db, repeats):
    for i in range(3):
        services.traffic_sample_ingest(sample=traffic_sample(text=f"other text {i}"))
    for i in range(repeats):  # the same text, spaced and cased differently, each a new prediction
        services.traffic_sample_ingest(sample=traffic_sample(text=("  Check My BALANCE " if i % 2 else "check my balance")))
    assert TrafficSample.objects.count() == 4
    # Made recent again, not stored again: the pool of three still holds two other texts.
    assert selectors.traffic_sample_texts(limit=3) == ["check my balance", "other text 2", "other text 1"]


def test_the_migration_keeps_the_most_recent_sample_of_each_text(db):
    from importlib import import_module

    from django.apps import apps

    TrafficSample.objects.bulk_create([TrafficSample(prediction_id=uuid.uuid4(), text=text, text_key=f"placeholder-{i}", predicted_intent="x",
                                                     model_version="v", predicted_at="2026-12-01T10:00:00Z")
                                       for i, text in enumerate(["same text", "other", "Same   text"])])
    import_module("webapp.review.migrations.0008_traffic_sample_text_key").keep_one_sample_per_text(apps, None)
    assert sorted(TrafficSample.objects.values_list("text", flat=True)) == ["Same   text", "other"]


def test_the_drain_task_keeps_only_the_samples_a_run_could_use(db, settings):
    from webapp.review.tasks import review_queue_drain_task

    for i in range(6):
        services.traffic_sample_ingest(sample=traffic_sample(text=f"sample {i}"))
    settings.TRAINING_UNLABELED_TEXTS = 4
    assert review_queue_drain_task()["samples_pruned"] == 2
    assert sorted(TrafficSample.objects.values_list("text", flat=True)) == ["sample 2", "sample 3", "sample 4", "sample 5"]
    assert review_queue_drain_task()["samples_pruned"] == 0
    settings.TRAINING_UNLABELED_TEXTS = 0
    assert review_queue_drain_task()["samples_pruned"] == 4 and not TrafficSample.objects.exists()


def test_ml_engineers_see_and_delete_samples_labelers_do_not(client, ml_engineer, labeler):
    services.traffic_sample_ingest(sample=traffic_sample(text="a sample to look at"))
    client.force_login(ml_engineer)
    page = client.get("/admin/review/trafficsample/")
    assert page.status_code == 200 and "a sample to look at" in page.content.decode()
    assert client.get("/admin/review/trafficsample/add/").status_code == 403
    client.force_login(labeler)
    assert client.get("/admin/review/trafficsample/").status_code == 403


@pytest.fixture
def sampled_traffic(db):
    """Unlabeled texts like the demo data's, as serving would have sent them."""
    texts = [f"{text} please" for text, _ in read_demo_rows()]
    for text in texts:
        services.traffic_sample_ingest(sample=traffic_sample(text=text))
    return texts


@pytest.fixture
def out_of_scope_labels(labeled_workspace, ml_engineer, tmp_path):
    """Texts reviewers marked out of scope: what shows a run whether pseudo-labels hurt review routing."""
    texts = ["what is the meaning of life", "tell me a joke about cats", "how tall is everest", "translate hello to french",
             "who won the war of 1812", "how do i bake sourdough bread", "what is the speed of light", "why is the sky blue",
             "how far away is the moon", "what do pandas eat"]
    labeling.utterances_import(path=write_csv(tmp_path / "oos.csv", [(text, "oos") for text in texts]), user=ml_engineer)
    return texts


def test_a_run_self_trains_on_the_traffic_samples(sampled_traffic, out_of_scope_labels, trained, client, ml_engineer):
    run = trained()
    report = run.metrics["self_training"]
    client.force_login(ml_engineer)
    page = client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert f"Self-training: {len(sampled_traffic)} traffic samples,\n{report['pseudo_labels']} of them" in page
    assert report["unlabeled_texts"] == len(sampled_traffic) and report["pseudo_labels"] > 0
    assert "self_trained" in report and report["kept"] in ("self_trained", "reviewed_only")  # the second pass ran
    assert f"self-training: {len(sampled_traffic)} traffic samples" in run.log_tail
    assert f"self-training: {report['pseudo_labels']} pseudo-labels" in run.log_tail


def test_without_out_of_scope_labels_a_run_keeps_the_model_of_the_labels_alone(sampled_traffic, trained):
    """Nothing would show that the pseudo-labels did not hurt review routing: the report says so."""
    report = trained().metrics["self_training"]
    assert report["kept"] == "reviewed_only" and "no out-of-scope validation texts" in report["reason"]
    assert report["pseudo_labels"] == 0 and "self_trained" not in report


def settings_read(**environment: str) -> subprocess.CompletedProcess:
    """The project's settings imported in a fresh process with ``environment`` (read once, at start)."""
    clean = {k: v for k, v in os.environ.items() if k not in {"REVIEW_ROUTING", "AMBIGUITY_MARGIN", "CONFIDENCE_THRESHOLD", "IN_SCOPE_THRESHOLD"}}
    code = "from webapp import settings as s; print(s.REVIEW_ROUTING, s.AMBIGUITY_MARGIN, s.CONFIDENCE_THRESHOLD, s.IN_SCOPE_THRESHOLD)"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**clean, "DEBUG": "1", **environment})


def serving_reads(**environment: str):
    """What intentflow_serving.config makes of the same variables."""
    from intentflow_serving.config import ServingSettings

    read = ServingSettings(**{name.lower(): value for name, value in environment.items()})
    return [str(read.review_routing), str(read.ambiguity_margin), str(read.confidence_threshold), str(read.in_scope_threshold)]


def test_django_reads_the_routing_settings_serving_reads():
    """A run pseudo-labels what serving answers with confidence: both read the same variables alike."""
    assert settings_read().stdout.split() == ["either", "None", "None", "None"] == serving_reads()  # the defaults
    environment = {"REVIEW_ROUTING": "rule", "AMBIGUITY_MARGIN": "0.1", "CONFIDENCE_THRESHOLD": " 0.7", "IN_SCOPE_THRESHOLD": "1e-1"}
    read = settings_read(**environment)
    assert read.stdout.split() == ["rule", "0.1", "0.7", "0.1"] == serving_reads(**environment), read.stderr[-2000:]


@pytest.mark.parametrize(("name", "value"), [("REVIEW_ROUTING", "probability"), ("AMBIGUITY_MARGIN", "-0.1"),
                                             ("CONFIDENCE_THRESHOLD", "1.5"), ("IN_SCOPE_THRESHOLD", "nan"), ("CONFIDENCE_THRESHOLD", "")])
def test_a_bad_routing_setting_stops_django_at_start(name, value):
    """As it stops serving."""
    from pydantic import ValidationError

    result = settings_read(**{name: value})
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr and f"{name} must be" in result.stderr
    with pytest.raises(ValidationError, match=name.lower()):
        serving_reads(**{name: value})


def test_a_run_launched_without_self_training_ignores_the_samples(sampled_traffic, trained, settings):
    assert "self_training" not in trained(self_training=False).metrics
    settings.TRAINING_UNLABELED_TEXTS = 0
    assert "self_training" not in trained().metrics


def test_a_run_carries_servings_routing(queued, settings):
    settings.REVIEW_ROUTING, settings.AMBIGUITY_MARGIN, settings.CONFIDENCE_THRESHOLD, settings.IN_SCOPE_THRESHOLD = "rule", 0.1, None, 0.05
    config = queued().config
    assert [config[k] for k in ("review_routing", "ambiguity_margin", "confidence_threshold", "in_scope_threshold")] == ["rule", 0.1, None, 0.05]
