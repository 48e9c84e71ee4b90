"""Fuzzed requests for every ingest endpoint: structure-aware bodies in each protocol's own
fields (values of the wrong type included), arbitrary bytes, and hostile headers."""

from __future__ import annotations

import base64
import gzip
from typing import Any

from fuzz_strategies import (
    big_numbers,
    fields,
    hostile_text,
    json_documents,
    json_values,
    maybe_list,
    mostly,
    numbers,
    query_strings,
    raw_bytes,
    render,
    scalars,
    times,
)
from hypothesis import strategies as st

from tally.adapters.base import Adapter
from tally.adapters.countly import CountlyAdapter, CountlyBulkAdapter
from tally.adapters.engagelab import (
    EngageLabAdapter,
    EngageLabPropertyAdapter,
    EngageLabRegisterAdapter,
)
from tally.adapters.native import NativeAdapter
from tally.adapters.segment import segment_adapters
from tally.adapters.synerise import synerise_adapters

names = mostly(
    st.one_of(
        st.sampled_from(["signup", "item purchase", "checkout.done", "page.visit", "a" * 256]),
        st.text(st.characters(codec="ascii", categories=["L", "N"]), min_size=1, max_size=30),
    ),
    hostile_text,
    70,
)
ids = mostly(st.sampled_from(["u1", "d1", "x" * 300]), st.one_of(hostile_text, numbers), 60)
properties = st.dictionaries(hostile_text, json_values(4), max_size=4)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "",
        "APPLICATION/JSON",
        ";;;",
    ]
)


def _basic(user: str, password: str) -> str:
    text = f"{user}:{password}".encode("utf-8", "surrogatepass")
    return "Basic " + base64.b64encode(text).decode()


def authorizations(app_key: str, api_key: str, api_secret: str) -> st.SearchStrategy[str | None]:
    """No header, the right credentials, wrong ones, and malformed ones."""
    return st.one_of(
        st.none(),
        st.just(_basic(api_key, api_secret)),
        st.just(_basic(app_key, "")),
        st.builds(_basic, hostile_text, hostile_text),
        st.builds(lambda t: f"Bearer {t}", hostile_text),
        st.sampled_from(["Basic", "Basic !!!", "Basic " + "A" * 5, "Bearer", "Negotiate x", " "]),
    )


# The protocols' own fields ------------------------------------------------------------------

native_context = fields(
    {
        "url": hostile_text,
        "referrer": hostile_text,
        "locale": hostile_text,
        "timezone": hostile_text,
    }
)
native_event = fields(
    {
        "name": names,
        "id": hostile_text,
        "time": times,
        "user": ids,
        "device": ids,
        "session": ids,
        "label": hostile_text,
        "count": big_numbers,
        "sum": numbers,
        "dur": numbers,
        "properties": properties,
        "context": native_context,
    },
    required=("name",),
)


def native_body(app_key: str) -> st.SearchStrategy[Any]:
    return fields(
        {
            "app_key": st.one_of(st.just(app_key), hostile_text),
            "sent_at": times,
            "access_token": hostile_text,
            "events": maybe_list(native_event),
        },
        required=("events",),
    )


countly_event = fields(
    {
        "key": names,
        "count": numbers,
        "sum": numbers,
        "dur": numbers,
        "segmentation": properties,
        "timestamp": times,
        "id": hostile_text,
        "hour": numbers,
        "dow": numbers,
    },
    required=("key",),
)


def countly_params(app_key: str) -> dict[str, st.SearchStrategy[Any]]:
    return {
        "app_key": mostly(
            st.just(app_key), st.one_of(hostile_text, json_values(4), st.just({"$ne": None}))
        ),
        "device_id": ids,
        "timestamp": times,
        "events": mostly(maybe_list(countly_event).map(render), maybe_list(countly_event)),
        "begin_session": scalars,
        "session_duration": numbers,
        "end_session": scalars,
        "metrics": st.one_of(properties.map(render), properties),
        "tz": numbers,
        "ip_address": hostile_text,
        "sdk_name": hostile_text,
        "sdk_version": scalars,
        "old_device_id": ids,
        "user_details": st.one_of(properties.map(render), properties),
        "consent": st.one_of(st.dictionaries(hostile_text, scalars).map(render), properties),
        "country_code": hostile_text,
        "city": hostile_text,
        "location": st.one_of(hostile_text, st.sampled_from(["52.2,21.0", "91,0", "1e9,1"])),
        "checksum": hostile_text,
        "checksum256": hostile_text,
        "method": st.sampled_from(["sc", "events", "get_events", ""]),
    }


