"""The background jobs stay honest: heartbeats in every phase, the sweep on a schedule (not on page
loads), a swept run never flipped back, a queue that cannot be reached, the schedules from settings."""

import pytest
from django.utils import timezone

from webapp.training import services
from webapp.training.services import worker
from webapp.training.models import TrainingRun

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


def take_redis_down(monkeypatch) -> None:
    """The production broker (Redis), unreachable."""
    from django_q.conf import Conf

    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", DEAD_REDIS)


@pytest.fixture
def redis_down(monkeypatch):
    take_redis_down(monkeypatch)


@pytest.mark.django_db(transaction=True)  # on_commit runs at the launch's own commit, as in production
def test_a_run_whose_queue_is_down_at_launch_fails_with_the_reason(api_for, ml_engineer, labeled_workspace, tiny_options, redis_down):
    response = api_for(ml_engineer).post("/api/v1/training-runs/", tiny_options, format="json")
    assert response.status_code == 503 and "could not be queued" in response.json()["detail"]
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.FAILED and "job queue cannot be reached" in run.error_message and run.finished_at


@pytest.mark.django_db(transaction=True)  # on_commit runs at the launch's own commit, as in production
def test_the_launch_page_says_so_too(client, ml_engineer, labeled_workspace, tiny_base_model, redis_down):
    client.force_login(ml_engineer)
    form = {"base_model": tiny_base_model, "device": "cpu", "epochs": 1, "batch_size": 16, "learning_rate": 0.001,
            "seed": 1, "max_length": 32, "validation_fraction": 0.1}
    response = client.post("/admin/training/trainingrun/launch/", form, follow=True)
    assert "could not be queued" in response.content.decode()
    assert TrainingRun.objects.get().status == TrainingRun.Status.FAILED


@pytest.mark.django_db(transaction=True)  # on_commit runs at the request's own commit, as in production
def test_a_promotion_whose_queue_is_down_fails_with_the_reason(api_for, ml_engineer, labeled_workspace, tiny_options, monkeypatch):
    run = services.training_run_start(user=ml_engineer, options=tiny_options)  # queued on the ORM broker
    services.training_run_execute(run_id=run.pk)
    take_redis_down(monkeypatch)
    response = api_for(ml_engineer).post(f"/api/v1/training-runs/{run.pk}/promote/", {}, format="json")
    assert response.status_code == 503 and "could not be queued" in response.json()["detail"]
    assert run.promotions.get().status == "failed" and services.promoted_run() is None


def test_opening_the_run_pages_writes_nothing(client, ml_engineer, queued):
    run = queued()
    silent = timezone.now() - timezone.timedelta(hours=2)
    TrainingRun.objects.filter(pk=run.pk).update(status="running", worker="elsewhere:1", heartbeat_at=silent)
    client.force_login(ml_engineer)
    assert client.get("/admin/training/trainingrun/").status_code == 200
    assert client.get(f"/admin/training/trainingrun/{run.pk}/change/").status_code == 200
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING  # GET requests do not sweep
    assert services.jobs_sweep() == {"runs_failed": 1, "promotions_failed": 0}  # the scheduled task does
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "has not reported" in run.error_message


def test_a_swept_run_is_not_flipped_back_by_its_worker(queued, monkeypatch):
    run = queued()
    original = worker._train_and_store

    def train_while_swept(run_id, log):
        outcome = original(run_id, log)
        TrainingRun.objects.filter(pk=run_id).update(status=TrainingRun.Status.FAILED, error_message="swept: presumed dead")
        return outcome

    monkeypatch.setattr(worker, "_train_and_store", train_while_swept)
    services.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and run.error_message == "swept: presumed dead"


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_beats_in_phases_without_progress(queued):
    run = queued()
    old = timezone.now() - timezone.timedelta(hours=1)
    TrainingRun.objects.filter(pk=run.pk).update(status="running", heartbeat_at=old)
    import time

    with worker._run_heartbeat(run.pk, interval=0.1):
        time.sleep(0.6)  # e.g. loading the encoder: no progress callback is called
    run.refresh_from_db()
    assert run.heartbeat_at > old + timezone.timedelta(minutes=59)


def test_the_schedules_follow_the_settings(db, settings):
    from django_q.models import Schedule

    settings.REVIEW_DRAIN_MINUTES, settings.TRAINING_SWEEP_MINUTES = 7, 3
    services.schedules_sync()
    drain, sweep = Schedule.objects.get(name="drain review queue"), Schedule.objects.get(name="sweep training jobs")
    assert (drain.minutes, drain.func) == (7, "webapp.review.tasks.review_queue_drain_task")
    assert (sweep.minutes, sweep.func, sweep.repeats) == (3, "webapp.training.tasks.jobs_sweep_task", -1)
    settings.REVIEW_GROUP_MINUTES = 2
    services.schedules_sync()
    assert Schedule.objects.filter(name__in=["drain review queue", "sweep training jobs"]).count() == 2
    group = Schedule.objects.get(name="group review items")
    assert (group.minutes, group.func) == (2, "webapp.review.tasks.review_items_group_task")


@pytest.mark.parametrize("name, value", [("REVIEW_DRAIN_MINUTES", "0"), ("TRAINING_SWEEP_MINUTES", "0"), ("PROMOTION_LOCK_SECONDS", "5"),
                                         ("REVIEW_GROUP_MINUTES", "0"), ("REVIEW_LEASE_SECONDS", "0"), ("REVIEW_GROUP_SIMILARITY", "1.5")])
def test_bad_job_settings_stop_the_start(name, value, tmp_path):
    import os
    import subprocess
    import sys

    from tests.factories import REPO_ROOT

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "DEBUG": "1", name: value, "VAR_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "manage.py", "check"], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert out.returncode != 0 and (f"{name} must be at least" in out.stderr or f"{name} must be above 0 and at most 1" in out.stderr)
