"""Fault injection for the background jobs, with real processes: a worker killed mid-training, and
the disk filling up while the artifact is written. Each ends in its documented state, nothing lost."""

import os
import signal
import subprocess
import sys

import pytest
from django.db import connection

from tests.e2e.conftest import database_url
from tests.factories import REPO_ROOT
from webapp.labeling.models import Utterance
from webapp.training import services
from webapp.training.models import TrainingRun


@pytest.mark.parametrize("broker", ["orm"], indirect=True)
def test_a_worker_killed_mid_training_fails_its_run_and_the_next_run_trains(qcluster, broker, ml_engineer, labeled_workspace, tiny_options):
    labels_before = Utterance.objects.count()
    run = services.training_run_start(user=ml_engineer, options={**tiny_options, "epochs": 200})

    def training():
        run.refresh_from_db()
        return run.status == TrainingRun.Status.RUNNING and run.step > 0

    qcluster.wait_for(training, timeout=180, what="the run to start training")
    pid = int(run.worker.rsplit(":", 1)[1])
    os.kill(pid, signal.SIGKILL)

    # django-q2 starts a new worker process in its place; its start-up sweep finds the run's process gone.
    def failed():
        run.refresh_from_db()
        return run.status == TrainingRun.Status.FAILED

    qcluster.wait_for(failed, timeout=120, what="the killed worker's run to be marked failed")
    assert f"The worker process {run.worker} ended while run #{run.pk} was training" in run.error_message
    assert not run.artifact and run.finished_at
    # Nothing lost: the labels and the frozen snapshot are intact, and the next run trains on them.
    assert Utterance.objects.count() == labels_before
    again = services.training_run_start(user=ml_engineer, options={**tiny_options, "epochs": 2})
    assert again.snapshot_id == run.snapshot_id

    def succeeded():
        again.refresh_from_db()
        return again.is_finished

    qcluster.wait_for(succeeded, timeout=240, what="the next run to finish")
    assert again.status == TrainingRun.Status.SUCCEEDED, again.error_message


DISK_FULL_WORKER = """
import resource, signal, sys
import django
django.setup()
from webapp.training.services import training_run_execute
# A file-size limit below the artifact's size stands in for a full disk: writing past it fails
# with EFBIG (with SIGXFSZ ignored, as a full disk fails with ENOSPC rather than a signal).
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
run = training_run_execute(run_id=int(sys.argv[1]))
print(run.status)
"""


@pytest.mark.django_db(transaction=True)
def test_a_full_disk_while_writing_the_artifact_fails_the_run_cleanly(ml_engineer, labeled_workspace, tiny_options, tiny_artifact, tmp_path):
    if connection.vendor == "sqlite":
        pytest.skip("the worker's database is a file on the same disk here; the PostgreSQL pass runs this test")
    run = services.training_run_start(user=ml_engineer, options=tiny_options)
    TrainingRun.objects.filter(pk=run.pk).update(task_id="")  # this test's own process runs it, not a queue
    limit = os.path.getsize(tiny_artifact) // 2
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "DEBUG": "1", "DATABASE_URL": database_url(),
           "PYTHONDONTWRITEBYTECODE": "1", "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", DISK_FULL_WORKER, str(run.pk), str(limit)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and done.stdout.strip().endswith("failed")
    assert "The artifact could not be written" in run.error_message and "File too large" in run.error_message, run.error_message
    assert not run.artifact and not run.artifact_sha256
    assert not list(tmp_path.rglob("*.pt"))  # no half-written artifact left behind
