"""POST /classify's ordinary case, answered without FastAPI's per-request machinery.

Why it exists (BENCHMARKS.md, section 4): a model call streams ~90 MB of weights through the CPU
caches, so the Python that runs right after it finds the interpreter's own code and data evicted
and pays several times its warm price for every layer a request passes through. Measured that
way on the benchmark machine, FastAPI's routing, dependency solving, body parsing and exception
plumbing cost about as much as everything else in the request together, and kept the handler
above 1.2 times the bare model call.

So one ASGI middleware answers the one request that has to be fast, and only in its ordinary case:
a JSON body that the route's own request model accepts, a valid key when keys are required, and
a model loaded. Anything else (a bad body, a missing key, no model, another route) goes to the
FastAPI app with the body intact, and the app stays the one place that defines the API's errors,
its OpenAPI schema and every other route. The tests hold both paths to the same answers.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Callable, Sequence
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# (the request body, the request's ASGI scope) -> the JSON answer, or None for "let the app answer".
Answer = Callable[[bytes, Scope], bytes | None]


class FastPath:
    def __init__(self, app: ASGIApp, *, path: str, answer: Answer) -> None:
        self.app = app
        self.path = path
        self.answer = answer

    def __getattr__(self, name: str):
        """The wrapped app's attributes (its routes, state, OpenAPI schema), as if it were the app."""
        if name in ("app", "path", "answer") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or route_path(scope) != self.path:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return  # the client left before sending the whole body: nobody to answer
        payload = self.answer(body, scope)
        if payload is None:
            await self.app(scope, replay(body, receive), send)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": payload})


class EventFastPath:
    """The Lambda handler's fast path: the same answer, taken from the invocation event itself.

    For payload format 2.0 (an HTTP API or a function URL), POST /classify's ordinary case is
    answered from the event, without Mangum's translation to ASGI and the event loop it runs per
    invocation (measured: about 0.1 ms, half of what the handler added to the model call). It reads
    the event as Mangum does (the path, lower-cased headers encoded as UTF-8, a base64 body) and
    gives ``answer`` the same request; every other event, and every request the answer leaves to the
    app, goes to ``handler`` (Mangum) untouched.
    """

    def __init__(self, handler: Callable[[dict, Any], dict], *, path: str, answer: Answer) -> None:
        self.handler = handler
        self.path = path
        self.answer = answer

    def __call__(self, event: dict, context: Any) -> dict:
        payload = self._answer(event, context) if isinstance(event, dict) and event.get("version") == "2.0" else None
        if payload is None:
            return self.handler(event, context)
        return {"statusCode": 200, "headers": {"content-length": str(len(payload)), "content-type": "application/json"},
                "body": payload.decode("utf-8"), "isBase64Encoded": False}

    def _answer(self, event: dict, context: Any) -> bytes | None:
        request = (event.get("requestContext") or {}).get("http") or {}
        if request.get("method") != "POST" or unquote(request.get("path") or "/") != self.path:
            return None
        body = event.get("body") or ""
        try:
            raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body.encode("utf-8")
        except (binascii.Error, ValueError, UnicodeEncodeError):
            return None  # Mangum and the app say what is wrong with it
        # Folded as Mangum folds them: of two names differing only in case, the last one's value.
        folded = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
        headers = [(name.encode(), value.encode()) for name, value in folded.items()]
        return self.answer(raw, {"headers": headers, "aws.event": event, "aws.context": context})


class LazyApp:
    """An ASGI app built by ``build`` on its first request (or first attribute read): what it
    imports is not paid for by a process that never needs it."""

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._app: ASGIApp | None = None

    @property
    def built(self) -> ASGIApp:
        if self._app is None:
            self._app = self._build()
        return self._app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.built(scope, receive, send)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.built, name)


def route_path(scope: Scope) -> str:
    """The path the app's router matches: without the root path a proxy or API stage put in front."""
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnects first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then whatever the client sends next."""
    sent = False

    async def receive_again() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive_again


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """One request header (ASGI gives names lower-cased)."""
    for key, value in headers:
        if key == name:
            return value
    return None


def is_json(content_type: bytes | None) -> bool:
    """Whether FastAPI parses a body with this content type as JSON: what its route does
    (fastapi/routing.py) with email.message, spelled out on the string at a quarter of its cost.
    The header decoded as Starlette decodes it; the media type before any ";", stripped as str.strip
    strips (more than bytes.strip does) and lower-cased; anything but one "/" in it reads as
    text/plain; then application/json or application/<anything>+json. Without a content type FastAPI
    does not parse the body (``strict_content_type``, on by default): the route answers 422, so the
    fast path leaves such a request to it. tests/serving/test_fast_path_properties.py holds the two
    to the same answers."""
    if not content_type:
        return False
    media = content_type.decode("latin-1").partition(";")[0].strip().lower()
    if media.count("/") != 1:
        return False
    main, sub = media.split("/")
    return main == "application" and (sub == "json" or sub.endswith("+json"))
