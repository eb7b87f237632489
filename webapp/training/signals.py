"""When a django-q2 worker process starts, runs left "running" by a dead worker are marked failed."""

import logging

from django.dispatch import receiver
from django_q.signals import post_spawn

logger = logging.getLogger(__name__)


@receiver(post_spawn)
def fail_orphaned_runs(sender, proc_name, **kwargs):
    from webapp.training.services import training_runs_fail_orphans

    try:
        training_runs_fail_orphans()
    except Exception:  # never keep a worker from starting
        logger.exception("could not check for orphaned training runs")
