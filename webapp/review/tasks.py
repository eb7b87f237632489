"""django-q2 tasks of the review queue (thin: they call services)."""

from django.conf import settings

from webapp.review import services


def review_queue_drain_task() -> dict[str, int]:
    try:
        counts = services.review_queue_drain()
    finally:  # SQS unreachable: the table stays bounded all the same
        pruned = services.traffic_samples_prune(keep=settings.TRAINING_UNLABELED_TEXTS)
    return {**counts, "samples_pruned": pruned}


def review_items_group_task() -> dict[str, int]:
    return services.review_items_group()
