"""Sending unsure predictions back to the admin's review queue, without ever failing or
slowing a classify response by more than a fixed bound.

Delivery happens during the request, under a deadline (REVIEW_TIMEOUT_MS, 200 ms by default),
because on Lambda nothing runs after the response is returned: a background thread would be
frozen with the container. The attempts run in a helper thread that the request waits for until
the deadline and no longer, so the bound holds whatever a sink does: a timeout fixed when its
client was made (boto3), a server that trickles its answer byte by byte (a socket timeout is
per read, not per request), a DNS lookup that hangs. A failed attempt is retried while time
remains; an event still undelivered at the deadline is written to the log as one JSON line
holding the whole event (for ``manage.py replay_review_events``) and counted. An attempt still
in flight at the deadline may yet arrive: delivery is at least once, and Django's ingestion is
idempotent by prediction id, so replaying such an event is harmless.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
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
    """POST to the Django API with a service token: review events to /api/v1/review-items/,
    traffic reports to /api/v1/traffic-reports/ (by default the review URL's sibling)."""

    name = "http"

    def __init__(self, url: str, token: str, traffic_url: str = "") -> None:
        self.url, self.token = url, token
        self.traffic_url = traffic_url or urllib.parse.urljoin(url if url.endswith("/") else url + "/", "../traffic-reports/")
        self.sample_url = urllib.parse.urljoin(url if url.endswith("/") else url + "/", "../traffic-samples/")
        self.opener = urllib.request.build_opener(RefuseRedirects)

    def send(self, event: dict[str, Any], timeout: float) -> None:
        url = {TRAFFIC_REPORT: self.traffic_url, SAMPLE: self.sample_url}.get(event.get("type"), self.url)
        request = urllib.request.Request(
            url, data=json.dumps(event).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Token {self.token}"},
        )
        try:
            with self.opener.open(request, timeout=timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:  # a wrong URL, not a refused event: retrying cannot help, replaying to the right one will
                raise DeliveryError(redirect_problem(url, exc), permanent=True) from None
            raise DeliveryError(f"HTTP {exc.code} from {url}: {_excerpt(exc)}", permanent=400 <= exc.code < 500 and exc.code not in (401, 403, 408, 429)) from None
        except (urllib.error.URLError, OSError) as exc:
            raise DeliveryError(f"{url} unreachable: {getattr(exc, 'reason', exc)}") from None
        except http.client.HTTPException as exc:  # a malformed answer: bad status line, cut-off body, bad URL
            raise DeliveryError(f"{url} answered unreadably: {type(exc).__name__}: {_short(exc)}") from None
        except (ValueError, OverflowError) as exc:  # a URL urllib cannot use (unknown scheme, port out of range)
            raise DeliveryError(f"{url} cannot be used: {_short(exc)}", permanent=True) from None


class RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """Leaves a redirect as the answer (an HTTPError), never follows it: urllib would resend a
    POST answered 301 or 302 as a GET without its body, and send the Authorization header along to
    whatever host the Location names."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def redirect_problem(url: str, error: urllib.error.HTTPError) -> str:
    location = error.headers.get("Location", "(no Location header)")
    return (f"configuration error: POST {url} was answered HTTP {error.code}, a redirect to {location}, which is not followed "
            "(the event and its token go to the URL configured, nowhere else): set REVIEW_API_URL (or TRAFFIC_API_URL) "
            "to the URL the service answers at")


class SqsSink:
    """Send to an SQS queue; Django drains it with a scheduled django-q2 task."""

    name = "sqs"

    def __init__(self, queue_url: str, timeout: float) -> None:
        from intentflow_serving.aws import aws_client

        self.queue_url = queue_url
        # botocore's own retries would outlast the bound: the router retries within it instead. The
        # timeouts are fixed here, per client: the router's deadline is what bounds each request.
        self.client = aws_client("sqs", connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1, "mode": "standard"})

    def send(self, event: dict[str, Any], timeout: float) -> None:
        try:
            self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(event))
        except Exception as exc:  # botocore's errors: endpoint down, throttled, refused
            raise DeliveryError(f"SQS send failed: {_short(exc)}") from None


# Why a prediction went to the review queue. Audit items are a uniform random sample of all traffic,
# whatever the confidence: reviewers' decisions on them estimate the model's accuracy on live traffic.
LOW_CONFIDENCE, AUDIT = "low_confidence", "audit"
TRAFFIC_REPORT = "traffic"
# A confidently answered prediction sent as an unlabeled traffic sample (TRAFFIC_SAMPLE_RATE): not a
# review item; training runs self-train on these texts.
SAMPLE = "sample"


class TrafficCounter:
    """Predictions counted per (UTC day, model version), sent to Django as traffic reports.

    Lambda keeps no process alive between requests and runs many containers at once, so each
    container counts its own predictions and sends what it counted since its last report, at most
    every ``report_seconds``, through the same sink as the review events (one small message a
    minute per busy container). Each report has its own id, so a report delivered twice is stored
    once; one that cannot be delivered is logged for replay like a review event. What a container
    counted after its last report is lost when Lambda retires it: at most ``report_seconds`` of one
    container's traffic.
    """

    def __init__(self, report_seconds: float, clock=time.monotonic) -> None:
        self.report_seconds, self.clock = report_seconds, clock
        self.counts: Counter[tuple[str, str, str]] = Counter()  # (day, version, what) -> count
        self.last_report = clock()
        self.lock = threading.Lock()

    def count(self, *, model_version: str, low_confidence: bool, audited: bool) -> None:
        day = datetime.now(timezone.utc).date().isoformat()
        with self.lock:
            self.counts[(day, model_version, "predictions")] += 1
            self.counts[(day, model_version, "low_confidence")] += int(low_confidence)
            self.counts[(day, model_version, "audited")] += int(audited)

    def due_reports(self, *, force: bool = False) -> list[dict[str, Any]]:
        """The reports to send now (and the counts reset), or none before ``report_seconds`` have passed."""
        with self.lock:
            if not self.counts or (not force and self.clock() - self.last_report < self.report_seconds):
                return []
            counts, self.counts, self.last_report = self.counts, Counter(), self.clock()
        keys = sorted({(day, version) for day, version, _ in counts})
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        return [{
            "type": TRAFFIC_REPORT, "report_id": str(uuid.uuid4()), "day": day, "model_version": version,
            "predictions": counts[(day, version, "predictions")], "low_confidence": counts[(day, version, "low_confidence")],
            "audited": counts[(day, version, "audited")], "time": now,
        } for day, version in keys]


class ReviewRouter:
    def __init__(self, sink: Sink | None, *, bound_seconds: float, retries: int, ambiguity_margin: float | None,
                 audit_rate: float = 0.0, traffic_report_seconds: float = 60.0, rng: random.Random | None = None,
                 sample_rate: float = 0.0) -> None:
        self.sink, self.bound, self.retries, self.margin = sink, bound_seconds, retries, ambiguity_margin
        self.audit_rate, self.sample_rate = audit_rate, sample_rate
        self.rng = rng or random.Random()
        self.traffic = TrafficCounter(traffic_report_seconds)
        self.delivered = 0
        self.undelivered = 0

    def needs_review(self, low_confidence: bool, confidence: float, second: float, probability_threshold: float | None = None) -> bool:
        """Low in confidence by the serving rule (ServingCore.rule), or a calibrated probability under
        ``probability_threshold`` (REVIEW_ROUTING=either, for a model whose rule is the in-scope score),
        or, with AMBIGUITY_MARGIN, a top intent too close to the second."""
        if low_confidence or (probability_threshold is not None and confidence < probability_threshold):
            return True
        return self.margin is not None and confidence - second < self.margin

    def review_reason(self, *, low_confidence: bool, confidence: float, second: float, model_version: str,
                      probability_threshold: float | None = None) -> str | None:
        """Why this prediction goes to Django: the queue (AUDIT or LOW_CONFIDENCE), a traffic sample
        (SAMPLE), or None; counts it.

        The audit draw comes first and ignores the confidence, so the audit sample stays a uniform
        sample of all traffic even where it overlaps the low-confidence items. The traffic sample is
        drawn from the rest: what the model answered with confidence, the texts self-training uses."""
        if self.sink is None:
            return None
        audited = self.audit_rate > 0 and self.rng.random() < self.audit_rate
        self.traffic.count(model_version=model_version, low_confidence=low_confidence, audited=audited)
        if audited:
            return AUDIT
        if self.needs_review(low_confidence, confidence, second, probability_threshold):
            return LOW_CONFIDENCE
        return SAMPLE if self.sample_rate > 0 and self.rng.random() < self.sample_rate else None

    @staticmethod
    def sample_event(*, prediction_id: str, text: str, intent: str, model_version: str) -> dict[str, Any]:
        return {
            "type": SAMPLE, "prediction_id": prediction_id, "text": text, "intent": intent, "model_version": model_version,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }

    @staticmethod
    def event(*, prediction_id: str, text: str, distribution: list[dict[str, Any]], model_version: str, threshold: float,
              reason: str = LOW_CONFIDENCE, rule: str = "confidence", in_scope_score: float | None = None) -> dict[str, Any]:
        return {
            "prediction_id": prediction_id, "text": text, "distribution": distribution, "model_version": model_version,
            "threshold": threshold, "rule": rule, "in_scope_score": in_scope_score, "reason": reason,
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }

    def submit(self, events: list[dict[str, Any]]) -> None:
        """Deliver the events (and any traffic report that is due) before the deadline; log (and
        count) whatever could not be. Never raises."""
        if self.sink is None:
            return
        # Review and audit items first, then reports, samples last: the deadline may not serve them
        # all, and a lost sample costs little (the next one will do) where a lost review item is a
        # confusion nobody labels.
        samples = [e for e in events if e.get("type") == SAMPLE]
        events = [e for e in events if e.get("type") != SAMPLE] + self.traffic.due_reports() + samples
        if not events:
            return
        deadline = time.monotonic() + self.bound
        try:
            reasons = self._deliver_before(events, deadline)
        except Exception as exc:  # the last line: nothing a sink does may change the classify answer
            reasons = [f"review delivery failed: {type(exc).__name__}: {_short(exc)}"] * len(events)
        for event, reason in zip(events, reasons):
            if reason is None:
                self.delivered += 1
            else:
                self.undelivered += 1
                logger.warning(json.dumps({"event": UNDELIVERED_EVENT, "sink": self.sink.name, "reason": reason, "review_event": event}))

    def _deliver_before(self, events: list[dict[str, Any]], deadline: float) -> list[str | None]:
        """Each event's outcome at the deadline: None if delivered, else why not."""
        delivery = Delivery(self.sink, events, deadline=deadline, retries=self.retries)
        worker = threading.Thread(target=delivery.run, name="review-delivery", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        return delivery.stop()


class Delivery:
    """The attempts for one request's events, run in a helper thread until done or stopped."""

    def __init__(self, sink: Sink, events: list[dict[str, Any]], *, deadline: float, retries: int) -> None:
        self.sink, self.events, self.deadline, self.retries = sink, events, deadline, retries
        self.reasons: list[str | None] = [NO_TIME_LEFT] * len(events)
        self._stopped = threading.Event()

    def run(self) -> None:
        for index in range(len(self.events)):
            if self._stopped.is_set():
                return
            self.reasons[index] = self._deliver(index)

    def stop(self) -> list[str | None]:
        """No attempt starts after this; the outcomes as they stand now."""
        self._stopped.set()
        return list(self.reasons)

    def _deliver(self, index: int) -> str | None:
        reason = NO_TIME_LEFT
        for attempt in range(1 + self.retries):
            remaining = self.deadline - time.monotonic()
            if remaining <= 0.005 or self._stopped.is_set():
                break
            # What the log says if the deadline comes while this attempt is under way.
            self.reasons[index] = IN_FLIGHT if attempt == 0 else f"{IN_FLIGHT} (the attempt before: {reason})"
            try:
                self.sink.send(self.events[index], timeout=remaining)
                return None
            except DeliveryError as exc:
                reason = str(exc)
                if exc.permanent:
                    break
            except Exception as exc:  # a sink's unforeseen failure is one more failed attempt
                reason = f"{type(exc).__name__}: {_short(exc)}"
            if attempt < self.retries:  # a short pause, cut short by the deadline
                self._stopped.wait(min(0.01 * (attempt + 1), max(0.0, self.deadline - time.monotonic())))
        return reason


def _excerpt(error: urllib.error.HTTPError) -> str:
    """The start of an error answer's body, if it can be read at all."""
    try:
        return error.read()[:300].decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return "(unreadable body)"


NO_TIME_LEFT = "no time left within the review bound (REVIEW_TIMEOUT_MS)"
IN_FLIGHT = "no answer within the review bound (REVIEW_TIMEOUT_MS)"


def _short(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]


def build_router(settings) -> ReviewRouter:
    bound = settings.review_timeout_ms / 1000
    sink: Sink | None = None
    if settings.review_sink == "http":
        sink = HttpSink(settings.review_api_url, settings.review_api_token, settings.traffic_api_url)
    elif settings.review_sink == "sqs":
        sink = SqsSink(settings.review_queue_url, bound)
    return ReviewRouter(sink, bound_seconds=bound, retries=settings.review_retries, ambiguity_margin=settings.ambiguity_margin,
                        audit_rate=settings.review_audit_rate, traffic_report_seconds=settings.traffic_report_seconds,
                        sample_rate=settings.traffic_sample_rate)
