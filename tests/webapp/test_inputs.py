"""Every way a text or an intent comes in is held to the same rules (issue 11).

Texts: control characters (NUL included, which PostgreSQL cannot store) are removed, whitespace
ones become a space, whitespace collapses, by ``services.clean_text``, whichever way the text
arrives: the admin's form, an import, the API, or review ingestion by HTTP, SQS or a log replay.
Intents: only a user with ``labeling.add_intent`` (an ML engineer) creates one, in every way in.
Run these on PostgreSQL too (DATABASE_URL): NUL is what breaks there.
"""

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError

from webapp.labeling import services
from webapp.labeling.models import Intent, Utterance
from webapp.review import services as review
from webapp.review.models import ReviewItem
from tests.factories import write_csv, write_jsonl
from tests.webapp_fixtures import review_event

# A NUL, a bell, an escape, DEL and a C1 control vanish; a tab and a newline become spaces.
DIRTY = "  play\x00 some\tjazz\x07\x1b\x7f\x85 \n\x9b now "
CLEAN = "play some jazz now"
IMPORT = "/admin/labeling/utterance/import/"


@pytest.fixture
def music(intent_factory):
    return intent_factory("play_music")


def test_clean_text_is_the_one_rule():
    assert services.clean_text(DIRTY) == CLEAN
    assert services.clean_text("a\ud800b") == "ab"  # a lone surrogate (JSON can carry one) cannot be stored either
    assert services.clean_text("line one\r\nline two") == "line one line two"
    for empty in ("\x00\x01", " \t\n "):
        with pytest.raises(services.ValidationError, match="The text is empty"):
            services.clean_text(empty)
    # The length counts what is stored: control characters do not push a text over the limit.
    assert len(services.clean_text("x" * 1000 + "\x00" * 50)) == 1000