COUNTLY_REQUIRED = ("app_key", "device_id", "events")


def countly_bulk_params(app_key: str) -> dict[str, st.SearchStrategy[Any]]:
    item = fields(countly_params(app_key), required=("device_id", "events"))
    return {
        "app_key": countly_params(app_key)["app_key"],
        "requests": mostly(maybe_list(item).map(render), maybe_list(item)),
    }


engagelab_event = fields(
    {
        "euid": ids,
        "event_name": names,
        "itime": times,
        "random_id": hostile_text,
        "properties": properties,
    },
    required=("euid", "event_name", "itime"),
)
engagelab_report = fields(
    {"app_key": hostile_text, "data": maybe_list(engagelab_event)}, required=("data",)
)
engagelab_register = fields(
    {
        "identity_name": st.one_of(
            st.sampled_from(["user_id", "anonymous_id", "registration_id"]), hostile_text
        ),
        "identity_values": maybe_list(ids, max_size=120),
    },
    required=("identity_name", "identity_values"),
)
engagelab_property = fields(
    {
        "euid": ids,
        "type": st.one_of(st.sampled_from(["set", "increase"]), hostile_text),
        "properties": st.one_of(properties, st.dictionaries(hostile_text, numbers, max_size=4)),
    },
    required=("euid", "type", "properties"),
)

segment_context = fields(
    {
        "ip": hostile_text,
        "userAgent": hostile_text,
        "locale": hostile_text,
        "timezone": hostile_text,
        "page": fields({"url": hostile_text, "referrer": hostile_text}),
        "library": fields({"name": hostile_text, "version": scalars}),
        "os": fields({"name": hostile_text}),
        "device": fields({"type": hostile_text}),
        "traits": properties,
    }
)


def segment_message(app_key: str) -> st.SearchStrategy[Any]:
    return fields(
        {
            "type": st.one_of(
                st.sampled_from(["track", "identify", "page", "screen", "group", "alias"]),
                hostile_text,
            ),
            "userId": ids,
            "anonymousId": ids,
            "messageId": hostile_text,
            "timestamp": times,
            "originalTimestamp": times,
            "event": names,
            "name": hostile_text,
            "category": scalars,
            "properties": properties,
            "traits": properties,
            "groupId": ids,
            "previousId": ids,
            "context": segment_context,
            "writeKey": st.one_of(st.just(app_key), hostile_text),
            "sentAt": times,
        },
        required=("type", "userId"),
    )


def segment_batch(app_key: str) -> st.SearchStrategy[Any]:
    return fields(
        {
            "batch": maybe_list(segment_message(app_key)),
            "writeKey": st.one_of(st.just(app_key), hostile_text, json_values(3)),
            "sentAt": times,
            "context": segment_context,
            "integrations": json_values(3),
        },
        required=("batch",),
    )


synerise_client = fields({"id": ids, "uuid": hostile_text, "customId": ids, "email": hostile_text})
synerise_event = fields(
    {
        "action": names,
        "label": hostile_text,
        "client": synerise_client,
        "params": properties,
        "time": times,
        "eventSalt": hostile_text,
    },
    required=("action", "label", "client"),
)
money = fields({"amount": numbers, "currency": hostile_text}, required=("amount", "currency"))
synerise_transaction = fields(
    {
        "client": synerise_client,
        "orderId": hostile_text,
        "value": money,
        "revenue": money,
        "products": maybe_list(properties),
        "recordedAt": times,
        "eventSalt": hostile_text,
        "metadata": properties,
        "paymentInfo": properties,
    },
    required=("client", "orderId", "value"),
)


