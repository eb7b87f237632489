"""The review queue: ingestion (API, SQS, replay), the admin queue and its actions."""

import io
import json
import uuid
from datetime import datetime, timezone

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.management import call_command
from django.db import connection

from webapp.labeling.models import Intent, Utterance
from webapp.review import services
from webapp.review.services import drain
from webapp.review.models import ReviewItem
from tests.webapp_fixtures import review_event, traffic_sample

URL = "/api/v1/review-items/"
QUEUE = "/admin/review/reviewitem/"


@pytest.fixture
def database_refuses(db):
    """The database itself refuses to store a review item with this text (a real trigger, so the
    error comes from the database as any DataError would); the test's rollback removes it."""

    def refuse(text: str) -> None:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                cursor.execute("CREATE FUNCTION refuse_review_text() RETURNS trigger AS $$ BEGIN "
                               f"IF NEW.text = '{text}' THEN RAISE EXCEPTION 'refused by the test'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql")
                cursor.execute("CREATE TRIGGER refuse_review_text BEFORE INSERT ON review_reviewitem "
                               "FOR EACH ROW EXECUTE FUNCTION refuse_review_text()")
            else:
                cursor.execute(f"CREATE TRIGGER refuse_review_text BEFORE INSERT ON review_reviewitem WHEN NEW.text = '{text}' "
                               "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")

    return refuse


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


def test_the_in_scope_score_is_kept_when_the_model_sends_one(api_for, reporter, client, labeler):
    api = api_for(reporter)
    assert api.post(URL, review_event("an odd question", rule="in_scope_score", in_scope_score=0.02, threshold=0.07), format="json").status_code == 201
    assert api.post(URL, review_event("from an older release"), format="json").status_code == 201
    assert {text: (rule, score) for text, rule, score in ReviewItem.objects.values_list("text", "rule", "in_scope_score")} == {
        "an odd question": ("in_scope_score", 0.02), "from an older release": ("confidence", None)}
    client.force_login(labeler)
    page = client.get(QUEUE).content.decode()
    assert "In scope" in page and "0.020" in page


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
        ({"in_scope_score": 1.5}, "in_scope_score", "from 0 to 1"),
        ({"rule": "vibes"}, "rule", "must be one of"),
        ({"time": "yesterday"}, "time", "ISO 8601"),
        ({"time": "2026-02-30T00:00:00+00:00"}, "time", "no such date"),
        ({"time": "2026-11-30T25:00:00"}, "time", "no such date"),
        ({"time": "9999-12-31T23:00:00-05:00"}, "time", "no such date"),
        ({"time": 1764496800}, "time", "ISO 8601"),
        ({"threshold": 10**400}, "threshold", "from 0 to 1"),
        ({"model_version": "abc\x00def"}, "model_version", "without control characters"),
        ({"model_version": "v" * 65}, "model_version", "1 to 64 characters"),
        ({"distribution": [{"intent": "n" * 101, "probability": 0.4}]}, "distribution", "at most 100"),
        ({"distribution": [{"intent": "get\x00news", "probability": 0.4}]}, "distribution[0].intent", "without control characters"),
        ({"distribution": [{"intent": f"i{n}", "probability": 0.0001} for n in range(10_001)]}, "distribution", "at most 10000"),
    ],
)
def test_a_malformed_event_is_400_with_a_reason(api_for, reporter, settings, change, field, reason):
    settings.REVIEW_MAX_BODY_BYTES = 10**7  # the body limit would answer first for the 10,001 entries
    response = api_for(reporter).post(URL, review_event(**change), format="json")
    assert response.status_code == 400 and reason in " ".join(response.json()[field])
    assert not ReviewItem.objects.exists()


def test_a_time_without_an_offset_is_refused_and_one_with_an_offset_is_kept_in_utc(api_for, reporter):
    response = api_for(reporter).post(URL, review_event(time="2026-11-30T03:00:00"), format="json")
    assert response.status_code == 400 and "without a UTC offset" in " ".join(response.json()["time"])
    response = api_for(reporter).post(URL, review_event(time="2026-11-30T04:00:00+01:00"), format="json")
    assert response.status_code == 201, response.content
    assert ReviewItem.objects.get().predicted_at == datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc)


