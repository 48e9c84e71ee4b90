"""Small raw-ASGI helpers: the ingest path avoids framework overhead (see DESIGN.md)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from tally.adapters.base import IngestRequest, Reply, RequestError
from tally.adapters.form import parse_form

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def headers_of(scope: Scope) -> dict[str, str]:
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def client_ip(scope: Scope) -> str | None:
    """The client's address. Behind a proxy uvicorn has already put the address from
    ``X-Forwarded-For`` here, when the proxy is trusted (``FORWARDED_ALLOW_IPS``, 127.0.0.1 by
    default); the header from anyone else is ignored, so it cannot be forged to change an event's
    address, its geo data, the internal-traffic filter or the rate limit."""
    client = scope.get("client")
    return client[0] if client else None


async def read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole body, refusing with 413 as soon as it is known to exceed ``limit`` bytes."""
    declared = headers.get("content-length")
    if declared is not None:
        try:
            declared_size = int(declared)
        except ValueError:
            raise RequestError(400, "invalid_body", "Content-Length is not a number") from None
        if declared_size > limit:
            raise RequestError(
                413,
                "body_too_large",
                f"request body is {declared_size} bytes; the limit is {limit}",
            )
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client went away")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise RequestError(
                    413, "body_too_large", f"request body exceeds the limit of {limit} bytes"
                )
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def ingest_request(scope: Scope, receive: Receive, limit: int) -> IngestRequest:
    headers = headers_of(scope)
    raw_query = scope.get("query_string", b"").decode("utf-8", errors="replace")
    query = dict(parse_form(raw_query)) if raw_query else {}
    request = IngestRequest(
        raw_query=raw_query,
        method=scope["method"],
        path=scope["path"],
        query=query,
        headers=headers,
        body=b"",
        client_ip=client_ip(scope),
    )
    if scope["method"] in ("POST", "PUT", "PATCH"):
        request.body = await read_body(receive, headers, limit)
    return request


async def send_reply(
    send: Send, reply: Reply, extra_headers: Sequence[tuple[str, str]] = ()
) -> None:
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
    ]
    headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers)
    headers.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in extra_headers)
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})
