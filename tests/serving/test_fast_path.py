"""POST /classify's fast path must answer exactly as the FastAPI route would, and leave to the
route every request it does not answer itself."""

import asyncio
import base64
import json

import pytest

from tests.serving.events import FakeContext, function_url, http_api_v2, rest_api_v1

TEXT = "show me today's news"
JSON = {"content-type": "application/json"}

# (body, headers): the ordinary case in several spellings, then every way of getting it wrong.
REQUESTS = {
    "plain": (json.dumps({"text": TEXT}).encode(), JSON),
    "charset": (json.dumps({"text": TEXT}).encode(), {"content-type": "application/json; charset=utf-8"}),
    "no content type": (json.dumps({"text": TEXT}).encode(), {}),
    "extra field": (json.dumps({"text": TEXT, "lang": "en"}).encode(), JSON),
    "unicode": (json.dumps({"text": "qué tiempo hace 🌧"}, ensure_ascii=False).encode(), JSON),
    "form content type": (json.dumps({"text": TEXT}).encode(), {"content-type": "text/plain"}),
    "blank text": (b'{"text": "   "}', JSON),
    "too long": (json.dumps({"text": "x" * 1001}).encode(), JSON),
    "not a string": (b'{"text": 42}', JSON),
    "malformed": (b'{"text": ', JSON),
    "not an object": (b"[1, 2]", JSON),
    "empty body": (b"", JSON),
    "bad utf-8": ("ü".encode("latin-1"), JSON),
    # JSON escapes: valid JSON, but an unpaired surrogate is not Unicode text (the tokenizer cannot take it).
    "lone surrogate": (b'{"text": "\\ud800"}', JSON),
    "lone low surrogate": (b'{"text": "show me \\udc00 news"}', JSON),
    "escaped surrogate pair": (b'{"text": "rain \\ud83c\\udf27 today"}', JSON),
    "nul inside": (b'{"text": "show me\\u0000 the news"}', JSON),
    "control characters only": (b'{"text": "\\u0000\\u001b \\u007f"}', JSON),
}


def comparable(response) -> tuple:
    body = response.json()
    if isinstance(body, dict):
        body.pop("prediction_id", None)  # a fresh uuid4 per answer
    return response.status_code, response.headers.get("content-type"), body


@pytest.fixture
def clients(make_client, model_file):
    made = {fast: make_client(model_uri=str(model_file), fast_path=fast, api_keys="key-one") for fast in (True, False)}
    for client in made.values():  # the model loaded: until then even the fast path leaves every request to the route
        assert client.post("/classify", json={"text": TEXT}, headers={"x-api-key": "key-one"}).status_code == 200
    return made


@pytest.mark.parametrize("case", REQUESTS)
def test_both_paths_give_the_same_answer(clients, case):
    body, headers = REQUESTS[case]
    headers = {**headers, "x-api-key": "key-one"}
    fast, routed = (clients[f].post("/classify", content=body, headers=headers) for f in (True, False))
    assert comparable(fast) == comparable(routed)
    assert fast.headers["content-length"] == str(len(fast.content))


@pytest.mark.parametrize("key", [None, "wrong", "key-one "])
def test_a_missing_or_wrong_key_is_refused_on_both_paths(clients, key):
    headers = {"x-api-key": key} if key is not None else {}
    for client in clients.values():
        response = client.post("/classify", json={"text": TEXT}, headers=headers)
        assert response.status_code == 401 and "x-api-key" in response.json()["detail"]


def without_classify_route(app):
    app.router.routes[:] = [route for route in app.router.routes if getattr(route, "path", None) != "/classify"]


def test_an_ordinary_request_never_reaches_the_route_and_an_error_always_does(make_client, model_file):
    client = make_client(model_uri=str(model_file))
    client.post("/classify", json={"text": TEXT})  # loads the model: until then the route answers
    without_classify_route(client.app)
    assert client.post("/classify", json={"text": TEXT}).status_code == 200
    assert client.post("/classify", json={"text": " "}).status_code == 404  # handed on, and the route is gone
    assert client.get("/health").status_code == 200