def test_only_the_stored_top_three_are_checked_in_full(api_for, reporter):
    # An intent name outside the top three is not stored, so its content does not matter.
    event = review_event(distribution=[{"intent": "get_news", "probability": 0.41}, {"intent": "b", "probability": 0.3},
                                       {"intent": "c", "probability": 0.2}, {"intent": "odd\x00name", "probability": 0.09}])
    response = api_for(reporter).post(URL, event, format="json")
    assert response.status_code == 201, response.content
    assert [t["intent"] for t in ReviewItem.objects.get().top_intents] == ["get_news", "b", "c"]


def test_a_body_over_the_limit_is_413_before_it_is_read(api_for, reporter, settings):
    settings.REVIEW_MAX_BODY_BYTES = 2048
    event = review_event(text="a long one " * 200)  # within the text limit, over the body limit
    response = api_for(reporter).post(URL, event, format="json")
    assert response.status_code == 413 and "at most 2048" in response.json()["detail"]
    assert api_for(reporter).post(URL, review_event(), format="json").status_code == 201


def test_json_nested_too_deeply_is_400(api_for, reporter):
    response = api_for(reporter).post(URL, "[" * 5000 + "]" * 5000, content_type="application/json")
    assert response.status_code == 400 and "nested too deeply" in response.json()["detail"]


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


@pytest.mark.parametrize("action, extra", [("accept_prediction", {}), ("label_as", {"apply": "1", "intent": "get_news"}),
                                           ("mark_out_of_scope", {}), ("dismiss", {})])
def test_an_action_on_a_row_decided_meanwhile_changes_nothing_it_did_not_show(client, labeler, intents, action, extra):
    # A row listed as pending and dismissed by someone else before the action; a new copy of its
    # text has arrived since, in the same group. Nobody chose that one: it stays pending.
    row, _ = services.review_item_ingest(event=review_event("play me a song", intent="play_music"))
    services.review_item_dismiss(item=row, user=None)
    newcomer, _ = services.review_item_ingest(event=review_event("play me a song", intent="play_music"))
    ReviewItem.objects.filter(pk=newcomer.pk).update(group_key=row.group_key)
    client.force_login(labeler)
    if extra:
        extra = {**extra, "intent": Intent.objects.get(name=extra["intent"]).pk}
    # Listed under "All" (or "Dismissed"), where resolved rows can be selected.
    response = client.post(QUEUE + "?status=all", {"action": action, ACTION_CHECKBOX_NAME: [row.pk], **extra}, follow=True)
    assert "was decided already (dismissed); nothing was changed" in response.content.decode()
    newcomer.refresh_from_db()
    assert newcomer.status == ReviewItem.Status.PENDING and not Utterance.objects.exists()


def test_an_action_leaves_a_group_another_reviewer_holds_on_the_screen(client, labeler, ml_engineer, intents):
    row, _ = services.review_item_ingest(event=review_event("play me a song", intent="play_music"))
    services.review_group_lease(user=labeler, filters=services.QueueFilters(reason=None))
    client.force_login(ml_engineer)
    response = act(client, "dismiss", [row])
    assert any(f"{labeler.get_username()} is deciding" in str(m) for m in response.context["messages"])
    row.refresh_from_db()
    assert row.status == ReviewItem.Status.PENDING


def test_label_as_goes_through_a_page_to_choose_the_intent(client, labeler, intents):
    item, _ = services.review_item_ingest(event=review_event("will it snow", intent="get_news"))
    client.force_login(labeler)
    page = act(client, "label_as", [item])
    assert "Choose the intent" in page.content.decode()
    act(client, "label_as", [item], apply="1", intent=intents["get_weather"].pk)
    assert Utterance.objects.get(text="will it snow").intent == intents["get_weather"]


def test_out_of_scope_keeps_the_text_as_an_oos_example(client, labeler, intents):
    oos = Intent.objects.get(name="oos")  # made by a migration, not by the action
    item, _ = services.review_item_ingest(event=review_event("what is the meaning of life"))
    client.force_login(labeler)
    act(client, "mark_out_of_scope", [item])
    item.refresh_from_db()
    assert item.status == "out_of_scope" and item.utterance.intent == oos


