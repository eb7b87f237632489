"""Property test: whatever the request (its event shape, method, path, headers in any casing,
content type and body), the Lambda handler answers exactly as the FastAPI route does.

The handler is intentflow_serving.app's own (Mangum over the module's app, lifespan off); the route
is the same app reached through Starlette's TestClient, as uvicorn would reach it. Each generated request
is sent both ways: to the handler as the API Gateway event (HTTP API or function URL, payload 2.0;
REST API, payload 1.0) that carries it, to the route as the HTTP request itself. Status, content
type and JSON body must be the same. tests/serving/test_handler.py checks fixed cases; here
hypothesis generates them, so a reading of the event that differs from the route's (which content
types are JSON, how a path is decoded, how header names are folded) cannot go unseen.

API Gateway hands the function one value per header name (payload 2.0 joins a repeated header's
values with commas), so two Content-Type headers reach the route as that one joined header too.
"""

import base64
import json
import string

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.serving.events import FakeContext, function_url, http_api_v2, rest_api_v1

KEY = "key-one"
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
json_types = st.sampled_from(["application/json", "application/json; charset=utf-8", "Application/JSON", "application/vnd.api+json"])
content_types = st.one_of(
    json_types,  # what a client of the API sends, as often as the near misses below
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

# -- paths and methods: the route's own, near misses, and anything a client can put in a path -------------
paths = st.just("/classify") | st.sampled_from(["/classify/", "/CLASSIFY", "//classify", "/classify%2F", "/classify/batch", "/health", "/model",
                                                 "/", "/classify%20", "/%63lassify", "/a/../classify", "/./classify"]) \
    | st.text(alphabet=string.ascii_letters + string.digits + "/-_.%", max_size=12).map("/".__add__)
methods = st.just("POST") | st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "OPTIONS"])
# The key: mostly the right one, under any casing of its header's name; or a wrong one, or none.
right_key = st.tuples(st.sampled_from(["x-api-key", "X-Api-Key", "X-API-KEY"]), st.just(KEY)).map(lambda pair: [pair])
key_headers = st.one_of(
    right_key,
    st.tuples(st.sampled_from(["x-api-key", "X-API-KEY"]), st.sampled_from(["", "key-two", "KEY-ONE", "key-one,key-one"])).map(lambda pair: [pair]),
    st.just([]),
)


@st.composite
def requests(draw) -> tuple:
    """(method, path, headers, body): an ordinary request (POST /classify, a JSON content type, the
    right key, a text the route accepts, each spelled in one of several ways) with one part, or
    every part, drawn from everything that part can be. Drawn independently, the parts would
    almost never make a request the route answers with 200."""
    varied = draw(st.sampled_from(["nothing", "method", "path", "content type", "key", "body", "everything"]))

    def part(name: str, ordinary, anything):
        return draw(anything if varied in (name, "everything") else ordinary)

    method = part("method", st.just("POST"), methods)
    path = part("path", st.just("/classify"), paths)
    content_type = part("content type", st.tuples(header_names, json_types).map(lambda pair: [pair]), content_type_headers)
    key = part("key", right_key, key_headers)
    body = part("body", st.builds(lambda text: json.dumps({"text": text}).encode(), good_texts), bodies)
    return method, path, content_type + key, body


SHAPES = {"http_api_v2": http_api_v2, "function_url": function_url, "rest_api_v1": rest_api_v1}
shapes = st.sampled_from(sorted(SHAPES))

