"""The labeling screen: leases, decisions through the queue's services, undo, conflicts, and
near-duplicate grouping by the worker."""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.test import Client
from django.utils import timezone

from tests.webapp_fixtures import make_user, review_event
from webapp.labeling.models import Intent, Utterance
from webapp.labeling.roles import LABELERS
from webapp.review import services
from webapp.review.services import grouping
from webapp.review.models import ReviewDecision, ReviewItem

SCREEN = "/admin/review/reviewitem/label/"


@pytest.fixture
def ingest(db):
    def make(text: str, **kwargs) -> ReviewItem:
        return services.review_item_ingest(event=review_event(text, **kwargs))[0]

    return make


@pytest.fixture
def browser_for():
    def login(user) -> Client:
        client = Client()
        client.force_login(user)
        return client

    return login


def post(client: Client, path: str, body) -> tuple[int, dict]:
    response = client.post(SCREEN + path, json.dumps(body), content_type="application/json")
    return response.status_code, response.json()


def no_filters() -> services.QueueFilters:
    return services.QueueFilters(reason=None)


def shown_ids(lead: ReviewItem) -> list[int]:
    """The item ids the screen shows for the group led by ``lead`` (what a decision carries)."""
    return [item_id for member in services.review_group_view(lead)["members"] for item_id in member["item_ids"]]


def test_identical_texts_join_one_group_at_ingestion(ingest):
    first, second = ingest("What's the news"), ingest("what's  the NEWS")
    other = ingest("play a song")
    assert first.group_key == second.group_key == first.text_key and other.group_key != first.group_key


def test_two_reviewers_never_get_the_same_group(intents, ingest, labeler):
    other = make_user(LABELERS)
    for text in ("one", "two", "two", "three"):
        ingest(text, top=0.3 if text == "two" else 0.5)
    mine = services.review_group_lease(user=labeler, filters=no_filters())
    theirs = services.review_group_lease(user=other, filters=no_filters())
    assert mine.text == "two"  # lowest confidence first
    assert theirs.group_key != mine.group_key
    # Both copies of "two" are leased to the first reviewer, and a new lease by them keeps it.
    assert set(ReviewItem.objects.filter(text="two").values_list("leased_by", flat=True)) == {labeler.pk}
    assert services.review_group_lease(user=labeler, filters=no_filters()).group_key == mine.group_key


def test_an_expired_lease_frees_the_group(intents, ingest, labeler):
    other = make_user(LABELERS)
    ingest("only one")
    lead = services.review_group_lease(user=labeler, filters=no_filters())
    assert services.review_group_lease(user=other, filters=no_filters()) is None
    ReviewItem.objects.filter(pk=lead.pk).update(leased_until=timezone.now() - timezone.timedelta(seconds=1))
    assert services.review_group_lease(user=other, filters=no_filters()).pk == lead.pk


def test_a_decision_on_an_item_someone_resolved_meanwhile_is_refused(intents, ingest, labeler, ml_engineer):
    item = ingest("what is new today")
    lead = services.review_group_lease(user=labeler, filters=no_filters())
    # The lease ran out while the reviewer looked away, and the changelist's action took the item.
    ReviewItem.objects.filter(pk=item.pk).update(leased_until=timezone.now() - timezone.timedelta(seconds=1))
    services.review_item_dismiss(item=item, user=ml_engineer)
    with pytest.raises(services.DecisionConflict, match="already decided"):
        services.review_group_decide(user=labeler, lead_id=lead.pk, item_ids=[lead.pk], decision="accept")
    assert ReviewDecision.objects.count() == 0 and not Utterance.objects.filter(text="what is new today").exists()
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.DISMISSED and item.resolved_by == ml_engineer


def test_a_decision_on_a_group_another_reviewer_holds_is_refused(intents, ingest, labeler):
    other = make_user(LABELERS)
    ingest("what is new today")
    lead = services.review_group_lease(user=other, filters=no_filters())
    with pytest.raises(services.DecisionConflict, match="is deciding this item now"):
        services.review_group_decide(user=labeler, lead_id=lead.pk, item_ids=shown_ids(lead), decision="accept")


