"""What the sync and async clients share, none of it doing I/O: events as JSON, the bounded queue
and how it is cut into batches, the retry policy, and the delivery of one batch as a generator that
the clients drive with their own HTTP client and their own way of sleeping."""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

from tally import __version__
from tally.ids import uuid7

log = logging.getLogger("tally.client")

EVENTS_PATH = "/api/v1/events"
USER_AGENT = f"tally-python/{__version__}"

# The server's documented defaults (tally.limits.Limits; docs/api.md "Limits"). A server
# configured with smaller ones answers 413; the client splits the batch, and sends smaller ones
# from then on.
SERVER_MAX_BODY_BYTES = 1_048_576
SERVER_MAX_EVENTS_PER_REQUEST = 10_000
SERVER_MAX_EVENT_BYTES = 32_768

DEFAULT_BATCH_SIZE = 100
DEFAULT_MAX_BATCH_BYTES = 1_000_000
"""Under the server's 1 MB (1,048,576 bytes), with room to spare for the envelope."""
DEFAULT_MAX_QUEUE = 10_000
DEFAULT_FLUSH_INTERVAL = 1.0
DEFAULT_MAX_RETRIES = 10
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_CAP = 30.0
DEFAULT_TIMEOUT = 10.0
DEFAULT_CLOSE_TIMEOUT = 10.0
MAX_RETRY_AFTER = 600.0
"""A ``Retry-After`` longer than this (10 minutes) is taken as this long."""

IDENTIFY_EVENT = "identity.identify"
"""What Segment's identify is stored as (tally.adapters.segment.IDENTIFY_EVENT)."""
ALIAS_EVENT = "identity.link"
"""What Segment's alias and Countly's old_device_id are stored as (tally.model.LINK_EVENT)."""
LINK_PREVIOUS = "previous_id"

_ENVELOPE_OVERHEAD = len(b'{"sent_at":"2026-01-01T00:00:00.000Z","events":[]}')

# Codes of failures the client reports itself; the others are the server's (docs/api.md).
NETWORK_ERROR = "network_error"
"""No answer: the connection failed, was cut, or timed out (retried)."""
CLOSE_TIMEOUT = "close_timeout"
"""``close()`` (or the exit) gave up waiting: the events were still queued or being retried."""


class TallyError(Exception):
    """A read (``events``, ``query``) that failed: the server's error code and message, or
    ``network_error`` when no answer came."""

    def __init__(self, status: int | None, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if status is None else f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Failure:
    """Events the server did not store and the client will not send again, for ``on_error``.

    ``code`` is the server's (``unknown_app_key``, ``invalid_time``, ``store_unavailable``...: see
    docs/api.md) or the client's own (``network_error``, ``close_timeout``); ``status`` is the
    HTTP status of the last answer, None when there was none."""

    code: str
    message: str
    events: list[dict[str, Any]]
    status: int | None = None


# Events


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    return json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
    ).encode()


def iso_time(value: datetime) -> str:
    """UTC with milliseconds and a Z; a naive datetime is local time (Python's convention)."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def encode_event(
    name: str,
    *,
    event_id: str | None = None,
    time: datetime | str | float | None = None,
    user: str | int | None = None,
    device: str | int | None = None,
    session: str | int | None = None,
    label: str | None = None,
    count: int | None = None,
    sum: float | None = None,
    dur: float | None = None,
    properties: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    max_event_bytes: int = SERVER_MAX_EVENT_BYTES,
) -> tuple[str, bytes]:
    """(id, JSON) of one event for ``POST /api/v1/events``. The id is a new UUIDv7 unless given;
    the time is now unless given. Raises ValueError or TypeError for what the server would never
    take: no name, a value JSON cannot carry (NaN included), an event over ``max_event_bytes``."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"an event needs a non-empty name, got {name!r}")
    event_id = uuid7() if event_id is None else str(event_id)
    if time is None:
        time = datetime.now(UTC)
    event: dict[str, Any] = {
        "id": event_id,
        "name": name,
        "time": iso_time(time) if isinstance(time, datetime) else time,
    }
    for key, value in (
        ("user", user),
        ("device", device),
        ("session", session),
        ("label", label),
        ("count", count),
        ("sum", sum),
        ("dur", dur),
    ):
        if value is not None:
            event[key] = value
    if properties:
        event["properties"] = dict(properties)
    if context:
        event["context"] = dict(context)
    try:
        data = dumps(event)
    except ValueError:  # the only one json.dumps raises here: NaN or infinity
        raise ValueError(f"event {name!r}: NaN and infinity cannot be sent") from None
    if len(data) > max_event_bytes:
        raise ValueError(
            f"event {name!r} is {len(data)} bytes as JSON; the server takes at most "
            f"{max_event_bytes} bytes per event"
        )
    return event_id, data


