"""Launching a training run: the options, the data checks, the frozen snapshot, the queue; cancel."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from mlcore.config import TrainConfig
from mlcore.data import OOS_LABEL, Example, dataset_fingerprint
from mlcore.errors import ConfigError
from webapp.labeling.models import Utterance
from webapp.training.models import DatasetSnapshot, SnapshotRow, TrainingRun

logger = logging.getLogger(__name__)

# What the launch form, the API and `manage.py train` may set (declared on TrainConfig); the rest keeps mlcore's defaults.
LAUNCH_OPTIONS = TrainConfig.option_names("launch")



def training_config_build(*, options: dict[str, Any]) -> TrainConfig:
    unknown = sorted(set(options) - set(LAUNCH_OPTIONS))
    if unknown:
        raise ValidationError({"config": f"Unknown training option(s): {', '.join(unknown)}."})
    try:
        # Serving's review routing (webapp/settings.py reads the variables serving reads): a run
        # pseudo-labels only the traffic serving would answer with confidence (TrainConfig.routing).
        routing = {"review_routing": settings.REVIEW_ROUTING, "ambiguity_margin": settings.AMBIGUITY_MARGIN,
                   "confidence_threshold": settings.CONFIDENCE_THRESHOLD, "in_scope_threshold": settings.IN_SCOPE_THRESHOLD}
        return TrainConfig(**routing, **{k: v for k, v in options.items() if v is not None and v != ""})
    except ConfigError as exc:
        raise ValidationError({"config": str(exc)}) from None
    except TypeError as exc:  # a wrong type that TrainConfig's checks did not catch
        raise ValidationError({"config": str(exc)}) from None


def training_data_check(*, min_examples: int | None = None) -> dict[str, int]:
    """Labeled, not held-out utterances per intent; refuse data that cannot train a useful model."""
    minimum = settings.MIN_EXAMPLES_PER_INTENT if min_examples is None else min_examples
    counts = dict(
        Utterance.objects.filter(intent__isnull=False, intent__is_active=True, is_held_out=False)
        .values_list("intent__name").annotate(n=Count("id")).order_by("intent__name")
    )
    in_scope = {name: n for name, n in counts.items() if name != OOS_LABEL}
    if len(in_scope) < 2:
        raise ValidationError({"data": f"Training needs at least two intents with labeled examples; there are {len(in_scope)}."})
    too_few = {name: n for name, n in in_scope.items() if n < minimum}
    if too_few:
        listed = ", ".join(f"{name} ({n})" for name, n in sorted(too_few.items(), key=lambda item: item[1]))
        raise ValidationError({"data": f"{len(too_few)} intent(s) have fewer than {minimum} labeled examples: {listed}. "
                                       "Label more, or deactivate them."})
    return counts


def heldout_count() -> int:
    """Labeled utterances held out for evaluation (of active intents): what the promotion gate compares on."""
    return Utterance.objects.filter(intent__isnull=False, intent__is_active=True, is_held_out=True).count()


def snapshot_create() -> DatasetSnapshot:
    """Freeze the labeled utterances of active intents: training rows and held-out rows.

    A snapshot with the same rows already frozen is reused: unchanged data, same snapshot.
    """
    rows = list(
        Utterance.objects.filter(intent__isnull=False, intent__is_active=True)
        .order_by("id").values_list("id", "text", "intent__name", "is_held_out")
    )
    train = [Example(text, intent) for _, text, intent, held_out in rows if not held_out]
    heldout = [Example(text, intent) for _, text, intent, held_out in rows if held_out]
    fingerprint, heldout_fingerprint = dataset_fingerprint(train), dataset_fingerprint(heldout)
    existing = DatasetSnapshot.objects.filter(fingerprint=fingerprint, heldout_fingerprint=heldout_fingerprint).first()
    if existing is not None:
        return existing
    snapshot = DatasetSnapshot.objects.create(
        fingerprint=fingerprint, heldout_fingerprint=heldout_fingerprint,
        train_count=len(train), heldout_count=len(heldout),
        intent_counts=_counts(train), heldout_intent_counts=_counts(heldout),
    )
    SnapshotRow.objects.bulk_create(
        [SnapshotRow(snapshot=snapshot, utterance_id=pk, text=text, intent=intent, held_out=held_out)
         for pk, text, intent, held_out in rows],
        batch_size=1000,
    )
    return snapshot


def _counts(examples: list[Example]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for example in examples:
        counts[example.intent] = counts.get(example.intent, 0) + 1
    return dict(sorted(counts.items()))


def training_run_start(*, user: AbstractBaseUser | None, options: dict[str, Any]) -> TrainingRun:
    """Check the options and the data, freeze a snapshot, and queue the run after the commit."""
    config = training_config_build(options=options)
    training_data_check()
    with transaction.atomic():
        snapshot = snapshot_create()
        run = TrainingRun.objects.create(
            snapshot=snapshot, config=config.to_dict(), requested_device=config.device, created_by=user,
        )
        transaction.on_commit(lambda: _enqueue(run.pk))
    run.refresh_from_db()  # failed already if the queue could not be reached
    return run


def training_queue() -> str:
    """The queue that training runs go to; the other jobs use the cluster's own (see settings.Q_CLUSTER)."""
    from django_q.conf import Conf

    return f"{Conf.PREFIX}-training"