def test_label_undo_and_relabel_leave_history_and_no_trace(intents, ingest, labeler):
    ingest("play something by queen", intent="play_music")
    ingest("Play something by Queen", intent="play_music")
    lead = services.review_group_lease(user=labeler, filters=no_filters())
    decision = services.review_group_decide(user=labeler, lead_id=lead.pk, item_ids=shown_ids(lead), decision="accept")
    utterance = Utterance.objects.get(text="play something by queen")
    assert utterance.intent.name == "play_music" and utterance.source == Utterance.Source.REVIEW
    assert set(ReviewItem.objects.values_list("status", flat=True)) == {ReviewItem.Status.LABELED}
    assert len(decision.item_ids) == 2 and decision.created_utterance_ids == [utterance.pk]

    services.review_decision_undo(user=labeler, decision_id=decision.pk)
    assert not Utterance.objects.filter(pk=utterance.pk).exists()
    assert [h.history_type for h in Utterance.history.filter(id=utterance.pk).order_by("history_id")] == ["+", "-"]
    assert set(ReviewItem.objects.values_list("status", "resolved_by", "utterance")) == {(ReviewItem.Status.PENDING, None, None)}
    with pytest.raises(services.DecisionConflict, match="undone already"):
        services.review_decision_undo(user=labeler, decision_id=decision.pk)

    again = services.review_group_lease(user=labeler, filters=no_filters())
    services.review_group_decide(user=labeler, lead_id=again.pk, item_ids=shown_ids(again), decision="label", intent_name="get_news")
    assert Utterance.objects.get(text="play something by queen").intent.name == "get_news"


def test_undo_of_a_label_on_an_unlabeled_utterance_unlabels_it(intents, ingest, labeler, utterance_factory):
    unlabeled = utterance_factory("weather in paris", None)
    ingest("weather in paris", intent="get_weather")
    lead = services.review_group_lease(user=labeler, filters=no_filters())
    decision = services.review_group_decide(user=labeler, lead_id=lead.pk, item_ids=shown_ids(lead), decision="accept")
    unlabeled.refresh_from_db()
    assert unlabeled.intent.name == "get_weather" and decision.labeled_utterance_ids == [unlabeled.pk]
    services.review_decision_undo(user=labeler, decision_id=decision.pk)
    unlabeled.refresh_from_db()
    assert unlabeled.intent is None


def test_undo_is_refused_when_someone_changed_the_items_since(intents, ingest, labeler, ml_engineer):
    item = ingest("news please")
    decision = services.review_group_decide(user=labeler, lead_id=item.pk, item_ids=shown_ids(item), decision="dismiss")
    ReviewItem.objects.filter(pk=item.pk).update(resolved_by=ml_engineer)
    with pytest.raises(services.DecisionConflict, match="changed since"):
        services.review_decision_undo(user=labeler, decision_id=decision.pk)
    other = make_user(LABELERS)
    with pytest.raises(services.DecisionConflict, match="no such decision"):
        services.review_decision_undo(user=other, decision_id=decision.pk)


def test_a_near_duplicate_group_labels_each_text_and_a_taken_out_member_stays_apart(intents, ingest, labeler):
    first = ingest("what's my balance", intent="get_news")
    second = ingest("whats my balance please", intent="get_news")
    odd = ingest("play my balance song", intent="get_news")
    ReviewItem.objects.filter(pk__in=[second.pk, odd.pk]).update(group_key=first.group_key)  # as the worker groups them
    lead = services.review_group_lease(user=labeler, filters=no_filters())
    view = services.review_group_view(lead)
    assert view["size"] == 3 and [m["text"] for m in view["members"]] == ["what's my balance", "whats my balance please", "play my balance song"]

    decision = services.review_group_decide(user=labeler, lead_id=lead.pk, item_ids=shown_ids(lead), decision="accept", take_out=[odd.text_key])
    assert sorted(Utterance.objects.filter(intent__name="get_news").values_list("text", flat=True)) == ["what's my balance", "whats my balance please"]
    assert len(decision.item_ids) == 2 and len(decision.created_utterance_ids) == 2
    odd.refresh_from_db()
    assert odd.status == ReviewItem.Status.PENDING and odd.group_key == odd.text_key and odd.kept_apart and odd.grouped


def test_the_changelist_counts_the_group(intents, ingest, browser_for, ml_engineer):
    first = ingest("what's my balance")
    for text in ("whats my balance please", "what's my balance"):
        ReviewItem.objects.filter(pk=ingest(text).pk).update(group_key=first.group_key)
    page = browser_for(ml_engineer).get("/admin/review/reviewitem/")
    assert page.status_code == 200
    rows = [row for row in page.content.decode().split("<tr") if "result_list" not in row and "balance" in row]
    assert len(rows) == 1 and "×3" in rows[0]


