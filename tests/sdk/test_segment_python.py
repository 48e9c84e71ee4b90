"""Segment's official Python library (``segment-analytics-python``), unchanged, against a real
``tally serve``: the library posts to ``<host>/v1/batch`` with the write key (the Tally app key) in
the body and as the Basic user name, and reads the ``code`` and ``message`` of an error reply.

Each test checks what the library saw (no error, or the error it raised) and then reads the stored
events back through the read API.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from segment.analytics import VERSION, Client
from segment.analytics.request import APIError

from support import App, Server, wait_for_events

STORE_TIMEOUT = 20.0
"""Seconds to wait for events to be readable (they are durable once acknowledged)."""
HTTP_TIMEOUT = 10


class Errors:
    """The library's ``on_error`` callback: what failed to upload, and why."""

    def __init__(self) -> None:
        self.seen: list[tuple[Exception, list[dict[str, Any]]]] = []

    def __call__(self, error: Exception, batch: list[dict[str, Any]]) -> None:
        self.seen.append((error, batch))


@pytest.fixture
def errors() -> Errors:
    return Errors()


@pytest.fixture
def sync_client(tally: Server, app: App, errors: Errors) -> Client:
    """One request per call, answered before the call returns."""
    return Client(
        write_key=app.app_key,
        host=tally.url,
        sync_mode=True,
        on_error=errors,
        timeout=HTTP_TIMEOUT,
    )


@pytest.fixture
def queued_client(tally: Server, app: App, errors: Errors) -> Iterator[Client]:
    """The library's default mode: a consumer thread uploads batches; ``flush`` waits for it."""
    client = Client(
        write_key=app.app_key,
        host=tally.url,
        on_error=errors,
        timeout=HTTP_TIMEOUT,
        max_retries=2,
        upload_interval=0.1,
        upload_size=40,
        gzip=True,
    )
    yield client
    client.join()


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def by_name(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    named = {e["name"]: e for e in events}
    assert len(named) == len(events), sorted(e["name"] for e in events)
    return named


def test_every_call_type_is_stored(
    sync_client: Client, tally: Server, app: App, errors: Errors
) -> None:
    sent: dict[str, dict[str, Any]] = {}
    _, sent["track"] = sync_client.track(
        anonymous_id="anon-py", event="Viewed Pricing", properties={"plan": "pro", "seats": 3}
    )
    _, sent["identify"] = sync_client.identify(
        user_id="user-py", anonymous_id="anon-py", traits={"email": "ann@example.com"}
    )
    _, sent["page"] = sync_client.page(
        user_id="user-py",
        category="Docs",
        name="Pricing",
        properties={"url": "https://example.com/pricing", "referrer": "https://a.example/"},
    )
    _, sent["screen"] = sync_client.screen(
        user_id="user-py", name="Settings", properties={"tab": "privacy"}
    )
    _, sent["group"] = sync_client.group(
        user_id="user-py", group_id="acme", traits={"name": "Acme", "employees": 42}
    )
    _, sent["alias"] = sync_client.alias(previous_id="legacy-42", user_id="user-py")
    assert errors.seen == []

    events = by_name(
        wait_for_events(
            tally, app, lambda found: len(found) >= 6, timeout=STORE_TIMEOUT, what="6 calls"
        )
    )
    assert set(events) == {
        "Viewed Pricing",
        "identity.identify",
        "page.visit",
        "screen.view",
        "identity.group",
        "identity.link",
    }
    names = {
        "track": "Viewed Pricing",
        "identify": "identity.identify",
        "page": "page.visit",
        "screen": "screen.view",
        "group": "identity.group",
        "alias": "identity.link",
    }
    for call, message in sent.items():
        event = events[names[call]]
        assert event["id"] == message["messageId"], call
        assert event["protocol"] == "segment"
        assert event["sdk"] == {"name": "analytics-python", "version": VERSION}
        assert instant(event["time"]) <= instant(event["received_at"]), call

    track = events["Viewed Pricing"]
    assert (track["user"], track["device"]) == (None, "anon-py")
    assert track["properties"] == {"plan": "pro", "seats": 3}
    assert track["internal"] is False
    identify = events["identity.identify"]
    assert (identify["user"], identify["device"]) == ("user-py", "anon-py")
    assert identify["properties"] == {"email": "ann@example.com"}
    page = events["page.visit"]
    assert page["label"] == "Pricing"
    assert page["context"]["url"] == "https://example.com/pricing"
    assert page["context"]["referrer"] == "https://a.example/"
    assert page["properties"]["category"] == "Docs"
    screen = events["screen.view"]
    assert (screen["label"], screen["properties"]) == ("Settings", {"tab": "privacy"})
    group = events["identity.group"]
    assert group["properties"] == {"groupId": "acme", "traits": {"name": "Acme", "employees": 42}}
    assert events["identity.link"]["properties"] == {"previous_id": "legacy-42"}
    assert {name for name, e in events.items() if e["internal"]} == {
        "identity.identify",
        "identity.group",
        "identity.link",
    }


def test_identify_and_alias_tie_the_ids_into_one_person(
    sync_client: Client, tally: Server, app: App, errors: Errors
) -> None:
    sync_client.track(anonymous_id="anon-7", event="Browsed")
    sync_client.track(user_id="legacy-7", event="Old Login")
    sync_client.track(user_id="someone-else", event="Unrelated")
    sync_client.identify(user_id="user-7", anonymous_id="anon-7")
    sync_client.alias(previous_id="legacy-7", user_id="user-7")
    sync_client.track(user_id="user-7", event="Upgraded")
    assert errors.seen == []

    events = wait_for_events(
        tally,
        app,
        lambda found: len(found) >= 5,
        timeout=STORE_TIMEOUT,
        what="the person's events",
        user="user-7",
    )
    assert sorted(e["name"] for e in events) == [
        "Browsed",
        "Old Login",
        "Upgraded",
        "identity.identify",
        "identity.link",
    ]


def test_a_resent_message_is_stored_once(
    sync_client: Client, tally: Server, app: App, errors: Errors
) -> None:
    for _ in range(3):
        sync_client.track(user_id="u1", event="Order Completed", message_id="order-1001")
    sync_client.track(user_id="u1", event="Marker")
    assert errors.seen == []
    events = wait_for_events(
        tally, app, lambda found: len(found) >= 2, timeout=STORE_TIMEOUT, what="two events"
    )
    assert sorted(e["name"] for e in events) == ["Marker", "Order Completed"]
    assert by_name(events)["Order Completed"]["id"] == "order-1001"


def test_queued_gzipped_batches_are_stored(
    queued_client: Client, tally: Server, app: App, errors: Errors
) -> None:
    sent = []
    for i in range(100):
        ok, message = queued_client.track(
            user_id=f"user-{i % 7}", event="Song Played", properties={"n": i}
        )
        assert ok
        sent.append(message["messageId"])
    queued_client.flush()
    assert errors.seen == []
    events = wait_for_events(
        tally, app, lambda found: len(found) >= 100, timeout=STORE_TIMEOUT, what="100 events"
    )
    assert sorted(e["id"] for e in events) == sorted(sent)
    assert sorted(e["properties"]["n"] for e in events) == list(range(100))


def test_an_unknown_write_key_is_an_api_error_with_tallys_code(tally: Server) -> None:
    client = Client(write_key="not-a-tally-app-key", host=tally.url, sync_mode=True)
    with pytest.raises(APIError) as raised:
        client.track(user_id="u1", event="x")
    assert raised.value.status == 401
    assert raised.value.code == "unknown_app_key"
    assert "write key" in raised.value.message
