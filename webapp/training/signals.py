"""Keeping the background jobs honest without a page load doing it.

When a django-q2 worker process starts, runs left "running" by a dead worker are marked failed
and the schedules are made to match the settings; after `migrate`, the schedules too.
"""

import logging

from django.dispatch import receiver
from django_q.signals import post_spawn

logger = logging.getLogger(__name__)


@receiver(post_spawn)
def sweep_on_worker_start(sender, proc_name, **kwargs):
    from webapp.training.services import jobs_sweep, schedules_sync

    try:
        jobs_sweep()
        schedules_sync()
    except Exception:  # never keep a worker from starting
        logger.exception("could not sweep orphaned jobs or sync the schedules")


def sync_schedules_after_migrate(sender, **kwargs):
    from webapp.training.services import schedules_sync

    schedules_sync()
