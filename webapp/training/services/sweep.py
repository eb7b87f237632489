"""The sweep (a django-q2 schedule): runs whose worker died or went silent, promotions silent for a
lease; and the schedules themselves, kept equal to the settings."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from webapp.training.models import Promotion, TrainingRun

logger = logging.getLogger(__name__)

def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a dead child that nobody reaped yet is a zombie: not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def training_runs_fail_orphans() -> int:
    """Mark failed the runs whose worker died: its process is gone (same host) or it went silent."""
    host = socket.gethostname()
    silent_since = timezone.now() - timezone.timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT_SECONDS)
    failed = 0
    for run in TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING):
        worker_host, _, pid = run.worker.rpartition(":")
        reason = None
        if worker_host == host and pid.isdigit() and not _process_alive(int(pid)):
            reason = f"The worker process {run.worker} ended while run #{run.pk} was training (it crashed or was killed)."
        elif run.heartbeat_at is None or run.heartbeat_at < silent_since:
            reason = (f"The worker {run.worker or '(unknown)'} has not reported for more than "
                      f"{settings.TRAINING_HEARTBEAT_TIMEOUT_SECONDS} seconds; it is presumed dead.")
        if reason and TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            status=TrainingRun.Status.FAILED, error_message=reason, finished_at=timezone.now(),
            log_tail=(run.log_tail + "\n" + reason).strip(),
        ):
            logger.error(reason)
            failed += 1
    return failed


# The schedules


def promotions_fail_abandoned() -> int:
    """Fail promotions left "running" by a worker that died: not the live holder of the lock, and
    silent (no heartbeat: neither waiting for the lock nor renewing it) for a whole lease."""
    from webapp.training.models import PromotionLock

    lock = PromotionLock.objects.filter(pk=1).first()
    live_holder = lock.holder_id if lock and lock.expires_at and lock.expires_at > timezone.now() else None
    silent_since = timezone.now() - timezone.timedelta(seconds=settings.PROMOTION_LOCK_SECONDS)
    abandoned = Promotion.objects.filter(status=Promotion.Status.RUNNING).exclude(pk=live_holder).filter(
        Q(heartbeat_at__lt=silent_since) | Q(heartbeat_at__isnull=True, requested_at__lt=silent_since))
    return abandoned.update(status=Promotion.Status.FAILED, finished_at=timezone.now(),
                            error_message="The worker carrying out this promotion stopped; serving kept the previous model. Request it again.")


def jobs_sweep() -> dict[str, int]:
    return {"runs_failed": training_runs_fail_orphans(), "promotions_failed": promotions_fail_abandoned()}


SCHEDULES = {
    # name: (function, the setting that holds its interval in minutes)
    "drain review queue": ("webapp.review.tasks.review_queue_drain_task", "REVIEW_DRAIN_MINUTES"),
    "sweep training jobs": ("webapp.training.tasks.jobs_sweep_task", "TRAINING_SWEEP_MINUTES"),
    "group review items": ("webapp.review.tasks.review_items_group_task", "REVIEW_GROUP_MINUTES"),
}


def schedules_sync() -> None:
    """Make the django-q2 schedules match the settings (after migrate and when a cluster starts)."""
    from django_q.models import Schedule

    for name, (func, setting) in SCHEDULES.items():
        minutes = getattr(settings, setting)
        schedule = Schedule.objects.filter(name=name).first()
        if schedule is None:
            Schedule.objects.create(name=name, func=func, schedule_type=Schedule.MINUTES, minutes=minutes, repeats=-1)
        elif (schedule.func, schedule.schedule_type, schedule.minutes) != (func, Schedule.MINUTES, minutes):
            schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats = func, Schedule.MINUTES, minutes, -1
            schedule.save()
