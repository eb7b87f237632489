"""Real local TCP servers that misbehave the way a neighbour of serving can: refuse, hang, trickle,
answer garbage or 500. Each runs in threads of the test process on 127.0.0.1."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

# What a server does with one accepted connection, until `stop` is set.
Behaviour = Callable[[socket.socket, threading.Event], None]
# No server misbehaves longer than this: if the code under test waits on one (the bug these servers
# are for), its test fails on time instead of hanging the suite (the test client's portal thread
# cannot be interrupted by pytest-timeout).
MISBEHAVE_SECONDS = 20


class Server:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.stop = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.connections: list[socket.socket] = []
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                continue
            self.connections.append(connection)
            thread = threading.Thread(target=self._serve, args=(connection,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, connection: socket.socket) -> None:
        try:
            self.behaviour(connection, self.stop)
        except OSError:
            pass  # the client gave up: that is what these servers are for
        finally:
            connection.close()

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        for connection in self.connections:
            connection.close()
        self.listener.close()


@dataclass(frozen=True)
class Request:
    """What a server received: the request line's method and target, the headers (names
    lower-cased) and the body."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes


def read_request(connection: socket.socket) -> Request | None:
    """Read the whole request (head, then the body its Content-Length announces), so that closing
    the connection afterwards is an orderly close and not a reset that could drop the answer.
    None if the client hung up first."""
    connection.settimeout(2)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        body += chunk
    method, target, _ = request_line.split(" ", 2)
    return Request(method, target, headers, body)


def silent(connection: socket.socket, stop: threading.Event) -> None:
    """Accept and never answer (and hang up after MISBEHAVE_SECONDS)."""
    stop.wait(MISBEHAVE_SECONDS)


def answering(raw: bytes) -> Behaviour:
    """Read the request, send these bytes, close."""

    def behaviour(connection: socket.socket, stop: threading.Event) -> None:
        read_request(connection)
        connection.sendall(raw)
        connection.close()

    return behaviour


def trickling(connection: socket.socket, stop: threading.Event) -> None:
    """An answer that does not end (for MISBEHAVE_SECONDS), one byte every 50 ms: no single read
    ever times out, so a socket timeout alone never ends the wait."""
    read_request(connection)
    for byte in (b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100_000)[:MISBEHAVE_SECONDS * 20]:
        if stop.wait(0.05):
            return
        connection.sendall(bytes([byte]))


HTTP_500 = answering(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def closed_port_url() -> str:
    """A URL on which nothing listens: connections are refused at once."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}"


def http_answer(status: int, headers: dict[str, object], body: bytes = b"") -> bytes:
    """A whole HTTP/1.1 answer, closing the connection after it. Content-Length is the body's length
    unless ``headers`` says otherwise (a HEAD answer, a body to be cut short)."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Whatever')}", *(f"{name}: {value}" for name, value in
             {"Content-Length": len(body), **headers, "Connection": "close"}.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


REASONS = {200: "OK", 201: "Created", 301: "Moved Permanently", 302: "Found", 307: "Temporary Redirect",
           308: "Permanent Redirect", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           500: "Internal Server Error", 503: "Service Unavailable"}

# How one GET of a FakeS3 object misbehaves: the raw answer to send instead of the object.
S3Failure = Callable[["FakeS3", Request], bytes]


class Recorder:
    """A Server behaviour that keeps every request it receives and answers each with ``answer(request)``
    (the raw HTTP answer, e.g. from http_answer)."""

    def __init__(self, answer: Callable[[Request], bytes]) -> None:
        self.answer = answer
        self.requests: list[Request] = []

    def __call__(self, connection: socket.socket, stop: threading.Event) -> None:
        request = read_request(connection)
        if request is not None:
            self.requests.append(request)
            connection.sendall(self.answer(request))


class FakeS3(Recorder):
    """An S3 endpoint holding one object (under any bucket and key) in one region, for a Server.

    As S3 does, it answers a request signed for another region with 301 PermanentRedirect and the
    bucket's region in x-amz-bucket-region. Each of ``failing_gets`` answers one GET, in order,
    before GETs get the object; every request is kept in ``requests``."""

    def __init__(self, content: bytes, *, region: str = "us-east-1", failing_gets: Sequence[S3Failure] = ()) -> None:
        super().__init__(self.object_answer)
        self.content, self.region = content, region
        self.etag = f'"{hashlib.md5(content).hexdigest()}"'
        self.failing_gets = list(failing_gets)

    def object_answer(self, request: Request) -> bytes:
        if signing_region(request) != self.region:
            return s3_error(301, "PermanentRedirect", {"x-amz-bucket-region": self.region})(self, request)
        if request.method == "GET" and self.failing_gets:
            return self.failing_gets.pop(0)(self, request)
        headers = {"ETag": self.etag, "Content-Length": len(self.content), "Content-Type": "application/octet-stream"}
        return http_answer(200, headers, self.content if request.method == "GET" else b"")

    @property
    def gets(self) -> list[Request]:
        return [request for request in self.requests if request.method == "GET"]


def signing_region(request: Request) -> str | None:
    """The region a SigV4 request was signed for (its credential scope)."""
    match = re.search(r"Credential=[^/]+/\d{8}/([^/]+)/s3/aws4_request", request.headers.get("authorization", ""))
    return match.group(1) if match else None


def cut_short(s3: FakeS3, request: Request) -> bytes:
    """The object's headers, then half its bytes, then the connection closed."""
    return http_answer(200, {"ETag": s3.etag, "Content-Length": len(s3.content)}, s3.content[:len(s3.content) // 2])


def s3_error(status: int, code: str, headers: dict[str, str] | None = None) -> S3Failure:
    """An S3 error answer: its XML body (none to a HEAD, as S3 sends none)."""

    def failure(s3: FakeS3, request: Request) -> bytes:
        body = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode() if request.method != "HEAD" else b""
        return http_answer(status, {"Content-Type": "application/xml", **(headers or {})}, body)

    return failure


def redirect_to(location: str) -> S3Failure:
    """307 Temporary Redirect (S3's answer while a new bucket's DNS name spreads) to ``location``: a
    path on the same server, or a whole URL."""

    def failure(s3: FakeS3, request: Request) -> bytes:
        url = location if "://" in location else f"http://{request.headers['host']}{location}"
        return http_answer(307, {"Location": url, "Content-Type": "application/xml"}, b"<Error><Code>TemporaryRedirect</Code></Error>")

    return failure


