"""``/o/sdk``: what Countly SDKs read from the server. Only ``method=sc`` (behaviour settings) is
answered; an empty configuration keeps the SDK on its defaults, sending as usual."""

from __future__ import annotations

import logging
import time

from tally.adapters.base import Reply, RequestError
from tally.adapters.countly import CORS_HEADERS, CountlyAdapter, CountlyRequest, read_params
from tally.http.asgi import Receive, Scope, Send, ingest_request, send_reply
from tally.http.services import Services

_encode_error = CountlyAdapter().encode_error

log = logging.getLogger("tally.ingest")


class CountlySdkEndpoint:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "OPTIONS":
            await send_reply(send, CountlyAdapter().preflight(), CORS_HEADERS)
            return
        try:
            if scope["method"] not in ("GET", "POST"):
                raise RequestError(405, "method_not_allowed", "Method not allowed")
            reply = await self._answer(scope, receive)
        except ConnectionAbortedError:
            return
        except RequestError as error:
            reply = _encode_error(error)
        except Exception:
            log.exception("unexpected error in Countly's /o/sdk")
            reply = _encode_error(
                RequestError(500, "internal_error", "an unexpected error occurred")
            )
        await send_reply(send, reply, CORS_HEADERS)

    async def _answer(self, scope: Scope, receive: Receive) -> Reply:
        request = await ingest_request(scope, receive, self.services.limits.max_body_bytes)
        params = read_params(request)
        credentials = CountlyRequest(params).credentials()
        if await self.services.resolver.resolve(credentials) is None:
            raise RequestError(400, "unknown_app_key", "App does not exist")
        if params.get("method") != "sc":
            raise RequestError(400, "invalid_method", "Invalid method")
        body = b'{"v":1,"t":%d,"c":{}}' % int(time.time() * 1000)
        return Reply(status=200, body=body, content_type="application/json; charset=utf-8")
