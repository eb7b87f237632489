"""Business actions of the review queue: ingest events from serving, and resolve them.

An event is what the serving app sends for a prediction it was unsure of (see
``lambda/serving_review.py``): prediction id, text, full distribution, model version,
threshold and time. Ingestion is idempotent by prediction id.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, Iterable

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Max, Min, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from mlcore.data import OOS_LABEL
from webapp.labeling import services as labeling
from webapp.labeling.models import Intent, Utterance, text_key
from webapp.labeling.services import strip_unstorable
from webapp.review.models import ReviewDecision, ReviewItem, TrafficReport, TrafficSample
from webapp.review import selectors
from webapp.review.selectors import DECIDED, audit_estimates

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


def _group(item: ReviewItem) -> QuerySet[ReviewItem]:
    """Every pending item of the item's group (its identical and near-duplicate texts)."""
    return ReviewItem.objects.filter(group_key=item.group_key, status=ReviewItem.Status.PENDING)


# The most items one decision on the labeling screen shows and decides; a larger group is decided
# in turns (the rest stays pending, next in the queue).
MAX_DECISION_ITEMS = 20_000


def _members(item: ReviewItem, user: AbstractBaseUser | None, item_ids: Iterable[int] | None) -> QuerySet[ReviewItem]:
    """What a decision on ``item`` applies to: the pending items of its group that no other reviewer
    holds, and with ``item_ids`` (the labeling screen) only those the reviewer was shown: an item
    that joined the group since stays pending. Refused when the item itself is no longer pending
    (an admin row decided meanwhile): its group now holds items nobody chose."""
    current = ReviewItem.objects.filter(pk=item.pk).values_list("status", flat=True).first()
    if current != ReviewItem.Status.PENDING:
        shown = ReviewItem.Status(current).label.lower() if current else "deleted"
        raise ValidationError({"item": f"{str(item)!r} was decided already ({shown}); nothing was changed."})
    members = _group(item)
    if user is not None:
        members = members.filter(_lease_filter(user))
        if not members.exists():
            holder = _group(item).exclude(leased_by=None).select_related("leased_by").first()
            who = holder.leased_by.get_username() if holder else "another reviewer"
            raise ValidationError({"item": f"{who} is deciding {str(item)!r} on the labeling screen; nothing was changed."})
    return members if item_ids is None else members.filter(id__in=list(item_ids))


@dataclass
class Resolution:
    """What one decision did: how many items it resolved, and the utterances it created or labeled
    (what an undo takes back)."""

    item_ids: list[int] = field(default_factory=list)
    created_utterance_ids: list[int] = field(default_factory=list)
    labeled_utterance_ids: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.item_ids)


def _resolve(items: QuerySet[ReviewItem], *, status: str, user: AbstractBaseUser | None, utterance: Utterance | None) -> list[int]:
    ids = list(items.values_list("id", flat=True))
    reviewed_intent = utterance.intent.name if utterance is not None and utterance.intent_id else ""
    ReviewItem.objects.filter(id__in=ids).update(status=status, resolved_by=user, resolved_at=timezone.now(), utterance=utterance,
                                                 reviewed_intent=reviewed_intent, leased_by=None, leased_until=None)
    return ids


def _utterance_for(text: str, intent: Intent, user: AbstractBaseUser | None, resolution: Resolution) -> Utterance:
    """The labeled utterance for a reviewed text, with the usual duplicate and conflict rules:
    the same text already labeled the same way is reused; labeled another way, it is a conflict."""
    existing = Utterance.objects.select_related("intent").filter(text_key=text_key(text)).first()
    if existing is None:
        created = labeling.utterance_create(text=text, intent=intent, source=Utterance.Source.REVIEW, user=user)
        resolution.created_utterance_ids.append(created.pk)
        return created
    if existing.intent_id == intent.pk:
        return existing
    if existing.intent_id is None:
        resolution.labeled_utterance_ids.append(existing.pk)
        return labeling.utterance_update(utterance=existing, user=user, intent=intent)
    raise ValidationError({"intent": (f"{text!r} is already labeled {existing.intent.name} (utterance #{existing.pk}); "
                                      f"change it there if {intent.name} is right.")})


def _label_group(item: ReviewItem, intent: Intent, user: AbstractBaseUser | None, status: str,
                 item_ids: Iterable[int] | None) -> Resolution:
    """Each distinct text of the decided items (``_members``) becomes a labeled utterance
    (near-duplicates are examples worth keeping, not copies), and each item is resolved with its text's."""
    resolution = Resolution()
    with transaction.atomic():
        group = _members(item, user, item_ids)
        for key in group.order_by("text_key").values_list("text_key", flat=True).distinct():
            same_text = group.filter(text_key=key)
            utterance = _utterance_for(same_text.order_by("id").first().text, intent, user, resolution)
            resolution.item_ids += _resolve(same_text, status=status, user=user, utterance=utterance)
    return resolution


