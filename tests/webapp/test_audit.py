"""Audit items and traffic reports: ingestion, the unbiased accuracy estimate, the queue's order
and the Traffic page."""

import datetime
import json
import uuid
from datetime import date

import numpy as np
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.utils import timezone
from hypothesis import given
from hypothesis import strategies as st

from mlcore.metrics import wilson_interval
from mlcore.review_strategy import review_order
from webapp.labeling.models import Intent
from webapp.review import selectors, services
from webapp.review.models import ReviewItem, TrafficReport
from tests.webapp_fixtures import review_event, traffic_sample

TRAFFIC_URL = "/api/v1/traffic-reports/"
QUEUE = "/admin/review/reviewitem/"


@pytest.fixture
def intents(intent_factory):
    return {name: intent_factory(name) for name in ("get_news", "play_music", "get_weather", "set_reminder")}


def traffic_report(**overrides) -> dict:
    report = {"type": "traffic", "report_id": str(uuid.uuid4()), "day": "2026-11-29", "model_version": "abc123def456",
              "predictions": 120, "low_confidence": 15, "audited": 2, "time": "2026-11-29T10:00:00.000+00:00"}
    report.update(overrides)
    return report


def ingest(text: str, *, reason: str = "audit", version: str = "abc123def456", intent: str = "get_news", top: float = 0.9,
           time: str = "2026-11-29T10:00:00+00:00") -> ReviewItem:
    item, _ = services.review_item_ingest(event=review_event(text, reason=reason, model_version=version, intent=intent, top=top, time=time))
    return item


def test_a_traffic_report_is_stored_once(api_for, reporter):
    report = traffic_report()
    client = api_for(reporter)
    first = client.post(TRAFFIC_URL, report, format="json")
    assert first.status_code == 201 and first.json()["created"] is True
    again = client.post(TRAFFIC_URL, report, format="json")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    stored = TrafficReport.objects.get()
    assert (stored.day, stored.predictions, stored.low_confidence, stored.audited) == (date(2026, 11, 29), 120, 15, 2)


def test_only_the_service_token_posts_traffic(api_for, labeler, db):
    assert api_for(None).post(TRAFFIC_URL, traffic_report(), format="json").status_code == 401
    assert api_for(labeler).post(TRAFFIC_URL, traffic_report(), format="json").status_code == 403


@pytest.mark.parametrize(
    "change, field, reason",
    [
        ({"report_id": "nope"}, "report_id", "must be a UUID"),
        ({"day": "2026-02-30"}, "day", "YYYY-MM-DD"),
        ({"day": "yesterday"}, "day", "YYYY-MM-DD"),
        ({"predictions": -1}, "predictions", "whole number"),
        ({"predictions": 1.5}, "predictions", "whole number"),
        ({"predictions": True}, "predictions", "whole number"),
        ({"low_confidence": 121}, "low_confidence", "cannot exceed predictions"),
        ({"audited": 10**12}, "audited", "whole number"),
        ({"model_version": ""}, "model_version", "1 to 64 characters"),
    ],
)
def test_a_malformed_traffic_report_is_400_with_a_reason(api_for, reporter, change, field, reason):
    response = api_for(reporter).post(TRAFFIC_URL, traffic_report(**change), format="json")
    assert response.status_code == 400 and reason in " ".join(response.json()[field])
    assert not TrafficReport.objects.exists()


def test_review_events_carry_their_reason(api_for, reporter):
    client = api_for(reporter)
    assert client.post("/api/v1/review-items/", review_event("sampled", reason="audit"), format="json").status_code == 201
    assert client.post("/api/v1/review-items/", review_event("older serving release"), format="json").status_code == 201
    bad = client.post("/api/v1/review-items/", review_event("odd", reason="curiosity"), format="json")
    assert bad.status_code == 400 and "must be one of" in bad.json()["reason"][0]
    assert dict(ReviewItem.objects.values_list("text", "reason")) == {"sampled": "audit", "older serving release": "low_confidence"}


def test_replay_and_the_sqs_drain_take_traffic_reports_too(db, tmp_path):
    report = traffic_report()
    line = json.dumps({"event": "review_event_undelivered", "reason": "down", "review_event": report})
    for _ in range(2):
        services.review_events_replay(lines=[line])
    assert TrafficReport.objects.get().report_id == uuid.UUID(report["report_id"])


