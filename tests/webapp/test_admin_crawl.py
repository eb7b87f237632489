"""Issue 27, "Make the classes impossible": a crawl of the whole admin over data at the edges.

Every admin page and custom view must answer below 500, on whichever database DATABASE_URL
selects, for every kind of data the project can hold. Each edge family is one dataset, made through
the project's services where they exist (ingestion, labeling, review decisions, snapshots) and with
the ORM for the states only a worker or time makes (training runs of every status, promotions,
rows dated before ingestion refused far-future times):

* ``empty``: nothing but the migrations' rows (the ``oos`` intent, the role groups);
* ``single``: one of everything;
* ``rates``: shares of exactly 0 and 1 (audit accuracy of a model version, low-confidence share,
  held-out accuracy, confidences, margins, thresholds and in-scope scores);
* ``extremes``: the largest counts (2**31-1 predictions in one traffic report, twice a day), the
  first and last days the calendar has (0001-01-01, 9999-12-31), predictions at the end of year 9999
  UTC, a CLINC150-sized report;
* ``strings``: ``$`` (also invalid mathtext), ``%``, ``{}``, markup, right-to-left text, emoji and the
  longest allowed value of the fields, in texts, intent names, model versions, messages and logs;
* ``training``: runs of each status with no, empty, partial and complete metrics, promotions of
  each status;
* ``generated``: texts, intent names and model versions drawn by hypothesis (a fixed seed).

The crawler finds the pages itself: the site's own URLs and each registered ModelAdmin's
``get_urls()`` (changelists, add, change, history and delete pages, simple_history's record pages,
and the custom views: the run page and its progress JSON, the Traffic page, the labeling screen and
its JSON views, the import and launch pages), each changelist's filter choices (read from the
rendered changelist), searches and orderings, and the API's schema and docs. The tests:

* ``test_admin_crawl[dataset]``: a superuser, every page over one edge family, with the data's
  filter choices, searches, date drill-downs, many objects' change pages, and labeling-screen
  decisions (each undone);
* ``test_admin_crawl_odd_requests``: what does not depend on the data, once (ids of no object,
  odd page numbers, every column's ordering, odd searches, query strings and JSON bodies);
* ``test_admin_crawl_nul_characters``: a NUL character in every parameter (PostgreSQL refuses it);
* ``test_admin_crawl_as_role[role]``: a Labeler and an ML engineer visit every page once over all
  the edge families at once, so the templates that depend on a role render too;
* ``test_traffic_figures_render``: random traffic and audit figures (hypothesis) on the pages that
  show them.

A failure lists every request that answered 5xx with the last lines of its traceback (and any HTML
page that shows a stored ``<script>`` unescaped).
"""

from __future__ import annotations

import datetime
import itertools
import json
import logging
import traceback
import uuid
from urllib.parse import urlencode

import numpy as np
import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from hypothesis import HealthCheck, Phase, example, given, seed, settings, strategies as st
from rest_framework.authtoken.models import Token

from mlcore.config import TrainConfig
from mlcore.evaluate import classification_report
from tests.webapp_fixtures import make_user, review_event, traffic_sample
from webapp.labeling import services as labeling
from webapp.labeling.models import MAX_TEXT_LENGTH, Intent, Utterance
from webapp.labeling.roles import LABELERS, ML_ENGINEERS
from webapp.review import services as review
from webapp.review.models import ReviewItem, TrafficReport, TrafficSample
from webapp.training import services as training
from webapp.training.models import DatasetSnapshot, Promotion, TrainingRun

# Emoji and rare characters in a chart's legend or labels have no glyph in matplotlib's font: a
# warning, not a failure (the page still renders).
pytestmark = pytest.mark.filterwarnings("ignore:Glyph .* missing from font")

UTC = datetime.timezone.utc
MAX_COUNT = 2**31 - 1  # a PositiveIntegerField's largest value on every database; one traffic report's maximum
FIRST_DAY, LAST_DAY = datetime.date.min, datetime.date.max  # 0001-01-01 and 9999-12-31
FIRST_MOMENT = datetime.datetime(1, 1, 1, tzinfo=UTC)
LAST_MOMENT = datetime.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
MODEL_VERSION_LENGTH = ReviewItem._meta.get_field("model_version").max_length  # 64
INTENT_NAME_LENGTH = Intent._meta.get_field("name").max_length  # 100

# Strings that break naive formatting: printf and str.format fields, matplotlib's mathtext ($),
# markup, SQL LIKE wildcards, right-to-left scripts (and the override character), emoji with
# modifiers and joiners, combining marks.
MARKUP = '<script>alert("crawl")</script>'
ODD_STRINGS = [
    "$x^2$ costs $5", "100% of %s and %(name)s", "{} {0} {name} {{ var }} {% if %}", MARKUP,
    "مرحبا، كيف حالك؟", "שלום עולם", "mixed עברית and العربية \u202eoverride", "👍🏽 👨‍👩‍👧 🚀🔥",
    "e\u0301\u0301\u0301 combining", "'; DROP TABLE x; --", "back\\slash _under_ %percent%",
]
# Model versions: any string of 1 to 64 characters without control characters ("$x^$", "$%s$" and
# "$\foo$" are not valid matplotlib mathtext: a legend that parses it fails).
ODD_VERSIONS = ["$", "$v^{2}$", "$x^$", "$%s$", "$\\foo$", "50%", "%s%d", "{}", "{0}", "<b>v</b>", MARKUP, "نسخة", "גרסה", "🚀", "v" * MODEL_VERSION_LENGTH,
                "ن" * MODEL_VERSION_LENGTH]
# Intent names are restricted to lowercase letters, digits, "_", "-" and "." (at most 100 characters).
ODD_INTENT_NAMES = ["a" * INTENT_NAME_LENGTH, "0", "9.9.9", "a-b_c.d", "x" + "-" * (INTENT_NAME_LENGTH - 1), "z" * 99 + "."]
# What the crawl types into the changelists' search box.
SEARCHES = ["$", "%", "%%", "_", "{}", "{0}", "%(x)s", MARKUP, "'", '"unbalanced', "\\", "مرحبا", "שלום", "🚀",
            "a" * 1000, " ", "a" * 5 + " " * 100 + "b"]

_serial = itertools.count()


def _unique(text: str) -> str:
    """``text`` made unique (utterances and review groups are per distinct text), kept within the limit."""
    suffix = f" #{next(_serial)}"
    return text[: MAX_TEXT_LENGTH - len(suffix)] + suffix


