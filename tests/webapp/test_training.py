"""Retraining services: launch checks, snapshots, execution, cancel, crashed workers, the registry."""

import os
import socket
import subprocess
import sys

import pytest
import torch
from django.core.exceptions import ValidationError
from django.utils import timezone

from mlcore.artifact import file_sha256
from webapp.labeling import services as labeling
from webapp.labeling.models import Intent, Utterance
from webapp.training import services
from webapp.training.services import promotion as promoting
from webapp.training.services import worker
from webapp.training.models import Promotion, TrainingRun


@pytest.mark.parametrize(
    "options, message",
    [
        ({"epochs": 0}, "epochs must be"),
        ({"learning_rate": -1.0}, "learning_rate must be"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"max_length": 4}, "max_length must be"),
        ({"validation_fraction": 0.9}, "validation_fraction must be"),
        ({"device": "tpu"}, "device must be"),
        ({"review_budget": 1.0}, "review_budget is a share"),
        ({"warmup": 0.5}, "Unknown training option"),
    ],
)
def test_bad_hyperparameters_are_refused_before_queuing(labeled_workspace, ml_engineer, options, message):
    with pytest.raises(ValidationError, match=message):
        services.training_run_start(user=ml_engineer, options=options)
    assert not TrainingRun.objects.exists()


def test_data_that_cannot_train_is_refused(db, ml_engineer, intent_factory, utterance_factory, settings):
    news = intent_factory("get_news")
    for i in range(12):
        utterance_factory(f"news item {i}", news)
    with pytest.raises(ValidationError, match="at least two intents"):
        services.training_run_start(user=ml_engineer, options={})
    music = intent_factory("play_music")
    for i in range(3):
        utterance_factory(f"song {i}", music)
    utterance_factory("an unlabeled text", None)
    with pytest.raises(ValidationError, match=r"fewer than 10 labeled examples: play_music \(3\)"):
        services.training_run_start(user=ml_engineer, options={})
    settings.MIN_EXAMPLES_PER_INTENT = 3
    assert services.training_data_check() == {"get_news": 12, "play_music": 3}  # the unlabeled one is left out


def test_the_snapshot_is_frozen_and_leaves_held_out_out(queued, ml_engineer):
    run = queued()
    snapshot = run.snapshot
    held_out_ids = set(Utterance.objects.filter(is_held_out=True).values_list("id", flat=True))
    assert snapshot.heldout_count == len(held_out_ids) == 30 and snapshot.train_count == 240
    assert set(snapshot.rows.filter(held_out=False).values_list("utterance_id", flat=True)).isdisjoint(held_out_ids)
    assert set(snapshot.rows.filter(held_out=True).values_list("utterance_id", flat=True)) == held_out_ids
    assert sum(snapshot.intent_counts.values()) == 240
    # Unchanged data: the same fingerprint. A label edited after launch does not reach this snapshot.
    assert queued().snapshot.fingerprint == snapshot.fingerprint
    utterance = Utterance.objects.filter(is_held_out=False).first()
    labeling.utterance_update(utterance=utterance, user=ml_engineer, intent=Intent.objects.exclude(pk=utterance.intent_id).first())
    row = snapshot.rows.get(utterance_id=utterance.pk)
    assert row.intent != utterance.intent.name
    assert queued().snapshot.fingerprint != snapshot.fingerprint


def test_a_run_trains_and_stores_a_loadable_artifact_with_held_out_metrics(trained):
    run = trained()
    assert run.device_used == "cpu" and run.requested_device == "auto"
    assert run.step == run.total_steps > 0 and run.started_at <= run.finished_at
    assert run.heldout_report["examples"] == 30 and 0 <= run.heldout_report["accuracy"] <= 1
    assert "epoch 1: validation accuracy" in run.log_tail
    with run.artifact.open("rb") as handle:
        artifact = torch.load(handle, weights_only=True)
    assert artifact["dataset_fingerprint"] == run.snapshot.fingerprint
    assert run.artifact_size == run.artifact.size and len(run.artifact_sha256) == 64


def test_a_task_delivered_twice_does_not_train_twice(trained):
    run = trained()
    assert services.training_run_execute(run_id=run.pk) is None
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED


def test_cancel_a_queued_run(queued):
    run = services.training_run_cancel(run=queued())
    assert run.status == TrainingRun.Status.CANCELLED
    assert services.training_run_execute(run_id=run.pk) is None
    with pytest.raises(ValidationError, match="already cancelled"):
        services.training_run_cancel(run=run)


