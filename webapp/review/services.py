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
from datetime import timezone as dt_timezone
from typing import Any, Iterable

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from mlcore.data import OOS_LABEL
from webapp.labeling import services as labeling
from webapp.labeling.models import Intent, Utterance, text_key
from webapp.labeling.services import strip_unstorable
from webapp.review.models import ReviewItem, TrafficReport
from webapp.review.selectors import audit_estimates

logger = logging.getLogger(__name__)
UNDELIVERED_EVENT = "review_event_undelivered"  # the log line the serving app writes for a lost event


# The distribution holds one entry per intent of the model; no model has more than this.
MAX_DISTRIBUTION_ENTRIES = 10_000
INTENT_NAME_MAX_LENGTH = ReviewItem._meta.get_field("predicted_intent").max_length
MODEL_VERSION_MAX_LENGTH = ReviewItem._meta.get_field("model_version").max_length
EVENT_FIELDS = ("prediction_id", "text", "distribution", "model_version", "threshold", "time")
STORED_INTENTS = 3  # the top three of the distribution are kept with the item


@dataclass(frozen=True)
class ReviewEvent:
    prediction_id: uuid.UUID
    text: str
    distribution: list[dict[str, Any]]
    model_version: str
    threshold: float
    time: datetime
    reason: str = ReviewItem.Reason.LOW_CONFIDENCE


def _number(value: Any, field: str) -> float:
    # Compared before float(): an integer too big for a float would raise OverflowError.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValidationError({field: f"must be a number from 0 to 1, got {str(value)[:40]}."})
    return float(value)


def _label(value: Any, field: str, *, max_length: int) -> str:
    """A stored name (an intent, the model version): 1 to ``max_length`` characters, none of them
    a control character. Refused, not repaired: a changed name would name something else."""
    if not isinstance(value, str) or not 0 < len(value) <= max_length or strip_unstorable(value) != value:
        raise ValidationError({field: f"must be a string of 1 to {max_length} characters without control characters."})
    return value


def _distribution(value: Any) -> list[dict[str, Any]]:
    """The entries sorted by probability. Each is checked for shape; only the stored top three
    are checked in full (an intent name of the others is not kept, so its content does not matter)."""
    if not isinstance(value, list) or not value:
        raise ValidationError({"distribution": "must be a non-empty list of {intent, probability} objects."})
    if len(value) > MAX_DISTRIBUTION_ENTRIES:
        raise ValidationError({"distribution": f"has {len(value)} entries; at most {MAX_DISTRIBUTION_ENTRIES} are allowed."})
    entries = []  # (probability, index in the event, intent)
    for index, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("intent"), str) or not entry["intent"]:
            raise ValidationError({"distribution": f"item {index} must be an object with an 'intent' name and a 'probability'."})
        if len(entry["intent"]) > INTENT_NAME_MAX_LENGTH:
            raise ValidationError({"distribution": f"item {index}'s intent has {len(entry['intent'])} characters; "
                                                   f"at most {INTENT_NAME_MAX_LENGTH} are allowed."})
        entries.append((_number(entry.get("probability"), f"distribution[{index}].probability"), index, entry["intent"]))
    entries.sort(key=lambda entry: -entry[0])
    for _, index, intent in entries[:STORED_INTENTS]:
        _label(intent, f"distribution[{index}].intent", max_length=INTENT_NAME_MAX_LENGTH)
    return [{"intent": intent, "probability": probability} for probability, _, intent in entries]


def _moment(value: Any) -> datetime:
    """An ISO 8601 time with its UTC offset (the serving app sends one), in UTC. A time without an
    offset is refused: guessing its zone could misplace the prediction by hours."""
    problem = f"must be an ISO 8601 date and time, got {str(value)[:40]!r}."
    try:
        moment = parse_datetime(value) if isinstance(value, str) else None
        if moment is None:
            raise ValidationError({"time": problem})
        if timezone.is_naive(moment):
            raise ValidationError({"time": f"{problem[:-1]} without a UTC offset; add one, e.g. +00:00 or Z."})
        return moment.astimezone(dt_timezone.utc)  # also proves the time exists in UTC (not past year 9999)
    except (ValueError, OverflowError):  # a well-formed but impossible date: 30 February, hour 25
        raise ValidationError({"time": f"{problem[:-1]}: no such date or time."}) from None


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValidationError({"text": "must be a non-empty string."})
    try:
        return labeling.clean_text(value)
    except ValidationError as exc:
        if not strip_unstorable(value).strip():
            raise ValidationError({"text": "must be a non-empty string."}) from None
        raise ValidationError({"text": exc.messages}) from None


def _reason(value: Any) -> str:
    if value not in ReviewItem.Reason.values:
        raise ValidationError({"reason": f"must be one of {', '.join(ReviewItem.Reason.values)}, got {str(value)[:40]!r}."})
    return value