def test_the_route_answers_until_a_model_is_loaded(make_client, tmp_path, tiny_onnx):
    missing = tmp_path / "model.onnx"
    client = make_client(model_uri=str(missing))
    response = client.post("/classify", json={"text": TEXT})
    assert response.status_code == 503 and "no model file" in response.json()["detail"]
    missing.write_bytes(tiny_onnx.read_bytes())
    assert client.post("/classify", json={"text": TEXT}).status_code == 200  # the route loaded it
    without_classify_route(client.app)
    assert client.post("/classify", json={"text": TEXT}).status_code == 200  # now the fast path answers


@pytest.mark.parametrize("shape", [http_api_v2, rest_api_v1, function_url])
def test_every_event_shape_takes_the_fast_path(fresh_app_module, model_file, shape):
    module = fresh_app_module(MODEL_URI=model_file, API_KEYS="")
    without_classify_route(module.app)
    response = module.handler(shape("POST", "/classify", {"text": TEXT}), FakeContext())
    assert response["statusCode"] == 200 and json.loads(response["body"])["distribution"]


def test_a_body_in_several_chunks_reaches_the_answer_and_the_app_whole():
    from serving_fast_path import FastPath

    seen = {}

    async def app(scope, receive, send):
        message = await receive()
        seen["app"] = message["body"]
        await send({"type": "http.response.start", "status": 422, "headers": []})
        await send({"type": "http.response.body", "body": b"no"})

    def answer(body, headers):
        seen["answer"] = body
        return b'{"ok": true}' if body.startswith(b"{") else None

    def run(chunks, *, disconnect=False):
        messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1 or disconnect} for i, c in enumerate(chunks)]
        messages += [{"type": "http.disconnect"}] if disconnect else []
        sent = []

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/classify", "root_path": "", "headers": []}
        asyncio.run(FastPath(app, path="/classify", answer=answer)(scope, receive, send))
        return (sent[0]["status"], sent[1]["body"]) if sent else None

    assert run([b'{"text"', b': "hi"}']) == (200, b'{"ok": true}') and seen["answer"] == b'{"text": "hi"}'
    assert run([b"[1, ", b"2]"]) == (422, b"no") and seen["app"] == b"[1, 2]"
    seen.clear()
    assert run([b'{"text": "h'], disconnect=True) is None and not seen  # a client that left gets nothing


UVICORN = """
import sys, uvicorn, app
app.app.router.routes[:] = [r for r in app.app.router.routes if getattr(r, "path", None) != "/classify"]
uvicorn.run(app.app, host="127.0.0.1", port=int(sys.argv[1]), root_path="/prod", log_level="warning")
"""


@pytest.fixture
def uvicorn_server(model_file):
    """The app in a real uvicorn process, behind a root path, with the FastAPI /classify route
    removed: only the fast path can answer a classify request there."""
    import os
    import subprocess
    import sys
    import time

    import httpx

    from tests.aws_fixtures import _free_port
    from tests.factories import REPO_ROOT

    port = _free_port()
    env = {**os.environ, "MODEL_URI": str(model_file), "API_KEYS": ""}
    process = subprocess.Popen([sys.executable, "-c", UVICORN, str(port)], cwd=REPO_ROOT / "lambda", env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/health", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail(f"uvicorn did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)


def test_under_uvicorn_the_fast_path_answers_even_a_chunked_body(uvicorn_server):
    import httpx

    def chunks():
        yield b'{"text": "show me '
        yield b"today's news\"}"

    with httpx.Client(base_url=uvicorn_server, timeout=10) as client:
        plain = client.post("/classify", json={"text": TEXT})
        chunked = client.post("/classify", content=chunks(), headers=JSON)
        bad = client.post("/classify", content=b'{"text": ', headers=JSON)
    assert chunked.request.headers.get("transfer-encoding") == "chunked"
    assert plain.status_code == chunked.status_code == 200
    assert plain.json()["distribution"] == chunked.json()["distribution"]
    assert bad.status_code == 404  # handed on to the app, whose route is gone