def review_item_label(*, item: ReviewItem, intent: Intent, user: AbstractBaseUser | None,
                      item_ids: Iterable[int] | None = None) -> Resolution:
    """Label the item's texts (those of its group too; with ``item_ids``, only those items) as
    ``intent``; ``len()`` of the result is how many resolved."""
    return _label_group(item, intent, user, ReviewItem.Status.LABELED, item_ids)


def review_item_accept(*, item: ReviewItem, user: AbstractBaseUser | None, item_ids: Iterable[int] | None = None) -> Resolution:
    """The prediction was right: label the text with the predicted intent."""
    intent = Intent.objects.filter(name=item.predicted_intent).first()
    if intent is None:
        raise ValidationError({"intent": f"The predicted intent {item.predicted_intent!r} no longer exists; use 'Label as…'."})
    return review_item_label(item=item, intent=intent, user=user, item_ids=item_ids)


def review_item_out_of_scope(*, item: ReviewItem, user: AbstractBaseUser | None, item_ids: Iterable[int] | None = None) -> Resolution:
    """Keep the text as an out-of-scope example (intent ``oos``): it tunes the threshold and
    measures out-of-scope recall in later runs, as CLINC150's out-of-scope queries do.

    The ``oos`` intent is made by a migration; this never creates it (creating intents is an ML
    engineer's right), and says so if an ML engineer has deleted it."""
    oos = Intent.objects.filter(name=OOS_LABEL).first()
    if oos is None:
        raise ValidationError({"intent": f"There is no {OOS_LABEL!r} intent for out-of-scope texts; an ML engineer can create it."})
    return _label_group(item, oos, user, ReviewItem.Status.OUT_OF_SCOPE, item_ids)


def review_item_dismiss(*, item: ReviewItem, user: AbstractBaseUser | None, item_ids: Iterable[int] | None = None) -> Resolution:
    with transaction.atomic():
        return Resolution(item_ids=_resolve(_members(item, user, item_ids), status=ReviewItem.Status.DISMISSED, user=user, utterance=None))


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
        except (ValueError, RecursionError):  # ValueError: JSONDecodeError, and an integer past 4,300 digits
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
    except Exception:  # noqa: BLE001 - a defect of ours must cost this message only, not the batch
        logger.exception("%s: a review event could not be ingested; set aside as malformed", where)
        return "malformed"
    return "created" if created else "duplicates"


# A malformed message is hidden this long after each receive, so that the drains in between do not
# see it again; after the queue's maxReceiveCount receives, SQS moves it to the dead-letter queue.
MALFORMED_MESSAGE_HIDE_SECONDS = 600


