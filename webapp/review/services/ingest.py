"""Messages from serving (review events, traffic reports, traffic samples): checked field by field
and stored, idempotently by their ids. The same code serves the API, the SQS drain and the log replay."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from webapp.labeling import services as labeling
from webapp.labeling.models import text_key
from webapp.labeling.services import strip_unstorable
from webapp.review.models import ReviewItem, TrafficReport, TrafficSample


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
    rule: str = ReviewItem.Rule.CONFIDENCE
    in_scope_score: float | None = None


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
        moment = moment.astimezone(dt_timezone.utc)  # also proves the time exists in UTC (not past year 9999)
    except (ValueError, OverflowError):  # a well-formed but impossible date: 30 February, hour 25
        raise ValidationError({"time": f"{problem[:-1]}: no such date or time."}) from None
    _not_in_the_future(moment, "time")
    return moment


# How far ahead of this server's clock a sender's time may be (a container's clock skew). Beyond it
# the time is refused: a far-future time would sit at the top of every per-day view for ever.
MAX_CLOCK_AHEAD = timedelta(days=1)


def _not_in_the_future(moment: datetime | date, field: str) -> None:
    now = timezone.now()
    latest = (now + MAX_CLOCK_AHEAD) if isinstance(moment, datetime) else (now + MAX_CLOCK_AHEAD).date()
    if moment > latest:
        raise ValidationError({field: f"is in the future ({str(moment)[:40]}); this server's clock says {now:%Y-%m-%d %H:%M} UTC."})


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
    return _choice(value, "reason", ReviewItem.Reason.values)


def _choice(value: Any, field: str, choices: list[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValidationError({field: f"must be one of {', '.join(choices)}, got {str(value)[:40]!r}."})
    return value


def _require_fields(message: Any, name: str, fields: tuple[str, ...]) -> None:
    """A JSON object holding every one of ``fields``; else a ValidationError naming what is missing."""
    if not isinstance(message, dict):
        raise ValidationError({name: "must be a JSON object."})
    missing = [f for f in fields if f not in message]
    if missing:
        raise ValidationError({f: "This field is required." for f in missing})


def _uuid(message: dict, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(message[field]))
    except ValueError:
        raise ValidationError({field: f"must be a UUID, got {str(message[field])[:60]!r}."}) from None


def review_event_clean(event: Any) -> ReviewEvent:
    """Check a raw event (a dict from JSON); every problem is a ValidationError naming the field.

    The text is cleaned as every way in cleans it (``labeling.clean_text``).
    """
    _require_fields(event, "event", EVENT_FIELDS)
    return ReviewEvent(
        prediction_id=_uuid(event, "prediction_id"),
        text=_text(event["text"]),
        distribution=_distribution(event["distribution"]),
        model_version=_label(event["model_version"], "model_version", max_length=MODEL_VERSION_MAX_LENGTH),
        threshold=_number(event["threshold"], "threshold"),
        time=_moment(event["time"]),
        # Optional: serving releases before audit sampling sent low-confidence items only.
        reason=_reason(event.get("reason", ReviewItem.Reason.LOW_CONFIDENCE)),
        # Optional: models without an in-scope score, and serving releases before it, send neither.
        rule=_choice(event.get("rule", ReviewItem.Rule.CONFIDENCE), "rule", ReviewItem.Rule.values),
        in_scope_score=None if event.get("in_scope_score") is None else _number(event["in_scope_score"], "in_scope_score"),
    )


def review_item_ingest(*, event: Any) -> tuple[ReviewItem, bool]:
    """Store an event as a pending review item; the same prediction id again returns the first item."""
    clean = review_event_clean(event)
    existing = ReviewItem.objects.filter(prediction_id=clean.prediction_id).first()
    if existing is not None:
        return existing, False
    top = clean.distribution[:STORED_INTENTS]
    second = clean.distribution[1]["probability"] if len(clean.distribution) > 1 else 0.0
    key = text_key(clean.text)
    item = ReviewItem(
        prediction_id=clean.prediction_id, text=clean.text, text_key=key, group_key=_group_key_for(key),
        predicted_intent=top[0]["intent"], confidence=top[0]["probability"], top_intents=top,
        margin=top[0]["probability"] - second, model_version=clean.model_version, threshold=clean.threshold,
        rule=clean.rule, in_scope_score=clean.in_scope_score, predicted_at=clean.time, reason=clean.reason,
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
    _require_fields(report, "report", TRAFFIC_FIELDS)
    report_id = _uuid(report, "report_id")
    try:
        day = parse_date(report["day"]) if isinstance(report["day"], str) and len(report["day"]) == 10 else None
    except ValueError:  # a well-formed but impossible date
        day = None
    if day is None:
        raise ValidationError({"day": f"must be a date as YYYY-MM-DD, got {str(report['day'])[:40]!r}."})
    _not_in_the_future(day, "day")
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


TRAFFIC_SAMPLE = "sample"
SAMPLE_FIELDS = ("prediction_id", "text", "intent", "model_version", "time")


def traffic_sample_ingest(*, sample: Any) -> tuple[TrafficSample, bool]:
    """Store a confidently answered prediction as an unlabeled traffic sample (self-training).

    The same prediction id again returns the first sample. A text already sampled (however it is
    spaced or cased) is not stored twice: its sample becomes the most recent one again, so a text
    asked a thousand times holds one place in the pool a run self-trains on, not a thousand."""
    _require_fields(sample, "sample", SAMPLE_FIELDS)
    prediction_id = _uuid(sample, "prediction_id")
    text = _text(sample["text"])
    values = dict(
        text=text, text_key=text_key(text), predicted_intent=_label(sample["intent"], "intent", max_length=100),
        model_version=_label(sample["model_version"], "model_version", max_length=MODEL_VERSION_MAX_LENGTH),
        predicted_at=_moment(sample["time"]),
    )
    for _ in range(2):  # a concurrent delivery of the same text may insert between the read and the write
        existing = TrafficSample.objects.filter(Q(prediction_id=prediction_id) | Q(text_key=values["text_key"])).first()
        if existing is not None:
            if existing.prediction_id != prediction_id:
                TrafficSample.objects.filter(pk=existing.pk).update(received_at=timezone.now())
            return existing, False
        try:
            with transaction.atomic():
                return TrafficSample.objects.create(prediction_id=prediction_id, **values), True
        except IntegrityError:
            continue
    raise ValidationError({"sample": "could not be stored after a concurrent write; send it again."})


def traffic_samples_prune(*, keep: int) -> int:
    """Delete all but the ``keep`` most recent traffic samples (TRAINING_UNLABELED_TEXTS): a run
    never trains on older ones, so the table stays bounded however much serving sends."""
    cutoff = list(TrafficSample.objects.order_by("-received_at", "-id").values_list("received_at", "id")[keep:keep + 1])
    if not cutoff:
        return 0
    received_at, pk = cutoff[0]
    deleted, _ = TrafficSample.objects.filter(Q(received_at__lt=received_at) | Q(received_at=received_at, id__lte=pk)).delete()
    return deleted


def serving_event_ingest(*, event: Any) -> tuple[ReviewItem | TrafficReport | TrafficSample, bool]:
    """A message from serving, whichever kind: a traffic report, a traffic sample, or a review event."""
    if isinstance(event, dict) and event.get("type") == TRAFFIC_REPORT:
        return traffic_report_ingest(report=event)
    if isinstance(event, dict) and event.get("type") == TRAFFIC_SAMPLE:
        return traffic_sample_ingest(sample=event)
    return review_item_ingest(event=event)


def _group_key_for(key: str) -> str:
    """A new item's group: that of the pending items with the same text, or a group of its own."""
    same_text = ReviewItem.objects.filter(text_key=key, status=ReviewItem.Status.PENDING).order_by("id").values_list("group_key", flat=True)
    return same_text.first() or key