# What the fast path reproduces of the route. A new dependency or middleware on POST /classify
# would be skipped by the fast path: this list must change with it, and the fast path with it.
ROUTE_DEPENDENCIES = {True: ["require_api_key"], False: []}
MIDDLEWARE = ["FastPath"]


@pytest.mark.parametrize("keys", [True, False])
def test_the_route_has_nothing_the_fast_path_would_skip(make_client, model_file, keys):
    client = make_client(model_uri=str(model_file), **({"api_keys": "key-one"} if keys else {}))
    route = next(r for r in client.app.routes if getattr(r, "path", None) == "/classify" and "POST" in r.methods)
    names = [d.call.__name__ for d in route.dependant.dependencies]
    assert names == ROUTE_DEPENDENCIES[keys], "POST /classify gained a dependency the fast path does not apply"
    assert [m.cls.__name__ for m in client.app.user_middleware] == MIDDLEWARE, "a middleware the fast path would bypass"


def test_the_fast_path_can_be_turned_off(make_client, model_file, fresh_app_module):
    off = make_client(model_uri=str(model_file), fast_path=False)
    assert off.app.user_middleware == []
    assert off.post("/classify", json={"text": TEXT}).status_code == 200
    module = fresh_app_module(MODEL_URI=model_file, FAST_PATH="0")
    assert module.app.user_middleware == [] and module.settings.fast_path is False
    assert type(module.handler).__name__ == "Mangum"  # no event-level fast path either


def lambda_answer(response: dict) -> tuple:
    body = json.loads(response["body"])
    if isinstance(body, dict):
        body.pop("prediction_id", None)
    return response["statusCode"], (response.get("headers") or {}).get("content-type"), body


@pytest.mark.parametrize("name", list(REQUESTS))
@pytest.mark.parametrize("shape", [http_api_v2, function_url])
def test_the_event_level_fast_path_answers_as_mangum_and_the_route_do(fresh_app_module, model_file, name, shape):
    """Payload 2.0 events are answered from the event itself; the answer (or the error, which the
    app gives) is the same as through Mangum with the fast path off."""
    body, headers = REQUESTS[name]
    fast = fresh_app_module(MODEL_URI=model_file, API_KEYS="")
    event = shape("POST", "/classify", headers=headers)
    event["headers"].pop("content-type", None)
    event["headers"].update(headers)
    event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    answered = fast.handler(event, FakeContext())
    slow = fresh_app_module(MODEL_URI=model_file, API_KEYS="", FAST_PATH="0")
    assert lambda_answer(answered) == lambda_answer(slow.handler(event, FakeContext())), name


def test_the_event_level_fast_path_never_calls_mangum_for_the_ordinary_case(fresh_app_module, model_file):
    module = fresh_app_module(MODEL_URI=model_file, API_KEYS="key-one")
    calls = []
    mangum = module.handler.handler
    module.handler.handler = lambda event, context: calls.append(event) or mangum(event, context)
    good = http_api_v2("POST", "/classify", {"text": TEXT}, headers={"x-api-key": "key-one"})
    response = module.handler(good, FakeContext())
    assert response["statusCode"] == 200 and json.loads(response["body"])["intent"] and calls == []
    # Everything else reaches Mangum: no key, another route, a REST API (payload 1.0) event.
    assert module.handler(http_api_v2("POST", "/classify", {"text": TEXT}), FakeContext())["statusCode"] == 401
    assert module.handler(http_api_v2("GET", "/health", headers={"x-api-key": "key-one"}), FakeContext())["statusCode"] == 200
    assert module.handler(rest_api_v1("POST", "/classify", {"text": TEXT}, headers={"x-api-key": "key-one"}), FakeContext())["statusCode"] == 200
    assert len(calls) == 3
