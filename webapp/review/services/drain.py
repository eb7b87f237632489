"""Moving serving's messages in from elsewhere: the SQS review queue, and the log lines of events
serving could not deliver. Each message and each line is ingested in isolation."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Iterable

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, transaction

from webapp.review.services.ingest import UNDELIVERED_EVENT, serving_event_ingest

logger = logging.getLogger(__name__)

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
