"""The review queue: ingestion (API, SQS, replay), the admin queue and its actions."""

import json

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import call_command

from webapp.labeling.models import Utterance
from webapp.review import services
from webapp.review.models import ReviewItem
from tests.webapp_fixtures import review_event

URL = "/api/v1/review-items/"
QUEUE = "/admin/review/reviewitem/"


@pytest.fixture
def intents(intent_factory):
    return {name: intent_factory(name) for name in ("get_news", "play_music", "get_weather")}


def test_the_service_token_posts_items_and_the_same_event_makes_one(api_for, reporter):
    event = review_event()
    client = api_for(reporter)
    first = client.post(URL, event, format="json")
    assert first.status_code == 201 and first.json()["created"] is True
    for _ in range(2):
        again = client.post(URL, event, format="json")
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    item = ReviewItem.objects.get()
    assert item.predicted_intent == "get_news" and item.confidence == pytest.approx(0.41)
    assert [t["intent"] for t in item.top_intents][0] == "get_news" and len(item.top_intents) == 3
    assert item.margin == pytest.approx(0.41 - item.top_intents[1]["probability"]) and item.status == ReviewItem.Status.PENDING


def test_anonymous_and_ordinary_tokens_cannot_post(api_for, plain_user, labeler, db):
    assert api_for(None).post(URL, review_event(), format="json").status_code == 401
    assert api_for(plain_user).post(URL, review_event(), format="json").status_code == 403
    assert api_for(labeler).post(URL, review_event(), format="json").status_code == 403
    assert not ReviewItem.objects.exists()


def test_the_service_token_can_do_nothing_else(api_for, reporter):
    client = api_for(reporter)
    assert client.get("/api/v1/utterances/").status_code == 403
    assert client.post("/api/v1/training-runs/", {}, format="json").status_code == 403


@pytest.mark.parametrize(
    "change, field, reason",
    [
        ({"prediction_id": "not-a-uuid"}, "prediction_id", "must be a UUID"),
        ({"text": "   "}, "text", "non-empty string"),
        ({"text": "x" * 1001}, "text", "at most 1000"),
        ({"distribution": []}, "distribution", "non-empty list"),
        ({"distribution": [{"intent": "a", "probability": 1.7}]}, "distribution[0].probability", "from 0 to 1"),
        ({"distribution": [{"probability": 0.5}]}, "distribution", "item 0 must be an object"),
        ({"threshold": "high"}, "threshold", "from 0 to 1"),
        ({"time": "yesterday"}, "time", "ISO 8601"),
    ],
)
def test_a_malformed_event_is_400_with_a_reason(api_for, reporter, change, field, reason):
    response = api_for(reporter).post(URL, review_event(**change), format="json")
    assert response.status_code == 400 and reason in " ".join(response.json()[field])


def test_a_missing_field_is_named(api_for, reporter):
    event = review_event()
    del event["model_version"]
    response = api_for(reporter).post(URL, event, format="json")
    assert response.status_code == 400 and "required" in response.json()["model_version"][0]


def test_the_queue_groups_identical_texts_lowest_confidence_first(client, labeler, intents):
    for confidence in (0.5, 0.45):
        services.review_item_ingest(event=review_event("Is it raining?", top=confidence, intent="get_weather"))
    services.review_item_ingest(event=review_event("is it   raining?", top=0.3, intent="get_weather"))
    services.review_item_ingest(event=review_event("tell me something", top=0.2))
    services.review_item_ingest(event=review_event("old model text", top=0.6, model_version="000000000000"))
    client.force_login(labeler)
    response = client.get(QUEUE)
    rows = [(item.text, item.group_size) for item in response.context["cl"].result_list]
    assert rows == [("tell me something", 1), ("Is it raining?", 3), ("old model text", 1)]
    assert "×3" in response.content.decode()
    filtered = client.get(QUEUE + "?predicted_intent__exact=get_weather").context["cl"].result_list
    assert [i.text for i in filtered] == ["Is it raining?"]
    band = client.get(QUEUE + "?confidence=lt30").context["cl"].result_list
    assert [i.text for i in band] == ["tell me something"]
    version = client.get(QUEUE + "?model_version__exact=000000000000").context["cl"].result_list
    assert [i.text for i in version] == ["old model text"]


def act(client, action, items, **extra):
    return client.post(QUEUE, {"action": action, ACTION_CHECKBOX_NAME: [i.pk for i in items], **extra}, follow=True)