def test_the_screen_serves_one_group_and_takes_decisions(intents, ingest, browser_for, labeler):
    ingest("what is new", top=0.3)
    ingest("play jazz", intent="play_music", top=0.4)
    client = browser_for(labeler)
    page = client.get(SCREEN)
    assert page.status_code == 200 and b"Label the queue" in page.content and b'id="intent-names"' in page.content
    first = client.get(SCREEN + "next/").json()
    assert first["remaining"] == 2 and first["group"]["text"] == "what is new"
    assert [e["intent"] for e in first["group"]["top_intents"]][0] == "get_news" and first["group"]["top_intents"][0]["known"]
    shown = [i for m in first["group"]["members"] for i in m["item_ids"]]
    status, body = post(client, "decide/", {"lead_id": first["group"]["lead_id"], "item_ids": shown, "decision": "out_of_scope"})
    assert status == 200 and body["status"] == "out_of_scope" and body["intent"] == "oos"
    assert Utterance.objects.get(text="what is new").intent.name == "oos"
    status, body = post(client, "decide/", {"lead_id": first["group"]["lead_id"], "item_ids": shown, "decision": "out_of_scope"})
    assert status == 409 and "already decided" in body["error"]
    second = client.get(SCREEN + "next/").json()
    assert second["remaining"] == 1 and second["group"]["text"] == "play jazz"
    assert post(client, "skip/", {"group_key": second["group"]["group_key"]}) == (200, {"skipped": second["group"]["group_key"]})
    assert client.get(SCREEN + "next/").json() == {"group": None, "remaining": 1}
    assert client.get(SCREEN + "next/?predicted_intent=get_news").json()["remaining"] == 0


@pytest.mark.parametrize("body, field", [
    ({"decision": "accept"}, "lead_id"),
    ({"lead_id": "1", "decision": "accept"}, "lead_id"),
    ({"lead_id": 1, "decision": "approve"}, "decision"),
    ({"lead_id": 1, "decision": "label", "intent": "no_such_intent"}, "intent"),
    ({"lead_id": 1, "decision": "accept", "take_out": "abc"}, "take_out"),
    ({"lead_id": 1, "decision": "accept", "item_ids": None}, "item_ids"),
    ({"lead_id": 1, "decision": "accept", "item_ids": []}, "item_ids"),
    ({"lead_id": 1, "decision": "accept", "item_ids": ["1"]}, "item_ids"),
    ({"lead_id": 1, "decision": "accept", "item_ids": [True]}, "item_ids"),
    ([1, 2], "body"),
])
def test_bad_decisions_are_400s_with_a_reason(intents, ingest, browser_for, labeler, body, field):
    item = ingest("what is new")
    if isinstance(body, dict) and body.get("lead_id") == 1:
        body = {"item_ids": [item.pk], **body, "lead_id": item.pk}
    status, answer = post(browser_for(labeler), "decide/", body)
    assert status == 400 and field in answer["fields"] and answer["error"]
    assert ReviewItem.objects.get().status == ReviewItem.Status.PENDING


def test_the_screen_needs_the_change_permission(ingest, browser_for, plain_user, labeler):
    ingest("what is new")
    client = browser_for(plain_user)
    assert client.get(SCREEN).status_code == 403 and client.get(SCREEN + "next/").status_code == 403
    assert client.post(SCREEN + "decide/", "{}", content_type="application/json").status_code == 403
    assert Client().get(SCREEN).status_code == 302  # to the login page


def test_the_worker_groups_near_duplicates_of_one_model_version(trained, labeler):
    run = trained()
    version = run.version
    texts = ["what's the weather in paris", "what is the weather in paris", "play some jazz music", "what's the weather in paris"]
    items = [services.review_item_ingest(event=review_event(t, model_version=version))[0] for t in texts]
    foreign = services.review_item_ingest(event=review_event("what is the weather in paris today", model_version="0123456789ab"))[0]
    counts = services.review_items_group(similarity=0.97)
    assert counts["embedded"] == 4 and counts["not_embeddable"] == 1
    for item in [*items, foreign]:
        item.refresh_from_db()
    assert all(item.grouped for item in [*items, foreign]) and foreign.embedding is None
    vectors = [np.frombuffer(bytes(item.embedding), dtype=np.float32) for item in items]
    assert all(abs(np.linalg.norm(v) - 1) < 1e-4 for v in vectors)
    similarity = float(vectors[0] @ vectors[1])
    # Joined exactly when the two texts' cosine similarity reaches the threshold.
    assert (items[1].group_key == items[0].group_key) == (similarity >= 0.97)
    assert items[3].group_key == items[0].group_key and foreign.group_key == foreign.text_key
    # A later near-duplicate joins the existing group; everything is grouped once.
    late = services.review_item_ingest(event=review_event("what's the weather in Paris?", model_version=version))[0]
    services.review_items_group(similarity=0.5)
    late.refresh_from_db()
    assert late.group_key == items[0].group_key
    assert services.review_items_group() == {"embedded": 0, "joined": 0, "not_embeddable": 0}