def envelope(items: list[bytes], sent_at: datetime | None = None) -> bytes:
    """The request body: the events and the client's clock now (``sent_at``), from which the
    server corrects event times for clock skew; so it is stamped again on every retry."""
    stamp = iso_time(sent_at or datetime.now(UTC)).encode()
    return b'{"sent_at":"' + stamp + b'","events":[' + b",".join(items) + b"]}"


def decoded(items: Iterable[bytes]) -> list[dict[str, Any]]:
    return [json.loads(item) for item in items]


# The queue


class Buffer:
    """The bounded queue of encoded events and the counters of what became of them.

    Not thread-safe: the sync client holds its lock around every call. Overflow policy: when
    ``max_queue`` events wait, a new event is dropped (the newest; the queued ones keep their
    place), counted in ``dropped``, and a warning is logged once per burst of drops."""

    def __init__(self, max_queue: int, batch_size: int, max_batch_bytes: int) -> None:
        if max_queue < 1 or batch_size < 1:
            raise ValueError("max_queue and batch_size must be at least 1")
        if batch_size > SERVER_MAX_EVENTS_PER_REQUEST:
            log.warning(
                "batch_size %d is over the server's default limit of %d events per request",
                batch_size,
                SERVER_MAX_EVENTS_PER_REQUEST,
            )
        self.items: deque[bytes] = deque()
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.max_batch_bytes = max_batch_bytes
        self.queued_bytes = 0
        self.enqueued = 0
        """Events ever queued."""
        self.taken = 0
        """Events ever taken off the queue into a batch."""
        self.settled = 0
        """Events whose fate is known: stored, duplicate, rejected, or given up."""
        self.sent = 0
        """Events the server acknowledged (stored now or before: duplicates)."""
        self.failed = 0
        """Events the server refused or the client gave up on (each reported to ``on_error``)."""
        self.dropped = 0
        """Events never queued: the queue was full, or the client closed."""
        self.dropped_closed = 0
        """Of those, the ones tracked after ``close()``."""
        self._burst = 0

    def __len__(self) -> int:
        return len(self.items)

    def put(self, item: bytes) -> bool:
        if len(self.items) >= self.max_queue:
            self.dropped += 1
            if self._burst == 0:
                log.warning(
                    "tally client queue is full (%d events): dropping new events until it drains "
                    "(%d dropped so far)",
                    self.max_queue,
                    self.dropped,
                )
            self._burst += 1
            return False
        if self._burst:
            log.warning("tally client queue takes events again; %d were dropped", self._burst)
            self._burst = 0
        self.items.append(item)
        self.queued_bytes += len(item) + 1
        self.enqueued += 1
        return True

    def batch_ready(self) -> bool:
        """Enough waits for a full batch (by count or by size)."""
        return (
            len(self.items) >= self.batch_size
            or self.queued_bytes + _ENVELOPE_OVERHEAD >= self.max_batch_bytes
        )

    def take(self) -> list[bytes]:
        """The next batch: the oldest events, at most ``batch_size`` of them and a body of at most
        ``max_batch_bytes`` (always at least one event)."""
        batch: list[bytes] = []
        size = _ENVELOPE_OVERHEAD
        while self.items and len(batch) < self.batch_size:
            item = self.items[0]
            if batch and size + len(item) + 1 > self.max_batch_bytes:
                break
            self.items.popleft()
            batch.append(item)
            size += len(item) + 1
            self.queued_bytes -= len(item) + 1
        self.taken += len(batch)
        return batch

    def take_all(self) -> list[bytes]:
        items = list(self.items)
        self.items.clear()
        self.queued_bytes = 0
        self.taken += len(items)
        return items

    def requeue(self, items: list[bytes]) -> None:
        """Put taken events back at the front (their batch was cut off before an answer)."""
        self.items.extendleft(reversed(items))
        self.queued_bytes += sum(len(item) + 1 for item in items)
        self.taken -= len(items)

    def settle(self, delivery: Delivery) -> None:
        self.settled += delivery.size
        self.sent += delivery.sent
        self.failed += sum(len(f.events) for f in delivery.failures)
        if delivery.max_events is not None:
            self.batch_size = min(self.batch_size, delivery.max_events)
        if delivery.max_bytes is not None:
            self.max_batch_bytes = min(self.max_batch_bytes, delivery.max_bytes)


