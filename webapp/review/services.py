"""Business actions of the review queue: ingest events from serving, and resolve them.

An event is what the serving app sends for a prediction it was unsure of (see
``lambda/serving_review.py``): prediction id, text, full distribution, model version,
threshold and time. Ingestion is idempotent by prediction id.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from mlcore.data import OOS_LABEL
from webapp.labeling import services as labeling
from webapp.labeling.models import MAX_TEXT_LENGTH, Intent, Utterance, text_key
from webapp.review.models import ReviewItem

logger = logging.getLogger(__name__)
UNDELIVERED_EVENT = "review_event_undelivered"  # the log line the serving app writes for a lost event


@dataclass(frozen=True)
class ReviewEvent:
    prediction_id: uuid.UUID
    text: str
    distribution: list[dict[str, Any]]
    model_version: str
    threshold: float
    time: datetime


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValidationError({field: f"must be a number from 0 to 1, got {value!r}."})
    return float(value)


def review_event_clean(event: Any) -> ReviewEvent:
    """Check a raw event (a dict from JSON); every problem is a ValidationError naming the field."""
    if not isinstance(event, dict):
        raise ValidationError({"event": "must be a JSON object."})
    missing = [f for f in ("prediction_id", "text", "distribution", "model_version", "threshold", "time") if f not in event]
    if missing:
        raise ValidationError({f: "This field is required." for f in missing})
    try:
        prediction_id = uuid.UUID(str(event["prediction_id"]))
    except ValueError:
        raise ValidationError({"prediction_id": f"must be a UUID, got {event['prediction_id']!r}."}) from None
    text = event["text"]
    if not isinstance(text, str) or not text.strip():
        raise ValidationError({"text": "must be a non-empty string."})
    if len(text) > MAX_TEXT_LENGTH:
        raise ValidationError({"text": f"has {len(text)} characters; at most {MAX_TEXT_LENGTH} are allowed."})
    distribution = event["distribution"]
    if not isinstance(distribution, list) or not distribution:
        raise ValidationError({"distribution": "must be a non-empty list of {intent, probability} objects."})
    cleaned = []
    for index, entry in enumerate(distribution):
        if not isinstance(entry, dict) or not isinstance(entry.get("intent"), str) or not entry["intent"]:
            raise ValidationError({"distribution": f"item {index} must be an object with an 'intent' name and a 'probability'."})
        cleaned.append({"intent": entry["intent"], "probability": _number(entry.get("probability"), f"distribution[{index}].probability")})
    cleaned.sort(key=lambda entry: -entry["probability"])
    if not isinstance(event["model_version"], str) or not 0 < len(event["model_version"]) <= 64:
        raise ValidationError({"model_version": "must be a string of 1 to 64 characters."})
    moment = parse_datetime(str(event["time"])) if isinstance(event["time"], str) else None
    if moment is None:
        raise ValidationError({"time": f"must be an ISO 8601 date and time, got {event['time']!r}."})
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.utc)
    return ReviewEvent(prediction_id, " ".join(text.split()), cleaned, event["model_version"], _number(event["threshold"], "threshold"), moment)


def review_item_ingest(*, event: Any) -> tuple[ReviewItem, bool]:
    """Store an event as a pending review item; the same prediction id again returns the first item."""
    clean = review_event_clean(event)
    existing = ReviewItem.objects.filter(prediction_id=clean.prediction_id).first()
    if existing is not None:
        return existing, False
    top = clean.distribution[:3]
    second = clean.distribution[1]["probability"] if len(clean.distribution) > 1 else 0.0
    item = ReviewItem(
        prediction_id=clean.prediction_id, text=clean.text, text_key=text_key(clean.text),
        predicted_intent=top[0]["intent"], confidence=top[0]["probability"], top_intents=top,
        margin=top[0]["probability"] - second, model_version=clean.model_version, threshold=clean.threshold,
        predicted_at=clean.time,
    )
    try:
        with transaction.atomic():
            item.save()
    except IntegrityError:  # the same event arrived twice at once: the other delivery stored it
        return ReviewItem.objects.get(prediction_id=clean.prediction_id), False
    return item, True


def _group(item: ReviewItem) -> QuerySet[ReviewItem]:
    """Every pending item with the same text: one decision resolves them all."""
    return ReviewItem.objects.filter(text_key=item.text_key, status=ReviewItem.Status.PENDING)


def _resolve(items: QuerySet[ReviewItem], *, status: str, user: AbstractBaseUser | None, utterance: Utterance | None) -> int:
    return items.update(status=status, resolved_by=user, resolved_at=timezone.now(), utterance=utterance)


def _utterance_for(text: str, intent: Intent, user: AbstractBaseUser | None) -> Utterance:
    """The labeled utterance for a reviewed text, with the usual duplicate and conflict rules:
    the same text already labeled the same way is reused; labeled another way, it is a conflict."""
    existing = Utterance.objects.select_related("intent").filter(text_key=text_key(text)).first()
    if existing is None:
        return labeling.utterance_create(text=text, intent=intent, source=Utterance.Source.REVIEW, user=user)
    if existing.intent_id == intent.pk:
        return existing
    if existing.intent_id is None:
        return labeling.utterance_update(utterance=existing, user=user, intent=intent)
    raise ValidationError({"intent": (f"{text!r} is already labeled {existing.intent.name} (utterance #{existing.pk}); "
                                      f"change it there if {intent.name} is right.")})


def review_item_label(*, item: ReviewItem, intent: Intent, user: AbstractBaseUser | None) -> int:
    """Label the item's text (and its identical pending texts) as ``intent``; returns how many resolved."""
    with transaction.atomic():
        utterance = _utterance_for(item.text, intent, user)
        return _resolve(_group(item), status=ReviewItem.Status.LABELED, user=user, utterance=utterance)


