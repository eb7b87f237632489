"""The whole loop: serve a promoted model through the Lambda handler, send unsure predictions to
a live Django server, label one in the admin, and find it in the next run's snapshot."""

import json
import logging

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from webapp.labeling.models import Intent, Utterance
from webapp.labeling.roles import LABELERS, ML_ENGINEERS, REVIEW_REPORTERS
from webapp.review.models import ReviewItem
from webapp.training import services as training
from tests.serving.conftest import fresh_app_module  # noqa: F401  (fixture)
from tests.serving.events import FakeContext, http_api_v2
from tests.webapp_fixtures import make_user

UNSURE_TEXTS = ["can you find me a plumber", "what's the capital of peru", "Can you find me a   plumber"]


@pytest.fixture
def promoted_model(labeled_workspace, tiny_options, settings, tmp_path):
    engineer = make_user(ML_ENGINEERS)
    settings.SERVING_MODEL_URI = str(tmp_path / "serving" / "model.pt")
    run = training.training_run_start(user=engineer, options=tiny_options)
    training.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    training.model_promote(run=run, user=engineer)
    return settings.SERVING_MODEL_URI.replace(".pt", ".onnx"), engineer, run


def classify(handler, text: str) -> dict:
    response = handler(http_api_v2("POST", "/classify", {"text": text}), FakeContext())
    assert response["statusCode"] == 200
    return json.loads(response["body"])


def test_low_confidence_traffic_is_labeled_and_trains_the_next_run(live_server, client, promoted_model, fresh_app_module, tiny_options):  # noqa: F811
    model_uri, engineer, first_run = promoted_model
    reporter = make_user(REVIEW_REPORTERS)
    app = fresh_app_module(
        MODEL_URI=model_uri, REVIEW_SINK="http", REVIEW_API_URL=f"{live_server.url}/api/v1/review-items/",
        REVIEW_API_TOKEN=Token.objects.create(user=reporter).key, CONFIDENCE_THRESHOLD="0.999", REVIEW_TIMEOUT_MS="3000",
    )
    answers = [classify(app.handler, text) for text in UNSURE_TEXTS]
    assert all(a["low_confidence"] for a in answers)
    assert app.app.state.router.delivered == 3 and app.app.state.router.undelivered == 0

    # In the queue: three items, two distinct texts.
    assert set(ReviewItem.objects.values_list("prediction_id", flat=True)) == {__import__("uuid").UUID(a["prediction_id"]) for a in answers}
    labeler = make_user(LABELERS)
    client.force_login(labeler)
    queue = client.get("/admin/review/reviewitem/").context["cl"].result_list
    assert sorted(item.group_size for item in queue) == [1, 2]

    # A Labeler labels the plumber texts in the admin.
    plumber = next(item for item in queue if "plumber" in item.text)
    target = Intent.objects.get(name="get_business_information")
    client.post("/admin/review/reviewitem/", {"action": "label_as", ACTION_CHECKBOX_NAME: [plumber.pk], "apply": "1", "intent": target.pk})
    utterance = Utterance.objects.get(text="can you find me a plumber")
    assert utterance.intent == target and utterance.source == Utterance.Source.REVIEW
    assert ReviewItem.objects.filter(status="labeled").count() == 2
    assert '<strong id="labels-since">1</strong>' in client.get("/admin/").content.decode()

    # The next run's frozen data holds the new label.
    next_run = training.training_run_start(user=engineer, options=tiny_options)
    row = next_run.snapshot.rows.get(utterance_id=utterance.pk)
    assert (row.text, row.intent, row.held_out) == ("can you find me a plumber", "get_business_information", False)
    assert next_run.snapshot.fingerprint != first_run.snapshot.fingerprint


def test_events_lost_while_django_is_down_are_replayed(transactional_db, promoted_model, fresh_app_module, caplog, tmp_path):  # noqa: F811
    import socket

    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    down = f"http://127.0.0.1:{probe.getsockname()[1]}/api/v1/review-items/"
    probe.close()  # nothing listens there: Django is "stopped"
    model_uri, _, _ = promoted_model
    app = fresh_app_module(MODEL_URI=model_uri, REVIEW_SINK="http", REVIEW_API_URL=down, REVIEW_API_TOKEN="any",
                           CONFIDENCE_THRESHOLD="0.999")
    caplog.set_level(logging.WARNING, logger="serving.review")
    answers = [classify(app.handler, text) for text in UNSURE_TEXTS[:2]]
    assert app.app.state.router.undelivered == 2
    log = tmp_path / "lambda.log"
    log.write_text("\n".join(record.getMessage() for record in caplog.records) + "\n")
    for _ in range(2):  # replaying twice is harmless
        call_command("replay_review_events", str(log))
    assert sorted(str(p) for p in ReviewItem.objects.values_list("prediction_id", flat=True)) == sorted(a["prediction_id"] for a in answers)


