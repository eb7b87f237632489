"""Property test: whatever the request (its content type, body and path), the fast paths answer
exactly as the FastAPI route does (status, content type, JSON body), or leave it to the route.

test_fast_path.py compares the two on hand-picked requests; here hypothesis generates them, so the
fast path's own reading of a request (above all: which content types are JSON, where FastAPI asks
email.message for the media type, see fastapi/routing.py) cannot drift from the route's unseen.

Each fast path is held to the route behind the same transport, so that only the fast path differs:
the Lambda handler (EventFastPath, then Mangum) to Mangum over the app with the fast paths off
(Mangum folds the event's headers into a dict: of two names differing in case, the last one wins),
and the ASGI middleware (FastPath) to the plain app, both through Starlette's TestClient.
"""

import base64
import json
import string

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.serving.events import FakeContext, http_api_v2

VALID = json.dumps({"text": "show me today's news"}).encode()

# -- content types: near misses of JSON's media types more than random strings ------------------------
# Header characters as a client can send them: visible ASCII, tab, and bytes over 0x7f (a Lambda
# event holds them as text), among them a few that str.strip() strips and bytes.strip() does not.
HEADER_CHARACTERS = string.printable.replace("\r", "").replace("\n", "").replace("\x0b", "").replace("\x0c", "") + "\x1c\x1f\x85\xa0éÀ"
token = st.text(alphabet="abcjsonJSONx+-./ \t;=\"", max_size=10)
main_types = st.sampled_from(["application", "APPLICATION", "Application", " application", "application ", "text", "", "*", "a/application"]) | token
subtypes = st.sampled_from(["json", "JSON", "Json", "vnd.api+json", "x+JSON", "+json", "json ", "jsonx", "x-json", "json+x", "", "problem+json\x85",
                            "json\x1c"]) | token
# More than one slash: FastAPI (email.message) reads any such media type as text/plain.
slashed_subtypes = st.sampled_from(["a/b+json", "json/json", "/json", "/+json", "x/y/z+json", "json/"]) | st.builds("{}/{}".format, token, subtypes)
parameters = st.sampled_from(["", "; charset=utf-8", ";charset=latin-1", '; x="a;b"', ";", " ;", "; json", ";/"])
content_types = st.one_of(
    st.builds("{}/{}{}".format, main_types, subtypes, parameters),
    st.builds("{}/{}{}".format, st.sampled_from(["application", "APPLICATION", " application"]), slashed_subtypes, parameters),
    st.text(alphabet=HEADER_CHARACTERS, max_size=30),
)
# One Content-Type header mostly; or none, or two: the name in any case.
header_names = st.sampled_from(["content-type", "Content-Type", "CONTENT-TYPE", "content-Type"])
content_type_headers = st.lists(st.tuples(header_names, content_types), min_size=1, max_size=1) | st.lists(st.tuples(header_names, content_types), max_size=2)

# -- bodies: mostly requests the route could accept, then what it must refuse ------------------------
good_texts = st.sampled_from(["show me today's news", "play some jazz", "qué tiempo hace 🌧"])
texts = good_texts | st.sampled_from(["   ", "", "\u0000", "x" * 1001]) | st.text(max_size=20)
bodies = st.one_of(
    st.builds(lambda text: json.dumps({"text": text}).encode(), good_texts),  # a request the route accepts, if its content type is JSON
    st.builds(lambda text: json.dumps({"text": text}).encode(), texts),
    st.builds(lambda text: json.dumps({"text": text}, ensure_ascii=False).encode("utf-8", "surrogatepass"), texts),
    st.builds(lambda text, extra: json.dumps({"text": text, "extra": extra}).encode(), texts, st.none() | st.integers() | st.text(max_size=5)),
    st.sampled_from([b"", b"null", b"[1, 2]", b'{"text": ', b'{"text": 42}', b'{"text": "a", "text": "b"}', b'{"text": "a", "text": 3}',
                     b'\xef\xbb\xbf{"text": "hi"}', '{"text": "hi"}'.encode("utf-16"), b'{"text": "hi", "n": NaN}',
                     b'{"text": "hi", "x": "\xff"}', b'{"text": "\\ud800"}']),
    st.binary(max_size=40),
)
paths = st.just("/classify") | st.sampled_from(["/classify/", "/CLASSIFY", "//classify", "/classify%2F", "/classify/batch", "/health", "/",
                                                 "/classify%20", "/%63lassify"]) | st.text(alphabet=string.ascii_letters + string.digits + "/-_.%", max_size=12).map("/".__add__)