def review_item_accept(*, item: ReviewItem, user: AbstractBaseUser | None) -> int:
    """The prediction was right: label the text with the predicted intent."""
    intent = Intent.objects.filter(name=item.predicted_intent).first()
    if intent is None:
        raise ValidationError({"intent": f"The predicted intent {item.predicted_intent!r} no longer exists; use 'Label as…'."})
    return review_item_label(item=item, intent=intent, user=user)


def review_item_out_of_scope(*, item: ReviewItem, user: AbstractBaseUser | None) -> int:
    """Keep the text as an out-of-scope example (intent ``oos``): it tunes the threshold and
    measures out-of-scope recall in later runs, as CLINC150's out-of-scope queries do."""
    with transaction.atomic():
        oos, _ = Intent.objects.get_or_create(name=OOS_LABEL, defaults={"description": "Out of scope: none of the intents."})
        utterance = _utterance_for(item.text, oos, user)
        return _resolve(_group(item), status=ReviewItem.Status.OUT_OF_SCOPE, user=user, utterance=utterance)


def review_item_dismiss(*, item: ReviewItem, user: AbstractBaseUser | None) -> int:
    return _resolve(_group(item), status=ReviewItem.Status.DISMISSED, user=user, utterance=None)


@dataclass
class ReplayReport:
    lines: int = 0
    events: int = 0
    created: int = 0
    duplicates: int = 0
    malformed: int = 0


def review_events_replay(*, lines: Iterable[str]) -> ReplayReport:
    """Ingest the undelivered events that the serving app logged (one JSON object per line,
    possibly after a log prefix). Replaying the same log twice creates nothing new."""
    report = ReplayReport()
    for line in lines:
        report.lines += 1
        start = line.find("{")
        if start < 0 or UNDELIVERED_EVENT not in line:
            continue
        try:
            record = json.loads(line[start:])
        except json.JSONDecodeError:
            report.malformed += 1
            continue
        if not isinstance(record, dict) or record.get("event") != UNDELIVERED_EVENT:
            continue
        report.events += 1
        try:
            _, created = review_item_ingest(event=record.get("review_event"))
        except ValidationError as exc:
            logger.warning("skipping a malformed review event: %s", "; ".join(exc.messages))
            report.malformed += 1
            continue
        report.created += created
        report.duplicates += not created
    return report


def review_queue_drain(*, queue_url: str | None = None, max_messages: int = 1000) -> dict[str, int]:
    """Move events from the SQS review queue into review items; delete each message once stored.

    A malformed message is deleted too (after logging it): redelivering it would never help.
    """
    queue_url = queue_url or settings.REVIEW_QUEUE_URL
    counts = {"received": 0, "created": 0, "duplicates": 0, "malformed": 0}
    if not queue_url:
        return counts
    import boto3

    sqs = boto3.client("sqs", endpoint_url=settings.AWS_SQS_ENDPOINT_URL)
    while counts["received"] < max_messages:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not messages:
            break
        for message in messages:
            counts["received"] += 1
            try:
                _, created = review_item_ingest(event=json.loads(message["Body"]))
                counts["created" if created else "duplicates"] += 1
            except (ValidationError, json.JSONDecodeError) as exc:
                logger.error("dropping a malformed review message %s: %s", message.get("MessageId"), exc)
                counts["malformed"] += 1
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return counts


def review_summary() -> dict[str, Any]:
    """For the admin's index: pending items, and labels added since the production model was trained."""
    from webapp.training.services import promoted_run

    pending = ReviewItem.objects.filter(status=ReviewItem.Status.PENDING)
    run = promoted_run()
    labeled = Utterance.objects.filter(intent__isnull=False)
    if run is not None:
        labeled = labeled.exclude(id__in=run.snapshot.rows.values("utterance_id"))
    return {
        "pending_items": pending.count(),
        "pending_texts": pending.values("text_key").distinct().count(),
        "promoted_run": run,
        "labels_since_promoted": labeled.count() if run is not None else None,
    }
