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

from typing import Callable, Sequence

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
    """What FastAPI parses as JSON: no content type, or application/json and its +json kin."""
    if content_type is None:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))
