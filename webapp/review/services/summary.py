"""The admin index's summary of the review queue."""

from __future__ import annotations

from typing import Any

from webapp.labeling.models import Utterance
from webapp.review.models import ReviewItem
from webapp.review.selectors import audit_estimates


def review_summary() -> dict[str, Any]:
    """For the admin's index: pending items, and labels added since the production model was trained."""
    from webapp.training.services import promoted_run

    pending = ReviewItem.objects.filter(status=ReviewItem.Status.PENDING)
    run = promoted_run()
    labeled = Utterance.objects.filter(intent__isnull=False)
    if run is not None:
        labeled = labeled.exclude(id__in=run.snapshot.rows.values("utterance_id"))
    return {
        "audit": audit_estimates(limit=5),
        "pending_items": pending.count(),
        "pending_texts": pending.values("group_key").distinct().count(),
        "promoted_run": run,
        "labels_since_promoted": labeled.count() if run is not None else None,
    }
