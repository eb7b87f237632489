import pytest

from webapp.labeling.models import Intent, Utterance

URL = "/api/v1/utterances/"


@pytest.fixture
def news(intent_factory):
    return intent_factory("get_news")


def test_anonymous_requests_are_refused_with_401(api_for, db):
    for url in (URL, "/api/v1/intents/"):
        response = api_for(None).get(url)
        assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Token")


def test_a_user_without_a_role_gets_403(api_for, plain_user):
    assert api_for(plain_user).get(URL).status_code == 403


def test_a_labeler_can_create_and_label(api_for, labeler, news):
    client = api_for(labeler)
    created = client.post(URL, {"text": "  what's   new today "}, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["text"] == "what's new today" and created.json()["intent"] is None
    assert created.json()["source"] == "api" and created.json()["created_by"] == labeler.username
    labeled = client.patch(f"{URL}{created.json()['id']}/", {"intent": "get_news"}, format="json")
    assert labeled.status_code == 200 and labeled.json()["intent"] == "get_news"
    assert Utterance.objects.get(pk=created.json()["id"]).history.first().history_user == labeler


def test_a_labeler_cannot_delete_intents(api_for, labeler, ml_engineer, news, intent_factory):
    assert api_for(labeler).delete(f"/api/v1/intents/{news.pk}/").status_code == 403
    unused = intent_factory("unused")
    assert api_for(ml_engineer).delete(f"/api/v1/intents/{unused.pk}/").status_code == 204


def test_an_intent_in_use_cannot_be_deleted(api_for, ml_engineer, news, utterance_factory):
    utterance_factory("latest headlines", news)
    response = api_for(ml_engineer).delete(f"/api/v1/intents/{news.pk}/")
    assert response.status_code == 400 and "labels 1 utterance" in response.json()["intent"][0]
    assert Intent.objects.filter(pk=news.pk).exists()


@pytest.mark.parametrize(
    "payload, field, reason",
    [
        ({"text": "   "}, "text", "blank"),
        ({}, "text", "required"),
        ({"text": "hi", "intent": "no_such_intent"}, "intent", "does not exist"),
        ({"text": "x" * 10_000}, "text", "at most 1000 are allowed"),
        ({"text": ["a", "list"]}, "text", "Not a valid string"),
        ({"text": "hi", "intent": 12}, "intent", "does not exist"),
        ({"text": {"nested": 1}}, "text", "Not a valid string"),
    ],
)
def test_bad_payloads_give_400_with_a_reason(api_for, labeler, news, payload, field, reason):
    response = api_for(labeler).post(URL, payload, format="json")
    assert response.status_code == 400
    assert reason in " ".join(response.json()[field])


def test_a_duplicate_text_gives_400_naming_the_existing_utterance(api_for, labeler, news, utterance_factory):
    existing = utterance_factory("Show me the news", news)
    response = api_for(labeler).post(URL, {"text": "show  ME the news"}, format="json")
    assert response.status_code == 400
    assert f"#{existing.pk} 'Show me the news' (get_news)" in response.json()["text"][0]


def test_list_filters_and_pagination(api_for, labeler, news, utterance_factory, settings):
    for i in range(55):
        utterance_factory(f"headline number {i}", news)
    utterance_factory("unlabeled one", None)
    client = api_for(labeler)
    first = client.get(URL).json()
    assert first["count"] == 56 and len(first["results"]) == 50 and first["next"]
    assert client.get(URL, {"labeled": "false"}).json()["count"] == 1
    assert client.get(URL, {"intent": "get_news"}).json()["count"] == 55
    assert client.get(URL, {"search": "unlabeled"}).json()["count"] == 1
    assert client.get(URL, {"source": "manual"}).json()["count"] == 56
    assert client.get("/api/v1/intents/").json()["results"][0]["labeled_count"] == 55


def test_ml_engineers_create_intents_and_labelers_cannot(api_for, labeler, ml_engineer, db):
    assert api_for(labeler).post("/api/v1/intents/", {"name": "get_weather"}, format="json").status_code == 403
    bad = api_for(ml_engineer).post("/api/v1/intents/", {"name": "Get Weather!"}, format="json")
    assert bad.status_code == 400 and "lowercase" in bad.json()["name"][0]
    assert api_for(ml_engineer).post("/api/v1/intents/", {"name": "get_weather"}, format="json").status_code == 201


def test_openapi_schema_and_docs(client, db):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200 and b"/api/v1/utterances/" in schema.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content


def test_a_new_intent_is_answered_with_its_labeled_count(api_for, ml_engineer, db):
    response = api_for(ml_engineer).post("/api/v1/intents/", {"name": "get_weather"}, format="json")
    assert response.status_code == 201 and response.json()["labeled_count"] == 0


def test_an_id_that_is_not_a_number_is_a_json_404(api_for, labeler):
    # Ids a fuzzer sends for an integer: DRF's default route pattern stops at the dot, and the URL
    # resolver's HTML 404 page answered instead of the API.
    for url in ("/api/v1/utterances/-1.07e-63/", "/api/v1/intents/0.5/", "/api/v1/training-runs/1.0e-5/"):
        response = api_for(labeler).get(url)
        assert response.status_code == 404 and response["Content-Type"] == "application/json", url
        assert response.json()["detail"], url


@pytest.mark.parametrize(
    "query, status",
    [
        # ISO 8601 allows any offset; PostgreSQL only up to ±15:59: the filter compares in UTC.
        ({"created_before": "0294-11-18T13:42:07-19:22"}, 200),
        ({"created_after": "0001-01-01T00:00:00+01:00"}, 400),  # before year 1 in UTC
        ({"created_after": "2026-02-30T00:00:00Z"}, 400),
        ({"search": "a\x00b"}, 400),
        ({"intent": "\x00"}, 400),
    ],
)
def test_odd_query_parameters_are_answered_not_500(api_for, labeler, news, query, status):
    response = api_for(labeler).get(URL, query)
    assert response.status_code == status, response.content
    if status == 400:  # always an object of messages, as the schema declares
        assert isinstance(response.json(), dict) and all(isinstance(v, list) for v in response.json().values())


def test_the_schema_declares_the_error_answers(client, db):
    schema = client.get("/api/schema/?format=json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"400", "401", "403"} <= codes, (method, path)
            one_object = "{" in path
            paginated_list = method == "get" and "#/components/schemas/Paginated" in str(operation["responses"]["200"])
            assert ("404" in codes) == (one_object or paginated_list), (method, path)
            assert operation["responses"]["401"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorDetail"}
            assert operation["responses"]["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ValidationErrors"}
    assert schema["components"]["schemas"]["ErrorDetail"]["required"] == ["detail"]
    ingest = schema["paths"]["/api/v1/review-items/"]["post"]
    assert {"200", "201", "413", "415"} <= set(ingest["responses"])
    assert list(ingest["requestBody"]["content"]) == ["application/json"]
    event = schema["components"]["schemas"]["ReviewEvent"]
    assert set(event["required"]) == {"prediction_id", "text", "distribution", "model_version", "threshold", "time"}
    assert event["properties"]["distribution"]["maxItems"] == 10_000
    assert event["properties"]["text"]["maxLength"] == 1000