def test_out_of_scope_never_creates_an_intent(client, labeler, intents):
    Intent.objects.filter(name="oos").delete()  # an ML engineer removed it
    item, _ = services.review_item_ingest(event=review_event("what is the meaning of life"))
    client.force_login(labeler)
    body = act(client, "mark_out_of_scope", [item]).content.decode()
    assert "There is no &#x27;oos&#x27; intent for out-of-scope texts; an ML engineer can create it." in body
    item.refresh_from_db()
    assert item.status == "pending" and not Intent.objects.filter(name="oos").exists() and not Utterance.objects.exists()


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


def undelivered(event, prefix: str = "2026-11-26T10:00:00Z\t1\tWARNING\t") -> str:
    return prefix + json.dumps({"event": "review_event_undelivered", "reason": "down", "review_event": event})


def test_replay_ingests_undelivered_events_once(db, tmp_path):
    lost = [review_event("first lost"), review_event("second lost")]
    lines = ["START RequestId: 1 Version: $LATEST",
             *(undelivered(e) for e in lost),
             json.dumps({"event": "review_event_undelivered", "review_event": {"text": "broken"}}),
             json.dumps({"event": "classify", "latency_ms": 3})]
    log = tmp_path / "serving.log"
    log.write_text("\n".join(lines) + "\n")
    call_command("replay_review_events", str(log))
    assert sorted(ReviewItem.objects.values_list("text", flat=True)) == ["first lost", "second lost"]
    report = services.review_events_replay(lines=log.read_text().splitlines())
    assert (report.events, report.created, report.duplicates, report.malformed) == (3, 0, 2, 1)


def test_replay_counts_a_bad_line_and_goes_on(db, tmp_path, database_refuses):
    database_refuses("the database says no")
    lines = [undelivered(review_event("before")),
             "WARNING " + '{"event": "review_event_undelivered", "review_event": {"text": ',  # cut off: not JSON
             undelivered(review_event("bad time", time="2026-02-30T00:00:00+00:00")),
             undelivered(review_event("the database says no")),
             undelivered(review_event("after"))]
    log = tmp_path / "serving.log"
    log.write_text("\n".join(lines) + "\n")
    out = io.StringIO()
    call_command("replay_review_events", str(log), stdout=out)
    assert sorted(ReviewItem.objects.values_list("text", flat=True)) == ["after", "before"]
    assert "2 stored (review items, traffic reports and samples), 0 already present, 2 malformed, 1 refused by the database" in out.getvalue()


def queue_counts(sqs, url) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_the_drain_task_moves_sqs_messages_into_the_queue(db, review_queue):
    from webapp.review.tasks import review_queue_drain_task

    sqs, queue_url, _ = review_queue("review-events")
    event = review_event("drained text")
    for body in (json.dumps(event), json.dumps(event), json.dumps(event)):
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    counts = review_queue_drain_task()
    assert counts == {"received": 3, "created": 1, "duplicates": 2, "malformed": 0, "failed": 0, "samples_pruned": 0}
    assert ReviewItem.objects.get().text == "drained text"
    assert queue_counts(sqs, queue_url) == (0, 0)


def test_the_drain_stores_traffic_samples_beside_review_items(db, review_queue):
    from webapp.review.models import TrafficSample

    sqs, queue_url, _ = review_queue("review-and-samples")
    sample = traffic_sample(text="play  some jazz please")
    for body in (json.dumps(sample), json.dumps(review_event("unsure text")), json.dumps(sample)):
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    counts = services.review_queue_drain()
    assert counts == {"received": 3, "created": 2, "duplicates": 1, "malformed": 0, "failed": 0}
    assert list(TrafficSample.objects.values_list("text", "predicted_intent")) == [("play some jazz please", "play_music")]
    assert ReviewItem.objects.get().text == "unsure text"  # a sample never becomes a review item
    assert queue_counts(sqs, queue_url) == (0, 0)


