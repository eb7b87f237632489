"""Sending unsure predictions back to the admin's review queue, without ever failing or
slowing a classify response by more than a fixed bound.

Delivery happens inside the request, under a deadline (REVIEW_TIMEOUT_MS, 200 ms by default),
because on Lambda nothing runs after the response is returned: a background thread would be
frozen with the container. A failed attempt is retried while time remains; an event that still
cannot be delivered is written to the log as one JSON line holding the whole event (for
``manage.py replay_review_events``) and counted.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any, Protocol

logger = logging.getLogger("serving.review")
UNDELIVERED_EVENT = "review_event_undelivered"


class DeliveryError(Exception):
    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.permanent = permanent  # retrying cannot help (the receiver refused the event itself)


class Sink(Protocol):
    name: str

    def send(self, event: dict[str, Any], timeout: float) -> None: ...


class HttpSink:
    """POST to the Django API (/api/v1/review-items/) with a service token."""

    name = "http"

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def send(self, event: dict[str, Any], timeout: float) -> None:
        request = urllib.request.Request(
            self.url, data=json.dumps(event).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Token {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise DeliveryError(f"HTTP {exc.code} from {self.url}: {detail}", permanent=400 <= exc.code < 500 and exc.code not in (401, 403, 408, 429)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"{self.url} unreachable: {getattr(exc, 'reason', exc)}") from None


class SqsSink:
    """Send to an SQS queue; Django drains it with a scheduled django-q2 task."""

    name = "sqs"

    def __init__(self, queue_url: str, timeout: float) -> None:
        import boto3
        from botocore.config import Config

        self.queue_url = queue_url
        # botocore's own retries would outlast the bound: the router retries within it instead.
        config = Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1, "mode": "standard"})
        self.client = boto3.client("sqs", config=config)

    def send(self, event: dict[str, Any], timeout: float) -> None:
        try:
            self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(event))
        except Exception as exc:  # botocore's errors: endpoint down, throttled, refused
            raise DeliveryError(f"SQS send failed: {(str(exc).splitlines() or [type(exc).__name__])[0][:300]}") from None


class ReviewRouter:
    def __init__(self, sink: Sink | None, *, bound_seconds: float, retries: int, ambiguity_margin: float | None) -> None:
        self.sink, self.bound, self.retries, self.margin = sink, bound_seconds, retries, ambiguity_margin
        self.delivered = 0
        self.undelivered = 0

    def needs_review(self, confidence: float, second: float, threshold: float) -> bool:
        if confidence < threshold:
            return True
        return self.margin is not None and confidence - second < self.margin

    @staticmethod
    def event(*, prediction_id: str, text: str, distribution: list[dict[str, Any]], model_version: str, threshold: float) -> dict[str, Any]:
        return {
            "prediction_id": prediction_id, "text": text, "distribution": distribution, "model_version": model_version,
            "threshold": threshold, "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }

    def submit(self, events: list[dict[str, Any]]) -> None:
        """Deliver the events before the deadline; log (and count) whatever could not be."""
        if self.sink is None or not events:
            return
        deadline = time.monotonic() + self.bound
        for event in events:
            reason = self._deliver(event, deadline)
            if reason is None:
                self.delivered += 1
            else:
                self.undelivered += 1
                logger.warning(json.dumps({"event": UNDELIVERED_EVENT, "sink": self.sink.name, "reason": reason, "review_event": event}))

    def _deliver(self, event: dict[str, Any], deadline: float) -> str | None:
        reason = "no time left within the review bound"
        for attempt in range(1 + self.retries):
            remaining = deadline - time.monotonic()
            if remaining <= 0.005:
                break
            try:
                self.sink.send(event, timeout=remaining)
                return None
            except DeliveryError as exc:
                reason = str(exc)
                if exc.permanent:
                    break
                time.sleep(min(0.01 * (attempt + 1), max(0.0, deadline - time.monotonic())))
        return reason


def build_router(settings) -> ReviewRouter:
    bound = settings.review_timeout_ms / 1000
    sink: Sink | None = None
    if settings.review_sink == "http":
        sink = HttpSink(settings.review_api_url, settings.review_api_token)
    elif settings.review_sink == "sqs":
        sink = SqsSink(settings.review_queue_url, bound)
    return ReviewRouter(sink, bound_seconds=bound, retries=settings.review_retries, ambiguity_margin=settings.ambiguity_margin)
