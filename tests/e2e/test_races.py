"""Races between real processes on the test database (PostgreSQL in `make test-postgres`, where
select_for_update and row locks matter): two promotions, one outliving its lease; grouping racing
decisions and leases; a drain batch that holds a poisoned message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import database_url
from tests.factories import REPO_ROOT
from tests.webapp_fixtures import review_event

pytestmark = pytest.mark.django_db(transaction=True)

# Each script runs in its own Python process, on the test database, as a worker would.
PRELUDE = """
import django, os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
django.setup()
from django.conf import settings
"""


def start(script: str, tmp_path: Path, name: str, **env: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / f"{name}.log"
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "webapp.settings", "DEBUG": "1", "DATABASE_URL": database_url(),
                   "PYTHONUNBUFFERED": "1", **env}
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(script)], cwd=REPO_ROOT, env=environment,
                                   stdout=output, stderr=subprocess.STDOUT)
    return process, log


def finish(process: subprocess.Popen, log: Path, *, timeout: float = 300) -> str:
    try:
        process.wait(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
    output = log.read_text(errors="replace")
    assert process.returncode == 0, output[-3000:]
    return output


def wait_for(path: Path, process: subprocess.Popen, log: Path, *, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the process never reached {path.name}:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


LEASE_SECONDS = 2

PROMOTE = """
from webapp.training import services
from webapp.training.services import promotion as steps
settings.PROMOTION_LOCK_SECONDS = {lease}
stall_at = os.environ.get("STALL_AT")
if stall_at:  # announce the step, then go on slowly: the test freezes this process there (SIGSTOP)
    original = getattr(steps, stall_at)
    def announced(*args, **kwargs):
        result = original(*args, **kwargs)
        open(os.environ["MARKER"], "w").close()
        time.sleep(1.0)
        return result
    setattr(steps, stall_at, announced)
promotion = services.model_promote_execute(promotion_id=int(os.environ["PROMOTION_ID"]))
print("RESULT", promotion.status, promotion.error_message)
"""


@pytest.mark.parametrize("step", ["serving_export", "publish_version"])
def test_a_frozen_promotion_that_outlived_its_lease_leaves_the_other_ones_model_live(trained, ml_engineer, serving_path, tmp_path, step):
    from webapp.training import services
    from webapp.training.models import Promotion, PromotionLock

    first, second = trained(), trained(seed=7)
    slow, fast = (services.model_promote_request(run=run, user=ml_engineer, override_reason="race", enqueue=False) for run in (first, second))
    marker = tmp_path / "reached"
    frozen, frozen_log = start(PROMOTE.format(lease=LEASE_SECONDS), tmp_path, "slow", PROMOTION_ID=str(slow.pk), STALL_AT=step, MARKER=str(marker))
    wait_for(marker, frozen, frozen_log)
    os.kill(frozen.pid, signal.SIGSTOP)  # a stalled worker: its renewal thread stops too
    try:
        time.sleep(LEASE_SECONDS + 1)
        overtaker, overtaker_log = start(PROMOTE.format(lease=LEASE_SECONDS), tmp_path, "fast", PROMOTION_ID=str(fast.pk))
        assert "RESULT succeeded" in finish(overtaker, overtaker_log)
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    assert "RESULT failed" in finish(frozen, frozen_log)
    slow.refresh_from_db()
    assert "lease ran out" in slow.error_message
    assert services.promoted_run() == second and Promotion.objects.get(pk=fast.pk).status == Promotion.Status.SUCCEEDED
    from mlcore.artifact import file_sha256
    from mlcore.onnx_predictor import OnnxPredictor

    # Serving holds exactly what the registry records: the overtaker's model, both files.
    assert file_sha256(serving_path) == second.artifact_sha256
    assert OnnxPredictor.from_file(serving_path.with_suffix(".onnx")).sha256 == second.artifact_sha256
    assert PromotionLock.objects.get(pk=1).holder_id is None


GROUP_AND_INGEST = """
import numpy as np
from webapp.review import services
from webapp.review.models import ReviewItem
from tests.webapp_fixtures import review_event
version, rounds = os.environ["MODEL_VERSION"], int(os.environ["ROUNDS"])
for round in range(rounds):
    for copy in range(3):  # near-duplicates of the texts the reviewer is deciding, arriving all the time
        services.review_item_ingest(event=review_event(f"whats the weather in paris {'please ' * copy}{round}", model_version=version))
    services.review_items_group(similarity=0.5)
print("RESULT grouped", ReviewItem.objects.count())
"""


def test_grouping_racing_decisions_never_decides_an_item_nobody_was_shown(trained, labeler, tmp_path):
    from webapp.review import services
    from webapp.review.models import ReviewDecision, ReviewItem

    run = trained()
    for i in range(5):
        services.review_item_ingest(event=review_event(f"what is the weather in paris {i}", model_version=run.version))
    grouper, grouper_log = start(GROUP_AND_INGEST, tmp_path, "grouper", MODEL_VERSION=run.version, ROUNDS="15")
    shown_by_decision: dict[int, set[int]] = {}
    filters = services.QueueFilters(reason=None)
    while grouper.poll() is None or ReviewItem.objects.filter(status=ReviewItem.Status.PENDING).exists():
        lead = services.review_group_lease(user=labeler, filters=filters)
        if lead is None:
            time.sleep(0.05)
            continue
        shown = [i for member in services.review_group_view(lead)["members"] for i in member["item_ids"]]
        time.sleep(0.05)  # the reviewer reads: the grouper may join items meanwhile
        decision = services.review_group_decide(user=labeler, lead_id=lead.pk, item_ids=shown, decision="dismiss")
        shown_by_decision[decision.pk] = set(shown)
    assert "RESULT grouped" in finish(grouper, grouper_log)
    decisions = list(ReviewDecision.objects.all())
    assert decisions and all(set(d.item_ids) <= shown_by_decision[d.pk] for d in decisions)
    # Every item was decided once, by exactly one decision that showed it.
    decided = [item_id for d in decisions for item_id in d.item_ids]
    assert len(decided) == len(set(decided)) == ReviewItem.objects.count()


DRAIN = """
from webapp.review.tasks import review_queue_drain_task
print("RESULT", __import__("json").dumps(review_queue_drain_task(), sort_keys=True))
"""


def test_a_drain_process_stores_a_batch_around_a_poisoned_message(review_queue, tmp_path):
    from webapp.review.models import ReviewItem

    sqs, queue_url, _ = review_queue("race-poisoned", visibility=0)
    poisoned = '{"prediction_id": "x", "threshold": ' + "9" * 5000 + "}"
    for body in (json.dumps(review_event("stored before")), poisoned, json.dumps(review_event("stored after"))):
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    from django.conf import settings

    drain, drain_log = start(DRAIN, tmp_path, "drain", REVIEW_QUEUE_URL=queue_url, AWS_SQS_ENDPOINT_URL=settings.AWS_SQS_ENDPOINT_URL)
    output = finish(drain, drain_log)
    counts = json.loads(output.split("RESULT ", 1)[1])
    assert (counts["received"], counts["created"], counts["malformed"]) == (3, 2, 1)
    assert sorted(ReviewItem.objects.values_list("text", flat=True)) == ["stored after", "stored before"]