def test_a_bad_message_does_not_stop_the_batch_and_is_left_for_the_dead_letter_queue(db, review_queue, database_refuses):
    # Visible again at once: without its memory of what it has seen, the drain would loop on the bad ones.
    sqs, queue_url, dead = review_queue("review-mixed", visibility=0)
    database_refuses("the database says no")
    bodies = [json.dumps(review_event("first good")), "{not json", json.dumps({"text": "no id"}),
              json.dumps(review_event("the database says no")), json.dumps(review_event("second good"))]
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    counts = services.review_queue_drain()
    assert counts == {"received": 5, "created": 2, "duplicates": 0, "malformed": 2, "failed": 1}
    assert sorted(ReviewItem.objects.values_list("text", flat=True)) == ["first good", "second good"]
    # The malformed two are not deleted but hidden (for the redrive policy); the refused one waits for the next drain.
    assert queue_counts(sqs, queue_url) == (1, 2)
    assert queue_counts(sqs, dead) == (0, 0)


# Bodies that once stopped a whole batch: a JSON integer past Python's 4,300-digit conversion
# limit raises a plain ValueError from json.loads, not a JSONDecodeError.
POISON_BODIES = [
    '{"prediction_id": "%s", "threshold": %s}' % (uuid.uuid4(), "9" * 5000),
    "[" + "1" * 4301 + "]",
    '{"type": "traffic", "predictions": ' + "7" * 10_000 + "}",
]


def test_a_poisoned_message_is_dead_lettered_alone_and_the_rest_of_the_batch_is_stored(db, review_queue):
    from webapp.review.tasks import review_queue_drain_task

    sqs, queue_url, dead = review_queue("review-poisoned", visibility=0)
    bodies = [json.dumps(review_event("good before")), *POISON_BODIES, json.dumps(review_event("good after"))]
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    counts = review_queue_drain_task()
    assert counts == {"received": 5, "created": 2, "duplicates": 0, "malformed": 3, "failed": 0, "samples_pruned": 0}
    assert sorted(ReviewItem.objects.values_list("text", flat=True)) == ["good after", "good before"]
    assert queue_counts(sqs, queue_url) == (0, 3)  # the poisoned ones hidden, left for the redrive policy


def test_a_poisoned_log_line_is_counted_alone_and_the_replay_goes_on(db):
    lines = [undelivered(review_event("before")), *("WARNING " + '{"event": "review_event_undelivered", "review_event": ' + body + "}"
                                                    for body in POISON_BODIES),
             undelivered(review_event("after"))]
    report = services.review_events_replay(lines=lines)
    assert (report.events, report.created, report.malformed, report.failed) == (2, 2, 3, 0)
    assert sorted(ReviewItem.objects.values_list("text", flat=True)) == ["after", "before"]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)
SERVING_KEYS = ("type", "prediction_id", "report_id", "text", "distribution", "model_version", "threshold", "time", "day",
                "predictions", "low_confidence", "audited", "intent", "reason", "rule", "in_scope_score")


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=st.one_of(JSON_VALUES, st.dictionaries(st.sampled_from(SERVING_KEYS), JSON_VALUES, max_size=len(SERVING_KEYS)),
                         st.builds(lambda event, changes: {**event, **changes}, st.builds(review_event, text=st.text(max_size=40)),
                                   st.dictionaries(st.sampled_from(SERVING_KEYS), JSON_VALUES, max_size=3))))
def test_any_json_message_is_stored_or_refused_alone_never_raises(db, message):
    # The drain's and the replay's isolation in one property: whatever a message holds, ingesting
    # it ends in one of four outcomes, and nothing escapes to stop the batch.
    assert drain._ingest_one(message, where="generated") in ("created", "duplicates", "malformed", "failed")


def test_a_malformed_message_reaches_the_dead_letter_queue(db, review_queue, monkeypatch):
    sqs, queue_url, dead = review_queue("review-poison", max_receives=2, visibility=0)
    monkeypatch.setattr(drain, "MALFORMED_MESSAGE_HIDE_SECONDS", 0)  # visible again at once, for the next drain
    sqs.send_message(QueueUrl=queue_url, MessageBody="{not json")
    for _ in range(3):  # SQS moves it after its second receive
        services.review_queue_drain()
    assert queue_counts(sqs, queue_url) == (0, 0)
    assert sqs.receive_message(QueueUrl=dead)["Messages"][0]["Body"] == "{not json"


def test_the_drain_is_scheduled(db):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="drain review queue")
    assert schedule.func == "webapp.review.tasks.review_queue_drain_task" and schedule.minutes == 1
