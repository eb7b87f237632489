"""django-q2 tasks of the review queue (thin: they call services)."""

from django.conf import settings

from webapp.review import services


def review_queue_drain_task() -> dict[str, int]:
    counts = services.review_queue_drain()
    counts["samples_pruned"] = services.traffic_samples_prune(keep=settings.TRAINING_UNLABELED_TEXTS)
    return counts


def review_items_group_task() -> dict[str, int]:
    return services.review_items_group()
