"""The admin at scale: each list page runs the same few queries for a thousand rows as for three, and a
bulk action reaches every selected row, also when "select all" picks more rows than a POST may carry.

Rows are bulk-created (the services' per-row checks would make a thousand rows slow to build);
bench/admin_scale.py times the same pages with 100,000 utterances and 50,000 review items.
"""

from __future__ import annotations

import itertools
import uuid
from html.parser import HTMLParser

import pytest
from django.conf import settings
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from webapp.labeling import services as labeling
from webapp.labeling.models import Intent, Utterance, fold_text, text_key
from webapp.review.models import ReviewItem
from webapp.training.models import DatasetSnapshot, Promotion, TrainingRun

UTTERANCES = "/admin/labeling/utterance/"
INTENTS = "/admin/labeling/intent/"
QUEUE = "/admin/review/reviewitem/"
# More than one page (list_per_page is 100), so "many" fills a whole page.
MANY = 250
# A list page needs about a dozen queries (session, user, permissions, count, rows, filter choices);
# the point is that the number does not grow with the rows.
MAX_QUERIES = 15
# More selected rows than Django accepts fields in one POST (DATA_UPLOAD_MAX_NUMBER_FIELDS).
OVER_THE_FIELD_LIMIT = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 100

_serial = itertools.count()


def add_utterances(count: int, *, intent: Intent | None = None, source: str = Utterance.Source.IMPORT) -> list[Utterance]:
    texts = [f"utterance number {next(_serial)}" for _ in range(count)]
    return Utterance.objects.bulk_create(
        [Utterance(text=t, normalized_text=fold_text(t), text_key=text_key(t), intent=intent, source=source) for t in texts],
        batch_size=500,
    )


def add_review_items(texts: list[str], *, predicted_intent: str = "get_news", confidence: float = 0.4,
                     status: str = ReviewItem.Status.PENDING) -> None:
    now = timezone.now()
    ReviewItem.objects.bulk_create([
        ReviewItem(
            prediction_id=uuid.uuid4(), text=text, text_key=text_key(text), group_key=text_key(text), predicted_intent=predicted_intent,
            confidence=confidence, top_intents=[{"intent": predicted_intent, "probability": confidence}], margin=0.1,
            model_version="abc123def456", threshold=0.7, predicted_at=now, status=status,
        )
        for text in texts
    ], batch_size=500)


def distinct_texts(count: int) -> list[str]:
    return [f"review text number {next(_serial)}" for _ in range(count)]