def review_event_clean(event: Any) -> ReviewEvent:
    """Check a raw event (a dict from JSON); every problem is a ValidationError naming the field.

    The text is cleaned as every way in cleans it (``labeling.clean_text``).
    """
    if not isinstance(event, dict):
        raise ValidationError({"event": "must be a JSON object."})
    missing = [f for f in EVENT_FIELDS if f not in event]
    if missing:
        raise ValidationError({f: "This field is required." for f in missing})
    try:
        prediction_id = uuid.UUID(str(event["prediction_id"]))
    except ValueError:
        raise ValidationError({"prediction_id": f"must be a UUID, got {str(event['prediction_id'])[:60]!r}."}) from None
    return ReviewEvent(
        prediction_id=prediction_id,
        text=_text(event["text"]),
        distribution=_distribution(event["distribution"]),
        model_version=_label(event["model_version"], "model_version", max_length=MODEL_VERSION_MAX_LENGTH),
        threshold=_number(event["threshold"], "threshold"),
        time=_moment(event["time"]),
        # Optional: serving releases before audit sampling sent low-confidence items only.
        reason=_reason(event.get("reason", ReviewItem.Reason.LOW_CONFIDENCE)),
    )


def review_item_ingest(*, event: Any) -> tuple[ReviewItem, bool]:
    """Store an event as a pending review item; the same prediction id again returns the first item."""
    clean = review_event_clean(event)
    existing = ReviewItem.objects.filter(prediction_id=clean.prediction_id).first()
    if existing is not None:
        return existing, False
    top = clean.distribution[:STORED_INTENTS]
    second = clean.distribution[1]["probability"] if len(clean.distribution) > 1 else 0.0
    item = ReviewItem(
        prediction_id=clean.prediction_id, text=clean.text, text_key=text_key(clean.text),
        predicted_intent=top[0]["intent"], confidence=top[0]["probability"], top_intents=top,
        margin=top[0]["probability"] - second, model_version=clean.model_version, threshold=clean.threshold,
        predicted_at=clean.time, reason=clean.reason,
    )
    try:
        with transaction.atomic():
            item.save()
    except IntegrityError:  # the same event arrived twice at once: the other delivery stored it
        stored = ReviewItem.objects.filter(prediction_id=clean.prediction_id).first()
        if stored is None:  # not a duplicate: some other constraint refused the row
            raise
        return stored, False
    return item, True


TRAFFIC_REPORT = "traffic"
TRAFFIC_FIELDS = ("report_id", "day", "model_version", "predictions", "low_confidence", "audited")
MAX_REPORTED_PREDICTIONS = 2**31 - 1  # one report's count; PositiveIntegerField holds it on every database