def queue_task(func: str, object_id: int, *, name: str, cluster: str | None = None) -> str:
    """Queue a task; an unreachable broker (Redis down) raises QueueUnavailable with the reason."""
    from django_q.tasks import async_task

    try:
        return async_task(func, object_id, task_name=name, cluster=cluster) or ""
    except Exception as exc:  # redis.ConnectionError, a database error with the ORM broker, ...
        raise QueueUnavailable(f"the job queue cannot be reached ({type(exc).__name__}: {first_line(exc)})") from exc


class QueueUnavailable(Exception):
    pass


def _enqueue(run_id: int) -> None:
    """After the launch commits. If the broker is down the run would stay "queued" forever: it is
    failed at once with the reason instead, and can be launched again once the queue is back."""
    try:
        task_id = queue_task("webapp.training.tasks.training_run_task", run_id, name=f"training-run-{run_id}", cluster=training_queue())
    except QueueUnavailable as exc:
        logger.error("run %s could not be queued: %s", run_id, exc)
        TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.FAILED, finished_at=timezone.now(),
            error_message=f"Run #{run_id} could not be queued: {exc}. Launch it again when the queue is back.",
        )
        return
    TrainingRun.objects.filter(pk=run_id).update(task_id=task_id)


def first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


# A queued run no worker has taken after this long is probably waiting for a worker that is not
# running: the training queue has a cluster of its own, and a newcomer may start only the other one.
UNCLAIMED_RUN_SECONDS = 10


def training_run_unclaimed_hint(*, run: TrainingRun) -> str | None:
    """A sentence for a run still queued UNCLAIMED_RUN_SECONDS after its launch: no worker has
    taken it, and the command that starts the training queue's worker. None otherwise."""
    if run.status != TrainingRun.Status.QUEUED:
        return None
    waited = (timezone.now() - run.created_at).total_seconds()
    if waited < UNCLAIMED_RUN_SECONDS:
        return None
    return (f"No worker has taken run #{run.pk} in {waited:.0f} s. Training runs have a queue and a worker of their own; "
            f"start it with: Q_CLUSTER_NAME={training_queue()} python manage.py qcluster")


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """A queued run ends at once; a running one stops between two steps."""
    if run.is_finished:
        raise ValidationError({"status": f"Run #{run.pk} has already {run.status}."})
    now = timezone.now()
    if TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.CANCELLED, cancel_requested=True, finished_at=now
    ):
        run.refresh_from_db()
        return run
    TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    run.refresh_from_db()
    return run