def queries_of(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(queries)


def assert_bounded(client, url: str, add_rows) -> None:
    """The page runs the same number of queries before and after ``add_rows`` fills it."""
    client.get(url)  # per-process caches (content types) are filled once, not per page
    few = queries_of(client, url)
    add_rows()
    many = queries_of(client, url)
    assert many == few <= MAX_QUERIES, f"{url}: {few} queries with few rows, {many} with many"


@pytest.fixture
def intents(db) -> list[Intent]:
    return [labeling.intent_create(name=f"intent_{i:02d}") for i in range(12)]


@pytest.fixture
def engineer_client(client, ml_engineer):
    client.force_login(ml_engineer)
    return client


# -- list pages -------------------------------------------------------------------------------

@pytest.mark.parametrize("query", ["", "?intent__id__exact={intent}", "?labeled=no", "?source__exact=import&q=number", "?o=-2"])
def test_the_utterance_list_runs_the_same_queries_for_many_rows(engineer_client, intents, query):
    add_utterances(2, intent=intents[0])
    add_utterances(1)

    def fill():
        for intent in intents:
            add_utterances(MANY // 4, intent=intent)
        add_utterances(MANY)

    assert_bounded(engineer_client, UTTERANCES + query.format(intent=intents[0].pk), fill)


def test_each_row_edits_its_intent_with_an_autocomplete(engineer_client, intents):
    labeled = add_utterances(MANY, intent=intents[3])
    body = engineer_client.get(UTTERANCES).content.decode()
    assert body.count('<select name="form-') == 100 and labeled[-1].text in body
    # Each row carries its own intent (and the empty choice), not every intent; the rest are searched.
    row = body.split('name="form-0-intent"', 1)[1].split("</select>", 1)[0]
    assert "admin-autocomplete" in row and row.count("<option") == 2
    assert f'<option value="{intents[3].pk}" selected>intent_03</option>' in row
    # No add/change/delete/view links beside every row's select.
    assert "related-widget-wrapper" not in body and 'id="add_id_form-0-intent"' not in body


def test_a_labeler_searches_intents_in_the_autocomplete(client, labeler, intents):
    client.force_login(labeler)
    answer = client.get("/admin/autocomplete/", {"app_label": "labeling", "model_name": "utterance", "field_name": "intent", "term": "ent_1"})
    assert answer.status_code == 200
    assert [r["text"] for r in answer.json()["results"]] == ["intent_10", "intent_11"]


def test_the_intent_list_runs_the_same_queries_for_many_intents(engineer_client, intents):
    def fill():
        for index in range(MANY):
            Intent.objects.create(name=f"more_{index:03d}")
        add_utterances(MANY, intent=intents[0])

    assert_bounded(engineer_client, INTENTS, fill)


@pytest.mark.parametrize("query", ["", "?o=2", "?status=all", "?predicted_intent__exact=get_news&confidence=30to50", "?q=number"])
def test_the_review_queue_runs_the_same_queries_for_many_items(engineer_client, db, query):
    add_review_items(distinct_texts(2))

    def fill():
        texts = distinct_texts(MANY)
        add_review_items(texts)
        add_review_items(texts[:50], predicted_intent="play_music")  # groups of two
        add_review_items(texts[:50], status=ReviewItem.Status.DISMISSED)

    assert_bounded(engineer_client, QUEUE + query, fill)


def test_the_queue_groups_identical_texts_by_status_and_sorts_by_group_size(engineer_client, db):
    add_review_items(["is it raining"] * 3, confidence=0.5)
    add_review_items(["Is it  RAINING"] * 2, status=ReviewItem.Status.DISMISSED)
    add_review_items(["tell me a joke"], confidence=0.2)
    add_review_items(distinct_texts(MANY), confidence=0.6)
    queue = engineer_client.get(QUEUE).context["cl"]
    assert queue.result_count == MANY + 2
    assert [(i.text, i.group_size) for i in queue.result_list[:2]] == [("tell me a joke", 1), ("is it raining", 3)]
    by_size = engineer_client.get(QUEUE + "?status=all&o=-2").context["cl"].result_list
    assert [(i.text, i.status, i.group_size) for i in by_size[:2]] == [
        ("is it raining", "pending", 3), ("Is it  RAINING", "dismissed", 2)]


def test_the_queue_grouping_has_its_index(db):
    """The first item and the size of each group are read from one index, not from the whole table."""
    with connection.cursor() as cursor:
        indexes = connection.introspection.get_constraints(cursor, ReviewItem._meta.db_table).values()
    assert any(index["index"] and index["columns"] == ["status", "group_key", "id"] for index in indexes)


def test_an_utterance_history_runs_the_same_queries_for_many_changes(engineer_client, ml_engineer, intents):
    utterance = labeling.utterance_create(text="play some jazz", intent=intents[0], user=ml_engineer)

    def relabel_many_times():
        for index in range(60):
            labeling.utterance_update(utterance=utterance, intent=intents[index % len(intents)], user=ml_engineer)

    assert_bounded(engineer_client, f"{UTTERANCES}{utterance.pk}/history/", relabel_many_times)


def add_runs(count: int, user) -> None:
    snapshot = DatasetSnapshot.objects.create(fingerprint="f" * 64, heldout_fingerprint="h" * 64, train_count=10, heldout_count=2)
    runs = TrainingRun.objects.bulk_create([
        TrainingRun(snapshot=snapshot, config={}, requested_device="cpu", created_by=user, status=TrainingRun.Status.SUCCEEDED,
                    metrics={"test": {"accuracy": 0.9}}, artifact_sha256="a" * 64)
        for _ in range(count)
    ])
    Promotion.objects.bulk_create([
        Promotion(run=run, previous_run=runs[0], promoted_by=user, promoted_at=timezone.now(), serving_uri="var/serving/model.pt")
        for run in runs[1:]
    ])


@pytest.mark.parametrize("page", ["/admin/training/trainingrun/", "/admin/training/promotion/", "/admin/training/datasetsnapshot/"])
def test_the_training_lists_run_the_same_queries_for_many_runs(engineer_client, ml_engineer, page):
    add_runs(2, ml_engineer)
    assert_bounded(engineer_client, page, lambda: add_runs(MANY, ml_engineer))


# -- bulk actions -----------------------------------------------------------------------------

class _FormReader(HTMLParser):
    """The fields of each POST form of a page, as a browser would submit them (less the buttons)."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("method") == "post":
            self.forms.append({"action": attrs.get("action"), "fields": []})
        elif tag == "input" and self.forms and attrs.get("type") not in ("submit", "button") and "name" in attrs:
            self.forms[-1]["fields"].append((attrs["name"], attrs.get("value", "")))


def action_form(page) -> tuple[str, list[tuple[str, str]]]:
    """The confirmation form of an action page: where it posts (the page's own URL without an
    action attribute) and its hidden fields."""
    reader = _FormReader()
    reader.feed(page.content.decode())
    form = next(f for f in reader.forms if any(name == "action" for name, _ in f["fields"]))
    return form["action"] or page.wsgi_request.get_full_path(), form["fields"]


def submit(client, page, **chosen):
    """Post an action's confirmation form as the browser does: its fields, the choice, the apply button."""
    url, fields = action_form(page)
    data: dict[str, list[str]] = {}
    for name, value in [*fields, *chosen.items(), ("apply", "1")]:
        data.setdefault(name, []).append(str(value))
    return client.post(url, data, follow=True)


def choose_all(client, url: str, action: str):
    """Tick the page's rows and "Select all N" in the list, then pick the action."""
    page_ids = [row.pk for row in client.get(url).context["cl"].result_list]
    return client.post(url, {"action": action, "select_across": "1", "index": "0", ACTION_CHECKBOX_NAME: page_ids})


def test_assign_intent_to_all_rows_of_a_filtered_list(client, labeler, intents):
    add_utterances(OVER_THE_FIELD_LIMIT, source=Utterance.Source.IMPORT)
    add_utterances(30, source=Utterance.Source.MANUAL)
    client.force_login(labeler)
    filtered = UTTERANCES + "?source__exact=import"
    page = choose_all(client, filtered, "assign_intent")
    assert f"Choose the intent for the {OVER_THE_FIELD_LIMIT} selected utterances" in page.content.decode()
    assert f"and {OVER_THE_FIELD_LIMIT - 20} more" in page.content.decode()
    done = submit(client, page, intent=intents[1].pk)
    assert done.status_code == 200 and f"Labeled {OVER_THE_FIELD_LIMIT} utterance(s) as intent_01" in done.content.decode()
    assert Utterance.objects.filter(intent=intents[1], source="import").count() == OVER_THE_FIELD_LIMIT
    assert not Utterance.objects.filter(source="manual", intent__isnull=False).exists()
    assert done.redirect_chain[-1][0].endswith("?source__exact=import")


def test_assign_intent_to_ticked_rows_applies_to_each_of_them(client, labeler, intents):
    add_utterances(150)
    client.force_login(labeler)
    ticked = [row.pk for row in client.get(UTTERANCES).context["cl"].result_list]
    page = client.post(UTTERANCES, {"action": "assign_intent", "index": "0", ACTION_CHECKBOX_NAME: ticked})
    assert "Choose the intent for the 100 selected utterances" in page.content.decode() and "and 80 more" in page.content.decode()
    submit(client, page, intent=intents[2].pk)
    assert set(Utterance.objects.filter(intent=intents[2]).values_list("pk", flat=True)) == set(ticked)
    assert Utterance.objects.filter(intent__isnull=True).count() == 50


def test_label_as_all_groups_of_a_filtered_queue(client, labeler, intents):
    texts = distinct_texts(OVER_THE_FIELD_LIMIT)
    add_review_items(texts)
    add_review_items(texts[:40], confidence=0.3)  # a second copy of 40 texts: their groups resolve whole
    add_review_items(distinct_texts(25), predicted_intent="play_music")
    client.force_login(labeler)
    filtered = QUEUE + "?predicted_intent__exact=get_news"
    page = choose_all(client, filtered, "label_as")
    done = submit(client, page, intent=intents[4].pk)
    assert done.status_code == 200
    assert f"Choose the intent of these {OVER_THE_FIELD_LIMIT} texts" in page.content.decode()
    assert f"Labeled as intent_04: {OVER_THE_FIELD_LIMIT + 40} review item(s)" in done.content.decode()
    assert ReviewItem.objects.filter(status="labeled").count() == OVER_THE_FIELD_LIMIT + 40
    assert Utterance.objects.filter(intent=intents[4], source="review").count() == OVER_THE_FIELD_LIMIT
    assert set(ReviewItem.objects.filter(status="pending").values_list("predicted_intent", flat=True)) == {"play_music"}