# ---------------------------------------------------------------------------------------------------
# Building data: the services first, the ORM for what only a worker or time makes.
# ---------------------------------------------------------------------------------------------------


def iso(moment: datetime.datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def now_iso() -> str:
    return iso(timezone.now())


def intent(name: str, description: str = "", *, is_active: bool = True) -> Intent:
    return Intent.objects.filter(name=name).first() or labeling.intent_create(name=name, description=description, is_active=is_active)


def utterance(text: str, label: Intent | None, user: User, **kwargs) -> Utterance:
    return labeling.utterance_create(text=_unique(text), intent=label, user=user, **kwargs)


def item(text: str, *, version: str = "abc123def456", predicted: str = "get_news", top: float = 0.41, reason: str = "low_confidence",
         time: str | None = None, unique: bool = True, **overrides) -> ReviewItem:
    event = review_event(_unique(text) if unique else text, top=top, intent=predicted, model_version=version, reason=reason,
                         time=time or now_iso(), **overrides)
    try:
        return review.review_item_ingest(event=event)[0]
    except ValidationError as exc:
        if "in the future" not in str(exc):
            raise
    stored = review.review_item_ingest(event={**event, "time": now_iso()})[0]
    return stored_before_the_check(stored, predicted_at=parse_datetime(time))


def stored_before_the_check(row, **fields):
    """A row with a time ingestion now refuses (far in the future): rows stored before it did
    are still in the database, and the admin shows them."""
    type(row).objects.filter(pk=row.pk).update(**fields)
    row.refresh_from_db()
    return row


def audit(version: str, *, right: int = 0, wrong: int = 0, out_of_scope: int = 0, pending: int = 0, dismissed: int = 0,
          user: User, time: str | None = None, predicted: str = "get_news", other: str = "play_music") -> None:
    """Audit items of one model version, decided right (accepted), wrong (labeled otherwise or out of
    scope), dismissed, or left pending."""
    predicted_intent, other_intent = intent(predicted), intent(other)
    for _ in range(right):
        review.review_item_accept(item=item("audited right", version=version, predicted=predicted, reason="audit", time=time), user=user)
    for _ in range(wrong):
        review.review_item_label(item=item("audited wrong", version=version, predicted=predicted, reason="audit", time=time),
                                 intent=other_intent, user=user)
    for _ in range(out_of_scope):
        review.review_item_out_of_scope(item=item("audited oos", version=version, predicted=predicted, reason="audit", time=time), user=user)
    for _ in range(dismissed):
        review.review_item_dismiss(item=item("audited dismissed", version=version, predicted=predicted, reason="audit", time=time), user=user)
    for _ in range(pending):
        item("audited pending", version=version, predicted=predicted, reason="audit", time=time)
    assert predicted_intent.pk and other_intent.pk


def traffic(version: str, *, predictions: int, low_confidence: int = 0, audited: int = 0, day: datetime.date | None = None) -> TrafficReport:
    day = day or timezone.now().date()
    report = {"report_id": str(uuid.uuid4()), "day": day.isoformat(), "model_version": version,
              "predictions": predictions, "low_confidence": low_confidence, "audited": audited}
    try:
        return review.traffic_report_ingest(report=report)[0]
    except ValidationError as exc:
        if "in the future" not in str(exc):
            raise
    stored = review.traffic_report_ingest(report={**report, "day": timezone.now().date().isoformat()})[0]
    return stored_before_the_check(stored, day=day)


def sample(text: str, *, version: str = "abc123def456", predicted: str = "play_music", time: str | None = None) -> TrafficSample:
    message = traffic_sample(text=_unique(text), intent=predicted, model_version=version, time=time or now_iso())
    try:
        return review.traffic_sample_ingest(sample=message)[0]
    except ValidationError as exc:
        if "in the future" not in str(exc):
            raise
    stored = review.traffic_sample_ingest(sample={**message, "time": now_iso()})[0]
    return stored_before_the_check(stored, predicted_at=parse_datetime(time))


def report(labels: list[str], *, examples: int, right: bool | None, oos: bool = False, score_rule: bool = False) -> dict:
    """An evaluation report as mlcore writes it: every prediction right, every one wrong, or alternately."""
    k = len(labels)
    truth = np.arange(examples) % k
    if right is True or k == 1:
        predicted = truth
    elif right is False:
        predicted = (truth + 1) % k
    else:
        predicted = np.where(np.arange(examples) % 2 == 0, truth, (truth + 1) % k)
    probabilities = np.full((examples, k), 0.0 if k == 1 else 0.2 / (k - 1))
    probabilities[np.arange(examples), predicted] = 1.0 if k == 1 else 0.8
    oos_probabilities = np.full((examples, k), 1.0 / k) if oos else None
    result = classification_report(probabilities=probabilities, labels=truth, label_names=labels, threshold=0.5,
                                   oos_probabilities=oos_probabilities)
    result.update(ece_uncalibrated=result["ece"], temperature=1.0)
    if score_rule:
        result["confidence_rule"] = {"rule": "confidence", "threshold": 0.5, "in_scope_review_rate": result["in_scope_review_rate"]}
        result.update(rule="in_scope_score", threshold=0.0, in_scope_review_rate=0.0)
    return result


def metrics(test: dict | None, validation: dict | None = None, **extra) -> dict:
    found = {"training": {"device": "cpu", "train_examples": 0, "val_examples": 0, "train_seconds": 0.0}, **extra}
    if validation is not None:
        found["validation"] = validation
    if test is not None:
        found["test"] = test
    return found


def snapshot() -> DatasetSnapshot:
    return training.snapshot_create()


def run(status: str, *, snap: DatasetSnapshot | None = None, user: User | None = None, sha: str = "", **fields) -> TrainingRun:
    """A run as a worker would have left it (the services start runs only through the queue)."""
    fields.setdefault("config", TrainConfig(device="cpu").to_dict())
    if status != TrainingRun.Status.QUEUED:
        fields.setdefault("started_at", timezone.now() - datetime.timedelta(minutes=5))
    if status in TrainingRun.FINISHED:
        fields.setdefault("finished_at", timezone.now())
    if sha:
        fields.setdefault("artifact", f"runs/run-{sha[:12]}.pt")
        fields.setdefault("artifact_size", 1234)
    return TrainingRun.objects.create(status=status, snapshot=snap or snapshot(), created_by=user, requested_device="cpu",
                                      artifact_sha256=sha, **fields)


def promotion(target: TrainingRun, status: str, *, user: User | None = None, previous: TrainingRun | None = None, **fields) -> Promotion:
    if status == Promotion.Status.SUCCEEDED:
        fields.setdefault("promoted_at", timezone.now())
    if status in (Promotion.Status.SUCCEEDED, Promotion.Status.FAILED):
        fields.setdefault("finished_at", timezone.now())
    fields.setdefault("serving_uri", "var/serving/model.pt")
    return Promotion.objects.create(run=target, previous_run=previous, promoted_by=user, status=status, **fields)


def sha(char: str) -> str:
    return char * 64


QUANTIZATION = {"accepted": True, "max_accuracy_drop": 0.0, "ece_fp32": 0.0, "ece_int8": 1.0,
                "splits": {"validation": {"agreement": 1.0}, "held-out": {"agreement": 0.0}}, "reasons": []}


def build_empty(user: User) -> None:
    """Nothing but what the migrations made."""


def build_single(user: User) -> None:
    """One of everything."""
    news = intent("get_news", "One intent.")
    utterance("show me the headlines", news, user)
    item("a single pending item")
    audit("abc123def456", pending=1, user=user)
    traffic("abc123def456", predictions=1, low_confidence=1, audited=1)
    sample("a single traffic sample")
    only = run(TrainingRun.Status.SUCCEEDED, user=user, sha=sha("a"),
               metrics=metrics(report(["get_news", "play_music"], examples=1, right=True),
                               report(["get_news", "play_music"], examples=1, right=False)))
    promotion(only, Promotion.Status.SUCCEEDED, user=user, heldout_accuracy=1.0)


def build_rates(user: User) -> None:
    """Every share at exactly 0 and exactly 1."""
    news, music = intent("get_news"), intent("play_music")
    for index in range(3):
        utterance(f"labeled news {index}", news, user)
        utterance(f"labeled music {index}", music, user)
    # Audit accuracy exactly 1 and exactly 0 (wrong: labeled as another intent, or out of scope),
    # one decided item alone (1 of 1), and versions with no decision at all.
    right_version, wrong_version = sha("1")[:12], sha("0")[:12]
    audit(right_version, right=3, pending=1, user=user)
    audit(wrong_version, wrong=2, out_of_scope=1, user=user)
    audit("one-right", right=1, user=user)
    audit("one-wrong", out_of_scope=1, user=user)
    audit("only-pending", pending=2, user=user)
    audit("only-dismissed", dismissed=2, user=user)
    # Low-confidence share exactly 0, exactly 1, and undefined (no prediction at all).
    traffic(right_version, predictions=10, low_confidence=0, audited=10)
    traffic(wrong_version, predictions=10, low_confidence=10, audited=0)
    traffic("no-predictions", predictions=0, low_confidence=0, audited=0)
    traffic("one-right", predictions=1, low_confidence=1, audited=1)
    # Probabilities, margins, thresholds and in-scope scores at their ends.
    item("certain", top=1.0, threshold=1.0)
    item("clueless", top=0.0, threshold=0.0)
    item("scored in", top=0.5, rule="in_scope_score", in_scope_score=1.0, threshold=0.0)
    item("scored out", top=0.5, rule="in_scope_score", in_scope_score=0.0, threshold=1.0, reason="audit")
    item("one intent only", distribution=[{"intent": "get_news", "probability": 1.0}])
    item("a tie", distribution=[{"intent": "get_news", "probability": 0.5}, {"intent": "play_music", "probability": 0.5}])
    # Held-out accuracy exactly 1 and exactly 0, linked to the audit versions above.
    labels = ["get_news", "play_music", "oos"]
    best = run(TrainingRun.Status.SUCCEEDED, user=user, sha=sha("1"),
               metrics=metrics(report(labels, examples=6, right=True, oos=True), report(labels, examples=6, right=True, score_rule=True)))
    worst = run(TrainingRun.Status.SUCCEEDED, user=user, sha=sha("0"),
                metrics=metrics(report(labels, examples=6, right=False, oos=True), report(labels, examples=6, right=False)))
    promotion(worst, Promotion.Status.SUCCEEDED, user=user, heldout_accuracy=0.0, previous_heldout_accuracy=None)
    promotion(best, Promotion.Status.SUCCEEDED, user=user, previous=worst, heldout_accuracy=1.0, previous_heldout_accuracy=0.0,
              served_precision="int8", quantization=QUANTIZATION)
    run(TrainingRun.Status.RUNNING, user=user, step=0, total_steps=0)
    run(TrainingRun.Status.RUNNING, user=user, step=10, total_steps=10, latest_metrics={"accuracy": 0.0, "macro_f1": 1.0})


def build_extremes(user: User) -> None:
    """The largest counts, the first and last days, the end of year 9999."""
    news = intent("get_news")
    intent("play_music")
    old = utterance("written on the first day", news, user)
    new = utterance("written on the last day", news, user)
    Utterance.objects.filter(pk=old.pk).update(created_at=FIRST_MOMENT, updated_at=FIRST_MOMENT)
    Utterance.objects.filter(pk=new.pk).update(created_at=LAST_MOMENT, updated_at=LAST_MOMENT)
    # Traffic: the largest report, twice on one day (their sum passes 2**31), on the first and last days.
    for day in (timezone.now().date(), timezone.now().date(), FIRST_DAY, LAST_DAY):
        traffic("abc123def456", predictions=MAX_COUNT, low_confidence=MAX_COUNT, audited=MAX_COUNT, day=day)
    traffic("half-low", predictions=MAX_COUNT, low_confidence=MAX_COUNT // 2, day=LAST_DAY)
    # Predictions made at the end of year 9999 and at the start of year 1, decided and pending.
    for moment in (LAST_MOMENT, FIRST_MOMENT, LAST_MOMENT - datetime.timedelta(days=1)):
        audit("abc123def456", right=1, wrong=1, pending=1, user=user, time=iso(moment))
        item("predicted at an edge of time", time=iso(moment))
        sample("sampled at an edge of time", time=iso(moment))
    snap = snapshot()
    big = DatasetSnapshot.objects.create(fingerprint="f" * 64, heldout_fingerprint="0" * 64, train_count=MAX_COUNT,
                                         heldout_count=MAX_COUNT, intent_counts={"get_news": MAX_COUNT}, heldout_intent_counts={})
    # A CLINC150-sized report: 151 intents, a heatmap without tick labels.
    many = [f"intent_{index:03d}" for index in range(150)] + ["oos"]
    run(TrainingRun.Status.SUCCEEDED, snap=big, user=user, sha=sha("e"), artifact_size=2**63 - 1, step=MAX_COUNT, total_steps=MAX_COUNT,
        epoch=1e308, metrics=metrics(report(many, examples=1510, right=None, oos=True)))
    run(TrainingRun.Status.RUNNING, snap=snap, user=user, step=MAX_COUNT - 1, total_steps=MAX_COUNT, started_at=FIRST_MOMENT)
    run(TrainingRun.Status.RUNNING, snap=snap, user=user, step=1, total_steps=MAX_COUNT, started_at=LAST_MOMENT)
    first = run(TrainingRun.Status.SUCCEEDED, snap=snap, user=user, sha=sha("d"), started_at=FIRST_MOMENT, finished_at=LAST_MOMENT,
                metrics=metrics(report(["get_news", "play_music"], examples=MAX_COUNT // 10**6, right=None)))
    TrainingRun.objects.filter(pk=first.pk).update(created_at=FIRST_MOMENT, heartbeat_at=LAST_MOMENT)
    promotion(first, Promotion.Status.SUCCEEDED, user=user, requested_at=FIRST_MOMENT, promoted_at=LAST_MOMENT, finished_at=LAST_MOMENT)
    promotion(first, Promotion.Status.QUEUED, user=user, requested_at=LAST_MOMENT)


def build_strings(user: User) -> None:
    """Odd and longest strings in every text field the admin shows."""
    names = [intent(name, description=ODD_STRINGS[index % len(ODD_STRINGS)]) for index, name in enumerate(ODD_INTENT_NAMES)]
    intent("inactive", MARKUP * 10, is_active=False)
    for index, text in enumerate([*ODD_STRINGS, "ا" * MAX_TEXT_LENGTH, "🚀" * MAX_TEXT_LENGTH, "$" * MAX_TEXT_LENGTH]):
        utterance(text, names[index % len(names)], user)
    utterance(MARKUP, None, user, source=Utterance.Source.API)
    for index, version in enumerate(ODD_VERSIONS):
        text = ODD_STRINGS[index % len(ODD_STRINGS)]
        predicted = names[index % len(names)].name
        item(text, version=version, predicted=predicted)
        audit(version, right=1, wrong=1, pending=1, user=user, predicted=predicted, other=names[(index + 1) % len(names)].name)
        traffic(version, predictions=3, low_confidence=1, audited=1)
        sample(text, version=version, predicted=predicted)
    # Predicted intents are any name serving sends (not only the Intent rows'): markup, $, RTL, 100 characters.
    for name in [MARKUP, "$a$", "مرحبا", "{}", "%s", "🚀", "p" * INTENT_NAME_LENGTH]:
        item(f"predicted {name}", predicted=name)
        sample(f"sampled {name}", predicted=name)
    # The same text many times: one group with many copies.
    for _ in range(3):
        item("the very same text", unique=False)
    snap = snapshot()
    labels = [n.name for n in names] + ["oos"]
    succeeded = run(TrainingRun.Status.SUCCEEDED, snap=snap, user=user, sha=sha("5"), worker="w" * 200, task_id="t" * 64,
                    device_used="c" * 10, log_tail="\n".join(ODD_STRINGS) * 20,
                    config={**TrainConfig(device="cpu").to_dict(), "base_model": MARKUP + " $x$ %s {}"},
                    metrics=metrics(report(labels, examples=20, right=None), report(labels, examples=20, right=True)))
    failed = run(TrainingRun.Status.FAILED, snap=snap, user=user, error_message=" ".join(ODD_STRINGS) * 10, log_tail=MARKUP)
    promotion(succeeded, Promotion.Status.FAILED, user=user, error_message=MARKUP + " ".join(ODD_STRINGS), override_reason="$%{}" * 100,
              serving_uri="s3://bucket/" + "k" * 488, version_uri="s3://b/" + "🚀" * 493, task_id="q" * 64)
    promotion(succeeded, Promotion.Status.SUCCEEDED, user=user, override_reason=" ".join(ODD_STRINGS), served_precision="fp32",
              quantization={**QUANTIZATION, "accepted": False, "reasons": ODD_STRINGS})
    assert failed.pk
    # The other registered models: users, groups and tokens with the longest and oddest names.
    odd_user = User.objects.create_user("ا" * 150, first_name=MARKUP[:150], last_name="$%{}" * 37, email=("e" * 64) + "@example.com")
    Group.objects.create(name=(MARKUP + "مرحبا") * 3)
    Token.objects.create(user=odd_user)


def build_training(user: User) -> None:
    """Runs of every status with empty, partial and complete metrics; promotions of every status."""
    intent("get_news")
    intent("play_music")
    snap = snapshot()  # of nothing: no labeled utterance
    labels = ["get_news", "play_music"]
    variants = [  # (metrics, latest validation metrics)
        (None, None), ({}, {}), (metrics(None), {"accuracy": 0.5}),  # no report at all
        (metrics(None, report(labels, examples=0, right=True)), {"loss": 1.0}),  # a validation split of no text, no held-out set
        (metrics(report(labels, examples=0, right=None), report(labels, examples=1, right=False),
                 self_training={"unlabeled_texts": 0, "pseudo_labels": 0, "kept": "reviewed_only", "reviewed_only": {}}), None),
        (metrics(report(labels, examples=4, right=True), report(labels, examples=4, right=True, score_rule=True),
                 self_training={"unlabeled_texts": 5, "pseudo_labels": 5, "kept": "self_trained",
                                "reviewed_only": {"validation_accuracy": 0.0}, "self_trained": {"validation_accuracy": 1.0}}),
         {"accuracy": 1.0, "macro_f1": 0.0}),
    ]
    statuses = TrainingRun.Status.values
    # Every status with every kind of metrics would be 30 runs (a run page with a report draws two
    # charts): each unfinished or failed status with one kind, the succeeded status with every kind.
    pairs = [(status, index) for index, status in enumerate(statuses) if status != TrainingRun.Status.SUCCEEDED]
    pairs += [(TrainingRun.Status.SUCCEEDED, index) for index in range(len(variants))]
    for status, variant in dict.fromkeys(pairs):
        values, latest = variants[variant]
        fields = {"metrics": values, "latest_metrics": latest, "cancel_requested": status == "cancelled" or variant == 1}
        if status == TrainingRun.Status.SUCCEEDED:
            fields["sha"] = sha(str(variant))
        if status in (TrainingRun.Status.RUNNING, TrainingRun.Status.CANCELLED):
            fields.update(step=variant, total_steps=5, epoch=variant / 2)
        if status == TrainingRun.Status.FAILED:
            fields["error_message"] = "" if variant == 0 else "MlcoreError: training needs two intents"
        run(status, snap=snap, user=user if variant % 2 else None, **fields)
    runs = list(TrainingRun.objects.filter(status=TrainingRun.Status.SUCCEEDED).order_by("id"))
    for index, status in enumerate(Promotion.Status.values):
        promotion(runs[index], status, user=user if index % 2 else None, previous=runs[index - 1] if index else None,
                  heldout_accuracy=[None, 0.0, 1.0, 0.5][index], previous_heldout_accuracy=[None, 1.0, 0.0, None][index],
                  quantization=[None, {}, QUANTIZATION, {"accepted": False}][index], served_precision=["", "", "int8", "fp32"][index],
                  error_message="refused by the gate" if status == Promotion.Status.FAILED else "")
    # A run promoted, then the promotion of another one queued after it.
    promotion(runs[-1], Promotion.Status.RUNNING, user=user, previous=runs[2])


# Strategies for the generated dataset: the characters that break formatting and layout, mixed
# with everything Unicode has (control characters too: the services strip them).
odd_character = st.one_of(st.sampled_from(list("$%{}<>&\"'\\`#;_.-*|")), st.sampled_from(list("مرحباשלוםעברית👍🏽🚀👨‍👩‍👧\u202e\u0301")),
                          st.characters(codec="utf-8"))
odd_text = st.one_of(st.text(odd_character, min_size=1, max_size=40), st.text(odd_character, min_size=MAX_TEXT_LENGTH - 50,
                                                                              max_size=MAX_TEXT_LENGTH))
odd_text = odd_text.filter(lambda t: labeling.strip_unstorable(t).strip())
version_character = st.characters(codec="utf-8", exclude_categories=["Cc", "Cs"]) | st.sampled_from(list("$%{}<>^_\\"))
odd_version = st.one_of(st.text(version_character, min_size=1, max_size=12),
                        st.text(version_character, min_size=MODEL_VERSION_LENGTH, max_size=MODEL_VERSION_LENGTH))
intent_name = st.one_of(st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,20}", fullmatch=True),
                        st.from_regex(rf"[a-z0-9][a-z0-9_.-]{{{INTENT_NAME_LENGTH - 1}}}", fullmatch=True))


def draw(strategy, count: int, *, seed_value: int = 27) -> list:
    """``count`` distinct values of a hypothesis strategy, the same ones on every run."""
    values: list = []

    @seed(seed_value)
    @settings(max_examples=count * 3, database=None, deadline=None, phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(value):
        if value not in values:
            values.append(value)

    collect()
    return values[:count]


def build_generated(user: User) -> None:
    """Texts, intent names and model versions drawn by hypothesis."""
    names = [intent(name) for name in draw(intent_name, 6)]
    versions = draw(odd_version, 6, seed_value=28)
    for index, text in enumerate(draw(odd_text, 12, seed_value=29)):
        label = names[index % len(names)]
        version = versions[index % len(versions)]
        try:
            utterance(text, label if index % 3 else None, user)
        except Exception as exc:  # noqa: BLE001 - a text the services refuse (a duplicate once folded) is no page's concern
            assert "already exists" in str(exc), exc
        item(text, version=version, predicted=label.name, top=[0.0, 1.0, 0.5][index % 3], reason=["audit", "low_confidence"][index % 2])
        sample(text, version=version, predicted=label.name)
        traffic(version, predictions=index, low_confidence=index // 2, audited=index // 3)
    for index, version in enumerate(versions):
        audit(version, right=index % 2, wrong=index % 3 == 0, pending=1, user=user, predicted=names[0].name, other=names[1].name)


DATASETS = {
    "empty": build_empty, "single": build_single, "rates": build_rates, "extremes": build_extremes,
    "strings": build_strings, "training": build_training, "generated": build_generated,
}


# ---------------------------------------------------------------------------------------------------
# The crawler
# ---------------------------------------------------------------------------------------------------

# How far a crawl goes. ROLE: every page once (the pages a role may see, and the 403s of the rest).
# DATA: also each changelist's filter choices, each column's ordering and a few searches, the
# change page of many objects and the labeling screen's decisions: what depends on the data.
# ODD: also what does not depend on the data (odd ids, pages, orderings, searches, query strings
# and JSON bodies), crawled once.
ROLE, DATA, ODD = 0, 1, 2
# The project's own apps: at DATA, the crawl filters, sorts and searches their changelists (the
# others, Django's and django-q's, show no data of the edge families but users and groups).
PROJECT_APPS = {"labeling", "review", "training"}
FILTER_CHOICES = 8  # at most this many choices of one filter at DATA (the first and the last ones)
DATA_SEARCHES = [MARKUP, "%"]  # "%" matches every row: the page lists them all
# Ids of no object: too large for any integer column, not a number at all, Arabic digits.
MISSING_IDS = [10**30, "not a pk/../$%{}", "١٢"]
ODD_PAGES = ["?o=99", "?o=x", "?o=-", "?o=1.1.1", "?o=2.-1", "?p=2", "?p=99999", "?p=-1", "?p=x", "?all=", "?e=1", "?_popup=1",
             "?unknown=1"]
# Query strings for the labeling screen and its next-group view.
LABEL_QUERIES = ["reason=all", "reason=audit", "reason=low_confidence", "reason=nonsense", "predicted_intent=get_news",
                 "predicted_intent=" + "x" * 1000, "model_version=" + "v" * 1000, "prefer=" + "0" * 64, "prefer=",
                 urlencode({"model_version": "$x$", "predicted_intent": MARKUP, "reason": "all", "prefer": "🚀"})]
# Odd JSON bodies for the labeling screen's POST views (decide, skip, undo).
ODD_BODIES = [b"", b"not json", b"[]", b"null", b"\xff\xfe", b"[" * 5000, b'{"lead_id": 1e999}', b'"a string"',
              {}, {"lead_id": "1"}, {"lead_id": True}, {"lead_id": -1}, {"lead_id": 2**63}, {"lead_id": 10**30},
              {"lead_id": 1, "item_ids": [1, 10**30, -1]}, {"lead_id": 10**30, "item_ids": [10**30], "decision": "accept"},
              {"lead_id": 1, "item_ids": list(range(1, 5000)), "decision": "dismiss"}, {"lead_id": 1, "item_ids": "1"},
              {"lead_id": 1, "item_ids": [1], "decision": "label", "intent": MARKUP, "take_out": ["x" * 1000]},
              {"decision_id": 10**30}, {"decision_id": None}, {"group_key": "g" * 1000}, {"group_key": ["x"]}]


@pytest.fixture(autouse=True)
def quiet_request_log():
    """The crawl asks for hundreds of pages that answer 4xx on purpose; their log lines are noise
    (every 5xx is listed, with its traceback, by the failing assertion)."""
    logger = logging.getLogger("django.request")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def traceback_tail(response) -> str:
    """The exception, the last two frames, and the last frame of the project's own code."""
    exc_info = getattr(response, "exc_info", None)
    if not exc_info:
        return "(no exception recorded)"
    exc_type, exc, tb = exc_info
    frames = traceback.extract_tb(tb)
    ours = [frame for frame in frames if "site-packages" not in frame.filename]
    shown = ([ours[-1]] if ours and ours[-1] not in frames[-2:] else []) + frames[-2:]
    lines = [f"{frame.filename}:{frame.lineno} in {frame.name}: {frame.line}" for frame in shown]
    lines += "".join(traceback.format_exception_only(exc_type, exc)).strip().splitlines()
    return "\n      ".join(lines)


class Crawler:
    """GETs and POSTs as one logged-in user; every answer of 500 or more is recorded, not raised."""

    def __init__(self, user: User, level: int) -> None:
        self.level = level
        self.client = Client(raise_request_exception=False)
        self.client.force_login(user)
        self.failures: list[str] = []
        self.requests = 0
        self.seen: set[tuple[str, str, bytes | None]] = set()

    def request(self, method: str, url: str, body: bytes | None = None, *, again: bool = False):
        """The answer, or None for a request made before (unless ``again``: one whose answer changes)."""
        if (method, url, body) in self.seen and not again:
            return None
        self.seen.add((method, url, body))
        self.requests += 1
        # A savepoint per request: a database error inside one (a 500) must not break the test's
        # transaction (PostgreSQL refuses every later query of an aborted transaction).
        with transaction.atomic():
            if method == "GET":
                response = self.client.get(url)
            else:
                response = self.client.post(url, body, content_type="application/json")
            if response.status_code >= 500:
                transaction.set_rollback(True)
        if response.status_code >= 500:
            self.failures.append(f"{method} {url[:300]} -> {response.status_code}\n      {traceback_tail(response)}")
        elif response.get("Content-Type", "").startswith("text/html") and MARKUP.encode() in response.content:
            self.failures.append(f"{method} {url[:300]} -> {response.status_code}: the markup of a stored string is not escaped")
        return response

    def get(self, url: str, *, again: bool = False):
        return self.request("GET", url, again=again)

    def post_json(self, url: str, body, *, again: bool = False):
        return self.request("POST", url, body if isinstance(body, bytes) else json.dumps(body).encode(), again=again)


def sample_pks(model, limit: int) -> list:
    """Up to ``limit`` objects (the first and the last ones), and the first of each status."""
    manager = model._default_manager.order_by("pk")
    pks = list(manager.values_list("pk", flat=True))
    chosen = pks if len(pks) <= limit else pks[: limit // 2] + pks[len(pks) - (limit - limit // 2):]
    if any(field.name == "status" for field in model._meta.fields):
        chosen += [manager.filter(status=status).values_list("pk", flat=True).first() for status in
                   manager.order_by().values_list("status", flat=True).distinct()]
    return sorted(set(chosen) - {None}, key=pks.index)


def changelist_queries(crawler: Crawler, model, model_admin, response) -> list[str]:
    """Each filter choice, every filter at once, a few searches, the date hierarchy's drill-down to
    the first and the last day; at ODD also each column's ordering, odd pages, searches and dates.
    At DATA, only the project's models: the others hold none of the edge families' data."""
    ours = model._meta.app_label in PROJECT_APPS
    if crawler.level == DATA and not ours:
        return []
    cl = response.context["cl"]
    specs = [(spec, list(spec.choices(cl))) for spec in cl.filter_specs]
    queries: list[str] = []
    for _, choices in specs:
        strings = [choice["query_string"] for choice in choices]
        if crawler.level == DATA and len(strings) > FILTER_CHOICES:
            strings = strings[: FILTER_CHOICES // 2] + strings[-FILTER_CHOICES // 2:]
        queries += strings
    combined = {}  # every filter's last choice (often "All") at once
    for _, choices in specs:
        for pair in (choices[-1]["query_string"].lstrip("?").split("&") if choices else []):
            key, _, value = pair.partition("=")
            if value:
                combined[key] = value
    if combined:
        queries.append("?" + "&".join(f"{k}={v}" for k, v in combined.items()))
    if crawler.level == ODD:  # an ordering's SQL is the same whatever the rows hold
        queries += [f"?o=-{column}" for column in range(len(cl.list_display))]
    if model_admin.search_fields:
        queries += ["?" + urlencode({"q": text}) for text in (SEARCHES if crawler.level == ODD and ours else DATA_SEARCHES)]
    if model_admin.date_hierarchy:
        field = model_admin.date_hierarchy
        moments = model._default_manager.values_list(field, flat=True).order_by(field)
        for moment in {moments.first(), moments.last()} - {None}:
            queries += [f"?{field}__year={moment.year}", f"?{field}__year={moment.year}&{field}__month={moment.month}",
                        f"?{field}__year={moment.year}&{field}__month={moment.month}&{field}__day={moment.day}"]
        if crawler.level == ODD:
            queries += [f"?{field}__year=0", f"?{field}__year=x", f"?{field}__year=2024&{field}__month=13",
                        f"?{field}__year=9999", f"?{field}__year=9999&{field}__month=12", f"?{field}__year=9999&{field}__month=12&{field}__day=31",
                        f"?{field}__year=1&{field}__month=1&{field}__day=1"]
    if crawler.level == ODD:
        queries += ODD_PAGES if ours else ODD_PAGES[:1] + ODD_PAGES[-3:]
    return queries


def crawl_model_admin(crawler: Crawler, model, model_admin) -> None:
    """Every URL of the ModelAdmin's get_urls(): the changelist (with its queries), the views without
    an id (add, import, launch, Traffic, the labeling screen), and each view of sampled objects."""
    info = f"{model._meta.app_label}_{model._meta.model_name}"
    changelist = reverse(f"admin:{info}_changelist")
    ours = model._meta.app_label in PROJECT_APPS
    pks = sample_pks(model, 2 if crawler.level == ROLE or not ours else 12)
    ids = [*pks, *(MISSING_IDS if ours else MISSING_IDS[-2:-1])] if crawler.level == ODD else pks
    for pattern in model_admin.get_urls():
        assert isinstance(pattern, URLPattern), pattern
        name = (pattern.name or "").removeprefix(f"{info}_")
        route = str(pattern.pattern)
        if name == "changelist":
            response = crawler.get(changelist)
            if crawler.level >= DATA and response is not None and response.status_code == 200:
                for query in changelist_queries(crawler, model, model_admin, response):
                    crawler.get(changelist + query)
        elif name.endswith("simple_history"):  # a page per historical record
            for pk in pks[:2]:
                for history_id in model.history.filter(id=pk).values_list("history_id", flat=True)[:2]:
                    crawler.get(reverse(f"admin:{pattern.name}", args=[quote(str(pk)), history_id]))
            if crawler.level == ODD:
                for pk, history_id in [(999999999, 1), (10**30, 10**30), ("abc", 1), (pks[0] if pks else 1, "abc")]:
                    crawler.get(changelist + f"{quote(str(pk))}/history/{quote(str(history_id))}/")
        elif not pattern.pattern.converters:  # add/, import/, launch/, traffic/, label/...
            url = reverse(f"admin:{pattern.name}")
            crawler.get(url)
            if name in ("review_label", "review_label_next") and crawler.level >= DATA:
                for query in LABEL_QUERIES if crawler.level == ODD else LABEL_QUERIES[:2]:
                    crawler.get(f"{url}?{query}")
            if crawler.level == ODD and name in ("review_label_decide", "review_label_skip", "review_label_undo"):
                for body in ODD_BODIES:
                    crawler.post_json(url, body)
        else:  # an object's views: change (every sampled object), its history, delete, custom views, the bare id
            for index, pk in enumerate(ids):
                if "<int:" in route and not str(pk).isdigit():
                    continue  # the URL resolver refuses it: no view to crawl
                if name != "change" and pk in pks and index > 0 and "<int:" not in route:
                    continue  # an object's other pages look the same for every object: the first one's
                crawler.get(changelist + route.replace("<path:object_id>", quote(str(pk))).replace("<int:run_id>", str(pk))
                            .replace("<id>", quote(str(pk))))
    if crawler.level >= DATA and model is ReviewItem:
        label_screen_decisions(crawler)


def label_screen_decisions(crawler: Crawler) -> None:
    """Decisions from the labeling screen, each undone (twice: the second is refused), at the end of
    the review queue's crawl: they change the data."""
    next_group, decide, undo = reverse("admin:review_label_next"), reverse("admin:review_label_decide"), reverse("admin:review_label_undo")
    for decision in ["accept", "label", "out_of_scope", "dismiss"]:
        answer = crawler.get(next_group + "?reason=all", again=True)  # the next group, each time
        group = answer.json().get("group") if answer is not None and answer.status_code == 200 else None
        if not group:
            return
        item_ids = [pk for member in group["members"] for pk in member.get("item_ids", [])] or [group["lead_id"]]
        body = {"lead_id": group["lead_id"], "item_ids": item_ids, "decision": decision, "intent": group["predicted_intent"],
                "take_out": [member["text_key"] for member in group["members"][1:2]]}
        response = crawler.post_json(decide, body, again=True)
        if response is not None and response.status_code == 200:
            for _ in range(2):
                crawler.post_json(undo, {"decision_id": response.json()["decision_id"]}, again=True)
        crawler.post_json(reverse("admin:review_label_skip"), {"group_key": group["group_key"]}, again=True)


def crawl(crawler: Crawler) -> None:
    """The whole admin: the site's own pages, every registered ModelAdmin's, the API's docs."""
    site = admin.site
    crawler.get(reverse("admin:index"))
    for app_label in sorted({model._meta.app_label for model in site._registry}):
        crawler.get(reverse("admin:app_list", args=[app_label]))
    for name in ("password_change", "password_change_done", "jsi18n", "login"):
        crawler.get(reverse(f"admin:{name}"))
    # The autocomplete behind the utterance list's intent column (and any autocomplete_fields).
    terms = {ROLE: [""], DATA: ["", MARKUP], ODD: ["", *SEARCHES]}[crawler.level]
    for model, model_admin in site._registry.items():
        for field_name in [*model_admin.get_autocomplete_fields(None), *(["intent"] if model is Utterance else [])]:
            for term in terms:
                crawler.get(reverse("admin:autocomplete") + "?" + urlencode(
                    {"app_label": model._meta.app_label, "model_name": model._meta.model_name, "field_name": field_name, "term": term}))
    if crawler.level == ODD:
        crawler.get(reverse("admin:autocomplete") + "?app_label=labeling&model_name=utterance&field_name=intent&page=999")
        crawler.get(reverse("admin:autocomplete") + "?app_label=nope&model_name=x&field_name=y")
        crawler.get("/admin/no-such-app/")
        crawler.get("/admin/labeling/no-such-model/")
        for model in (Utterance, TrainingRun):
            for pk in [*sample_pks(model, 1), 10**30]:
                crawler.get(reverse("admin:view_on_site", args=[ContentType.objects.get_for_model(model).pk, pk]))
    for model, model_admin in site._registry.items():
        crawl_model_admin(crawler, model, model_admin)
    if crawler.level != DATA:  # the API's schema and its two documentation pages (the same for any data)
        for url in [reverse("schema"), reverse("schema") + "?format=json", reverse("api-docs"), reverse("api-redoc")]:
            crawler.get(url)


def assert_no_failures(crawler: Crawler, what: str) -> None:
    assert crawler.requests > 0
    assert not crawler.failures, (f"{len(crawler.failures)} of {crawler.requests} requests failed ({what}):\n  "
                                  + "\n  ".join(crawler.failures))


@pytest.mark.parametrize("dataset", [name for name in DATASETS if name != "single"])
def test_admin_crawl(db, dataset):
    """A superuser crawls every page of the admin over one edge family, with the data's filters,
    orderings and searches (``single``'s crawl is test_admin_crawl_odd_requests's)."""
    DATASETS[dataset](make_user(ML_ENGINEERS))
    crawler = Crawler(make_user(None, superuser=True), DATA)
    crawl(crawler)
    assert_no_failures(crawler, f"dataset {dataset}")


def test_admin_crawl_odd_requests(db):
    """What no data makes: ids of no object, odd page numbers, orderings, searches, query strings
    and JSON bodies, on one object of everything."""
    build_single(make_user(ML_ENGINEERS))
    crawler = Crawler(make_user(None, superuser=True), ODD)
    crawl(crawler)
    assert_no_failures(crawler, "odd requests")


def test_admin_crawl_nul_characters(db):
    """A NUL character in every parameter the admin reads: each changelist filter's and the search,
    the autocomplete's term, the labeling screen's query strings and JSON strings. SQLite stores
    NUL; PostgreSQL refuses it in any text it is sent, a query's parameters too."""
    build_single(make_user(ML_ENGINEERS))
    crawler = Crawler(make_user(None, superuser=True), ODD)
    for model, model_admin in admin.site._registry.items():
        changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = crawler.get(changelist)
        if response is not None and response.status_code == 200:
            cl = response.context["cl"]
            for name in {"q", *(name for spec in cl.filter_specs for name in spec.expected_parameters())}:
                crawler.get(changelist + "?" + urlencode({name: "nul\x00"}))
    crawler.get(reverse("admin:autocomplete") + "?" + urlencode(
        {"app_label": "labeling", "model_name": "utterance", "field_name": "intent", "term": "nul\x00"}))
    for name in ("review_label", "review_label_next"):
        for key in ("predicted_intent", "model_version", "reason", "prefer"):
            crawler.get(reverse(f"admin:{name}") + "?" + urlencode({key: "nul\x00"}))
    lead = ReviewItem.objects.order_by("id").first()
    for name, body in [("review_label_skip", {"group_key": "nul\x00"}),
                       ("review_label_decide", {"lead_id": lead.pk, "item_ids": [lead.pk], "decision": "label", "intent": "nul\x00"}),
                       ("review_label_decide", {"lead_id": lead.pk, "item_ids": [lead.pk], "decision": "dismiss", "take_out": ["nul\x00"]}),
                       ("review_label_decide", {"lead_id": lead.pk, "item_ids": [lead.pk], "decision": "nul\x00"})]:
        crawler.post_json(reverse(f"admin:{name}"), body)
    assert_no_failures(crawler, "NUL characters")


@pytest.mark.parametrize("role", [LABELERS, ML_ENGINEERS])
def test_admin_crawl_as_role(db, role):
    """A Labeler and an ML engineer visit every page once, over every edge family at once: the
    templates that depend on a role's permissions (the index, the run page's promote and cancel
    forms, the queue's and the list's links) render for each of them."""
    author = make_user(ML_ENGINEERS)
    for name, build in DATASETS.items():
        build(author)
    crawler = Crawler(make_user(role), ROLE)
    crawl(crawler)
    assert_no_failures(crawler, f"every dataset, as {role}")


# ---------------------------------------------------------------------------------------------------
# Random traffic and audit figures: the pages that show them (the index's audit table, the Traffic
# page, the queue and the labeling screen), for figures at and near the edges.
# ---------------------------------------------------------------------------------------------------

count = st.one_of(st.sampled_from([0, 1, MAX_COUNT]), st.integers(0, MAX_COUNT))
days_ago = st.one_of(st.sampled_from([0, 1, 29, 30, None]), st.integers(-1, 40))  # None: the last day there is
figures = st.fixed_dictionaries({
    "version": st.one_of(st.sampled_from(["abc123def456", "$", "$x^$", "$5 and $6", "{}", "%s", "مرحبا", "v" * MODEL_VERSION_LENGTH]),
                         odd_version),
    "predictions": count, "low_share": st.sampled_from([0.0, 1.0, 0.5]) | st.floats(0, 1),
    "right": st.integers(0, 3), "wrong": st.integers(0, 3), "pending": st.integers(0, 2),
    "days_ago": days_ago, "predicted_days_ago": days_ago,
})


@settings(max_examples=4, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@example(data=[{"version": "abc123def456", "predictions": 5, "low_share": 0.5, "right": 1, "wrong": 1, "pending": 0,
                "days_ago": 0, "predicted_days_ago": 0}])  # a mixed audit: the page as everyone sees it
@example(data=[{"version": "$x^$", "predictions": MAX_COUNT, "low_share": 1.0, "right": 3, "wrong": 0, "pending": 0,
                "days_ago": 0, "predicted_days_ago": 0},
               {"version": "%s", "predictions": 0, "low_share": 0.0, "right": 0, "wrong": 2, "pending": 1,
                "days_ago": 1, "predicted_days_ago": 1},
               {"version": "abc123def456", "predictions": 1, "low_share": 0.0, "right": 1, "wrong": 1, "pending": 0,
                "days_ago": None, "predicted_days_ago": None}])  # accuracy exactly 1 and 0, shares 1 and 0, a $ version, year 9999
@given(data=st.lists(figures, min_size=1, max_size=3))
def test_traffic_figures_render(db, data):
    with transaction.atomic():  # each example on the same database as it was
        user = make_user(None, superuser=True)
        today = timezone.now().date()
        for row in data:
            day = LAST_DAY if row["days_ago"] is None else today - datetime.timedelta(days=row["days_ago"])
            traffic(row["version"], predictions=row["predictions"], low_confidence=round(row["predictions"] * row["low_share"]), day=day)
            moment = LAST_MOMENT if row["predicted_days_ago"] is None else timezone.now() - datetime.timedelta(days=row["predicted_days_ago"])
            audit(row["version"], right=row["right"], wrong=row["wrong"], pending=row["pending"], user=user, time=iso(moment))
        crawler = Crawler(user, ROLE)
        for url in [reverse("admin:index"), reverse("admin:review_traffic"), reverse("admin:review_reviewitem_changelist"),
                    reverse("admin:review_reviewitem_changelist") + "?reason=audit&status=all",
                    reverse("admin:review_label_next") + "?reason=all"]:
            crawler.get(url)
        transaction.set_rollback(True)
    assert_no_failures(crawler, f"traffic figures {data!r}"[:2000])
