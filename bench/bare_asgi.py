"""The ceiling: a bare ASGI app on the same server stack as Tally, doing the least an ingest
endpoint must do (read the whole body, parse the JSON, answer a small JSON body).

Run it as its own process: ``python -m bench.bare_asgi --port 8001 --workers 2`` (from the repo
root). The uvicorn settings mirror ``tally.serve._uvicorn_config``.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_encoder = msgspec.json.Encoder()
_READY = b'{"status":"ready"}'


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _reply(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: Message, receive: Receive, send: Send) -> None:
    """POST: parse the body and count its events; any other method: answer like /readyz."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    if scope["method"] != "POST":
        await _reply(send, 200, _READY)
        return
    body = await _read_body(receive)
    try:
        events = msgspec.json.decode(body)["events"]
    except (msgspec.DecodeError, KeyError, TypeError):
        await _reply(send, 400, b'{"error":"invalid body"}')
        return
    reply = {"accepted": len(events), "duplicates": 0, "rejected": []}
    await _reply(send, 200, _encoder.encode(reply))


def main() -> None:
    import uvicorn

    from tally.serve import UVICORN_OPTIONS

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    uvicorn.run(
        "bench.bare_asgi:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        **UVICORN_OPTIONS,
    )


if __name__ == "__main__":
    main()
