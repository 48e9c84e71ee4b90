"""The ingest flow every protocol shares: read, decode, resolve the app, run the pipeline, append.

Only the adapter differs between protocols; limits, rules, failed-event records, metrics and the
durable append happen here, once.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from tally import metrics
from tally.adapters.base import (
    Adapter,
    AppKey,
    DecodedRequest,
    IngestOutcome,
    IngestRequest,
    Reply,
    RequestError,
)
from tally.catalog import App
from tally.catalog.definitions import Permission
from tally.http.apps import CatalogUnavailable
from tally.http.asgi import Receive, Scope, Send, client_ip, ingest_request, send_reply
from tally.http.origins import check_origin
from tally.http.services import Services
from tally.model import Access, DropReason, FailedEvent
from tally.pipeline import Rejection, RequestContext
from tally.sink import AppendBatch, AppendResult, StoreUnavailable
from tally.store.rows import event_rows, failed_rows
from tally.tokens import InvalidToken, verify_customer_token

_EMPTY = AppendResult(accepted=0, duplicates=0)
log = logging.getLogger("tally.ingest")


def _payload(request: IngestRequest) -> bytes:
    """What the client sent: the body, or the query string when the data came that way (GET)."""
    return request.body or request.raw_query.encode()


async def define_first_seen(services: Services, ctx: RequestContext) -> None:
    """Define what a request sent first. The events are stored whatever happens here: a catalog
    that cannot be written now is asked again by the next event."""
    permission = Permission.ANONYMOUS if ctx.access is Access.ANONYMOUS else Permission.SERVER
    try:
        await services.resolver.define_first_seen(ctx.app, ctx.first_seen, permission)
    except Exception:
        log.exception("could not define first-seen events for app %s", ctx.app.id)


class IngestEndpoint:
    """A raw ASGI endpoint for one protocol adapter."""

    def __init__(self, adapter: Adapter, services: Services):
        self.adapter = adapter
        self.services = services
        protocol = adapter.protocol  # the per-request metrics, looked up once
        self._request_events = metrics.REQUEST_EVENTS.labels(protocol)
        self._events_accepted = metrics.EVENTS_ACCEPTED.labels(protocol)
        self._events_duplicate = metrics.EVENTS_DUPLICATE.labels(protocol)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        cors = self.adapter.cors_headers
        if method == "OPTIONS":
            await send_reply(send, self.adapter.preflight(), cors)
            return
        try:
            if method not in self.adapter.methods:
                allowed = ", ".join((*self.adapter.methods, "OPTIONS"))
                raise RequestError(
                    405,
                    "method_not_allowed",
                    f"{method} is not allowed here; use {allowed}",
                    headers=[("allow", allowed)],
                )
            wait = self.services.rate_limiter.ip(client_ip(scope))
            if wait is not None:
                raise self._rate_limited("ip", wait)
            reply = await self._ingest(scope, receive)
        except ConnectionAbortedError:
            return
        except RequestError as error:
            metrics.REQUESTS_REJECTED.labels(self.adapter.protocol, error.code).inc()
            reply = self.adapter.encode_error(error)
        except StoreUnavailable as exc:
            metrics.REQUESTS_REJECTED.labels(self.adapter.protocol, "store_unavailable").inc()
            reply = self.adapter.encode_error(
                RequestError(
                    503,
                    "store_unavailable",
                    f"events could not be stored, nothing was accepted; retry later ({exc})",
                    headers=[("retry-after", "1")],
                )
            )
        except CatalogUnavailable as exc:
            metrics.REQUESTS_REJECTED.labels(self.adapter.protocol, exc.code).inc()
            reply = self.adapter.encode_error(
                RequestError(
                    exc.status_code, exc.code, exc.detail, headers=list((exc.headers or {}).items())
                )
            )
        except Exception:
            log.exception("unexpected error in %s ingest", self.adapter.protocol)
            reply = self.adapter.encode_error(
                RequestError(
                    500, "internal_error", "an unexpected error occurred; see the server log"
                )
            )
        await send_reply(send, reply, cors)

    async def _ingest(self, scope: Scope, receive: Receive) -> Reply:
        services = self.services
        limits = services.limits
        protocol = self.adapter.protocol
        try:
            async with asyncio.timeout(limits.body_timeout):
                request = await ingest_request(scope, receive, limits.max_body_bytes)
        except TimeoutError:
            raise RequestError(
                408,
                "request_timeout",
                f"the request body did not arrive within {limits.body_timeout:g} s",
                headers=[("connection", "close")],
            ) from None
        received_at = datetime.now(UTC)
        try:
            decoded = self.adapter.decode(request)
        except RequestError as error:
            # The body is unreadable; if the headers name an app, keep the request for that app.
            early = self.adapter.credentials(request)
            app = await services.resolver.resolve(early) if early else None
            if app is not None:
                self._limit_app(app)
            if app is not None and error.status >= 400:
                await self._keep_failed_request(app, received_at, _payload(request), error)
            raise

        parts: list[tuple[App, DecodedRequest]] = []
        limited: set[str] = set()
        for part in decoded.parts:
            app = await self._app_of(part, skip_unknown=decoded.skip_unknown_apps)
            if app is None:
                continue
            if app.id not in limited:  # before anything of the request is kept for the app
                limited.add(app.id)
                self._limit_app(app)
            try:
                self.adapter.check(app, request)
                check_origin(app, part.credentials, request)
            except RequestError as error:
                await self._keep_failed_request(app, received_at, _payload(request), error)
                raise
            parts.append((app, part))
        total = sum(len(p.events) + len(p.errors) for _, p in parts)
        if total > limits.max_events_per_request:
            error = RequestError(
                413,
                DropReason.TOO_MANY_EVENTS.value,
                f"the request has {total} events; the limit is {limits.max_events_per_request}",
            )
            for app in {app.id: app for app, _ in parts}.values():
                await self._keep_failed_request(app, received_at, _payload(request), error)
            raise error
        self._request_events.observe(total)

        batch = AppendBatch()
        rejected: list[Rejection] = []
        drops: dict[DropReason, int] = {}
        for app, part in parts:
            ctx = await self._context(app, part, request, received_at)
            outcome = services.pipeline.run(part.events, ctx, part.errors)
            if ctx.first_seen:
                await define_first_seen(services, ctx)
            batch.events.extend(event_rows(app.id, outcome.accepted))
            batch.failed.extend(failed_rows(outcome.failed))
            rejected.extend(outcome.rejected)
            for reason, count in outcome.drop_counts.items():
                drops[reason] = drops.get(reason, 0) + count
            for rule, count in outcome.discard_counts.items():
                batch.discarded.append((app.id, rule, count))
                metrics.EVENTS_DISCARDED.labels(protocol, rule).inc(count)
        result = _EMPTY if batch.empty else await services.store.append(batch)
        if result.accepted:
            self._events_accepted.inc(result.accepted)
        if result.duplicates:
            self._events_duplicate.inc(result.duplicates)
        for reason, count in drops.items():
            metrics.EVENTS_DROPPED.labels(protocol, reason.value).inc(count)
        return self.adapter.encode(
            IngestOutcome(
                result=result, rejected=rejected, events=total, reply_data=decoded.reply_data
            )
        )

    async def _context(
        self, app: App, part: DecodedRequest, request: IngestRequest, received_at: datetime
    ) -> RequestContext:
        access = part.access
        if access is None:
            access = Access.ANONYMOUS if isinstance(part.credentials, AppKey) else Access.SERVER
        customer_id = None
        if part.customer_token is not None:
            try:
                customer_id = verify_customer_token(app, part.customer_token)
            except InvalidToken as exc:
                raise RequestError(401, "invalid_token", str(exc)) from None
            access = Access.CUSTOMER
        return RequestContext(
            app=app,
            rules=await self.services.resolver.rules(app),
            protocol=self.adapter.protocol,
            received_at=received_at,
            limits=self.services.limits,
            ip=part.ip or request.client_ip,
            user_agent=part.user_agent or request.headers.get("user-agent"),
            sent_at=part.sent_at,
            access=access,
            enforce_definitions=part.enforce_definitions or customer_id is not None,
            allow_reserved=part.allow_reserved,
            customer_id=customer_id,
        )

    def _limit_app(self, app: App) -> None:
        wait = self.services.rate_limiter.app(app.id)
        if wait is not None:
            raise self._rate_limited("app", wait)

    def _rate_limited(self, by: str, wait: int) -> RequestError:
        """A 429; nothing of the request is kept (that would let a flood fill the disk)."""
        metrics.REQUESTS_RATE_LIMITED.labels(self.adapter.protocol, by).inc()
        what = "this client address" if by == "ip" else "this app"
        return RequestError(
            429,
            "rate_limited",
            f"too many requests for {what}; retry in {wait} s",
            headers=[("retry-after", str(wait))],
        )

    async def _app_of(self, part: DecodedRequest, *, skip_unknown: bool) -> App | None:
        if part.credentials is None:
            if skip_unknown:
                return None
            raise RequestError(401, "missing_app_key", "no app key was given")
        app = await self.services.resolver.resolve(part.credentials)
        if app is None:
            if skip_unknown:
                metrics.REQUESTS_REJECTED.labels(self.adapter.protocol, "unknown_app_key").inc()
                return None
            raise RequestError(401, "unknown_app_key", "no app has this key")
        return app

    async def _keep_failed_request(
        self, app: App, received_at: datetime, body: bytes, error: RequestError
    ) -> None:
        try:
            reason = DropReason(error.code)
        except ValueError:
            reason = DropReason.INVALID_BODY
        record = FailedEvent(
            app_id=app.id,
            received_at=received_at,
            protocol=self.adapter.protocol,
            reason=reason,
            message=error.message,
            payload=body,
        )
        await self.services.store.append(AppendBatch(failed=failed_rows([record])))
        metrics.EVENTS_DROPPED.labels(self.adapter.protocol, reason.value).inc()
