"""What a newcomer hit in the admin's layout, checked in a real browser: the index's live-accuracy
table keeps its headers on one line, and the Traffic page is linked from the index and from the
review queue's sidebar."""

from __future__ import annotations

import pytest

from tests.e2e.test_browser import PASSWORD, browser_page, log_in, pytestmark  # noqa: F401  (fixtures, skip mark)
from tests.webapp_fixtures import make_user, review_event
from webapp.labeling import services as labeling
from webapp.labeling.roles import ML_ENGINEERS
from webapp.review import services as review


@pytest.fixture
def engineer_with_audit(transactional_db):
    engineer = make_user(ML_ENGINEERS)
    engineer.set_password(PASSWORD)
    engineer.save()
    labeling.intent_create(name="get_news")
    for version in ("abc123def456", "0123456789ab"):
        item, _ = review.review_item_ingest(event=review_event("what is new", reason="audit", model_version=version))
        review.review_item_accept(item=item, user=engineer)
        review.review_item_ingest(event=review_event("what is new today", reason="audit", model_version=version))
    return engineer


def test_the_live_accuracy_headers_stay_on_one_line(live_server, browser_page, engineer_with_audit):
    page = browser_page
    page.set_viewport_size({"width": 1024, "height": 800})  # a laptop's window: the index's column is at its narrowest
    log_in(page, live_server.url, engineer_with_audit.username)
    page.goto(f"{live_server.url}/admin/")
    headers = page.locator("#audit-accuracy thead th")
    assert headers.count() == 5
    line = page.evaluate("parseFloat(getComputedStyle(document.querySelector('#audit-accuracy th')).lineHeight) || 20")
    for index in range(headers.count()):
        box = headers.nth(index).bounding_box()
        assert box["height"] < 1.6 * line, f"header {headers.nth(index).inner_text()!r} wraps: {box}"


@pytest.mark.parametrize("start, link", [("/admin/", "#traffic-link a"), ("/admin/review/reviewitem/", "#sidebar-traffic-link")])
def test_the_traffic_page_is_one_click_away(live_server, browser_page, engineer_with_audit, start, link):
    page = browser_page
    log_in(page, live_server.url, engineer_with_audit.username)
    page.goto(f"{live_server.url}{start}")
    page.click(link)
    page.wait_for_selector("#traffic-days, #no-traffic")
    assert page.url.endswith("/admin/review/reviewitem/traffic/")
