"""What the admin shows about live traffic: the audit estimate of production accuracy, and the
Traffic page's figures per day and model version.

Only audit items count in the estimate. They are a uniform random sample of all predictions
(REVIEW_AUDIT_RATE in serving), so the share the reviewers found right estimates the model's
accuracy on live traffic without bias; the low-confidence items are, by construction, the
predictions the model was unsure of, and would make any model look far worse than it is.
An item decided "out of scope" counts as wrong (no intent of the model fits it); a dismissed or
pending item is no decision and counts nowhere.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

from django.db.models import Count, F, Max, Min, OuterRef, Q, QuerySet, Subquery, Sum, Window
from django.db.models.functions import RowNumber, TruncDate
from django.utils import timezone

from mlcore.metrics import wilson_interval
from webapp.review.models import ReviewItem, TrafficReport, TrafficSample

DECIDED = (ReviewItem.Status.LABELED, ReviewItem.Status.OUT_OF_SCOPE)


@dataclass(frozen=True)
class AuditEstimate:
    model_version: str
    reviewed: int
    correct: int
    pending: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.reviewed if self.reviewed else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.correct, self.reviewed)

    @property
    def low(self) -> float | None:
        return self.interval[0] if self.reviewed else None

    @property
    def high(self) -> float | None:
        return self.interval[1] if self.reviewed else None


def _audit_counts() -> dict:
    decided = Q(status__in=DECIDED)
    return dict(
        reviewed=Count("id", filter=decided),
        correct=Count("id", filter=decided & Q(reviewed_intent=F("predicted_intent"))),
        pending=Count("id", filter=Q(status=ReviewItem.Status.PENDING)),
    )


def audit_estimates(*, model_versions: Iterable[str] | None = None, limit: int | None = None) -> list[AuditEstimate]:
    """The audit estimate per model version, the most recently served version first."""
    items = ReviewItem.objects.filter(reason=ReviewItem.Reason.AUDIT).order_by()
    if model_versions is not None:
        items = items.filter(model_version__in=list(model_versions))
    rows = items.values("model_version").annotate(**_audit_counts(), latest=Max("predicted_at")).order_by("-latest")
    if limit is not None:
        rows = rows[:limit]
    return [AuditEstimate(model_version=r["model_version"], reviewed=r["reviewed"], correct=r["correct"], pending=r["pending"]) for r in rows]


def audit_estimate(*, model_version: str) -> AuditEstimate:
    found = audit_estimates(model_versions=[model_version])
    return found[0] if found else AuditEstimate(model_version=model_version, reviewed=0, correct=0, pending=0)


@dataclass(frozen=True)
class TrafficDay:
    day: datetime.date
    model_version: str
    predictions: int
    low_confidence: int
    audit: AuditEstimate

    @property
    def low_confidence_share(self) -> float | None:
        return self.low_confidence / self.predictions if self.predictions else None


def traffic_by_day(*, days: int = 30, today: datetime.date | None = None) -> list[TrafficDay]:
    """Per UTC day and model version, newest day first: predictions and the low-confidence share
    (from the serving containers' traffic reports) and the audit estimate (from the audit items
    predicted that day)."""
    today = today or timezone.now().date()
    since = today - datetime.timedelta(days=days - 1)
    # Up to tomorrow: a sender's clock may run a little ahead; ingestion refuses anything later,
    # and rows stored before it did stay off the page (and off its chart's axis).
    until = today + datetime.timedelta(days=1)
    counts = (TrafficReport.objects.filter(day__gte=since, day__lte=until).order_by().values("day", "model_version")
              .annotate(predictions=Sum("predictions"), low_confidence=Sum("low_confidence")))
    audits = (ReviewItem.objects.filter(reason=ReviewItem.Reason.AUDIT, predicted_at__date__gte=since, predicted_at__date__lte=until).order_by()
              .annotate(day=TruncDate("predicted_at")).values("day", "model_version").annotate(**_audit_counts()))
    table: dict[tuple, dict] = defaultdict(lambda: {"predictions": 0, "low_confidence": 0, "reviewed": 0, "correct": 0, "pending": 0})
    for row in counts:
        table[(row["day"], row["model_version"])].update(predictions=row["predictions"], low_confidence=row["low_confidence"])
    for row in audits:
        table[(row["day"], row["model_version"])].update(reviewed=row["reviewed"], correct=row["correct"], pending=row["pending"])
    return [
        TrafficDay(day=day, model_version=version, predictions=row["predictions"], low_confidence=row["low_confidence"],
                   audit=AuditEstimate(model_version=version, reviewed=row["reviewed"], correct=row["correct"], pending=row["pending"]))
        for (day, version), row in sorted(table.items(), key=lambda item: (item[0][0], item[0][1]), reverse=True)
    ]


# The review queue's order under each REVIEW_STRATEGY: the same order as
# mlcore.review_strategy.review_order (ties by arrival). "review_turn" is annotated by review_queue.
QUEUE_ORDERING = {"confidence": ("confidence", "id"), "margin": ("margin", "id"), "balanced": ("review_turn", "confidence", "id")}


def first_of_each_group(status: str | None, reason: str | None = None) -> QuerySet:
    """The id of the first item of each group (identical texts and their near-duplicates) with the
    same status (of one status, or of all with None): one pass over the (status, group_key, id)
    index, not a subquery per row."""
    items = ReviewItem.objects.order_by()
    if reason is not None:
        items = items.filter(reason=reason)
    if status is None:
        return items.values("status", "group_key").annotate(first=Min("id")).values("first")
    return items.filter(status=status).values("group_key").annotate(first=Min("id")).values("first")


def with_queue_order(queryset: QuerySet, strategy: str) -> QuerySet:
    """``queryset`` with each group's size and, under "balanced", each item's turn within its
    predicted intent (SQL applies WHERE before window functions, so the turn counts the rows the
    filters keep: 1 for each intent's least confident item), ordered as the queue is."""
    group = ReviewItem.objects.filter(status=OuterRef("status"), group_key=OuterRef("group_key")).order_by()
    size = group.values("status", "group_key").annotate(n=Count("*")).values("n")
    queryset = queryset.annotate(group_size=Subquery(size))
    if strategy == "balanced":
        turn = Window(RowNumber(), partition_by=[F("predicted_intent")], order_by=[F("confidence").asc(), F("id").asc()])
        queryset = queryset.annotate(review_turn=turn)
    return queryset.order_by(*QUEUE_ORDERING[strategy])


def pending_groups(*, predicted_intent: str = "", model_version: str = "", reason: str | None = None,
                   exclude_groups: Iterable[str] = ()) -> QuerySet:
    """The pending groups within these filters, one row (the group's first item) per group."""
    leads = ReviewItem.objects.filter(status=ReviewItem.Status.PENDING, id__in=first_of_each_group(ReviewItem.Status.PENDING, reason))
    if predicted_intent:
        leads = leads.filter(predicted_intent=predicted_intent)
    if model_version:
        leads = leads.filter(model_version=model_version)
    exclude_groups = list(exclude_groups)
    if exclude_groups:
        leads = leads.exclude(group_key__in=exclude_groups)
    return leads


def review_queue(*, strategy: str, **filters) -> QuerySet:
    """The pending groups (``pending_groups``' filters) in the queue's order."""
    return with_queue_order(pending_groups(**filters), strategy)


def leased_groups(*, other_than) -> QuerySet:
    """The keys of the groups another reviewer holds a live lease on."""
    return (ReviewItem.objects.filter(status=ReviewItem.Status.PENDING, leased_until__gt=timezone.now())
            .exclude(leased_by=other_than).order_by().values("group_key"))


def traffic_sample_texts(*, limit: int) -> list[str]:
    """The texts of the ``limit`` most recent traffic samples: the unlabeled texts a training run
    self-trains on (mlcore.self_training)."""
    if limit <= 0:
        return []
    return list(TrafficSample.objects.order_by("-received_at", "-id").values_list("text", flat=True)[:limit])