def test_a_labeler_accepts_a_prediction_for_the_whole_group(client, labeler, intents):
    first, _ = services.review_item_ingest(event=review_event("play me a song", top=0.5, intent="play_music"))
    services.review_item_ingest(event=review_event("Play me a song", top=0.4, intent="play_music"))
    client.force_login(labeler)
    response = act(client, "accept_prediction", [first])
    assert "Accepted 2 review item(s)" in response.content.decode()
    utterance = Utterance.objects.get(text="play me a song")
    assert utterance.intent.name == "play_music" and utterance.source == "review" and utterance.created_by == labeler
    assert set(ReviewItem.objects.values_list("status", flat=True)) == {"labeled"}
    assert all(item.utterance == utterance and item.resolved_by == labeler for item in ReviewItem.objects.all())
    assert utterance.history.first().history_user == labeler


def test_label_as_goes_through_a_page_to_choose_the_intent(client, labeler, intents):
    item, _ = services.review_item_ingest(event=review_event("will it snow", intent="get_news"))
    client.force_login(labeler)
    page = act(client, "label_as", [item])
    assert "Choose the intent" in page.content.decode()
    act(client, "label_as", [item], apply="1", intent=intents["get_weather"].pk)
    assert Utterance.objects.get(text="will it snow").intent == intents["get_weather"]


def test_out_of_scope_keeps_the_text_as_an_oos_example(client, labeler, intents):
    item, _ = services.review_item_ingest(event=review_event("what is the meaning of life"))
    client.force_login(labeler)
    act(client, "mark_out_of_scope", [item])
    item.refresh_from_db()
    assert item.status == "out_of_scope" and item.utterance.intent.name == "oos"


def test_dismiss_resolves_without_a_label(client, labeler, intents):
    item, _ = services.review_item_ingest(event=review_event("asdfgh"))
    client.force_login(labeler)
    act(client, "dismiss", [item])
    item.refresh_from_db()
    assert item.status == "dismissed" and item.utterance is None and not Utterance.objects.exists()


def test_a_conflicting_label_is_reported_not_merged(client, labeler, intents, utterance_factory):
    utterance_factory("play the news", intents["get_news"])
    item, _ = services.review_item_ingest(event=review_event("Play the news", intent="play_music"))
    client.force_login(labeler)
    body = act(client, "accept_prediction", [item]).content.decode()
    assert "already labeled get_news" in body
    item.refresh_from_db()
    assert item.status == "pending" and Utterance.objects.get().intent == intents["get_news"]


def test_only_labelers_and_engineers_see_the_queue(client, plain_user, reporter, db):
    for user in (plain_user, reporter):
        client.force_login(user)
        assert client.get(QUEUE).status_code == 403


def test_the_admin_index_shows_pending_items(client, labeler, intents):
    services.review_item_ingest(event=review_event("a"))
    services.review_item_ingest(event=review_event("b"))
    client.force_login(labeler)
    body = client.get("/admin/").content.decode()
    assert '<strong id="pending-count">2</strong>' in body and "No model has been promoted yet" in body


def test_replay_ingests_undelivered_events_once(db, tmp_path):
    lost = [review_event("first lost"), review_event("second lost")]
    lines = ["START RequestId: 1 Version: $LATEST",
             *("2026-11-26T10:00:00Z\t1\tWARNING\t" + json.dumps({"event": "review_event_undelivered", "reason": "down", "review_event": e}) for e in lost),
             json.dumps({"event": "review_event_undelivered", "review_event": {"text": "broken"}}),
             json.dumps({"event": "classify", "latency_ms": 3})]
    log = tmp_path / "serving.log"
    log.write_text("\n".join(lines) + "\n")
    call_command("replay_review_events", str(log))
    assert sorted(ReviewItem.objects.values_list("text", flat=True)) == ["first lost", "second lost"]
    report = services.review_events_replay(lines=log.read_text().splitlines())
    assert (report.events, report.created, report.duplicates, report.malformed) == (3, 0, 2, 1)


def test_the_drain_task_moves_sqs_messages_into_the_queue(db, aws, moto_server, settings):
    from webapp.review.tasks import review_queue_drain_task

    sqs = aws("sqs")
    queue_url = sqs.create_queue(QueueName="review-events")["QueueUrl"]
    settings.REVIEW_QUEUE_URL, settings.AWS_SQS_ENDPOINT_URL = queue_url, moto_server
    event = review_event("drained text")
    for body in (json.dumps(event), json.dumps(event), json.dumps(event), "{not json", json.dumps({"text": "no id"})):
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    counts = review_queue_drain_task()
    assert counts == {"received": 5, "created": 1, "duplicates": 2, "malformed": 2}
    assert ReviewItem.objects.get().text == "drained text"
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)


def test_the_drain_is_scheduled(db):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="drain review queue")
    assert schedule.func == "webapp.review.tasks.review_queue_drain_task" and schedule.minutes == 1