def test_a_decision_applies_to_the_items_shown_and_one_grouped_in_since_stays_pending(intents, ingest, labeler):
    lead = ingest("what's my balance", intent="get_news")
    services.review_group_lease(user=labeler, filters=no_filters())
    shown = shown_ids(lead)
    late = ingest("whats my balance now", intent="get_news")
    ReviewItem.objects.filter(pk=late.pk).update(group_key=lead.group_key)  # the worker grouped it after the screen showed the group
    decision = services.review_group_decide(user=labeler, lead_id=lead.pk, item_ids=shown, decision="accept")
    assert decision.item_ids == [lead.pk]
    late.refresh_from_db()
    assert late.status == ReviewItem.Status.PENDING and not Utterance.objects.filter(text="whats my balance now").exists()


def test_an_item_shown_of_another_group_or_leased_by_another_reviewer_is_never_decided(intents, ingest, labeler):
    other = make_user(LABELERS)
    lead = ingest("first text")
    theirs = ingest("their text")
    services.review_group_lease(user=other, filters=no_filters())  # the lowest confidence first: both tie, the first id
    mine = services.review_group_lease(user=labeler, filters=no_filters())
    assert {mine.pk, lead.pk, theirs.pk} == {lead.pk, theirs.pk}
    # Their item is forged into the request and even moved into this group: it stays theirs.
    held = theirs if mine.pk == lead.pk else lead
    ReviewItem.objects.filter(pk=held.pk).update(group_key=mine.group_key)
    decision = services.review_group_decide(user=labeler, lead_id=mine.pk, item_ids=[mine.pk, held.pk], decision="dismiss")
    assert decision.item_ids == [mine.pk]
    held.refresh_from_db()
    assert held.status == ReviewItem.Status.PENDING and held.leased_by == other


@pytest.mark.parametrize("leased", [True, False])
def test_grouping_never_moves_a_leased_item(intents, ingest, labeler, leased):
    leader = ingest("what's my balance", model_version="v1")
    vector = np.ones(4, dtype=np.float32) / 2
    ReviewItem.objects.filter(pk=leader.pk).update(embedding=vector.tobytes(), grouped=True)
    fresh = ingest("whats my balance please", model_version="v1")
    if leased:  # a reviewer holds its group (identical texts) before the worker embeds it
        ReviewItem.objects.filter(pk=fresh.pk).update(leased_by=labeler, leased_until=timezone.now() + timezone.timedelta(minutes=5))
    grouping._join_groups("v1", [fresh], np.array([vector]), 0.9)
    fresh.refresh_from_db()
    assert (fresh.group_key == leader.group_key) is not leased


def test_take_out_is_one_update_however_many_texts(intents, ingest, labeler, django_assert_max_num_queries):
    lead = ingest("the lead text")
    others = [ingest(f"another text {i}") for i in range(300)]
    ReviewItem.objects.filter(pk__in=[o.pk for o in others]).update(group_key=lead.group_key)
    with django_assert_max_num_queries(2):
        moved = services.review_group_take_out(item=lead, text_keys=[o.text_key for o in others] + ["not-in-the-group"] * 50)
    assert moved == 300 and set(ReviewItem.objects.filter(pk__in=[o.pk for o in others]).values_list("kept_apart", flat=True)) == {True}


@pytest.mark.parametrize("change", ["text", "held_out", "intent", "delete"])
def test_undo_is_refused_when_someone_changed_a_labeled_text_since(intents, ingest, labeler, ml_engineer, change):
    from webapp.labeling import services as labeling

    lead = ingest("play something by queen", intent="play_music")
    decision = services.review_group_decide(user=labeler, lead_id=lead.pk, item_ids=shown_ids(lead), decision="accept")
    utterance = Utterance.objects.get(text="play something by queen")
    if change == "text":
        labeling.utterance_update(utterance=utterance, user=ml_engineer, text="play something by queen please")
    elif change == "held_out":
        labeling.utterances_set_held_out(utterances=Utterance.objects.filter(pk=utterance.pk), held_out=True, user=ml_engineer)
    elif change == "intent":
        labeling.utterance_update(utterance=utterance, user=ml_engineer, intent=intents["get_news"])
    else:
        labeling.utterance_delete(utterance=utterance, user=ml_engineer)
    with pytest.raises(services.DecisionConflict, match="edited, held out or deleted"):
        services.review_decision_undo(user=labeler, decision_id=decision.pk)
    lead.refresh_from_db()
    assert lead.status == ReviewItem.Status.LABELED
    if change != "delete":
        assert Utterance.objects.filter(pk=utterance.pk).exists()