@pytest.fixture
def audited_version(intents, labeler):
    """Version v1: 10 decided audit items, 8 right (accepted), 1 labeled otherwise, 1 out of scope;
    one dismissed and one pending (no decision). Also 6 low-confidence items of v1, all wrong."""
    right = [ingest(f"audit right {i}") for i in range(8)]
    relabeled, out_of_scope = ingest("audit relabeled"), ingest("audit out of scope")
    dismissed, _pending = ingest("audit dismissed"), ingest("audit pending")
    for item in right:
        services.review_item_accept(item=item, user=labeler)
    services.review_item_label(item=relabeled, intent=intents["play_music"], user=labeler)
    services.review_item_out_of_scope(item=out_of_scope, user=labeler)
    services.review_item_dismiss(item=dismissed, user=labeler)
    for i in range(6):
        unsure = ingest(f"unsure {i}", reason="low_confidence", top=0.3)
        services.review_item_label(item=unsure, intent=intents["get_weather"], user=labeler)
    return "abc123def456"


def test_the_estimate_counts_decided_audit_items_only(audited_version):
    estimate = selectors.audit_estimate(model_version=audited_version)
    assert (estimate.reviewed, estimate.correct, estimate.pending) == (10, 8, 1)
    assert estimate.accuracy == pytest.approx(0.8)
    # The Wilson interval of 8 in 10 at 95%, by hand: centre (0.8 + z²/20) / (1 + z²/10), z = 1.96.
    assert estimate.interval == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert selectors.audit_estimate(model_version="never-served").reviewed == 0


def test_a_low_confidence_decision_on_a_different_text_never_moves_the_estimate(audited_version, intents, labeler):
    before = selectors.audit_estimate(model_version=audited_version)
    for i in range(5):
        services.review_item_accept(item=ingest(f"another unsure {i}", reason="low_confidence", top=0.35), user=labeler)
    assert selectors.audit_estimate(model_version=audited_version) == before


def test_wilson_on_known_cases():
    assert wilson_interval(0, 0) is None
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_the_index_and_the_traffic_page_show_the_estimate(client, ml_engineer, audited_version):
    TrafficReport.objects.create(report_id=uuid.uuid4(), day=date(2026, 11, 29), model_version=audited_version,
                                 predictions=1000, low_confidence=110, audited=12)
    client.force_login(ml_engineer)
    index = client.get("/admin/").content.decode()
    assert 'id="audit-accuracy"' in index and "0.800" in index and "0.490 – 0.943" in index
    page = client.get("/admin/review/reviewitem/traffic/")
    assert page.status_code == 200
    day = next(d for d in page.context["days"] if d.model_version == audited_version)
    assert (day.day, day.predictions, day.low_confidence_share, day.audit.reviewed, day.audit.correct) == (date(2026, 11, 29), 1000, 0.11, 10, 8)
    html = page.content.decode()
    assert 'id="traffic-chart" src="data:image/png;base64,' in html and "0.800 (0.490 – 0.943)" in html


def test_the_traffic_page_needs_the_view_permission(client, plain_user):
    client.force_login(plain_user)
    assert client.get("/admin/review/reviewitem/traffic/").status_code in (302, 403)


def test_audit_items_are_listed_apart(client, labeler, intents):
    ingest("sampled at random", reason="audit")
    ingest("below the threshold", reason="low_confidence", top=0.3)
    client.force_login(labeler)
    default = [i.text for i in client.get(QUEUE).context["cl"].result_list]
    audit = [i.text for i in client.get(QUEUE + "?reason=audit").context["cl"].result_list]
    assert default == ["below the threshold"] and audit == ["sampled at random"]
    assert sorted(i.text for i in client.get(QUEUE + "?reason=all").context["cl"].result_list) == ["below the threshold", "sampled at random"]


@pytest.mark.parametrize("strategy", ["balanced", "confidence", "margin"])
def test_the_queue_is_in_the_strategy_order_the_benchmark_measured(client, labeler, intents, settings, strategy):
    settings.REVIEW_STRATEGY = strategy
    rng = np.random.default_rng(3)
    names = list(intents)
    items = [ingest(f"unsure text {i}", reason="low_confidence", intent=names[int(rng.integers(0, 3))] if i % 5 else names[3],
                    top=float(np.round(rng.uniform(0.2, 0.6), 3))) for i in range(40)]
    expected = review_order(confidence=[i.confidence for i in items], margin=[i.margin for i in items],
                            predicted=[i.predicted_intent for i in items], strategy=strategy)
    client.force_login(labeler)
    page = client.get(QUEUE)
    assert [i.pk for i in page.context["cl"].result_list] == [items[k].pk for k in expected]
    assert f"REVIEW_STRATEGY={strategy}" in page.content.decode()


def test_accepting_a_group_records_the_decided_intent(labeler, intents):
    first = ingest("same words", reason="low_confidence", top=0.3)
    audit_copy = ingest("Same  words", reason="audit")
    services.review_item_label(item=first, intent=intents["get_weather"], user=labeler)
    audit_copy.refresh_from_db()
    assert (audit_copy.status, audit_copy.reviewed_intent) == ("labeled", "get_weather")