def review_queue_drain(*, queue_url: str | None = None, max_messages: int = 1000) -> dict[str, int]:
    """Move events from the SQS review queue into review items (and traffic reports and samples);
    delete each message once stored.

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
    except (ValueError, RecursionError):  # ValueError: JSONDecodeError, and an integer past 4,300 digits
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
        "pending_texts": pending.values("group_key").distinct().count(),
        "promoted_run": run,
        "labels_since_promoted": labeled.count() if run is not None else None,
    }


# --- Near-duplicate grouping (the worker, every REVIEW_GROUP_MINUTES) ---------------------------
#
# The worker embeds, not serving: serving's events stay small (an embedding is 384 floats: ~4 kB
# of JSON per event, more than the event itself), its ONNX export and its latency stay as they
# are, and the worker already holds every run's artifact and torch. The cost is a delay: a new
# item is grouped by its identical texts at once and by its near-duplicates within a minute.

_embedders: dict[str, Any] = {}  # model version -> mlcore Predictor; one at a time (a worker's memory)


def _embedder(model_version: str):
    """The torch predictor of the run whose artifact is ``model_version``, or None when no run has it."""
    if model_version in _embedders:
        return _embedders[model_version]
    from mlcore.predictor import Predictor
    from webapp.training.models import TrainingRun
    from webapp.training.services import artifact_local_copy

    run = (TrainingRun.objects.filter(artifact_sha256__startswith=model_version).exclude(artifact="").order_by("-id").first()
           if model_version else None)
    predictor = None
    if run is not None:
        try:
            with artifact_local_copy(run) as path:
                predictor = Predictor.from_file(path)
        except Exception as exc:  # an unreadable artifact: those items are grouped by identical text only
            logger.warning("cannot embed items of model %s: %s", model_version, exc)
    _embedders.clear()
    _embedders[model_version] = predictor
    return predictor


def review_items_group(*, similarity: float | None = None, limit: int = 2000) -> dict[str, int]:
    """Embed the pending items not yet grouped and join each to the near-duplicate group it
    belongs to (``mlcore.grouping.leader_groups``), per model version: two models' embeddings are
    not comparable. A group of identical new texts moves as one."""
    import numpy as np

    similarity = similarity or settings.REVIEW_GROUP_SIMILARITY
    counts = {"embedded": 0, "joined": 0, "not_embeddable": 0}
    new = ReviewItem.objects.filter(grouped=False, status=ReviewItem.Status.PENDING)
    for version in list(new.order_by().values_list("model_version", flat=True).distinct()):
        items = list(new.filter(model_version=version).order_by("id")[:limit])
        predictor = _embedder(version)
        if predictor is None:
            ReviewItem.objects.filter(id__in=[i.id for i in items]).update(grouped=True)
            counts["not_embeddable"] += len(items)
            continue
        vectors = predictor.embeddings([item.text for item in items])
        for item, vector in zip(items, vectors):
            item.embedding, item.grouped = vector.astype(np.float32).tobytes(), True
        with transaction.atomic():
            ReviewItem.objects.bulk_update(items, ["embedding", "grouped"], batch_size=500)
            counts["embedded"] += len(items)
            counts["joined"] += _join_groups(version, items, vectors, similarity)
    return counts


def _join_groups(version: str, items: list[ReviewItem], vectors, similarity: float) -> int:
    import numpy as np

    from mlcore.grouping import leader_groups

    fresh_ids = {item.id for item in items}
    # A new unit is a group whose every pending item is new; the others are existing groups, led by
    # their first embedded item.
    pending = ReviewItem.objects.filter(status=ReviewItem.Status.PENDING, model_version=version)
    old_keys = set(pending.exclude(id__in=fresh_ids).values_list("group_key", flat=True))
    units: dict[str, int] = {}  # group key -> row in vectors of its first new item
    for row, item in enumerate(items):
        if item.group_key not in old_keys:
            units.setdefault(item.group_key, row)
    embedded = pending.exclude(id__in=fresh_ids).filter(embedding__isnull=False).order_by()
    first_ids = embedded.values("group_key").annotate(first=Min("id")).values("first")
    leader_keys, leader_vectors = [], []
    for key, blob in ReviewItem.objects.filter(id__in=first_ids).order_by("id").values_list("group_key", "embedding"):
        leader_keys.append(key)
        leader_vectors.append(np.frombuffer(bytes(blob), dtype=np.float32))
    unit_keys = list(units)
    if not unit_keys:
        return 0
    matrix = np.vstack([*leader_vectors, *(vectors[units[key]] for key in unit_keys)])
    keys = leader_keys + unit_keys
    assignment = leader_groups(matrix, similarity, leaders=len(leader_keys))
    joined = 0
    # A leased item stays where it is: its reviewer is deciding the group it was shown in. The
    # condition is in the UPDATE itself, so a lease taken since the read above is seen too.
    unleased = Q(leased_until__isnull=True) | Q(leased_until__lte=timezone.now())
    for position, key in enumerate(unit_keys, start=len(leader_keys)):
        target = keys[assignment[position]]
        if target != key:
            joined += ReviewItem.objects.filter(unleased, group_key=key, status=ReviewItem.Status.PENDING).update(group_key=target)
    return joined


def review_group_take_out(*, item: ReviewItem, text_keys: Iterable[str], item_ids: Iterable[int] | None = None) -> int:
    """Take the pending items with these texts (with ``item_ids``, of those items) out of the item's
    group (a reviewer found they mean something else): they form a group of their own per text,
    and are never grouped again. One UPDATE, however many texts."""
    keys = set(text_keys) - {item.text_key}
    if not keys:
        return 0
    members = _group(item).filter(text_key__in=keys)
    if item_ids is not None:
        members = members.filter(id__in=list(item_ids))
    return members.update(group_key=F("text_key"), kept_apart=True, grouped=True, leased_by=None, leased_until=None)


# --- The labeling screen -------------------------------------------------------------------------

class DecisionConflict(Exception):
    """The decision cannot be made as asked: someone else resolved or holds the item. A 409."""


DECISIONS = ("accept", "label", "out_of_scope", "dismiss")


@dataclass(frozen=True)
class QueueFilters:
    predicted_intent: str = ""
    model_version: str = ""
    reason: str | None = ReviewItem.Reason.LOW_CONFIDENCE


def _lease_filter(user: AbstractBaseUser) -> Q:
    return Q(leased_until__isnull=True) | Q(leased_until__lte=timezone.now()) | Q(leased_by=user)


def review_group_lease(*, user: AbstractBaseUser, filters: QueueFilters, skipped: Iterable[str] = (),
                       prefer: str = "") -> ReviewItem | None:
    """The first group of the queue (in REVIEW_STRATEGY's order, within ``filters``) that no other
    reviewer holds and this one has not skipped, leased to ``user`` for REVIEW_LEASE_SECONDS; its
    first item is returned. ``prefer``: a group key to take first if it is still free (after an undo)."""
    skipped = list(skipped)
    for _ in range(20):  # another reviewer may claim the candidate between the read and the write
        lead = None
        if prefer:
            lead = ReviewItem.objects.filter(group_key=prefer, status=ReviewItem.Status.PENDING).order_by("id").first()
            prefer = ""
        if lead is None:
            queue = selectors.review_queue(strategy=settings.REVIEW_STRATEGY, exclude_groups=skipped, predicted_intent=filters.predicted_intent,
                                           model_version=filters.model_version, reason=filters.reason)
            lead = queue.exclude(group_key__in=selectors.leased_groups(other_than=user)).first()
        if lead is None:
            return None
        until = timezone.now() + timezone.timedelta(seconds=settings.REVIEW_LEASE_SECONDS)
        # The claim: one conditional UPDATE of the lead row, so that of two reviewers racing for the
        # same group exactly one wins; the rest of the group follows.
        if ReviewItem.objects.filter(pk=lead.pk, status=ReviewItem.Status.PENDING).filter(_lease_filter(user)).update(
                leased_by=user, leased_until=until):
            _group(lead).update(leased_by=user, leased_until=until)
            lead.refresh_from_db()
            return lead
        skipped.append(lead.group_key)
    return None


def review_group_release(*, user: AbstractBaseUser, group_key: str) -> int:
    """Give back the lease on a group (the reviewer skipped it)."""
    return ReviewItem.objects.filter(group_key=group_key, status=ReviewItem.Status.PENDING, leased_by=user).update(
        leased_by=None, leased_until=None)


def _check_decidable(lead_id: int, user: AbstractBaseUser) -> ReviewItem:
    # of=self: PostgreSQL cannot lock the nullable side of the outer joins that fetch the two users.
    lead = ReviewItem.objects.select_for_update(of=("self",)).select_related("resolved_by", "leased_by").filter(pk=lead_id).first()
    if lead is None:
        raise DecisionConflict("This item no longer exists.")
    if lead.status != ReviewItem.Status.PENDING:
        who = lead.resolved_by.get_username() if lead.resolved_by else "someone"
        raise DecisionConflict(f"{who} already decided this item ({lead.get_status_display().lower()}"
                               f"{': ' + lead.reviewed_intent if lead.reviewed_intent else ''}); nothing was changed.")
    if lead.leased_by_id not in (None, user.pk) and lead.leased_until and lead.leased_until > timezone.now():
        raise DecisionConflict(f"{lead.leased_by.get_username()} is deciding this item now; nothing was changed.")
    return lead


def review_group_decide(*, user: AbstractBaseUser, lead_id: int, item_ids: Iterable[int], decision: str, intent_name: str = "",
                        take_out: Iterable[str] = ()) -> ReviewDecision:
    """A decision from the labeling screen on the items ``item_ids`` it showed of the group led by
    ``lead_id``, through the same services as the admin's actions, recorded so that its reviewer
    can undo it. Exactly those items are decided (less those taken out): an item that joined the
    group since the screen showed it stays pending.

    Raises DecisionConflict when someone else has resolved the item or holds its lease, and
    ValidationError for a decision that cannot be made (an unknown intent, a labeling conflict)."""
    if decision not in DECISIONS:
        raise ValidationError({"decision": f"must be one of {', '.join(DECISIONS)}, got {str(decision)[:40]!r}."})
    shown = set(item_ids)
    if lead_id not in shown or len(shown) > MAX_DECISION_ITEMS:
        raise ValidationError({"item_ids": f"must list the shown items of the group, its first item included (at most {MAX_DECISION_ITEMS})."})
    with transaction.atomic():
        lead = _check_decidable(lead_id, user)
        review_group_take_out(item=lead, text_keys=take_out, item_ids=shown)
        if decision == "accept":
            resolution = review_item_accept(item=lead, user=user, item_ids=shown)
        elif decision == "label":
            intent = Intent.objects.filter(name=intent_name).first()
            if intent is None:
                raise ValidationError({"intent": f"There is no intent named {str(intent_name)[:100]!r}."})
            resolution = review_item_label(item=lead, intent=intent, user=user, item_ids=shown)
        elif decision == "out_of_scope":
            resolution = review_item_out_of_scope(item=lead, user=user, item_ids=shown)
        else:
            resolution = review_item_dismiss(item=lead, user=user, item_ids=shown)
        lead.refresh_from_db()
        utterance_ids = [*resolution.created_utterance_ids, *resolution.labeled_utterance_ids]
        return ReviewDecision.objects.create(user=user, status=lead.status, intent=lead.reviewed_intent, item_ids=resolution.item_ids,
                                             created_utterance_ids=resolution.created_utterance_ids,
                                             labeled_utterance_ids=resolution.labeled_utterance_ids,
                                             utterance_versions=_utterance_versions(utterance_ids))


def _utterance_versions(utterance_ids: Iterable[int]) -> dict[str, int]:
    """Each utterance's latest history row: an undo compares them to see whether anyone changed it since."""
    rows = (Utterance.history.filter(id__in=list(utterance_ids)).order_by().values("id").annotate(latest=Max("history_id")))
    return {str(row["id"]): row["latest"] for row in rows}


def review_decision_undo(*, user: AbstractBaseUser, decision_id: int) -> ReviewDecision:
    """Take back one of the user's own decisions: its items are pending again (leased to the user,
    so the screen shows them next), the utterances it created are deleted and those it labeled are
    unlabeled again, each with its history row. Refused when someone has changed them since."""
    with transaction.atomic():
        decision = ReviewDecision.objects.select_for_update().filter(pk=decision_id, user=user).first()
        if decision is None:
            raise DecisionConflict("There is no such decision of yours to undo.")
        if decision.undone_at is not None:
            raise DecisionConflict("This decision was undone already.")
        items = ReviewItem.objects.select_for_update().filter(id__in=decision.item_ids)
        if items.exclude(status=decision.status, resolved_by=user).exists() or items.count() != len(decision.item_ids):
            raise DecisionConflict("Some of these items were changed since this decision; undo refused, nothing was changed.")
        until = timezone.now() + timezone.timedelta(seconds=settings.REVIEW_LEASE_SECONDS)
        if decision.utterance_versions and _utterance_versions(decision.utterance_versions) != decision.utterance_versions:
            raise DecisionConflict("Someone has edited, held out or deleted a text this decision labeled since; "
                                   "undo refused, nothing was changed. Change it in the utterances list instead.")
        items.update(status=ReviewItem.Status.PENDING, resolved_by=None, resolved_at=None, utterance=None, reviewed_intent="",
                     leased_by=user, leased_until=until)
        # An utterance a later decision reused (another copy of the text) stays: that decision still stands.
        created = Utterance.objects.filter(id__in=decision.created_utterance_ids, intent__name=decision.intent)
        for utterance in created.exclude(review_items__status__in=DECIDED):
            labeling.utterance_delete(utterance=utterance, user=user)
        labeled = Utterance.objects.filter(id__in=decision.labeled_utterance_ids, intent__name=decision.intent)
        for utterance in labeled.exclude(review_items__status__in=DECIDED):
            labeling.utterance_update(utterance=utterance, user=user, intent=None)
        decision.undone_at = timezone.now()
        decision.save(update_fields=["undone_at"])
        return decision


def review_group_view(lead: ReviewItem) -> dict[str, Any]:
    """What the screen shows of a group: the lead's text and the model's top three, and each
    distinct text of the group with its number of copies."""
    members: dict[str, dict[str, Any]] = {}
    shown = _group(lead).order_by("id").only("text", "text_key", "confidence", "predicted_intent")[:MAX_DECISION_ITEMS]
    for item in shown:
        member = members.setdefault(item.text_key, {"text_key": item.text_key, "text": item.text, "copies": 0, "item_ids": [],
                                                    "predicted_intent": item.predicted_intent, "confidence": item.confidence})
        member["copies"] += 1
        member["item_ids"].append(item.pk)
    known = set(Intent.objects.filter(name__in=[e["intent"] for e in lead.top_intents]).values_list("name", flat=True))
    return {
        "lead_id": lead.pk, "group_key": lead.group_key, "text": lead.text, "reason": lead.reason,
        "model_version": lead.model_version, "predicted_intent": lead.predicted_intent, "confidence": lead.confidence,
        "top_intents": [{**entry, "known": entry["intent"] in known} for entry in lead.top_intents],
        "members": list(members.values()), "size": sum(m["copies"] for m in members.values()),
    }
