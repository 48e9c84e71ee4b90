"""Slow clients (slowloris) against a real ``tally serve`` with one HTTP worker, over raw sockets:
they do not stop other clients being served, and they are cut off with 408 (in the protocol's
shape once the request's path is known) instead of holding a connection for ever."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from support import App, Server, ServerFactory, create_app

WAIT = 20.0
"""How long a socket read may block before the test gives up (not a timing assertion: the
server's timeouts are 1 s)."""


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, App]]:
    """One ``tally serve --workers 1 --header-timeout 1 --body-timeout 1`` for the module."""
    tmp = tmp_path_factory.mktemp("slow")
    factory = ServerFactory(tmp)
    try:
        data = tmp / "data"
        app = create_app(data)
        server = factory.start(
            data, workers=1, options=["--header-timeout", "1", "--body-timeout", "1"]
        )
        yield server, app
    finally:
        factory.cleanup()


@contextlib.contextmanager
def connections(server: Server, count: int) -> Iterator[list[socket.socket]]:
    opened = [
        socket.create_connection((server.host, server.port), timeout=WAIT) for _ in range(count)
    ]
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One response (headers and a Content-Length body), leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def served(server: Server, app: App, name: str) -> None:
    with httpx.Client(timeout=WAIT) as http:
        response = server.ingest(http, app, [{"name": name, "id": name}])
    assert response.status_code == 200, response.text


def raw_ingest(app: App, name: str) -> bytes:
    """A whole keep-alive ``POST /api/v1/events`` of one event, as bytes for a raw socket."""
    body = json.dumps({"events": [{"name": name}]}).encode()
    return (
        f"POST /api/v1/events HTTP/1.1\r\nHost: tally\r\nX-Tally-Key: {app.app_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def body_of(raw: bytes) -> dict:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), raw
    return json.loads(body)


def test_slow_headers_and_idle_connections_are_closed_and_others_served(
    slow_server: tuple[Server, App],
) -> None:
    server, app = slow_server
    with connections(server, 20) as slow, connections(server, 5) as idle:
        for sock in slow:
            sock.sendall(b"POST /api/v1/events HTTP/1.1\r\nHost: tally\r\nX-Slow: ")
        served(server, app, "while-slow-headers")
        for sock in slow:
            assert read_all(sock).startswith(b"HTTP/1.1 408")
        for sock in idle:
            assert read_all(sock) == b""  # nothing was asked: closed without a word
    served(server, app, "after")


def test_a_keep_alive_connection_must_send_its_next_headers_in_time(
    slow_server: tuple[Server, App],
) -> None:
    server, app = slow_server
    request = raw_ingest(app, "first")
    with connections(server, 1) as [sock]:
        sock.sendall(request)
        first = read_response(sock)
        assert first.startswith(b"HTTP/1.1 200"), first
        sock.sendall(b"POST /api/v1/events HTTP/1.1\r\nHost: tally\r\n")  # and no more
        assert read_all(sock).startswith(b"HTTP/1.1 408")


def test_a_connection_busy_for_longer_than_the_header_timeout_stays_open(
    slow_server: tuple[Server, App],
) -> None:
    """The deadline runs from the last response, not from when the connection opened."""
    server, app = slow_server
    request = raw_ingest(app, "steady")
    with connections(server, 1) as [sock]:
        for _ in range(12):  # 12 requests 0.3 s apart: 3.6 s on one connection, timeout 1 s
            sock.sendall(request)
            answer = read_response(sock)
            assert answer.startswith(b"HTTP/1.1 200"), answer
            time.sleep(0.3)


@pytest.mark.parametrize(
    ("path", "content_type", "check"),
    [
        (
            "/api/v1/events",
            "application/json",
            lambda body: body["error"]["code"] == "request_timeout",
        ),
        ("/i", "application/x-www-form-urlencoded", lambda body: "result" in body),
        ("/v1/batch", "application/json", lambda body: body["code"] == "request_timeout"),
    ],
    ids=["native", "countly", "segment"],
)
def test_a_slow_body_gets_408_in_the_protocols_shape(
    slow_server: tuple[Server, App], path: str, content_type: str, check
) -> None:
    server, app = slow_server
    head = (
        f"POST {path} HTTP/1.1\r\nHost: tally\r\nX-Tally-Key: {app.app_key}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n"
    ).encode()
    with connections(server, 10) as slow:
        for sock in slow:
            sock.sendall(head + b'{"events": [')  # then nothing more
        served(server, app, f"while-slow-bodies-{path.strip('/').replace('/', '-')}")
        for sock in slow:
            raw = read_all(sock)
            assert check(body_of(raw)), raw
    # nothing of the cut requests was kept, not even as a failed event
    with httpx.Client(timeout=WAIT) as http:
        failed = http.get(f"{server.url}/api/v1/apps/{app.id}/failed-events", auth=app.auth)
    assert failed.status_code == 200 and failed.json()["failed_events"] == [], failed.text
