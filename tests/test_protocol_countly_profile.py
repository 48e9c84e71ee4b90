"""Countly ``/i`` location, ``user_details`` and ``consent``, in-process (real DuckDB, SQLite).

Written from the protocol reference (``countly.md`` 1.2 and 1.5: ``country_code``, ``city``,
``region``, ``location``, ``user_details``, ``consent``) and the Countly-to-Tally mapping in
docs/protocols.md. Results are checked on the stored records and through the read API.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tally.adapters.base import IngestRequest
from tally.adapters.countly import CountlyAdapter
from tally.catalog import NewApp
from tally.http.services import Services
from tally.store.query import EventQuery

SUCCESS = {"result": "Success"}
DUPLICATE = {"result": "Success", "info": "Request ignored: Duplicate request"}
DEVICE = "5c0e1d2a-9b8f-4e7d-a6c5-b4a3f2e1d0c9"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
ISTANBUL = "41.0082,28.9784"
GEO_FIELDS = ("country_code", "city", "location")

# What countly-sdk-web's Countly.user_details({...}) sends, custom properties included.
USER_DETAILS = {
    "name": "Arturs Sosins",
    "username": "ar2rsawseen",
    "email": "test@test.com",
    "organization": "Countly",
    "phone": "+37112345678",
    "picture": "https://pbs.twimg.com/profile_images/1442562237/012_n_400x400.jpg",
    "gender": "M",
    "byear": 1987,
    "custom": {"key1": "value1", "key2": {"$inc": 1}, "tags": ["a", "b"]},
}


def secs(moment: datetime) -> int:
    return int(moment.timestamp())


def base(new_app: NewApp, **extra: Any) -> dict[str, Any]:
    return {"app_key": new_app.app.app_key, "device_id": DEVICE, "timestamp": secs(T0), **extra}


def form(params: dict[str, Any]) -> dict[str, str]:
    """Form values as the SDKs send them: JSON-ish params as JSON strings, the rest as text."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}


async def post_form(client: httpx.AsyncClient, params: dict[str, Any]) -> httpx.Response:
    return await client.post("/i", data=form(params))


async def stored(services: Services, new_app: NewApp) -> list[dict]:
    return await services.store.fetch_events(EventQuery(app_id=new_app.app.id, limit=1000))


async def stored_by_name(services: Services, new_app: NewApp) -> dict[str, dict]:
    events = await stored(services, new_app)
    by_name = {e["name"]: e for e in events}
    assert len(by_name) == len(events), sorted(e["name"] for e in events)
    return by_name


def geo(event: dict) -> tuple:
    return tuple(event[f] for f in GEO_FIELDS)


def row_counts(services: Services) -> tuple[int, int]:
    db = services.store.loaded()  # type: ignore[attr-defined]
    events = db.conn.execute("SELECT count(*) FROM events").fetchone()[0]
    failures = db.conn.execute("SELECT count(*) FROM failed_events").fetchone()[0]
    return events, failures


async def read_api(client: httpx.AsyncClient, new_app: NewApp, **params: Any) -> list[dict]:
    response = await client.get(
        f"/api/v1/apps/{new_app.app.id}/events",
        params=params,
        auth=(new_app.app.api_key, new_app.api_secret),
    )
    assert response.status_code == 200
    return response.json()["events"]


# --- country_code, city, location --------------------------------------------------------------