def _count(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_REPORTED_PREDICTIONS:
        raise ValidationError({field: f"must be a whole number from 0 to {MAX_REPORTED_PREDICTIONS}, got {str(value)[:40]}."})
    return value


def traffic_report_ingest(*, report: Any) -> tuple[TrafficReport, bool]:
    """Store a serving container's prediction counts; the same report id again stores nothing new."""
    if not isinstance(report, dict):
        raise ValidationError({"report": "must be a JSON object."})
    missing = [f for f in TRAFFIC_FIELDS if f not in report]
    if missing:
        raise ValidationError({f: "This field is required." for f in missing})
    try:
        report_id = uuid.UUID(str(report["report_id"]))
    except ValueError:
        raise ValidationError({"report_id": f"must be a UUID, got {str(report['report_id'])[:60]!r}."}) from None
    try:
        day = parse_date(report["day"]) if isinstance(report["day"], str) and len(report["day"]) == 10 else None
    except ValueError:  # a well-formed but impossible date
        day = None
    if day is None:
        raise ValidationError({"day": f"must be a date as YYYY-MM-DD, got {str(report['day'])[:40]!r}."})
    predictions = _count(report["predictions"], "predictions")
    counts = {field: _count(report[field], field) for field in ("low_confidence", "audited")}
    for field, value in counts.items():
        if value > predictions:
            raise ValidationError({field: f"cannot exceed predictions ({predictions}), got {value}."})
    values = dict(day=day, model_version=_label(report["model_version"], "model_version", max_length=MODEL_VERSION_MAX_LENGTH),
                  predictions=predictions, **counts)
    try:
        with transaction.atomic():
            return TrafficReport.objects.get_or_create(report_id=report_id, defaults=values)
    except IntegrityError:  # the same report arrived twice at once
        return TrafficReport.objects.get(report_id=report_id), False


def serving_event_ingest(*, event: Any) -> tuple[ReviewItem | TrafficReport, bool]:
    """A message from serving, whichever kind: a traffic report, or a review event."""
    if isinstance(event, dict) and event.get("type") == TRAFFIC_REPORT:
        return traffic_report_ingest(report=event)
    return review_item_ingest(event=event)


def _group(item: ReviewItem) -> QuerySet[ReviewItem]:
    """Every pending item with the same text: one decision resolves them all."""
    return ReviewItem.objects.filter(text_key=item.text_key, status=ReviewItem.Status.PENDING)


def _resolve(items: QuerySet[ReviewItem], *, status: str, user: AbstractBaseUser | None, utterance: Utterance | None) -> int:
    reviewed_intent = utterance.intent.name if utterance is not None and utterance.intent_id else ""
    return items.update(status=status, resolved_by=user, resolved_at=timezone.now(), utterance=utterance, reviewed_intent=reviewed_intent)


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
    measures out-of-scope recall in later runs, as CLINC150's out-of-scope queries do.

    The ``oos`` intent is made by a migration; this never creates it (creating intents is an ML
    engineer's right), and says so if an ML engineer has deleted it."""
    oos = Intent.objects.filter(name=OOS_LABEL).first()
    if oos is None:
        raise ValidationError({"intent": f"There is no {OOS_LABEL!r} intent for out-of-scope texts; an ML engineer can create it."})
    with transaction.atomic():
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
    failed: int = 0  # well-formed events the database refused; replaying the log again retries them


def review_events_replay(*, lines: Iterable[str]) -> ReplayReport:
    """Ingest the undelivered events that the serving app logged (one JSON object per line,
    possibly after a log prefix). Replaying the same log twice creates nothing new.

    A bad line (not JSON, a malformed event, one the database refuses) is counted, logged and
    skipped; the lines after it are still read."""
    report = ReplayReport()
    for number, line in enumerate(lines, start=1):
        report.lines += 1
        start = line.find("{")
        if start < 0 or UNDELIVERED_EVENT not in line:
            continue
        try:
            record = json.loads(line[start:])
        except (json.JSONDecodeError, RecursionError):
            logger.warning("line %d: not a JSON object, skipped", number)
            report.malformed += 1
            continue
        if not isinstance(record, dict) or record.get("event") != UNDELIVERED_EVENT:
            continue
        report.events += 1
        outcome = _ingest_one(record.get("review_event"), where=f"line {number}")
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report


def _ingest_one(event: Any, *, where: str) -> str:
    """Ingest one event in its own transaction; the outcome is 'created', 'duplicates',
    'malformed' (never storable) or 'failed' (the database refused it; it may work later)."""
    try:
        with transaction.atomic():
            _, created = serving_event_ingest(event=event)
    except ValidationError as exc:
        logger.warning("%s: skipping a malformed review event: %s", where, "; ".join(exc.messages))
        return "malformed"
    except DatabaseError as exc:
        logger.error("%s: the database refused a review event: %s", where, exc)
        return "failed"
    return "created" if created else "duplicates"


# A malformed message is hidden this long after each receive, so that the drains in between do not
# see it again; after the queue's maxReceiveCount receives, SQS moves it to the dead-letter queue.
MALFORMED_MESSAGE_HIDE_SECONDS = 600


def review_queue_drain(*, queue_url: str | None = None, max_messages: int = 1000) -> dict[str, int]:
    """Move events from the SQS review queue into review items; delete each message once stored.

    One bad message never stops the batch. A malformed one is logged and left in the queue, hidden
    for MALFORMED_MESSAGE_HIDE_SECONDS: the queue's redrive policy moves it to the dead-letter queue
    after maxReceiveCount receives, where it can be looked at. One the database refused is left
    too, for the next drain to retry. A message seen once is not handled again in the same drain.
    """
    queue_url = queue_url or settings.REVIEW_QUEUE_URL
    counts = {"received": 0, "created": 0, "duplicates": 0, "malformed": 0, "failed": 0}
    if not queue_url:
        return counts
    import boto3

    sqs = boto3.client("sqs", endpoint_url=settings.AWS_SQS_ENDPOINT_URL)
    seen: set[str] = set()
    while counts["received"] < max_messages:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:  # an empty queue, or only messages this drain has already handled
            break
        stored = []
        for message in fresh:
            seen.add(message["MessageId"])
            counts["received"] += 1
            outcome = _ingest_message(message)
            counts[outcome] += 1
            if outcome in ("created", "duplicates"):
                stored.append(message)
            elif outcome == "malformed":
                sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"],
                                              VisibilityTimeout=MALFORMED_MESSAGE_HIDE_SECONDS)
        if stored:
            answer = sqs.delete_message_batch(QueueUrl=queue_url, Entries=[
                {"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(stored)])
            for failure in answer.get("Failed", []):  # stored already: a redelivery is a harmless duplicate
                logger.warning("could not delete a stored review message: %s", failure.get("Message"))
    return counts


def _ingest_message(message: dict[str, Any]) -> str:
    where = f"SQS message {message.get('MessageId')}"
    body = message.get("Body", "")
    if len(body.encode("utf-8", "replace")) > settings.REVIEW_MAX_BODY_BYTES:
        logger.warning("%s: skipping a review event of more than %d bytes", where, settings.REVIEW_MAX_BODY_BYTES)
        return "malformed"
    try:
        event = json.loads(body)
    except (json.JSONDecodeError, RecursionError):
        logger.warning("%s: not JSON, skipped", where)
        return "malformed"
    return _ingest_one(event, where=where)


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
        "pending_texts": pending.values("text_key").distinct().count(),
        "promoted_run": run,
        "labels_since_promoted": labeled.count() if run is not None else None,
    }
