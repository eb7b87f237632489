"""django-q2 tasks of the review queue (thin: they call services)."""

from webapp.review import services


def review_queue_drain_task() -> dict[str, int]:
    return services.review_queue_drain()


def review_items_group_task() -> dict[str, int]:
    return services.review_items_group()
