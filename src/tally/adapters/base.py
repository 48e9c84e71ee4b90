"""What every protocol adapter provides to the shared ingest flow."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

import msgspec

from tally.catalog.models import App
from tally.model import Access, Drop, Event
from tally.pipeline.runner import Rejection
from tally.sink import AppendResult


class IngestRequest(msgspec.Struct, kw_only=True):
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    """Lower-cased names; repeated headers joined with a comma."""
    body: bytes
    client_ip: str | None = None
    raw_query: str = ""
    """The query string as sent (signatures are computed over it)."""


class AppKey(msgspec.Struct, frozen=True):
    """A public app key (browser and SDK writes)."""

    key: str


class ApiCredentials(msgspec.Struct, frozen=True):
    """A server API key and secret (server-side writes and reads)."""

    key: str
    secret: str


class BearerToken(msgspec.Struct, frozen=True):
    """A workspace JWT Tally issued for an API key and secret (server-side writes)."""

    token: str


Credentials = AppKey | ApiCredentials | BearerToken


class DecodedRequest(msgspec.Struct, kw_only=True):
    """One app's share of a request (a request is usually one part; a Countly bulk, several)."""

    credentials: Credentials | None
    events: list[Event]
    errors: list[tuple[Event, Drop]] = msgspec.field(default_factory=list)
    """Items that could not be decoded at all, with why; they become failed events."""
    sent_at: datetime | None = None
    user_agent: str | None = None
    ip: str | None = None
    """A client address the protocol states explicitly (overrides the connection's)."""
    access: Access | None = None
    """Who the request speaks for; None: by its credentials (app key anonymous, API key server)."""
    enforce_definitions: bool = False
    """The path only accepts defined events (the Synerise-style browser tracker path)."""
    allow_reserved: bool = False
    """The endpoint may produce reserved events (Synerise transactions)."""
    customer_token: str | None = None
    """A customer JWT, verified by the ingest flow with the app's key."""


class DecodedBatch(msgspec.Struct, kw_only=True):
    parts: list[DecodedRequest]
    skip_unknown_apps: bool = False
    """Store what belongs to known apps and skip parts naming no app (Countly's bulk rule),
    instead of refusing the request."""
    reply_data: Any = None
    """What the adapter worked out while decoding and must send back (EngageLab's EUIDs)."""


class IngestOutcome(msgspec.Struct, kw_only=True):
    result: AppendResult
    rejected: list[Rejection]
    events: int
    """Events the request carried (accepted, duplicate or rejected)."""
    reply_data: Any = None


class Reply(msgspec.Struct, kw_only=True):
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = msgspec.field(default_factory=list)


class RequestError(Exception):
    """The request as a whole is refused (bad body, unknown key...), with a stable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []


class Adapter(Protocol):
    protocol: str
    methods: tuple[str, ...]
    """HTTP methods that carry data (OPTIONS is answered for CORS on every endpoint)."""
    cors_headers: list[tuple[str, str]]

    def credentials(self, request: IngestRequest) -> Credentials | None:
        """Credentials readable without the body (headers, query string), if any."""
        ...

    def decode(self, request: IngestRequest) -> DecodedBatch: ...

    def check(self, app: App, request: IngestRequest) -> None:
        """Protocol rules that need the app (signatures...); raise ``RequestError`` to refuse."""
        ...

    def preflight(self) -> Reply:
        """The reply to an OPTIONS request (sent with ``cors_headers``)."""
        ...

    def encode(self, outcome: IngestOutcome) -> Reply: ...

    def encode_error(self, error: RequestError) -> Reply: ...


UNREADABLE = (msgspec.DecodeError, RecursionError)
"""What decoding a client's JSON may raise: not JSON, not the expected shape
(``msgspec.ValidationError`` is a ``DecodeError``), or nested deeper than the decoder can go
(``RecursionError``, which must never escape as a 500)."""


def decode_json_body(body: bytes, decoder: msgspec.json.Decoder) -> Any:
    """Decode a JSON body, refusing it the same way for every protocol: ``invalid_json`` when it
    is not JSON, ``invalid_body`` when it is not the expected shape (or nested too deeply)."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise RequestError(400, "invalid_body", f"invalid request body: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise RequestError(400, "invalid_json", f"request body is not valid JSON: {exc}") from exc
    except RecursionError:
        raise RequestError(
            400, "invalid_body", "request body nests objects and arrays too deeply"
        ) from None