methods = st.just("POST") | st.sampled_from(["GET", "PUT", "post"])

PROPERTY = settings(max_examples=200, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
# What once told the two apart, kept as examples whatever hypothesis draws.
KNOWN = [
    ("POST", "/classify", [("content-type", "application/a/b+json")], VALID),
    ("POST", "/classify", [("content-type", "application/json"), ("Content-Type", "text/plain")], VALID),
    ("POST", "/classify", [("content-type", "application/json\x85")], VALID),
]


def comparable(status: int, content_type: str | None, body: bytes) -> tuple:
    try:
        content = json.loads(body)
    except ValueError:
        content = body
    if isinstance(content, dict):
        content.pop("prediction_id", None)  # a fresh uuid4 per answer
        content.pop("uptime_seconds", None)  # /health's: the two apps started apart
    return status, content_type, content


@pytest.fixture
def apps(fresh_app_module, model_file):
    """The app module with its fast paths, and without (the plain FastAPI route): each loaded the model at import."""
    fast = fresh_app_module(MODEL_URI=model_file, API_KEYS="")
    plain = fresh_app_module(MODEL_URI=model_file, API_KEYS="", FAST_PATH="0")
    assert fast.store.current is not None and plain.store.current is not None
    return fast, plain


def lambda_event(method: str, path: str, headers: list[tuple[str, str]], body: bytes, base64_body: bool) -> dict:
    event = http_api_v2(method, path)
    del event["headers"]["content-type"]
    event["headers"].update(headers)  # names differing only in case stay apart, as a client may send them
    event["rawPath"] = path
    if base64_body:
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"] = body.decode("utf-8")
    return event


def test_the_lambda_handler_answers_as_the_route_does(apps):
    fast, plain = apps

    @PROPERTY
    @given(methods, paths, content_type_headers, bodies, st.booleans())
    @example(*KNOWN[0], True)
    @example(*KNOWN[1], True)
    @example(*KNOWN[2], True)
    def check(method, path, headers, body, base64_body):
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            base64_body = True  # a text body holds text; other bytes come base64-encoded
        event = lambda_event(method, path, headers, body, base64_body)
        answers = [handler(event, FakeContext()) for handler in (fast.handler, plain.handler)]
        fast_answer, plain_answer = (comparable(a["statusCode"], (a.get("headers") or {}).get("content-type"),
                                                base64.b64decode(a["body"]) if a.get("isBase64Encoded") else a["body"].encode())
                                     for a in answers)
        assert fast_answer == plain_answer, (method, path, headers, body, base64_body)

    check()


def test_the_asgi_fast_path_answers_as_the_route_does(apps):
    from fastapi.testclient import TestClient

    fast, plain = (TestClient(module.app, raise_server_exceptions=False) for module in apps)

    @PROPERTY
    @given(methods, paths, content_type_headers, bodies)
    @example(*KNOWN[0])
    @example(*KNOWN[1])
    @example(*KNOWN[2])
    def check(method, path, headers, body):
        raw_headers = [(name.encode(), value.encode("utf-8")) for name, value in headers]
        answers = [client.request(method, path, content=body, headers=raw_headers) for client in (fast, plain)]
        fast_answer, plain_answer = (comparable(a.status_code, a.headers.get("content-type"), a.content) for a in answers)
        assert fast_answer == plain_answer, (method, path, headers, body)

    check()