PROPERTY = settings(max_examples=300, derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
AUTHORIZED = [("x-api-key", KEY)]
# What once told the handler's (then fast path's) reading of a request from the route's, kept as examples.
KNOWN = [
    ("POST", "/classify", [("content-type", "application/a/b+json")] + AUTHORIZED, VALID),
    ("POST", "/classify", [("content-type", "application/json"), ("Content-Type", "text/plain")] + AUTHORIZED, VALID),
    ("POST", "/classify", [("content-type", "application/json\x85")] + AUTHORIZED, VALID),
    ("POST", "/classify", [("Content-Type", "application/json; charset=utf-8"), ("X-API-KEY", KEY)], VALID),
    ("POST", "/classify/", [("content-type", "application/json")] + AUTHORIZED, VALID),  # a redirect, with no body
]


def as_api_gateway_folds(headers: list[tuple[str, str]]) -> dict[str, str]:
    """One value per header name, names compared without case (the first spelling kept), a repeated
    header's values joined with commas, as API Gateway hands them to the function."""
    folded: dict[str, tuple[str, str]] = {}
    for name, value in headers:
        spelled, before = folded.get(name.lower(), (name, None))
        folded[name.lower()] = (spelled, value if before is None else f"{before},{value}")
    return dict(folded.values())


def lambda_event(shape: str, method: str, path: str, headers: dict[str, str], body: bytes, base64_body: bool) -> dict:
    event = SHAPES[shape](method, path)
    event["headers"] = {name: value for name, value in event["headers"].items() if name.lower() != "content-type"} | headers
    if shape == "rest_api_v1":
        event["multiValueHeaders"] = {name: [value] for name, value in event["headers"].items()}
        event["pathParameters"] = {"proxy": path.lstrip("/")}
    else:
        event["rawPath"] = path
    if base64_body:
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"] = body.decode("utf-8")
    return event


def comparable(status: int, content_type: str | None, body: bytes) -> tuple:
    if not body:  # a redirect: no content, so no type to compare (Mangum gives a payload 2.0 answer API Gateway's default one)
        content_type = None
    try:
        content = json.loads(body)
    except ValueError:
        content = body
    if isinstance(content, dict):
        content.pop("prediction_id", None)  # a fresh uuid4 per answer
        content.pop("uptime_seconds", None)  # /health's: the clock moves between the two requests
    return status, content_type, content


def lambda_answer(answer: dict) -> tuple:
    headers = {name.lower(): value for name, value in (answer.get("headers") or {}).items()}
    body = base64.b64decode(answer["body"]) if answer.get("isBase64Encoded") else (answer.get("body") or "").encode()
    return comparable(answer["statusCode"], headers.get("content-type"), body)


@pytest.fixture
def served(fresh_app_module, model_file):
    """intentflow_serving.app imported as a cold container imports it (the model loaded at init), keys required."""
    module = fresh_app_module(MODEL_URI=model_file, API_KEYS=KEY)
    assert module.store.current is not None
    return module


def test_the_lambda_handler_answers_as_the_route_does(served):
    from fastapi.testclient import TestClient

    route = TestClient(served.app, raise_server_exceptions=False, follow_redirects=False)  # a 307 is an answer too

    @PROPERTY
    @given(shapes, requests(), st.booleans())
    @example("http_api_v2", KNOWN[0], True)
    @example("http_api_v2", KNOWN[1], True)
    @example("function_url", KNOWN[2], False)
    @example("rest_api_v1", KNOWN[1], False)
    @example("rest_api_v1", KNOWN[3], False)
    @example("function_url", KNOWN[4], False)
    def check(shape, request, base64_body):
        method, path, sent_headers, body = request
        try:
            body.decode("utf-8")
        except UnicodeDecodeError:
            base64_body = True  # a text body holds text; other bytes come base64-encoded
        headers = as_api_gateway_folds(sent_headers)
        # The path as a client sends it (httpx removes dot segments, as any client does).
        wire_path = httpx.URL("http://testserver" + path).raw_path.decode("ascii")
        answered = served.handler(lambda_event(shape, method, wire_path, headers, body, base64_body), FakeContext())
        routed = route.request(method, "http://testserver" + wire_path, content=body,
                               headers=[(name, value.encode("utf-8")) for name, value in headers.items()])
        assert routed.request.url.raw_path.decode("ascii") == wire_path  # the route was sent that very path
        expected = comparable(routed.status_code, routed.headers.get("content-type"), routed.content)
        assert lambda_answer(answered) == expected, (shape, method, wire_path, headers, body, base64_body)

    check()