def body_for(path: str, app_key: str) -> st.SearchStrategy[Any]:
    """A structure-aware JSON value for the body of ``path``."""
    if path in ("/api/v1/events", "/sdk/v1/events"):
        return native_body(app_key)
    if path in ("/i", "/o/sdk"):
        return fields(countly_params(app_key), required=COUNTLY_REQUIRED)
    if path == "/i/bulk":
        return fields(countly_bulk_params(app_key), required=("requests",))
    if path == "/v1/event/report":
        return engagelab_report
    if path == "/v1/user/register":
        return engagelab_register
    if path == "/v1/user/property":
        return engagelab_property
    if path in ("/v1/batch", "/v1/b"):
        return segment_batch(app_key)
    if path.startswith("/v1/"):
        return segment_message(app_key)
    if path in ("/v4/events/batch",):
        return maybe_list(synerise_event)
    if path == "/v4/transactions/batch":
        return maybe_list(synerise_transaction)
    if path == "/v4/transactions":
        return synerise_transaction
    if path.startswith("/v4/"):
        return synerise_event
    raise AssertionError(f"no body strategy for {path}")


def query_for(path: str, app_key: str) -> st.SearchStrategy[str]:
    """A query string for ``path``: Countly's parameters where it reads them, else junk that
    includes the parameters some protocols do read (``token``, ``app_key``)."""
    if path in ("/i", "/o/sdk"):
        return query_strings(countly_params(app_key), required=COUNTLY_REQUIRED)
    if path == "/i/bulk":
        return query_strings(countly_bulk_params(app_key), required=("requests",))
    return st.one_of(
        st.just(""),
        query_strings({"token": st.one_of(st.just(app_key), hostile_text), "app_key": ids}),
    )


@st.composite
def bodies(draw: st.DrawFn, path: str, app_key: str) -> tuple[bytes, str]:
    """(body, content type): the protocol's fields as JSON (with JSON's quirks), as a form for
    Countly, or bytes that are not JSON at all."""
    kind = draw(st.sampled_from(["json"] * 6 + ["form", "bytes", "document"]))
    content_type = draw(content_types)
    if kind == "json":
        body = draw(json_documents(body_for(path, app_key)))
        if draw(st.booleans()):
            content_type = "application/json"
    elif kind == "form":
        body = draw(query_for(path, app_key)).encode()
        if draw(st.booleans()):
            content_type = "application/x-www-form-urlencoded"
    elif kind == "bytes":
        body = draw(raw_bytes)
    else:
        body = draw(json_documents())
    return body, content_type


@st.composite
def encodings(draw: st.DrawFn, body: bytes) -> tuple[bytes, str | None]:
    """The body as sent: plain, gzipped (claimed or not), or claimed gzip but not gzip."""
    choice = draw(st.sampled_from(["plain"] * 6 + ["gzip", "lie", "unknown", "hide"]))
    if choice == "gzip":
        return gzip.compress(body), "gzip"
    if choice == "lie":
        return body, draw(st.sampled_from(["gzip", "x-gzip", "GZIP "]))
    if choice == "unknown":
        return body, draw(st.sampled_from(["br", "deflate", "identity", "gzip, br", "\x00"]))
    if choice == "hide":
        return gzip.compress(body), None
    return body, None


ADAPTERS: dict[str, Adapter] = {
    "/api/v1/events": NativeAdapter(),
    "/sdk/v1/events": NativeAdapter(browser=True),
    "/i": CountlyAdapter(),
    "/i/bulk": CountlyBulkAdapter(),
    "/v1/event/report": EngageLabAdapter(),
    "/v1/user/register": EngageLabRegisterAdapter(),
    "/v1/user/property": EngageLabPropertyAdapter(),
    **segment_adapters(),
    **synerise_adapters(),
}
"""Every ingest path served by an adapter (``TallyApp.ingest``; test_ingest_raw checks that
none is missing)."""


def _kind(adapter: Adapter) -> tuple[object, ...]:
    """Adapters that decode alike: Segment's short paths share the long paths' adapters, and the
    Synerise predefined endpoints differ only in their fixed action."""
    action = getattr(adapter, "action", 0) is None
    flags = (getattr(adapter, "browser", None), getattr(adapter, "batch", None))
    return (type(adapter), getattr(adapter, "call", None), action, *flags)


DISTINCT = sorted({_kind(a): p for p, a in sorted(ADAPTERS.items(), reverse=True)}.values())