def test_cancel_during_training_stops_between_steps(queued, monkeypatch):
    run = queued()
    original = worker._ProgressWriter.progress

    def cancel_at_step_two(self, progress):
        original(self, progress)
        if progress.step == 2:
            services.training_run_cancel(run=TrainingRun.objects.get(pk=self.run_id))

    monkeypatch.setattr(worker._ProgressWriter, "progress", cancel_at_step_two)
    monkeypatch.setattr(worker._ProgressWriter, "interval", 0.0, raising=False)
    services.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.CANCELLED
    assert run.step < run.total_steps and not run.artifact
    assert "cancelled at step" in run.log_tail


def test_a_run_that_crashes_is_failed_with_its_reason(queued):
    run = queued(base_model="/nonexistent/model-dir")
    services.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "Base model directory not found" in run.error_message and run.finished_at


def test_a_crashed_workers_run_is_marked_failed(queued, settings):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = timezone.now()
    crashed, silent, alive = queued(), queued(), queued()
    TrainingRun.objects.filter(pk=crashed.pk).update(status="running", worker=f"{socket.gethostname()}:{dead.pid}", heartbeat_at=now)
    TrainingRun.objects.filter(pk=silent.pk).update(status="running", worker="elsewhere:1", heartbeat_at=now - timezone.timedelta(hours=2))
    TrainingRun.objects.filter(pk=alive.pk).update(status="running", worker=services.worker_identity(), heartbeat_at=now)
    assert services.training_runs_fail_orphans() == 2
    crashed.refresh_from_db(), silent.refresh_from_db(), alive.refresh_from_db()
    assert crashed.status == silent.status == TrainingRun.Status.FAILED
    assert "ended while run" in crashed.error_message and "has not reported" in silent.error_message
    assert alive.status == TrainingRun.Status.RUNNING


def test_promote_and_rollback_change_what_serving_holds(trained, ml_engineer, serving_path):
    first, second = trained(), trained(seed=7)
    services.model_promote(run=first, user=ml_engineer)
    assert file_sha256(serving_path) == first.artifact_sha256
    from mlcore.onnx_predictor import OnnxPredictor

    assert OnnxPredictor.from_file(serving_path.with_suffix(".onnx")).sha256 == first.artifact_sha256
    services.model_promote(run=second, user=ml_engineer, override_reason="whatever the gate says")
    assert file_sha256(serving_path) == second.artifact_sha256
    rollback = services.model_promote(run=first, user=ml_engineer, override_reason="roll back")
    assert file_sha256(serving_path) == first.artifact_sha256
    assert OnnxPredictor.from_file(serving_path.with_suffix(".onnx")).sha256 == first.artifact_sha256
    assert services.promoted_run() == first and rollback.previous_run == second
    # No temp file left; each version's files kept under versions/ for the next rollback.
    assert sorted(p.name for p in serving_path.parent.iterdir()) == ["model.onnx", "model.pt", "versions"]
    assert sorted(p.name for p in (serving_path.parent / "versions").iterdir()) == sorted({first.version, second.version})


def test_publishing_is_atomic_when_the_copy_fails(trained, ml_engineer, serving_path, monkeypatch):
    first, second = trained(), trained(seed=3)
    services.model_promote(run=first, user=ml_engineer)

    def disk_full(descriptor):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", disk_full)  # the new file is written, not yet in place
    with pytest.raises(ValidationError, match="disk full"):
        services.model_promote(run=second, user=ml_engineer, override_reason="the gate is not under test here")
    assert file_sha256(serving_path) == first.artifact_sha256
    assert not [p for p in serving_path.parent.rglob("*") if p.name.endswith(".tmp")]
    assert services.promoted_run() == first
    assert Promotion.objects.get(run=second).status == Promotion.Status.FAILED


def test_the_gate_refuses_a_worse_model_and_records_an_override(trained, ml_engineer, serving_path):
    good, worse = trained(), trained(seed=5)
    services.model_promote(run=good, user=ml_engineer)
    worse.metrics["test"]["accuracy"] = good.heldout_report["accuracy"] - 0.02
    worse.save(update_fields=["metrics"])
    with pytest.raises(ValidationError, match="more than 0.5 points worse. Give a reason"):
        services.model_promote(run=worse, user=ml_engineer)
    assert file_sha256(serving_path) == good.artifact_sha256
    promotion = services.model_promote(run=worse, user=ml_engineer, override_reason="newer intents matter more")
    assert promotion.override_reason == "newer intents matter more"
    assert promotion.previous_heldout_accuracy == pytest.approx(good.heldout_report["accuracy"])


def promoted_then_retrained_on_more_held_out(trained, user) -> tuple:
    """A promoted run, then a run trained after ten more utterances were held out: the two were
    evaluated on different held-out questions, so the gate re-scores the first."""
    first = trained()
    services.model_promote(run=first, user=user)
    extra = Utterance.objects.filter(is_held_out=False).order_by("id")[:10]
    labeling.utterances_set_held_out(utterances=Utterance.objects.filter(pk__in=[u.pk for u in extra]), held_out=True, user=user)
    return first, trained()


