"""Launch from the admin as an ML engineer; a real qcluster worker process trains the run."""

import pytest
import torch

from webapp.training.models import TrainingRun
from tests.webapp_fixtures import make_user
from webapp.labeling.roles import ML_ENGINEERS


def test_a_run_launched_in_the_admin_trains_in_a_worker(client, qcluster, broker, tiny_base_model, labeled_workspace):
    engineer = make_user(ML_ENGINEERS)
    client.force_login(engineer)
    response = client.post("/admin/training/trainingrun/launch/", {
        "base_model": tiny_base_model, "device": "auto", "epochs": 3, "batch_size": 16, "learning_rate": 0.001,
        "seed": 3, "max_length": 32, "validation_fraction": 0.1,
    })
    assert response.status_code == 302, response.content.decode()[-2000:]
    run = TrainingRun.objects.get()

    def finished():
        run.refresh_from_db()
        return run.is_finished

    qcluster.wait_for(finished, timeout=240, what=f"run #{run.pk} to finish ({broker[0]} broker)")
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error_message + run.log_tail
    assert run.worker and run.worker.split(":")[-1] != str(__import__("os").getpid())  # another process trained it
    assert run.device_used == "cpu" and run.step == run.total_steps
    # Metrics, on the validation split and on the held-out set frozen in the snapshot.
    assert run.validation_report["accuracy"] > 0.3 and run.heldout_report["examples"] == run.snapshot.heldout_count == 30
    assert run.snapshot.rows.filter(held_out=False).count() == 240
    with run.artifact.open("rb") as handle:
        artifact = torch.load(handle, weights_only=True)
    assert artifact["labels"] == sorted(run.snapshot.intent_counts)
    page = client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert "succeeded" in page and "Results on the held-out set" in page


@pytest.mark.parametrize("broker", ["orm"], indirect=True)
def test_manage_py_train_waits_for_the_worker(qcluster, broker, tiny_base_model, labeled_workspace, capsys):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    call_command("train", "--base-model", tiny_base_model, "--epochs", "2", "--learning-rate", "0.001", "--wait")
    out, err = capsys.readouterr()
    run = TrainingRun.objects.get(pk=int(out.strip()))
    assert run.status == TrainingRun.Status.SUCCEEDED and "succeeded: accuracy" in err
    with pytest.raises(CommandError, match="failed: Base model directory not found") as failure:
        call_command("train", "--base-model", "/no/such/model", "--wait")
    assert failure.value.returncode == 1
    with pytest.raises(CommandError, match="epochs must be") as refused:
        call_command("train", "--epochs", "0")
    assert refused.value.returncode == 2


@pytest.mark.django_db(transaction=True)
def test_train_wait_says_within_seconds_that_no_worker_took_the_run(labeled_workspace, tiny_base_model):
    import os
    import subprocess
    import sys
    import time

    from tests.e2e.conftest import database_url
    from tests.factories import REPO_ROOT

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "DEBUG": "1", "DATABASE_URL": database_url(),
           "PYTHONUNBUFFERED": "1", "Q_CLUSTER_PREFIX": "intentflow-nobody-serves-this"}
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "manage.py", "train", "--base-model", tiny_base_model, "--wait"], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:  # no worker serves the queue: the command must say so, not wait in silence
            if line.startswith("No worker"):
                break
        waited = time.monotonic() - started
    finally:
        process.kill()
        process.wait()
    assert "Q_CLUSTER_NAME=intentflow-nobody-serves-this-training python manage.py qcluster" in line
    assert waited < 60
    run = TrainingRun.objects.get()
    assert run.status == TrainingRun.Status.QUEUED