def test_the_admin_accept_action_on_an_audit_item_counts_as_right(client, labeler, intents):
    item = ingest("sampled and right")
    client.force_login(labeler)
    client.post(QUEUE + "?reason=audit", {"action": "accept_prediction", ACTION_CHECKBOX_NAME: [item.pk]})
    assert selectors.audit_estimate(model_version=item.model_version).correct == 1
    assert Intent.objects.get(name="get_news").utterances.filter(text="sampled and right").exists()


@given(trials=st.integers(min_value=1, max_value=100_000), data=st.data())
def test_the_wilson_interval_always_holds_the_observed_share(trials, data):
    # At exactly 0 and 100% the bound used to land a rounding error past the share, and the
    # Traffic page's error bars (share minus bound) went negative: a 500.
    successes = data.draw(st.sampled_from([0, trials, *data.draw(st.lists(st.integers(0, trials), max_size=3))]))
    low, high = wilson_interval(successes, trials)
    assert 0.0 <= low <= successes / trials <= high <= 1.0
    assert (low == 0.0) == (successes == 0) and (high == 1.0) == (successes == trials)


@pytest.mark.parametrize("right", [True, False], ids=["all-right", "all-wrong"])
@pytest.mark.parametrize("size", [1, 3, 7, 48])
def test_the_traffic_page_renders_at_exactly_0_and_100_percent(client, ml_engineer, intents, labeler, right, size):
    for i in range(size):
        item = ingest(f"audited {i}", reason="audit", time=f"{timezone.now().date().isoformat()}T10:00:00+00:00")
        if right:
            services.review_item_accept(item=item, user=labeler)
        else:
            services.review_item_label(item=item, intent=intents["play_music"], user=labeler)
    client.force_login(ml_engineer)
    page = client.get("/admin/review/reviewitem/traffic/")
    assert page.status_code == 200 and 'id="traffic-chart"' in page.content.decode()
    assert page.context["days"][0].audit.accuracy == (1.0 if right else 0.0)


@pytest.mark.parametrize("version", ["$x$", "$", "cost $5 and $6", r"\frac{1}{2}$", "%s {} {0} <script>x</script>", "نموذج ✨"])
def test_the_traffic_page_shows_any_model_version_as_written(client, ml_engineer, version):
    report = traffic_report(model_version=version, day=timezone.now().date().isoformat())
    services.traffic_report_ingest(report=report)
    client.force_login(ml_engineer)
    page = client.get("/admin/review/reviewitem/traffic/")
    assert page.status_code == 200 and page.context["days"][0].model_version == version


@pytest.mark.parametrize("ahead", [datetime.timedelta(days=2), datetime.timedelta(days=365 * 7000)])
def test_a_time_or_day_from_the_future_is_refused(api_for, reporter, ahead):
    future = timezone.now() + ahead
    response = api_for(reporter).post(TRAFFIC_URL, traffic_report(day=future.date().isoformat()), format="json")
    assert response.status_code == 400 and "future" in response.json()["day"][0]
    event = review_event(time=future.isoformat())
    with pytest.raises(ValidationError, match="future"):
        services.review_item_ingest(event=event)
    with pytest.raises(ValidationError, match="future"):
        services.traffic_sample_ingest(sample=traffic_sample(time=future.isoformat()))
    # A clock a few hours ahead (another zone's midnight, a container's skew) is still taken.
    services.traffic_report_ingest(report=traffic_report(day=(timezone.now() + datetime.timedelta(hours=20)).date().isoformat()))


def test_far_future_rows_already_stored_do_not_break_the_traffic_page(client, ml_engineer):
    TrafficReport.objects.create(report_id=uuid.uuid4(), day=date(9999, 12, 31), model_version="v", predictions=1, low_confidence=1, audited=0)
    TrafficReport.objects.create(report_id=uuid.uuid4(), day=timezone.now().date(), model_version="v", predictions=2, low_confidence=0, audited=0)
    client.force_login(ml_engineer)
    page = client.get("/admin/review/reviewitem/traffic/")
    assert page.status_code == 200 and [d.day for d in page.context["days"]] == [timezone.now().date()]


def test_the_run_page_shows_its_versions_live_accuracy(trained, client, ml_engineer, labeler):
    run = trained()  # on the demo data: get_news and play_music are among its intents
    for i, right in enumerate([True, True, True, False]):
        item = ingest(f"audited text {i}", reason="audit", version=run.version)
        if right:
            services.review_item_accept(item=item, user=labeler)
        else:
            services.review_item_label(item=item, intent=Intent.objects.get(name="play_music"), user=labeler)
    client.force_login(ml_engineer)
    page = client.get(f"/admin/training/trainingrun/{run.pk}/change/").content.decode()
    assert 'id="live-accuracy"' in page and "accuracy <strong>0.750</strong>" in page and "from 4 decided audit items" in page