def test_the_gate_rescores_the_promoted_model_on_new_held_out_questions(trained, ml_engineer, serving_path):
    first, second = promoted_then_retrained_on_more_held_out(trained, ml_engineer)
    assert second.snapshot.heldout_count == 40
    promotion = services.model_promote(run=second, user=ml_engineer, override_reason="if needed")
    assert promotion.previous_heldout_accuracy is not None  # the first model, scored on the 40 questions


def test_the_gate_scores_both_models_on_the_same_questions(trained, ml_engineer, serving_path):
    # Production knew 24 of the 30 questions' intents and got those right; the candidate knows all
    # 30 and gets 27. Scored on what each knows (1.0 against 0.9) the candidate looked worse; on the
    # same 30 questions it is better (0.9 against 0.8).
    production, candidate = trained(), trained(seed=5)
    production.metrics["test"].update(accuracy=1.0, examples=24, unknown_intent_examples=6)
    production.save(update_fields=["metrics"])
    candidate.metrics["test"].update(accuracy=0.9, examples=30, unknown_intent_examples=0)
    candidate.save(update_fields=["metrics"])
    services.model_promote(run=production, user=ml_engineer)
    promotion = services.model_promote(run=candidate, user=ml_engineer)
    assert (promotion.heldout_accuracy, promotion.previous_heldout_accuracy) == (pytest.approx(0.9), pytest.approx(0.8))
    assert promotion.override_reason == ""


def test_a_model_that_knows_none_of_the_intents_answers_none_of_the_questions(trained):
    from mlcore.data import Example, LabeledData

    run = trained()
    data = LabeledData(train=[], test=[Example("book a flight to lima", "book_flight"), Example("a table for two", "book_table")])
    assert promoting._rescored_accuracy(run, data) == 0.0


def test_the_gate_asks_for_a_reason_when_production_cannot_be_scored_and_takes_one(trained, ml_engineer, serving_path):
    first, second = promoted_then_retrained_on_more_held_out(trained, ml_engineer)
    with first.artifact.open("wb") as handle:  # production's stored artifact is lost: it cannot be re-scored
        handle.write(b"not a model")
    with pytest.raises(ValidationError, match=f"The promoted run #{first.pk} cannot be scored .* Give a reason"):
        services.model_promote(run=second, user=ml_engineer)
    assert file_sha256(serving_path) == first.artifact_sha256
    promotion = services.model_promote(run=second, user=ml_engineer, override_reason="the old artifact is gone")
    assert promotion.previous_heldout_accuracy is None and promotion.override_reason == "the old artifact is gone"
    assert file_sha256(serving_path) == second.artifact_sha256


def test_an_artifact_that_does_not_load_cannot_be_promoted(trained, ml_engineer, serving_path):
    run = trained()
    with run.artifact.open("wb") as handle:
        handle.write(b"not a model")
    with pytest.raises(ValidationError, match="does not match its recorded SHA-256"):
        services.model_promote(run=run, user=ml_engineer)
    assert not serving_path.exists() and not Promotion.objects.filter(status=Promotion.Status.SUCCEEDED).exists()


def test_a_run_that_did_not_succeed_cannot_be_promoted(queued, ml_engineer):
    with pytest.raises(ValidationError, match="only a succeeded run"):
        services.model_promote(run=queued(), user=ml_engineer)


def test_promotion_publishes_to_s3(trained, ml_engineer, settings, aws, moto_server):
    import hashlib

    s3 = aws("s3")
    s3.create_bucket(Bucket="models")
    settings.AWS_S3_ENDPOINT_URL = moto_server
    settings.SERVING_MODEL_URI = "s3://models/production/model.pt"
    run = trained()
    services.model_promote(run=run, user=ml_engineer)
    body = s3.get_object(Bucket="models", Key="production/model.pt")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == run.artifact_sha256
    assert s3.head_object(Bucket="models", Key="production/model.onnx")["ContentLength"] > 0


def test_artifacts_go_to_s3_when_a_bucket_is_configured(aws, moto_server, tmp_path):
    import os
    import subprocess
    import sys

    from tests.factories import REPO_ROOT

    aws("s3").create_bucket(Bucket="artifacts")
    code = ("from django.core.files.storage import storages; from django.core.files.base import ContentFile; "
            "s = storages['artifacts']; print(type(s).__name__, s.save('runs/x.pt', ContentFile(b'weights')))")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "DEBUG": "1", "ARTIFACT_BUCKET": "artifacts",
           "AWS_S3_ENDPOINT_URL": moto_server, "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"}
    out = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert out.stdout.splitlines()[-1] == "S3Storage runs/x.pt", out.stderr
    assert aws("s3").get_object(Bucket="artifacts", Key="runs/x.pt")["Body"].read() == b"weights"