def test_the_admin_form_cleans_the_text(client, labeler, music):
    client.force_login(labeler)
    response = client.post("/admin/labeling/utterance/add/", {"text": DIRTY, "intent": music.pk, "source": "manual"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Utterance.objects.get().text == CLEAN


def test_an_import_cleans_the_text(db, tmp_path, music):
    report = services.utterances_import(path=write_csv(tmp_path / "d.csv", [(DIRTY, "play_music")]), user=None)
    assert report.written and Utterance.objects.get().text == CLEAN
    # The same text again, dirty another way, in JSONL: a duplicate, not a second utterance.
    again = services.utterances_import(path=write_jsonl(tmp_path / "d.jsonl", [("play some\x00 jazz\r\nnow", "play_music")]), user=None)
    assert again.duplicates == 1 and Utterance.objects.count() == 1


def test_the_api_cleans_the_text(api_for, labeler, music):
    client = api_for(labeler)
    created = client.post("/api/v1/utterances/", {"text": DIRTY, "intent": "play_music"}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["text"] == CLEAN
    changed = client.patch(f"/api/v1/utterances/{created.json()['id']}/", {"text": "stop\x00 the\tmusic"}, format="json")
    assert changed.status_code == 200 and changed.json()["text"] == "stop the music"
    # Cleaned first, then compared: the dirty form of an existing text is a duplicate.
    duplicate = client.post("/api/v1/utterances/", {"text": "STOP the \x00music"}, format="json")
    assert duplicate.status_code == 400 and "already exists" in duplicate.json()["text"][0]
    nothing = client.post("/api/v1/utterances/", {"text": "\x00\x1b"}, format="json")
    assert nothing.status_code == 400 and nothing.json()["text"] == ["The text is empty."]


def test_review_ingestion_by_http_cleans_the_text(api_for, reporter):
    response = api_for(reporter).post("/api/v1/review-items/", review_event(DIRTY), format="json")
    assert response.status_code == 201, response.content
    assert ReviewItem.objects.get().text == CLEAN


def test_review_ingestion_by_sqs_cleans_the_text(db, aws, moto_server, settings):
    sqs = aws("sqs")
    settings.REVIEW_QUEUE_URL = sqs.create_queue(QueueName="review-inputs")["QueueUrl"]
    settings.AWS_SQS_ENDPOINT_URL = moto_server
    sqs.send_message(QueueUrl=settings.REVIEW_QUEUE_URL, MessageBody=json.dumps(review_event(DIRTY)))
    assert review.review_queue_drain()["created"] == 1
    assert ReviewItem.objects.get().text == CLEAN


def test_review_ingestion_by_replay_cleans_the_text(db):
    line = json.dumps({"event": "review_event_undelivered", "review_event": review_event(DIRTY)})
    assert review.review_events_replay(lines=[line]).created == 1
    assert ReviewItem.objects.get().text == CLEAN


def test_a_reviewed_text_labels_the_same_utterance_as_its_clean_form(client, labeler, music, utterance_factory):
    existing = utterance_factory(CLEAN, music)
    item, _ = review.review_item_ingest(event=review_event(DIRTY, intent="play_music"))
    assert len(review.review_item_accept(item=item, user=labeler)) == 1
    assert Utterance.objects.get() == existing


def test_an_intent_name_over_the_column_length_is_a_row_error(db, tmp_path):
    path = write_csv(tmp_path / "d.csv", [("fine", "ok"), ("too long a name", "n" * 101), ("nul in a name", "get\x00news")])
    report = services.utterances_import(path=path, user=None)
    assert not report.written and report.error_count == 2
    assert report.errors[0].startswith("row 2 (line 3): The intent name has 101 characters; at most 100")
    assert report.errors[1].startswith("row 3 (line 4): 'get\\x00news' is not a valid intent name")
    assert not Intent.objects.filter(name__in=["ok", "n" * 101]).exists()


# Intents are an ML engineer's to create: the admin, the API, the import and the review actions agree.

def test_a_labeler_cannot_create_an_intent_in_the_admin(client, labeler, ml_engineer):
    client.force_login(labeler)
    assert client.get("/admin/labeling/intent/add/").status_code == 403
    assert client.post("/admin/labeling/intent/add/", {"name": "get_weather", "is_active": "on"}).status_code == 403
    client.force_login(ml_engineer)
    assert client.post("/admin/labeling/intent/add/", {"name": "get_weather", "is_active": "on"}).status_code == 302
    assert Intent.objects.filter(name="get_weather").exists()


def test_a_labeler_cannot_create_an_intent_through_the_api(api_for, labeler, ml_engineer, db):
    assert api_for(labeler).post("/api/v1/intents/", {"name": "get_weather"}, format="json").status_code == 403
    # Naming an unknown intent on an utterance does not create it either.
    response = api_for(labeler).post("/api/v1/utterances/", {"text": "rain today?", "intent": "get_weather"}, format="json")
    assert response.status_code == 400 and "does not exist" in response.json()["intent"][0]
    assert not Intent.objects.filter(name="get_weather").exists()


def test_a_labelers_import_with_an_unknown_intent_writes_nothing(client, labeler, music):
    client.force_login(labeler)
    upload = SimpleUploadedFile("new.csv", b"text,intent\nplay jazz,play_music\nrain today?,get_weather\nsnow today?,get_weather\n")
    response = client.post(IMPORT, {"file": upload})
    body = response.content.decode()
    assert "Nothing was imported" in body
    assert ("row 2 (line 3): there is no intent &#x27;get_weather&#x27; (2 row(s) use it), and only ML engineers can "
            "create intents") in body
    assert not Intent.objects.filter(name="get_weather").exists() and not Utterance.objects.exists()
    # With the intents that exist, the same Labeler imports.
    upload = SimpleUploadedFile("ok.csv", b"text,intent\nplay jazz,play_music\n")
    assert "Import finished" in client.post(IMPORT, {"file": upload}).content.decode()
    assert Utterance.objects.get().created_by == labeler


def test_an_ml_engineers_import_creates_the_intent(client, ml_engineer, music):
    client.force_login(ml_engineer)
    upload = SimpleUploadedFile("new.csv", b"text,intent\nrain today?,get_weather\n")
    assert "Import finished" in client.post(IMPORT, {"file": upload}).content.decode()
    assert Utterance.objects.get().intent.name == "get_weather"


def test_the_command_imports_as_an_operator_unless_told_a_user(db, tmp_path, labeler, music):
    path = write_csv(tmp_path / "d.csv", [("rain today?", "get_weather")])
    errors = io.StringIO()
    with pytest.raises(CommandError, match="Nothing was imported") as failure:
        call_command("import_utterances", str(path), "--user", labeler.username, stderr=errors)
    assert failure.value.returncode == 2
    assert "there is no intent 'get_weather'" in errors.getvalue() and not Intent.objects.filter(name="get_weather").exists()
    out = io.StringIO()
    call_command("import_utterances", str(path), stdout=out)  # the operator at the shell: may create intents
    assert "1 new intents" in out.getvalue() and Intent.objects.filter(name="get_weather").exists()


@pytest.mark.parametrize("name", ["IMPORT_MAX_BYTES", "IMPORT_MAX_ROWS", "REVIEW_MAX_BODY_BYTES"])
def test_an_input_limit_below_one_stops_the_process_at_start_up(name):
    from tests.webapp.test_settings import run_manage

    result = run_manage("check", DEBUG="1", **{name: "0"})
    assert result.returncode != 0 and f"{name} must be at least 1, got 0." in result.stderr