async def test_location_params_apply_to_the_session_start_and_every_event(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = base(
        new_app,
        begin_session=1,
        metrics={"_os": "Android"},
        country_code="TR",
        city="Istanbul",
        region="34",
        location=ISTANBUL,
        events=[
            {"key": "purchase", "count": 1},
            {"key": "[CLY]_view", "segmentation": {"name": "home", "visit": 1, "view": "/"}},
            {"key": "[CLY]_orientation", "segmentation": {"mode": "portrait"}},
        ],
    )
    response = await post_form(client, params)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    by_name = await stored_by_name(services, new_app)
    assert set(by_name) == {"session.start", "purchase", "view", "[CLY]_orientation"}
    assert {n: geo(e) for n, e in by_name.items()} == dict.fromkeys(
        by_name, ("TR", "Istanbul", ISTANBUL)
    )
    # `region` has no field: it is not stored, not even among the session's properties.
    assert by_name["session.start"]["properties"] == {"_os": "Android"}
    assert by_name["purchase"]["properties"] == {}

    # The read API returns them under `context`.
    events = await read_api(client, new_app, name="purchase")
    assert [e["context"]["country_code"] for e in events] == ["TR"]
    assert [(e["context"]["city"], e["context"]["location"]) for e in events] == [
        ("Istanbul", ISTANBUL)
    ]


@pytest.mark.parametrize(
    ("session", "name"),
    [
        ({"session_duration": 30}, "session.update"),
        ({"end_session": 1, "session_duration": 30}, "session.end"),
        ({"end_session": 1}, "session.end"),
    ],
)
async def test_location_params_apply_to_session_updates_and_ends(
    client: httpx.AsyncClient,
    services: Services,
    new_app: NewApp,
    session: dict[str, Any],
    name: str,
) -> None:
    params = base(new_app, country_code="DE", city="Berlin", location="52.52,13.405", **session)
    response = await post_form(client, params)
    assert response.json() == SUCCESS
    [event] = await stored(services, new_app)
    assert event["name"] == name
    assert geo(event) == ("DE", "Berlin", "52.52,13.405")


async def test_without_location_params_the_fields_are_empty(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    response = await post_form(client, base(new_app, begin_session=1, events=[{"key": "a"}]))
    assert response.json() == SUCCESS
    events = await stored(services, new_app)
    assert len(events) == 2
    assert {geo(e) for e in events} == {(None, None, None)}
    [event] = await read_api(client, new_app, name="a")
    assert {k: event["context"][k] for k in GEO_FIELDS} == dict.fromkeys(GEO_FIELDS)


async def test_an_empty_location_on_begin_session_is_an_opt_out(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    # countly-sdk-web sends location="" with begin_session when location consent is missing.
    # Countly then writes "Unknown" for country, city and region; Tally stores nothing.
    params = base(
        new_app,
        begin_session=1,
        location="",
        country_code="TR",
        city="Istanbul",
        events=[{"key": "purchase"}],
    )
    response = await post_form(client, params)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    by_name = await stored_by_name(services, new_app)
    assert set(by_name) == {"session.start", "purchase"}
    assert {geo(e) for e in by_name.values()} == {(None, None, None)}
    [event] = await read_api(client, new_app, name="session.start")
    assert {k: event["context"][k] for k in GEO_FIELDS} == dict.fromkeys(GEO_FIELDS)
    assert "Unknown" not in json.dumps(event)


async def test_an_empty_location_without_begin_session_is_only_an_ignored_location(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = base(new_app, location="", country_code="TR", city="Istanbul", events=[{"key": "a"}])
    response = await post_form(client, params)
    assert response.json() == SUCCESS
    [event] = await stored(services, new_app)
    assert geo(event) == ("TR", "Istanbul", None)


@pytest.mark.parametrize(("given", "kept"), [("tr", "TR"), ("Us", "US"), ("GB", "GB")])
async def test_a_two_letter_country_code_is_upper_cased(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, given: str, kept: str
) -> None:
    response = await post_form(client, base(new_app, country_code=given, events=[{"key": "a"}]))
    assert response.json() == SUCCESS
    [event] = await stored(services, new_app)
    assert event["country_code"] == kept


@pytest.mark.parametrize("given", ["TUR", "T", "", "1A", "t r", "Unknown", 12, ["TR"]])
async def test_a_country_code_that_is_not_two_letters_is_ignored(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, given: Any
) -> None:
    # Countly does not refuse it: the request and its events are stored, without a country.
    body = base(new_app, country_code=given, city="Ankara", events=[{"key": "a"}])
    response = await client.post("/i", json=body)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    [event] = await stored(services, new_app)
    assert geo(event) == (None, "Ankara", None)
    assert row_counts(services) == (1, 0)


@pytest.mark.parametrize("location", ["41.0082,28.9784", "-33.8688,151.2093", "0,0", "90,-180"])
async def test_a_valid_location_is_kept_as_sent(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, location: str
) -> None:
    response = await post_form(client, base(new_app, location=location, events=[{"key": "a"}]))
    assert response.json() == SUCCESS
    [event] = await stored(services, new_app)
    assert event["location"] == location


@pytest.mark.parametrize(
    "location",
    ["91,0", "0,181", "-90.5,10", "abc", "41.0", "1,2,3", "nan,0", "0,inf", "1e3,2", ",", 41.0],
)
async def test_an_invalid_location_is_ignored(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, location: Any
) -> None:
    body = base(new_app, location=location, country_code="tr", events=[{"key": "a"}])
    response = await client.post("/i", json=body)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    [event] = await stored(services, new_app)
    assert geo(event) == ("TR", None, None)


# --- user_details ------------------------------------------------------------------------------


async def test_user_details_as_a_json_string_is_stored_as_an_internal_user_details_event(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    # countly-sdk-web: user_details=JSON.stringify({...}) in a form POST, no events.
    params = base(new_app, user_details=json.dumps(USER_DETAILS), sdk_name="javascript_native_web")
    response = await post_form(client, params)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    [event] = await stored(services, new_app)
    assert event["name"] == "user.details"
    assert event["internal"] is True
    assert event["properties"] == USER_DETAILS
    assert (event["device_id"], event["user_id"], event["time"]) == (DEVICE, None, T0)
    assert (event["protocol"], event["sdk_name"]) == ("countly", "javascript_native_web")

    [read] = await read_api(client, new_app, name="user.details")
    assert (read["device"], read["internal"], read["properties"]) == (DEVICE, True, USER_DETAILS)


async def test_user_details_as_a_json_body_value_is_stored(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    body = base(new_app, user_details=USER_DETAILS, country_code="lv", city="Riga")
    response = await client.post("/i", json=body)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    [event] = await stored(services, new_app)
    assert (event["name"], event["internal"]) == ("user.details", True)
    assert event["properties"] == USER_DETAILS
    assert geo(event) == ("LV", "Riga", None)


async def test_a_resent_user_details_request_is_a_duplicate(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = base(new_app, user_details={"name": "Ada"})
    first = await post_form(client, params)
    again = await post_form(client, {**params, "rr": 3})
    assert first.json() == SUCCESS
    assert again.status_code == 200
    assert again.json() == DUPLICATE
    assert row_counts(services) == (1, 0)


@pytest.mark.parametrize("user_details", ['{"name": "Ada"', "not json", "[1, 2]", '"Ada"', "{}"])
async def test_user_details_that_is_not_a_json_object_is_ignored(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, user_details: str
) -> None:
    response = await post_form(client, base(new_app, user_details=user_details))
    assert response.status_code == 200
    assert response.json() == SUCCESS
    assert row_counts(services) == (0, 0)


async def test_unparseable_user_details_leave_the_rest_of_the_request(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = base(new_app, user_details="{oops", begin_session=1, events=[{"key": "a"}])
    response = await post_form(client, params)
    assert response.json() == SUCCESS
    by_name = await stored_by_name(services, new_app)
    assert set(by_name) == {"session.start", "a"}
    assert row_counts(services) == (2, 0)


# --- consent -----------------------------------------------------------------------------------


async def test_consent_is_stored_as_an_internal_consent_event(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    consent = {"sessions": True, "events": True, "views": False, "location": False}
    response = await post_form(client, base(new_app, consent=json.dumps(consent)))
    assert response.status_code == 200
    assert response.json() == SUCCESS
    [event] = await stored(services, new_app)
    assert (event["name"], event["internal"], event["device_id"]) == ("consent", True, DEVICE)
    assert event["properties"] == consent
    assert event["time"] == T0


async def test_consent_keeps_only_boolean_values(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    consent = {"sessions": True, "crashes": False, "views": "yes", "push": 1, "users": None}
    response = await client.post("/i", json=base(new_app, consent=consent))
    assert response.json() == SUCCESS
    [event] = await stored(services, new_app)
    assert event["properties"] == {"sessions": True, "crashes": False}


@pytest.mark.parametrize("consent", ["{oops", "[true]", '{"views": "yes"}', "{}"])
async def test_consent_without_boolean_features_is_ignored(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, consent: str
) -> None:
    response = await post_form(client, base(new_app, consent=consent))
    assert response.status_code == 200
    assert response.json() == SUCCESS
    assert row_counts(services) == (0, 0)


async def test_one_request_with_everything_stores_each_part(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    params = base(
        new_app,
        old_device_id="old-device",
        begin_session=1,
        user_details={"name": "Ada"},
        consent={"events": True},
        country_code="fr",
        events=[{"key": "a"}],
    )
    response = await post_form(client, params)
    assert response.json() == SUCCESS
    by_name = await stored_by_name(services, new_app)
    assert set(by_name) == {"identity.link", "session.start", "user.details", "consent", "a"}
    assert {n: e["internal"] for n, e in by_name.items()} == {
        "identity.link": True,
        "session.start": False,
        "user.details": True,
        "consent": True,
        "a": False,
    }
    assert {e["country_code"] for e in by_name.values()} == {"FR"}
    assert {e["device_id"] for e in by_name.values()} == {DEVICE}


async def test_the_adapter_produces_events_in_a_fixed_order() -> None:
    # Link first (as Countly merges before anything else), then the session, then the user's
    # details and consent, then the request's events in their order.
    params = {
        "app_key": "key",
        "device_id": DEVICE,
        "events": json.dumps([{"key": "b"}, {"key": "a"}]),
        "consent": json.dumps({"events": True}),
        "user_details": json.dumps({"name": "Ada"}),
        "begin_session": "1",
        "old_device_id": "old-device",
    }
    request = IngestRequest(method="GET", path="/i", query=params, headers={}, body=b"")
    [part] = CountlyAdapter().decode(request).parts
    assert [e.name for e in part.events] == [
        "identity.link",
        "session.start",
        "user.details",
        "consent",
        "b",
        "a",
    ]


# --- /i/bulk -----------------------------------------------------------------------------------


async def test_bulk_honours_per_item_country_code_city_and_location(
    client: httpx.AsyncClient, services: Services, new_app: NewApp
) -> None:
    requests = [
        {
            "device_id": "d1",
            "country_code": "tr",
            "city": "Istanbul",
            "location": ISTANBUL,
            "begin_session": 1,
            "events": [{"key": "a"}],
        },
        {"device_id": "d2", "country_code": "DE", "city": "Berlin", "events": [{"key": "b"}]},
        {"device_id": "d3", "begin_session": 1, "location": "", "city": "Paris"},
        {"device_id": "d4", "events": [{"key": "c"}]},
        {"device_id": "d5", "user_details": json.dumps({"name": "Ada"}), "country_code": "LV"},
        {"device_id": "d6", "consent": {"views": True}, "city": "Riga"},
    ]
    body = {"app_key": new_app.app.app_key, "country_code": "US", "requests": requests}
    response = await client.post("/i/bulk", json=body)
    assert response.status_code == 200
    assert response.json() == SUCCESS
    events = await stored(services, new_app)
    rows = sorted((e["device_id"], e["name"], *geo(e), e["properties"]) for e in events)
    assert rows == [
        ("d1", "a", "TR", "Istanbul", ISTANBUL, {}),
        ("d1", "session.start", "TR", "Istanbul", ISTANBUL, {}),
        ("d2", "b", "DE", "Berlin", None, {}),
        ("d3", "session.start", None, None, None, {}),  # opted out of location
        ("d4", "c", None, None, None, {}),  # the top-level country_code does not fill in
        ("d5", "user.details", "LV", None, None, {"name": "Ada"}),
        ("d6", "consent", None, "Riga", None, {"views": True}),
    ]
