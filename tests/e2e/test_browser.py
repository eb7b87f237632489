"""The whole loop in a real browser: headless Chromium (Debian's) driven by Playwright, against a
live Django server and a real qcluster worker. On failure the page's screenshot and HTML are kept."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from webapp.labeling import services as labeling
from webapp.labeling.models import Intent, Utterance
from webapp.labeling.roles import LABELERS, ML_ENGINEERS
from webapp.review import services as review
from webapp.review.models import ReviewItem
from webapp.training.models import TrainingRun
from tests.factories import DEMO_DATA, REPO_ROOT, read_demo_rows
from tests.webapp_fixtures import make_user, review_event

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR", REPO_ROOT / "var" / "test-artifacts"))
PASSWORD = "browser-test-pass-123"

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture
def browser_page(monkeypatch, request):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; the test's ORM calls are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        yield page
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            stem = ARTIFACTS / request.node.name
            page.screenshot(path=f"{stem}.png", full_page=True)
            Path(f"{stem}.html").write_text(page.content())
            print(f"saved {stem}.png and {stem}.html")
        browser.close()


def log_in(page, base: str, username: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#content")


@pytest.mark.parametrize("broker", ["orm"], indirect=True)
def test_the_loop_in_a_browser(live_server, qcluster, broker, browser_page, tiny_base_model, tmp_path, settings):
    from playwright.sync_api import expect

    settings.SERVING_MODEL_URI = str(tmp_path / "serving" / "model.pt")
    page, base = browser_page, live_server.url
    labeler, engineer = make_user(LABELERS), make_user(ML_ENGINEERS)
    for user in (labeler, engineer):
        user.set_password(PASSWORD)
        user.save()
    unlabeled = labeling.utterance_create(text="is there a plumber near the office", intent=None, user=None)
    review.review_item_ingest(event=review_event("play something by the beatles", top=0.45, intent="play_music"))

    # The ML engineer has made the intents (creating intents is an ML engineer's right); a Labeler imports a small file...
    for name in sorted({intent for _, intent in read_demo_rows()}):
        labeling.intent_create(name=name)
    log_in(page, base, labeler.username)
    page.goto(f"{base}/admin/labeling/utterance/import/")
    page.set_input_files("#id_file", str(DEMO_DATA))
    page.click("input[value=Import]")
    expect(page.locator("#import-report h2")).to_have_text("Import finished")
    expect(page.locator("#report-created")).to_have_text("270")

    # ...and labels an utterance with the bulk action.
    page.goto(f"{base}/admin/labeling/utterance/?labeled=no")
    page.check(f"input.action-select[value='{unlabeled.pk}']")
    page.select_option("select[name=action]", "assign_intent")
    page.click("button[name=index]")
    page.select_option("#id_intent", label="get_business_information")
    page.click("input[name=apply]")
    expect(page.locator(".messagelist")).to_contain_text("Labeled 1 utterance(s) as get_business_information")
    assert Utterance.objects.get(pk=unlabeled.pk).intent.name == "get_business_information"

    # An ML engineer launches retraining and watches it reach "succeeded".
    log_in(page, base, engineer.username)
    page.goto(f"{base}/admin/training/trainingrun/launch/")
    page.fill("#id_base_model", tiny_base_model)
    page.fill("#id_epochs", "2")
    page.fill("#id_learning_rate", "0.001")
    page.fill("#id_batch_size", "16")
    page.click("#launch-form input[type=submit]")
    expect(page.locator("#run-progress")).to_be_visible()
    expect(page.locator("#run-status")).to_have_text("succeeded", timeout=240_000)
    run = TrainingRun.objects.get()
    assert run.status == "succeeded"

    # The run page shows the metrics and the confusion matrix; promote it.
    expect(page.locator("#run-metrics")).to_contain_text("macro-F1")
    expect(page.locator("#confusion-matrix")).to_be_visible()
    expect(page.locator("#per-intent tr")).to_have_count(11)
    # No utterance was held out, so the page says so and the gate wants a recorded reason.
    expect(page.locator("#no-heldout")).to_be_visible()
    page.click("#promote-run")
    expect(page.locator(".messagelist")).to_contain_text("has no held-out set")
    page.fill("#id_override_reason", "the first model; a held-out set comes next")
    page.click("#promote-run")
    expect(page.locator(".messagelist")).to_contain_text("is queued")
    # The worker publishes it; the page follows the promotion and shows it live.
    expect(page.locator(".promotion-succeeded")).to_contain_text("gate overridden", timeout=180_000)
    promotion = run.promotions.get()
    assert promotion.status == "succeeded" and Path(promotion.serving_uri).is_file()

    # One item of the low-confidence queue.
    page.goto(f"{base}/admin/review/reviewitem/")
    item = ReviewItem.objects.get()
    page.check(f"input.action-select[value='{item.pk}']")
    page.select_option("select[name=action]", "accept_prediction")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Accepted 1 review item(s)")
    item.refresh_from_db()
    assert item.status == "labeled" and item.utterance.text == "play something by the beatles"

    # Live traffic of the promoted model: serving's traffic reports, and audit items a Labeler decides
    # from the audit list (never mixed into the low-confidence queue). The estimate appears on the
    # index, on the run page beside the held-out figures, and on the Traffic page with its chart.
    today = datetime.now(timezone.utc)
    for day, predictions, unsure in ((today - timedelta(days=1), 400, 60), (today, 250, 30)):
        review.traffic_report_ingest(report={"report_id": str(uuid.uuid4()), "day": day.date().isoformat(), "model_version": run.version,
                                             "predictions": predictions, "low_confidence": unsure, "audited": 4})
    sampled = [review.review_item_ingest(event=review_event(text, top=0.97, intent=intent, reason="audit", model_version=run.version,
                                                             time=today.isoformat()))[0]
               for text, intent in (("play the new album", "play_music"), ("any news today", "get_news"),
                                    ("what's it like outside", "get_weather"), ("book a table for two", "get_news"))]
    Intent.objects.get_or_create(name="oos")  # made by a migration, but an earlier transactional test may have flushed it
    log_in(page, base, labeler.username)
    page.goto(f"{base}/admin/review/reviewitem/")
    expect(page.locator("#result_list tbody tr")).to_have_count(0)  # the audit sample is not in the low-confidence queue
    page.goto(f"{base}/admin/review/reviewitem/?reason=audit")
    expect(page.locator("#result_list tbody tr")).to_have_count(4)
    for item in sampled[:3]:
        page.check(f"input.action-select[value='{item.pk}']")
    page.select_option("select[name=action]", "accept_prediction")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Accepted 3 review item(s)")
    page.check(f"input.action-select[value='{sampled[3].pk}']")
    page.select_option("select[name=action]", "mark_out_of_scope")
    page.click("button[name=index]")
    expect(page.locator(".messagelist")).to_contain_text("Marked out of scope")

    log_in(page, base, engineer.username)
    page.goto(f"{base}/admin/")
    expect(page.locator("#audit-accuracy")).to_contain_text(f"{run.version} (production)")
    expect(page.locator("#audit-accuracy")).to_contain_text("0.750")
    page.goto(f"{base}/admin/training/trainingrun/{run.pk}/change/")
    expect(page.locator("#live-accuracy")).to_contain_text("accuracy 0.750")
    expect(page.locator("#live-accuracy")).to_contain_text("from 4 decided audit items")
    page.goto(f"{base}/admin/review/reviewitem/traffic/")
    expect(page.locator("#traffic-chart")).to_be_visible()
    assert page.locator("#traffic-chart").evaluate("image => image.naturalWidth") > 300  # a real, decoded PNG
    expect(page.locator("#traffic-days tbody tr")).to_have_count(2)
    expect(page.locator("#traffic-days tbody tr").first).to_contain_text("250")
    expect(page.locator("#traffic-days tbody tr").first).to_contain_text("0.750")
    expect(page.locator("#audit-by-version")).to_contain_text(run.version)