def test_audit_items_and_traffic_reports_reach_the_admin(live_server, client, promoted_model, fresh_app_module):  # noqa: F811
    """Serving (through the Lambda handler) sends every prediction as an audit item (rate 1) and a
    traffic report with each request; Django keeps them apart from the low-confidence queue and
    turns reviewers' decisions into the live-accuracy estimate of the served version."""
    model_uri, engineer, run = promoted_model
    reporter = make_user(REVIEW_REPORTERS)
    app = fresh_app_module(
        MODEL_URI=model_uri, REVIEW_SINK="http", REVIEW_API_URL=f"{live_server.url}/api/v1/review-items/",
        REVIEW_API_TOKEN=Token.objects.create(user=reporter).key, REVIEW_AUDIT_RATE="1", TRAFFIC_REPORT_SECONDS="0",
        REVIEW_TIMEOUT_MS="3000",
    )
    answers = [classify(app.handler, text) for text in ("play some jazz", "what is the weather like", "read me the news")]
    assert app.app.state.router.undelivered == 0
    assert {a["model_version"] for a in answers} == {run.version}
    items = ReviewItem.objects.order_by("id")
    assert [i.reason for i in items] == ["audit"] * 3
    from webapp.review.models import TrafficReport
    from webapp.review import selectors, services as review

    assert sum(TrafficReport.objects.filter(model_version=run.version).values_list("predictions", flat=True)) == 3
    labeler = make_user(LABELERS)
    client.force_login(labeler)
    assert client.get("/admin/review/reviewitem/").context["cl"].result_list.__len__() == 0  # the low-confidence queue
    Intent.objects.get_or_create(name="oos")  # made by a migration, but an earlier transactional test flushed it
    first, second, third = items
    review.review_item_accept(item=first, user=labeler)
    review.review_item_accept(item=second, user=labeler)
    review.review_item_out_of_scope(item=third, user=labeler)
    estimate = selectors.audit_estimate(model_version=run.version)
    assert (estimate.reviewed, estimate.correct) == (3, 2)


def test_confident_traffic_samples_reach_django_and_the_next_run_self_trains_on_them(live_server, promoted_model, fresh_app_module,  # noqa: F811
                                                                                      tiny_options):
    """Serving (through the Lambda handler) sends what it answered with confidence as traffic
    samples (rate 1, threshold 0: every answer); the next run gets them as unlabeled texts."""
    from webapp.review.models import TrafficSample

    model_uri, engineer, first_run = promoted_model
    reporter = make_user(REVIEW_REPORTERS)
    app = fresh_app_module(
        MODEL_URI=model_uri, REVIEW_SINK="http", REVIEW_API_URL=f"{live_server.url}/api/v1/review-items/",
        REVIEW_API_TOKEN=Token.objects.create(user=reporter).key, CONFIDENCE_THRESHOLD="0", REVIEW_ROUTING="rule",
        TRAFFIC_SAMPLE_RATE="1", REVIEW_TIMEOUT_MS="3000",
    )
    texts = ["play some jazz please", "what is the weather like today", "read me the news now"]
    answers = [classify(app.handler, text) for text in texts]
    assert app.app.state.router.undelivered == 0 and not ReviewItem.objects.exists()
    samples = {str(s.prediction_id): s for s in TrafficSample.objects.all()}
    assert set(samples) == {a["prediction_id"] for a in answers}
    assert all(samples[a["prediction_id"]].predicted_intent == a["intent"] for a in answers)

    run = training.training_run_start(user=engineer, options=tiny_options)
    training.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == run.Status.SUCCEEDED, run.error_message
    assert run.metrics["self_training"]["unlabeled_texts"] == 3


def test_a_worker_process_groups_near_duplicates_with_the_model_that_predicted_them(qcluster, broker, labeled_workspace, tiny_options, settings):
    """The grouping task runs in a real qcluster worker: it embeds each new item with the run whose
    model predicted it and joins near-duplicates (mlcore.grouping) to the first one's group."""
    import numpy as np
    from django_q.tasks import async_task

    from mlcore.predictor import Predictor
    from tests.webapp_fixtures import review_event
    from webapp.review import services as review
    from webapp.training.models import TrainingRun
    from webapp.training.services import artifact_local_copy

    # The worker trains the run (with a worker running, the run is its to train: not this process's).
    run = training.training_run_start(user=make_user(ML_ENGINEERS), options=tiny_options)
    qcluster.wait_for(lambda: run.refresh_from_db() or run.is_finished, timeout=240, what=f"run #{run.pk} ({broker[0]} broker)")
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error_message
    texts = ["can you find me a plumber", "could you find me a plumber", "what's the capital of peru", "Can you find me a   plumber"]
    items = [review.review_item_ingest(event=review_event(text, model_version=run.version))[0] for text in texts]
    async_task("webapp.review.tasks.review_items_group_task")
    qcluster.wait_for(lambda: not ReviewItem.objects.filter(grouped=False).exists(), timeout=180,
                      what=f"the worker to group the review items ({broker[0]} broker)")
    for item in items:
        item.refresh_from_db()
    with artifact_local_copy(run) as path:
        expected = Predictor.from_file(path).embeddings(texts)
    stored = np.stack([np.frombuffer(bytes(item.embedding), dtype=np.float32) for item in items])
    np.testing.assert_allclose(stored, expected, atol=1e-5)  # the run's own encoder, in the worker
    assert items[3].group_key == items[0].group_key  # identical texts, grouped at ingestion
    similarity = float(expected[0] @ expected[1])
    assert (items[1].group_key == items[0].group_key) == (similarity >= settings.REVIEW_GROUP_SIMILARITY), similarity
