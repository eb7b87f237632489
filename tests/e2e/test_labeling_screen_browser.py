"""The labeling screen in a real browser (Debian's Chromium, Playwright): 30 queue items labeled
with the keyboard only, then the database checked. It also counts keystrokes per label and
saves the README's screenshots (var/test-artifacts/labeling-*.png)."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.test_browser import ARTIFACTS, PASSWORD, browser_page, log_in, pytestmark  # noqa: F401  (fixtures, skip mark)
from tests.webapp_fixtures import make_user
from webapp.labeling import services as labeling
from webapp.labeling.models import Intent, Utterance
from webapp.labeling.roles import LABELERS
from webapp.review import services as review
from webapp.review.models import ReviewDecision, ReviewItem

INTENTS = ["balance", "transfer", "card_lost", "pay_bill", "exchange_rate", "weather", "play_music", "set_alarm", "get_news",
           "translate", "timer", "book_flight"]
# (text, the model's top three, the right answer): the queue shows them in this order (lowest
# confidence first). "oos" is out of scope, "dismiss" is noise; an answer outside the top three
# needs the type-ahead.
PLAN = [
    ("how much money do i have", ("balance", "transfer", "pay_bill"), "balance"),
    ("send 20 dollars to my brother", ("pay_bill", "transfer", "balance"), "transfer"),
    ("i can't find my visa card", ("card_lost", "pay_bill", "balance"), "card_lost"),
    ("what's the weather like in lyon", ("weather", "get_news", "timer"), "weather"),
    ("put on some miles davis", ("play_music", "get_news", "set_alarm"), "play_music"),
    ("wake me at six thirty", ("timer", "set_alarm", "weather"), "set_alarm"),
    ("what's happening in the world", ("get_news", "weather", "play_music"), "get_news"),
    ("how do you say thanks in german", ("translate", "get_news", "exchange_rate"), "translate"),
    ("how many yen is a euro", ("exchange_rate", "translate", "transfer"), "exchange_rate"),
    ("a ticket to rome on friday", ("book_flight", "transfer", "exchange_rate"), "book_flight"),
    ("what is the meaning of life", ("get_news", "translate", "weather"), "oos"),
    ("set a timer for ten minutes", ("set_alarm", "weather", "timer"), "timer"),
    ("pay the electricity bill", ("pay_bill", "transfer", "balance"), "pay_bill"),
    ("asdf qwerty", ("translate", "timer", "get_news"), "dismiss"),
    ("my card was stolen", ("card_lost", "balance", "transfer"), "card_lost"),
    ("forecast for tomorrow", ("weather", "timer", "get_news"), "weather"),
    ("play the new taylor swift album", ("play_music", "get_news", "set_alarm"), "play_music"),
    ("headlines please", ("get_news", "play_music", "weather"), "get_news"),
    ("what's my account balance", ("balance", "pay_bill", "transfer"), "balance"),  # a group of three, below
    ("move money to savings", ("pay_bill", "balance", "exchange_rate"), "transfer"),  # type-ahead
    ("translate good morning to french", ("translate", "book_flight", "get_news"), "translate"),
    ("alarm at 7", ("set_alarm", "timer", "weather"), "set_alarm"),
    ("flights to tokyo next month", ("book_flight", "exchange_rate", "translate"), "book_flight"),
    ("dollar to pound rate", ("exchange_rate", "transfer", "balance"), "exchange_rate"),
    ("is it going to rain", ("weather", "get_news", "timer"), "weather"),
    ("countdown 5 minutes", ("timer", "set_alarm", "weather"), "timer"),
    ("put some jazz on", ("play_music", "set_alarm", "get_news"), "play_music"),
    ("report my card missing", ("card_lost", "transfer", "balance"), "card_lost"),
]
GROUP_COPIES = ["what's my account balance", "whats my account balance please"]  # the group's other two members
WRONG_FIRST = "put on some miles davis"  # labeled wrong with "2", undone with "u", then labeled right


def distribution(top3: tuple[str, str, str], confidence: float) -> list[dict]:
    rest = [name for name in INTENTS if name not in top3]
    second, third = (1 - confidence) * 0.4, (1 - confidence) * 0.3  # below the confidence from 0.3 up
    left = (1 - confidence - second - third) / len(rest)
    return [{"intent": top3[0], "probability": confidence}, {"intent": top3[1], "probability": second},
            {"intent": top3[2], "probability": third}, *({"intent": name, "probability": left} for name in rest)]


def enqueue(text: str, top3, confidence: float) -> ReviewItem:
    event = {"prediction_id": str(uuid.uuid4()), "text": text, "distribution": distribution(top3, confidence),
             "model_version": "abc123def456", "threshold": 0.7, "time": "2026-11-30T09:00:00+00:00"}
    return review.review_item_ingest(event=event)[0]


def test_thirty_queue_items_labeled_with_the_keyboard_only(live_server, browser_page, transactional_db):
    page, base = browser_page, live_server.url
    labeler = make_user(LABELERS)
    labeler.set_password(PASSWORD)
    labeler.save()
    for name in INTENTS:
        labeling.intent_create(name=name)
    Intent.objects.get_or_create(name="oos")  # made by a migration, but a transactional test may have flushed it
    answers = {}
    for rank, (text, top3, truth) in enumerate(PLAN):
        lead = enqueue(text, top3, confidence=0.30 + rank * 0.01)
        answers[text] = (top3, truth)
    # The group: an identical copy joins at ingestion, the near-duplicate as the grouping worker joins it.
    lead = ReviewItem.objects.get(text="what's my account balance")
    enqueue(GROUP_COPIES[0], answers[lead.text][0], 0.65)
    near = enqueue(GROUP_COPIES[1], answers[lead.text][0], 0.66)
    ReviewItem.objects.filter(pk=near.pk).update(group_key=lead.group_key)
    assert ReviewItem.objects.count() == 30

    log_in(page, base, labeler.username)
    page.goto(f"{base}/admin/review/reviewitem/label/")  # no clicks from here on
    page.wait_for_selector("#item-card:not([hidden])")
    assert page.inner_text("#remaining") == "28"  # 30 items, 28 decisions: the group of three is one

    keys_on_top_three, top_three_labels, shown = 0, 0, 0
    undone = False

    def press(key: str) -> None:
        before = page.get_attribute("#item-card", "data-lead-id")
        page.keyboard.press(key)
        page.wait_for_function("(before) => !document.getElementById('item-card').hidden ? "
                               "document.getElementById('item-card').dataset.leadId !== before : true", arg=before)
        page.wait_for_function("() => !document.getElementById('empty').hidden || !document.getElementById('item-card').hidden")

    while not page.is_visible("#empty"):
        text = page.inner_text("#item-text")
        top3, truth = answers[text]
        shown += 1
        if text == "what's my account balance":
            assert page.locator("#members li").count() == 2  # the two distinct texts; the copy is counted "×2"
            assert "×2" in page.inner_text("#members")
            page.screenshot(path=str(ARTIFACTS / "labeling-group.png"))
        if shown == 1:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "labeling-screen.png"))
        if text == WRONG_FIRST and not undone:
            press("2")  # a slip: the second choice, get_news
            assert page.inner_text("#decided") == str(shown)
            press("u")
            assert page.inner_text("#item-text") == WRONG_FIRST and page.inner_text("#decided") == str(shown - 1)
            keys_on_top_three += 2
            undone = True
        if truth in top3:
            press(str(top3.index(truth) + 1))
            keys_on_top_three += 1
            top_three_labels += 1
        elif truth == "oos":
            press("o")
        elif truth == "dismiss":
            press("d")
        else:  # the type-ahead: "/" then a few letters; Enter takes the first match
            page.keyboard.press("/")
            page.keyboard.type("trans")
            page.wait_for_selector("#intent-matches li.active")
            assert page.inner_text("#intent-matches li.active") == "transfer"
            press("Enter")

    assert shown == 28 and page.inner_text("#decided") == "28" and page.inner_text("#remaining") == "0"
    keystrokes_per_label = keys_on_top_three / top_three_labels
    print(f"keystrokes per label (right intent among the top three): {keystrokes_per_label:.3f} "
          f"over {top_three_labels} labels, an undo included")
    assert keystrokes_per_label <= 1.2

    # The database: every item decided once, as the plan says, through the queue's services.
    items = {item.text: item for item in ReviewItem.objects.select_related("utterance__intent")}
    for text, (_, truth) in answers.items():
        item = items[text]
        if truth == "dismiss":
            assert item.status == ReviewItem.Status.DISMISSED and item.utterance is None
        else:
            expected_status = ReviewItem.Status.OUT_OF_SCOPE if truth == "oos" else ReviewItem.Status.LABELED
            assert (item.status, item.utterance.intent.name, item.reviewed_intent) == (expected_status, truth, truth), text
            assert item.utterance.source == Utterance.Source.REVIEW and item.resolved_by == labeler
    group = ReviewItem.objects.filter(text_key__in=[items[t].text_key for t in GROUP_COPIES]) | ReviewItem.objects.filter(pk=lead.pk)
    assert set(group.values_list("status", "utterance__intent__name")) == {(ReviewItem.Status.LABELED, "balance")}
    # Each distinct text of the group is its own utterance; the identical copy is not a second one.
    assert Utterance.objects.filter(intent__name="balance", text__in=GROUP_COPIES).count() == 2
    # 26 labeled texts, the out-of-scope one and the near-duplicate; nothing for the dismissed one.
    assert Utterance.objects.filter(source=Utterance.Source.REVIEW).count() == 28
    # History: one creation per utterance by the labeler, and the undone slip created and deleted.
    slip = Utterance.history.filter(text=WRONG_FIRST).order_by("history_id")
    assert [(h.history_type, h.intent.name if h.intent_id else None) for h in slip] == [("+", "get_news"), ("-", "get_news"), ("+", "play_music")]
    assert set(Utterance.history.filter(source="review").values_list("history_user", flat=True)) == {labeler.pk}
    assert ReviewDecision.objects.filter(user=labeler, undone_at__isnull=True).count() == 28
    assert ReviewDecision.objects.filter(undone_at__isnull=False).count() == 1
    assert not ReviewItem.objects.filter(status=ReviewItem.Status.PENDING).exists()
