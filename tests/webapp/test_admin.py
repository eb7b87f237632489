from datetime import timedelta

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils import timezone

from webapp.labeling.models import Intent, Utterance

CHANGELIST = "/admin/labeling/utterance/"


@pytest.fixture
def workspace(intent_factory, utterance_factory):
    news, music = intent_factory("get_news"), intent_factory("play_music")
    utterance_factory("show me the headlines", news)
    utterance_factory("play some jazz", music, source=Utterance.Source.IMPORT)
    old = utterance_factory("what is this", None)
    Utterance.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    return {"news": news, "music": music}


def listed_texts(response) -> set[str]:
    return {u.text for u in response.context["cl"].result_list}


def test_the_admin_requires_login(client, db):
    response = client.get(CHANGELIST)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("", {"show me the headlines", "play some jazz", "what is this"}),
        ("?intent__id__exact={news}", {"show me the headlines"}),
        ("?source__exact=import", {"play some jazz"}),
        ("?labeled=no", {"what is this"}),
        ("?labeled=yes", {"show me the headlines", "play some jazz"}),
        ("?q=jazz", {"play some jazz"}),
        ("?created_at__gte={week_ago}", {"show me the headlines", "play some jazz"}),
    ],
)
def test_utterance_list_filters(client, labeler, workspace, query, expected):
    client.force_login(labeler)
    week_ago = (timezone.now() - timedelta(days=7)).date().isoformat()
    response = client.get(CHANGELIST + query.format(news=workspace["news"].pk, week_ago=week_ago))
    assert response.status_code == 200
    assert listed_texts(response) == expected


def test_bulk_assign_intent_goes_through_the_intermediate_page(client, labeler, workspace):
    client.force_login(labeler)
    targets = list(Utterance.objects.exclude(intent=workspace["news"]).values_list("pk", flat=True))
    data = {"action": "assign_intent", ACTION_CHECKBOX_NAME: targets}
    page = client.post(CHANGELIST, data)
    assert page.status_code == 200 and b"Choose the intent for the 2 selected utterances" in page.content
    done = client.post(CHANGELIST, {**data, "apply": "1", "intent": workspace["news"].pk}, follow=True)
    assert "Labeled 2 utterance(s) as get_news" in done.content.decode()
    assert Utterance.objects.filter(intent=workspace["news"]).count() == 3
    utterance = Utterance.objects.get(text="what is this")
    assert utterance.updated_by == labeler
    latest = utterance.history.first()
    assert latest.history_user == labeler and latest.intent_id == workspace["news"].pk


def test_clear_label_action(client, labeler, workspace):
    client.force_login(labeler)
    pk = Utterance.objects.get(text="play some jazz").pk
    client.post(CHANGELIST, {"action": "clear_label", ACTION_CHECKBOX_NAME: [pk]})
    assert Utterance.objects.get(pk=pk).intent is None


def test_the_intent_is_editable_in_the_list(client, labeler, workspace):
    client.force_login(labeler)
    response = client.get(CHANGELIST + "?q=jazz")
    assert b'name="form-0-intent"' in response.content
    utterance = Utterance.objects.get(text="play some jazz")
    response = client.post(CHANGELIST + "?q=jazz", {
        "form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": utterance.pk,
        "form-0-intent": workspace["news"].pk, "_save": "Save",
    })
    assert response.status_code == 302
    assert Utterance.objects.get(pk=utterance.pk).intent == workspace["news"]


def test_adding_a_duplicate_text_names_the_existing_utterance(client, labeler, workspace):
    client.force_login(labeler)
    response = client.post("/admin/labeling/utterance/add/", {"text": "  PLAY some   Jazz ", "source": "manual"})
    assert response.status_code == 200
    assert "already exists" in response.content.decode() and "play some jazz" in response.content.decode()
    assert Utterance.objects.count() == 3


def test_import_page_with_a_valid_file(client, ml_engineer, workspace):
    client.force_login(ml_engineer)  # the file names a new intent: an ML engineer's right (tests/webapp/test_inputs.py)
    upload = SimpleUploadedFile("new.csv", b"text,intent\nread me the news,get_news\nplay some jazz,play_music\nweather in rome,get_weather\n")
    response = client.post(reverse("admin:labeling_utterance_import"), {"file": upload, "splits": ["train"]})
    body = response.content.decode()
    assert response.status_code == 200 and "Import finished" in body
    assert response.context["report"].created == 2 and response.context["report"].duplicates == 1
    assert Intent.objects.filter(name="get_weather").exists()
    assert Utterance.objects.get(text="read me the news").created_by == ml_engineer


def test_import_page_with_conflicts_writes_nothing_and_lists_them(client, labeler, workspace):
    client.force_login(labeler)
    upload = SimpleUploadedFile("bad.csv", b"text,intent\nbrand new text,get_news\nPlay some JAZZ,get_news\nhello,a\nhello,b\n")
    response = client.post(reverse("admin:labeling_utterance_import"), {"file": upload})
    body = response.content.decode()
    assert "Nothing was imported" in body
    assert "&#x27;Play some JAZZ&#x27;: play_music vs get_news (existing #" in body
    assert "&#x27;hello&#x27;: a vs b (within the file)" in body
    assert not Utterance.objects.filter(text="brand new text").exists()
    assert not Intent.objects.filter(name__in=["a", "b"]).exists()


def test_import_page_refuses_an_unknown_format(client, labeler, db):
    client.force_login(labeler)
    response = client.post(reverse("admin:labeling_utterance_import"), {"file": SimpleUploadedFile("x.xml", b"<x/>")})
    assert "Upload a .csv, .jsonl or CLINC150 .json file." in response.content.decode()


def test_intent_list_warns_about_too_few_examples(client, ml_engineer, workspace, settings):
    settings.MIN_EXAMPLES_PER_INTENT = 2
    client.force_login(ml_engineer)
    Utterance.objects.create(text="latest news", intent=workspace["news"])
    body = client.get("/admin/labeling/intent/").content.decode()
    assert body.count("too-few-examples") == 1 and "1 (fewer than 2)" in body


def test_a_labeler_cannot_delete_intents_but_an_ml_engineer_can(client, labeler, ml_engineer, intent_factory):
    unused = intent_factory("unused")
    client.force_login(labeler)
    assert client.post(f"/admin/labeling/intent/{unused.pk}/delete/", {"post": "yes"}).status_code == 403
    client.force_login(ml_engineer)
    client.post(f"/admin/labeling/intent/{unused.pk}/delete/", {"post": "yes"})
    assert not Intent.objects.filter(pk=unused.pk).exists()


def test_staff_without_a_role_sees_nothing(client, plain_user, workspace):
    client.force_login(plain_user)
    assert client.get(CHANGELIST).status_code == 403


def test_export_action_writes_the_import_format(client, labeler, workspace):
    client.force_login(labeler)
    pks = list(Utterance.objects.values_list("pk", flat=True))
    response = client.post(CHANGELIST, {"action": "export_csv", ACTION_CHECKBOX_NAME: pks})
    assert response["Content-Type"].startswith("text/csv")
    assert response.content.decode().splitlines() == ["text,intent", "show me the headlines,get_news", "play some jazz,play_music"]
