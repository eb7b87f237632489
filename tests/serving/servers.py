"""Real local TCP servers that misbehave the way a neighbour of serving can: refuse, hang, trickle,
answer garbage or 500. Each runs in threads of the test process on 127.0.0.1."""

from __future__ import annotations

import socket
import threading
from typing import Callable

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


def read_request(connection: socket.socket) -> None:
    """Read the whole request (head, then the body its Content-Length announces), so that closing
    the connection afterwards is an orderly close and not a reset that could drop the answer."""
    connection.settimeout(2)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return
        body += chunk


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