# Retries


def backoff_delay(
    attempt: int,
    *,
    base: float = DEFAULT_BACKOFF_BASE,
    cap: float = DEFAULT_BACKOFF_CAP,
    retry_after: float | None = None,
    jitter: float | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt + 1`` (``attempt`` counts from 0).

    Exponential with "equal jitter": between half and all of ``min(cap, base * 2**attempt)``.
    A ``Retry-After`` from the server is honoured: never sooner than it says (up to
    ``MAX_RETRY_AFTER``), and never sooner than the backoff either, so a server that keeps
    answering ``Retry-After: 1`` is asked less and less often. ``jitter`` (0..1) is random unless
    given."""
    ceiling = min(cap, base * 2 ** min(attempt, 62))
    share = random.random() if jitter is None else jitter
    delay = ceiling / 2 + share * ceiling / 2
    if retry_after is not None:
        delay = max(delay, min(max(retry_after, 0.0), MAX_RETRY_AFTER))
    return delay


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delay-seconds, or an HTTP date. None if unreadable."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class Policy:
    max_retries: int | None = DEFAULT_MAX_RETRIES
    """Retries of one batch after its first attempt; None: until it is delivered or closed."""
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_cap: float = DEFAULT_BACKOFF_CAP


# Delivering one batch


@dataclass(frozen=True)
class Send:
    """Step: POST these events (the driver adds ``sent_at``). The answer is an ``Answer``, or
    None if the driver would not send (the close deadline passed)."""

    items: list[bytes]


@dataclass(frozen=True)
class Wait:
    """Step: sleep this long. The answer is True, or False if the close deadline cut it short."""

    seconds: float


@dataclass(frozen=True)
class Answer:
    status: int | None
    """None: no answer (``error`` says why)."""
    body: bytes = b""
    retry_after: str | None = None
    error: str | None = None


Step = Send | Wait
RETRY_STATUSES = frozenset({408, 425, 429})
"""Retried like 5xx (with the server's Retry-After)."""


def _error_of(answer: Answer) -> tuple[str, str]:
    """(code, message) of an answer that is not a success."""
    if answer.status is None:
        return NETWORK_ERROR, answer.error or "no answer"
    try:
        error = json.loads(answer.body)["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        text = answer.body[:200].decode("utf-8", errors="replace").strip()
        return f"http_{answer.status}", text or f"HTTP {answer.status}"


def _reply_of(answer: Answer) -> dict[str, Any] | None:
    """The ingest reply ``{accepted, duplicates, rejected}``, if the body is one."""
    try:
        reply = json.loads(answer.body)
    except ValueError:
        return None
    if isinstance(reply, dict) and isinstance(reply.get("rejected"), list):
        return reply
    return None


@dataclass
class Delivery:
    """The fate of one batch: ``run()`` yields the steps; afterwards ``sent`` and ``failures``
    say what became of every event, and ``max_events``/``max_bytes`` how small batches must be
    from now on if the server answered 413."""

    items: list[bytes]
    policy: Policy
    sent: int = 0
    failures: list[Failure] = field(default_factory=list)
    max_events: int | None = None
    max_bytes: int | None = None

    @property
    def size(self) -> int:
        return len(self.items)

    def _fail(self, code: str, message: str, items: list[bytes], status: int | None) -> None:
        if items:
            self.failures.append(Failure(code, message, decoded(items), status))

    def run(self) -> Generator[Step, Any, None]:
        pending = [self.items]
        while pending:
            chunk = pending.pop()
            attempt = 0
            while True:
                answer: Answer | None = yield Send(chunk)
                if answer is None:
                    self._fail(CLOSE_TIMEOUT, "not sent before the close deadline", chunk, None)
                    for rest in reversed(pending):
                        self._fail(CLOSE_TIMEOUT, "not sent before the close deadline", rest, None)
                    return
                status = answer.status
                if status is not None and (status < 300 or status == 400):
                    reply = _reply_of(answer)
                    if reply is not None:
                        self._replied(chunk, reply, status)
                        break
                if status == 413:
                    code, message = _error_of(answer)
                    if len(chunk) > 1:
                        half = len(chunk) // 2
                        if code == "too_many_events":
                            self.max_events = min(self.max_events or half, half)
                        else:
                            body = len(envelope(chunk[:half]))
                            self.max_bytes = min(self.max_bytes or body, body)
                        pending.append(chunk[half:])
                        pending.append(chunk[:half])
                    else:
                        self._fail(code, message, chunk, status)
                    break
                retryable = status is None or status >= 500 or status in RETRY_STATUSES
                code, message = _error_of(answer)
                if not retryable:
                    self._fail(code, message, chunk, status)
                    break
                if self.policy.max_retries is not None and attempt >= self.policy.max_retries:
                    message = f"{message} (gave up after {attempt + 1} attempts)"
                    self._fail(code, message, chunk, status)
                    break
                delay = backoff_delay(
                    attempt,
                    base=self.policy.backoff_base,
                    cap=self.policy.backoff_cap,
                    retry_after=parse_retry_after(answer.retry_after),
                )
                log.info(
                    "tally: %d events not delivered (%s: %s); retry %d in %.2f s",
                    len(chunk),
                    code,
                    message,
                    attempt + 1,
                    delay,
                )
                attempt += 1
                if not (yield Wait(delay)):
                    message = f"{message} (still failing at the close deadline)"
                    self._fail(CLOSE_TIMEOUT, message, chunk, status)
                    for rest in reversed(pending):
                        self._fail(CLOSE_TIMEOUT, "not sent before the close deadline", rest, None)
                    return

    def _replied(self, chunk: list[bytes], reply: dict[str, Any], status: int) -> None:
        refused: set[int] = set()
        for rejection in reply["rejected"]:
            try:
                index = int(rejection["index"])
                item = chunk[index]
            except (KeyError, ValueError, TypeError, IndexError):
                continue
            if index in refused:
                continue
            refused.add(index)
            self._fail(str(rejection.get("code")), str(rejection.get("message")), [item], status)
        self.sent += len(chunk) - len(refused)


def report(on_error: Callable[[Failure], Any] | None, failures: list[Failure]) -> None:
    """Each failure to ``on_error`` (its exceptions logged, never raised); without a callback,
    a warning per failure."""
    for failure in failures:
        if on_error is None:
            log.warning(
                "tally: %d events were not stored: %s: %s",
                len(failure.events),
                failure.code,
                failure.message,
            )
            continue
        try:
            on_error(failure)
        except Exception:
            log.exception("tally: the on_error callback raised")


# Configuration shared by both clients


@dataclass(frozen=True)
class Credentials:
    app_key: str | None
    api_key: str | None
    api_secret: str | None
    app_id: str | None

    @classmethod
    def of(
        cls,
        app_key: str | None,
        api_key: str | None,
        api_secret: str | None,
        app_id: str | None,
    ) -> Credentials:
        if app_key and (api_key or api_secret):
            raise ValueError("give either app_key, or api_key and api_secret, not both")
        if not app_key and not (api_key and api_secret):
            raise ValueError("give app_key (public writes), or api_key and api_secret (server)")
        return cls(app_key or None, api_key or None, api_secret or None, app_id or None)

    def write_headers(self) -> dict[str, str]:
        return {"X-Tally-Key": self.app_key} if self.app_key else {}

    def write_auth(self) -> tuple[str, str] | None:
        if self.api_key and self.api_secret:
            return (self.api_key, self.api_secret)
        return None

    def read_auth(self) -> tuple[str, str]:
        auth = self.write_auth()
        if auth is None:
            raise ValueError("reads need the app's api_key and api_secret")
        return auth

    def app_path(self, suffix: str) -> str:
        self.read_auth()
        if not self.app_id:
            raise ValueError("reads need app_id (the app's id, from `tally apps create`)")
        return f"/api/v1/apps/{self.app_id}/{suffix}"


def base_url(host: str) -> str:
    host = host.strip().rstrip("/")
    if "://" not in host:
        raise ValueError(f"host must be a URL such as http://127.0.0.1:8000, got {host!r}")
    return host


def events_params(
    user: str | int | None,
    name: str | None,
    since: datetime | str | float | None,
    limit: int,
) -> dict[str, str | int]:
    params: dict[str, str | int] = {"limit": limit}
    if user is not None:
        params["user"] = str(user)
    if name is not None:
        params["name"] = name
    if since is not None:
        params["since"] = iso_time(since) if isinstance(since, datetime) else str(since)
    return params


def read_result(status: int, body: bytes) -> Any:
    """A read's JSON answer, or TallyError with the server's code."""
    if status == 200:
        return json.loads(body)
    code, message = _error_of(Answer(status, body))
    raise TallyError(status, code, message)


class EventMethods:
    """``track``, ``identify`` and ``alias``: each encodes an event now (so a bad one raises at
    the call) and queues it; the subclass's ``_put`` says whether it was queued."""

    _max_event_bytes: int = SERVER_MAX_EVENT_BYTES
    _buffer: Buffer

    @property
    def dropped(self) -> int:
        """Events never queued: the queue was full (the newest are dropped), or it was closed."""
        return self._buffer.dropped

    @property
    def sent(self) -> int:
        """Events the server acknowledged (including duplicates of ones it already had)."""
        return self._buffer.sent

    @property
    def failed(self) -> int:
        """Events refused by the server or given up on; each was reported to ``on_error``."""
        return self._buffer.failed

    @property
    def pending(self) -> int:
        """Events queued or being sent."""
        return self._buffer.enqueued - self._buffer.settled

    def _put(self, item: bytes) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def track(
        self,
        name: str,
        *,
        user: str | int | None = None,
        device: str | int | None = None,
        session: str | int | None = None,
        properties: Mapping[str, Any] | None = None,
        time: datetime | str | float | None = None,
        label: str | None = None,
        count: int | None = None,
        sum: float | None = None,
        dur: float | None = None,
        context: Mapping[str, Any] | None = None,
        id: str | None = None,
    ) -> str | None:
        """Queue one event; returns its id, or None if it was dropped (the queue was full, or the
        client is closed). ``id`` defaults to a new UUIDv7: the server stores an id once (7 days),
        so retries never duplicate; pass your own (an order number) to make resending from
        your side idempotent too. ``time`` defaults to now."""
        event_id, item = encode_event(
            name,
            event_id=id,
            time=time,
            user=user,
            device=device,
            session=session,
            label=label,
            count=count,
            sum=sum,
            dur=dur,
            properties=properties,
            context=context,
            max_event_bytes=self._max_event_bytes,
        )
        return event_id if self._put(item) else None

    def identify(
        self,
        user_id: str | int,
        traits: Mapping[str, Any] | None = None,
        device_id: str | int | None = None,
        *,
        time: datetime | str | float | None = None,
        id: str | None = None,
    ) -> str | None:
        """Record who the user is: an ``identity.identify`` event with the traits as properties.
        With ``device_id``, the event carries both ids, which links them: events read or counted
        by the user then include the device's (docs/protocols.md, Identity)."""
        return self.track(
            IDENTIFY_EVENT, user=user_id, device=device_id, properties=traits, time=time, id=id
        )

    def alias(
        self,
        previous_id: str | int,
        user_id: str | int,
        *,
        time: datetime | str | float | None = None,
        id: str | None = None,
    ) -> str | None:
        """Say that ``previous_id`` (an anonymous or old id) is the same person as ``user_id``:
        an ``identity.link`` event with ``user=user_id``, ``device=previous_id`` (which links the
        two) and ``properties.previous_id``."""
        return self.track(
            ALIAS_EVENT,
            user=user_id,
            device=previous_id,
            properties={LINK_PREVIOUS: str(previous_id)},
            time=time,
            id=id,
        )


@dataclass(frozen=True)
class Settings:
    """A client's configuration (both clients take the same keyword arguments)."""

    base_url: str
    credentials: Credentials
    batch_size: int = DEFAULT_BATCH_SIZE
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    max_queue: int = DEFAULT_MAX_QUEUE
    policy: Policy = Policy()
    timeout: float = DEFAULT_TIMEOUT
    close_timeout: float = DEFAULT_CLOSE_TIMEOUT
    max_event_bytes: int = SERVER_MAX_EVENT_BYTES
    on_error: Callable[[Failure], Any] | None = None
    flush_at_exit: bool = True

    def __post_init__(self) -> None:
        if self.flush_interval < 0 or self.timeout <= 0 or self.close_timeout < 0:
            raise ValueError("flush_interval, timeout and close_timeout must not be negative")
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError("max_retries must be at least 0 (or None: no limit)")

    @property
    def max_retries(self) -> int | None:
        return self.policy.max_retries

    @classmethod
    def of(
        cls,
        host: str,
        *,
        app_key: str | None,
        api_key: str | None,
        api_secret: str | None,
        app_id: str | None,
        max_retries: int | None,
        backoff_base: float,
        backoff_cap: float,
        **options: Any,
    ) -> Settings:
        """Settings from the keyword arguments both clients take."""
        return cls(
            base_url=base_url(host),
            credentials=Credentials.of(app_key, api_key, api_secret, app_id),
            policy=Policy(max_retries, backoff_base, backoff_cap),
            **options,
        )

    def new_buffer(self) -> Buffer:
        return Buffer(self.max_queue, self.batch_size, self.max_batch_bytes)
