"""Countly's events read API (``/o?method=events``, ``/o?method=get_events``,
``/o/analytics/events``), in-process against real DuckDB and SQLite.

Written from the protocol reference (``countly.md`` sections 1 and 3) and docs/protocols.md
("Reading events"): events go in through ``/i`` and the numbers come back in Countly's shapes.
Reads pass ``timestamp`` (the moment taken as now) so relative periods are fixed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tally.catalog import Catalog, NewApp

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
LIMITS = {
    "event_limit": 500,
    "event_segmentation_limit": 100,
    "event_segmentation_value_limit": 1000,
}
NOW = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)  # a Tuesday; the reads' "now"
ZERO = {"c": 0, "s": 0, "dur": 0}


def secs(moment: datetime) -> int:
    return int(moment.timestamp())


def millis(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


# What the app received, request by request (device, time, events).
SENT: list[tuple[datetime, list[dict[str, Any]]]] = [
    (
        datetime(2025, 12, 31, 12, 0, tzinfo=UTC),
        [{"key": "purchase", "segmentation": {"country": "France"}}],
    ),
    (
        datetime(2026, 1, 15, 8, 0, tzinfo=UTC),
        [{"key": "purchase", "segmentation": {"country": "Spain"}}],
    ),
    (
        datetime(2026, 2, 28, 23, 30, tzinfo=UTC),
        [
            {"key": "purchase", "count": 1, "sum": 10, "segmentation": {"country": "Turkey"}},
            {"key": "[CLY]_orientation", "segmentation": {"mode": "portrait"}},
        ],
    ),
    (
        datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
        [
            {
                "key": "purchase",
                "count": 2,
                "sum": 2.97,
                "segmentation": {"country": "Turkey", "plan": "free"},
            },
            {
                "key": "purchase",
                "count": 1,
                "sum": 1.03,
                "dur": 3,
                "segmentation": {"country": "Poland", "plan": "pro"},
            },
            {"key": "signup"},
        ],
    ),
    (
        datetime(2026, 3, 2, 14, 15, tzinfo=UTC),
        [
            {"key": "purchase", "dur": 10.5, "segmentation": {"country": "Poland", "items": 5}},
            {"key": "signup", "count": 3},
        ],
    ),
]

META = {
    # Values seen in the years read (2026; France was in 2025), sorted; 5 is stored as [CLY]5.
    "segments": ["country", "items", "plan"],
    "country": ["Poland", "Spain", "Turkey"],
    "items": ["[CLY]5"],
    "plan": ["free", "pro"],
}

# purchase over February and March 2026 (7days before 2026-03-03 and the 7 days before that).
PURCHASE_TREE = {
    "2026": {
        "2": {"28": {"23": {"c": 1, "s": 10}, "c": 1, "s": 10}, "c": 1, "s": 10},
        "3": {
            "1": {"10": {"c": 3, "s": 4, "dur": 3}, "c": 3, "s": 4, "dur": 3},
            "2": {"14": {"c": 1, "dur": 10.5}, "c": 1, "dur": 10.5},
            "c": 4,
            "s": 4,
            "dur": 13.5,
        },
        "c": 5,
        "s": 14,
        "dur": 13.5,
    },
    "meta": META,
}


@pytest.fixture
async def seeded(client: httpx.AsyncClient, new_app: NewApp) -> NewApp:
    for moment, events in SENT:
        params = {
            "app_key": new_app.app.app_key,
            "device_id": "device-1",
            "timestamp": str(secs(moment)),
            "events": json.dumps(events),
        }
        response = await client.post("/i", data=params)
        assert response.json() == {"result": "Success"}
    return new_app


def auth(new_app: NewApp) -> tuple[str, str]:
    return (new_app.app.api_key, new_app.api_secret)


async def read(
    client: httpx.AsyncClient, new_app: NewApp, path: str = "/o", **params: Any
) -> httpx.Response:
    """A GET read with HTTP Basic credentials, ``app_id`` and ``timestamp`` = NOW."""
    query = {"app_id": new_app.app.id, "timestamp": str(secs(NOW)), **params}
    return await client.get(path, params=query, auth=auth(new_app))


async def read_json(client: httpx.AsyncClient, new_app: NewApp, path: str = "/o", **params: Any):
    response = await read(client, new_app, path, **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == JSON_CONTENT_TYPE
    assert response.headers["access-control-allow-origin"] == "*"
    return response.json()


def days(*pairs: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"_id": day, **counters} for day, counters in pairs]


# --- method=get_events -----------------------------------------------------------------------


async def test_get_events_lists_the_defined_events_with_their_segments(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    body = await read_json(client, seeded, method="get_events")
    assert body == {
        "_id": seeded.app.id,
        "list": ["purchase", "signup"],  # [CLY]_orientation is internal: never listed
        "segments": {"purchase": ["country", "items", "plan"]},
        "limits": LIMITS,
    }


async def test_get_events_of_an_app_without_events_has_no_segments(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    body = await read_json(client, new_app, method="get_events")
    assert body == {"_id": new_app.app.id, "list": [], "limits": LIMITS}


# --- method=events ---------------------------------------------------------------------------


async def test_events_returns_the_time_tree_and_meta(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    body = await read_json(client, seeded, method="events", event="purchase", period="7days")
    assert body == PURCHASE_TREE


async def test_events_defaults_to_30days_and_the_first_event(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    # 30days from 2026-03-03 (and the 30 days before): January to March are read; Spain's
    # event of January 15 is in the tree now.
    body = await read_json(client, seeded, method="events")
    expected = json.loads(json.dumps(PURCHASE_TREE))
    expected["2026"]["1"] = {"15": {"8": {"c": 1}, "c": 1}, "c": 1}
    expected["2026"]["c"] = 6
    assert body == expected


async def test_events_with_segmentation_puts_the_values_one_level_down(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    body = await read_json(
        client, seeded, method="events", event="purchase", segmentation="country", period="7days"
    )
    assert body == {
        "2026": {
            "2": {"28": {"Turkey": {"c": 1, "s": 10}}, "Turkey": {"c": 1, "s": 10}},
            "3": {
                "1": {"Turkey": {"c": 2, "s": 2.97}, "Poland": {"c": 1, "s": 1.03, "dur": 3}},
                "2": {"Poland": {"c": 1, "dur": 10.5}},
                "Turkey": {"c": 2, "s": 2.97},
                "Poland": {"c": 2, "s": 1.03, "dur": 13.5},
            },
            "Turkey": {"c": 3, "s": 12.97},
            "Poland": {"c": 2, "s": 1.03, "dur": 13.5},
        },
        "meta": META,
    }


async def test_segment_values_1_to_31_are_prefixed_as_in_countly(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    body = await read_json(
        client, seeded, method="events", event="purchase", segmentation="items", period="7days"
    )
    cell = {"c": 1, "dur": 10.5}
    assert body == {
        "2026": {"3": {"2": {"[CLY]5": cell}, "[CLY]5": cell}, "[CLY]5": cell},
        "meta": META,
    }


async def test_events_with_an_unknown_segmentation_has_only_meta(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    body = await read_json(
        client, seeded, method="events", event="purchase", segmentation="colour", period="7days"
    )
    assert body == {"meta": META}


async def test_events_of_several_events_sums_them_without_meta(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    body = await read_json(
        client, seeded, method="events", events='["purchase","signup"]', period="7days"
    )
    assert body == {
        "2026": {
            "2": {"28": {"23": {"c": 1, "s": 10}, "c": 1, "s": 10}, "c": 1, "s": 10},
            "3": {
                "1": {"10": {"c": 4, "s": 4, "dur": 3}, "c": 4, "s": 4, "dur": 3},
                "2": {"14": {"c": 4, "dur": 10.5}, "c": 4, "dur": 10.5},
                "c": 8,
                "s": 4,
                "dur": 13.5,
            },
            "c": 9,
            "s": 14,
            "dur": 13.5,
        }
    }


async def test_refresh_returns_today_only_without_totals(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    now = datetime(2026, 3, 2, 20, 0, tzinfo=UTC)
    body = await read_json(
        client, seeded, method="events", event="purchase", action="refresh", timestamp=secs(now)
    )
    assert body == {
        "2026": {"3": {"2": {"14": {"c": 1, "dur": 10.5}, "c": 1, "dur": 10.5}}},
        "meta": META,
    }


async def test_tz_puts_the_buckets_in_that_zone(client: httpx.AsyncClient, seeded: NewApp) -> None:
    # Warsaw is UTC+1 in winter: 2026-02-28 23:30Z is 00:30 on March 1.
    body = await read_json(
        client, seeded, method="events", event="purchase", period="7days", tz="Europe/Warsaw"
    )
    assert body == {
        "2026": {
            "3": {
                "1": {
                    "0": {"c": 1, "s": 10},
                    "11": {"c": 3, "s": 4, "dur": 3},
                    "c": 4,
                    "s": 14,
                    "dur": 3,
                },
                "2": {"15": {"c": 1, "dur": 10.5}, "c": 1, "dur": 10.5},
                "c": 5,
                "s": 14,
                "dur": 13.5,
            },
            "c": 5,
            "s": 14,
            "dur": 13.5,
        },
        "meta": META,
    }


async def test_an_unknown_event_has_an_empty_tree(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    assert await read_json(client, seeded, method="events", event="nothing") == {}


async def test_an_app_without_events_has_an_empty_tree(
    client: httpx.AsyncClient, new_app: NewApp
) -> None:
    assert await read_json(client, new_app, method="events") == {}


async def test_a_range_period_reads_its_months_and_those_of_the_range_before(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    # March 1 to 2 (and the two days before: February 27 to 28): whole February and March.
    period = json.dumps(
        [millis(datetime(2026, 3, 1, 9, tzinfo=UTC)), millis(datetime(2026, 3, 2, 9, tzinfo=UTC))]
    )
    body = await read_json(client, seeded, method="events", event="purchase", period=period)
    assert body == PURCHASE_TREE


async def test_a_post_form_with_credentials_in_the_body(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    form = {
        "app_id": seeded.app.id,
        "api_key": f"{seeded.app.api_key}:{seeded.api_secret}",
        "method": "events",
        "event": "purchase",
        "period": "7days",
        "timestamp": str(secs(NOW)),
    }
    response = await client.post("/o", data=form)
    assert response.status_code == 200
    assert response.json() == PURCHASE_TREE


# --- /o/analytics/events ---------------------------------------------------------------------


async def test_analytics_events_lists_the_days_of_the_period(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    body = await read_json(client, seeded, "/o/analytics/events", event="purchase", period="7days")
    assert body == days(
        ("2026-2-25", ZERO),
        ("2026-2-26", ZERO),
        ("2026-2-27", ZERO),
        ("2026-2-28", {"c": 1, "s": 10, "dur": 0}),
        ("2026-3-1", {"c": 3, "s": 4, "dur": 3}),
        ("2026-3-2", {"c": 1, "s": 0, "dur": 10.5}),
        ("2026-3-3", ZERO),
    )


async def test_analytics_events_by_segment_most_frequent_first(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    body = await read_json(
        client,
        seeded,
        "/o/analytics/events",
        event="purchase",
        segmentation="country",
        period="7days",
    )
    assert body == [
        {"_id": "Turkey", "c": 3, "s": 12.97, "dur": 0},
        {"_id": "Poland", "c": 2, "s": 1.03, "dur": 13.5},
    ]


async def test_analytics_events_by_segment_over_this_year(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    body = await read_json(
        client,
        seeded,
        "/o/analytics/events",
        event="purchase",
        segmentation="country",
        period="month",
    )
    assert body == [
        {"_id": "Turkey", "c": 3, "s": 12.97, "dur": 0},
        {"_id": "Poland", "c": 2, "s": 1.03, "dur": 13.5},
        {"_id": "Spain", "c": 1, "s": 0, "dur": 0},
    ]


async def test_analytics_events_month_period_lists_the_months_of_this_year(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    body = await read_json(client, seeded, "/o/analytics/events", event="purchase", period="month")
    assert body == days(
        ("2026-1", {"c": 1, "s": 0, "dur": 0}),
        ("2026-2", {"c": 1, "s": 10, "dur": 0}),
        ("2026-3", {"c": 4, "s": 4, "dur": 13.5}),
        *((f"2026-{m}", ZERO) for m in range(4, 13)),
    )


async def test_analytics_events_one_day_is_listed_by_hour(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    body = await read_json(
        client, seeded, "/o/analytics/events", event="purchase", period="yesterday"
    )
    expected = [{"_id": f"2026-3-2 {h}:00", **ZERO} for h in range(24)]
    expected[14] = {"_id": "2026-3-2 14:00", "c": 1, "s": 0, "dur": 10.5}
    assert body == expected
    same_moment = json.dumps([millis(datetime(2026, 3, 2, 9, tzinfo=UTC))] * 2)
    body = await read_json(
        client, seeded, "/o/analytics/events", event="purchase", period=same_moment
    )
    assert body == expected


async def test_analytics_events_of_several_events_by_key_and_by_month(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    body = await read_json(
        client,
        seeded,
        "/o/analytics/events",
        events='["purchase","signup"]',
        period="7days",
        bucket="monthly",
    )
    assert body == {
        "purchase": days(
            ("2026-2", {"c": 1, "s": 10, "dur": 0}), ("2026-3", {"c": 4, "s": 4, "dur": 13.5})
        ),
        "signup": days(("2026-2", ZERO), ("2026-3", {"c": 4, "s": 0, "dur": 0})),
    }


async def test_analytics_events_needs_event_or_events(
    client: httpx.AsyncClient, seeded: NewApp
) -> None:
    response = await read(client, seeded, "/o/analytics/events")
    assert response.status_code == 400
    assert response.json() == {"result": "Must provide event or events"}
    response = await read(client, seeded, "/o/analytics/events", events="[purchase")
    assert response.status_code == 400
    assert response.json() == {
        "result": "Must provide valid array with event keys as events param."
    }


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/o", "/o/analytics/events"])
async def test_missing_credentials(client: httpx.AsyncClient, seeded: NewApp, path: str) -> None:
    params = {"app_id": seeded.app.id, "method": "events", "event": "purchase"}
    response = await client.get(path, params=params)
    assert response.status_code == 400
    assert response.json() == {"result": 'Missing parameter "api_key" or "auth_token"'}
    assert response.headers["content-type"] == JSON_CONTENT_TYPE
    response = await client.get(path, params={**params, "auth_token": "a-countly-token"})
    assert response.status_code == 400
    assert response.json() == {"result": "Token not valid"}


@pytest.mark.parametrize(
    "credentials",
    [
        {"api_key": "wrong:secret"},
        {"api_key": "KEY", "api_secret": "wrong"},
        {"api_key": "KEY"},  # no secret
        {"api_key": "KEY:"},
    ],
)
async def test_wrong_credentials(
    client: httpx.AsyncClient, seeded: NewApp, credentials: dict[str, str]
) -> None:
    params = {key: value.replace("KEY", seeded.app.api_key) for key, value in credentials.items()}
    response = await client.get(
        "/o", params={"app_id": seeded.app.id, "method": "get_events", **params}
    )
    assert response.status_code == 401
    assert response.json() == {"result": "User does not exist"}


async def test_wrong_basic_secret(client: httpx.AsyncClient, seeded: NewApp) -> None:
    response = await client.get(
        "/o",
        params={"app_id": seeded.app.id, "method": "get_events"},
        auth=(seeded.app.api_key, "wrong"),
    )
    assert response.status_code == 401
    assert response.json() == {"result": "User does not exist"}


async def test_credentials_of_another_app(
    client: httpx.AsyncClient, seeded: NewApp, catalog: Catalog
) -> None:
    other = catalog.create_app("Other app")
    response = await client.get(
        "/o", params={"app_id": seeded.app.id, "method": "get_events"}, auth=auth(other)
    )
    assert response.status_code == 401
    assert response.json() == {"result": "User does not have right"}


async def test_api_key_and_api_secret_parameters(client: httpx.AsyncClient, seeded: NewApp) -> None:
    params = {
        "app_id": seeded.app.id,
        "method": "get_events",
        "api_key": seeded.app.api_key,
        "api_secret": seeded.api_secret,
    }
    response = await client.get("/o", params=params)
    assert response.status_code == 200
    assert response.json()["list"] == ["purchase", "signup"]


@pytest.mark.parametrize("path", ["/o", "/o/analytics/events"])
async def test_app_id_is_required_and_24_characters(
    client: httpx.AsyncClient, seeded: NewApp, path: str
) -> None:
    response = await client.get(path, params={"method": "events"}, auth=auth(seeded))
    assert response.status_code == 400
    assert response.json() == {"result": 'Missing parameter "app_id"'}
    response = await client.get(path, params={"method": "events", "app_id": "abc"})
    assert response.status_code == 400
    assert response.json() == {"result": 'Invalid parameter "app_id"'}


async def test_unknown_method(client: httpx.AsyncClient, seeded: NewApp) -> None:
    for method in ("top_events", ""):
        response = await read(client, seeded, method=method)
        assert response.status_code == 400
        assert response.json() == {"result": "Invalid method"}
    response = await client.get("/o", params={"app_id": seeded.app.id})  # before credentials
    assert response.status_code == 400
    assert response.json() == {"result": "Invalid method"}


@pytest.mark.parametrize(
    "period",
    [
        "fortnight",
        "days",
        "[1772359200000]",
        "[1772445600000,1772359200000]",  # ends before it starts
        "[1772359200000,",
        '["01-03-2026",1772359200000]',
        '{"until":1}',
    ],
)
@pytest.mark.parametrize("path", ["/o", "/o/analytics/events"])
async def test_bad_period(
    client: httpx.AsyncClient, seeded: NewApp, path: str, period: str
) -> None:
    response = await read(client, seeded, path, method="events", event="purchase", period=period)
    assert response.status_code == 400
    assert response.json() == {"result": 'Invalid parameter "period"'}


async def test_other_period_forms(client: httpx.AsyncClient, seeded: NewApp) -> None:
    async def rows(period: str) -> list[dict[str, Any]]:
        return await read_json(
            client, seeded, "/o/analytics/events", event="purchase", period=period
        )

    ids = [row["_id"] for row in await rows("2weeks")]
    assert ids == [f"2026-2-{d}" for d in range(18, 29)] + ["2026-3-1", "2026-3-2", "2026-3-3"]
    assert len(await rows("0days")) == 30  # as in Countly: less than a day means 30 days
    assert await rows('["28-02-2026","01-03-2026 12:00:00"]') == days(
        ("2026-2-28", {"c": 1, "s": 10, "dur": 0}), ("2026-3-1", {"c": 3, "s": 4, "dur": 3})
    )
    since = json.dumps({"since": millis(datetime(2026, 3, 2, tzinfo=UTC))})
    assert await rows(since) == days(
        ("2026-3-2", {"c": 1, "s": 0, "dur": 10.5}), ("2026-3-3", ZERO)
    )


async def test_bad_time_zone(client: httpx.AsyncClient, seeded: NewApp) -> None:
    response = await read(client, seeded, method="events", event="purchase", tz="Mars/Olympus")
    assert response.status_code == 400
    assert response.json() == {"result": 'Invalid parameter "tz"'}


async def test_overview_is_not_supported(client: httpx.AsyncClient, seeded: NewApp) -> None:
    response = await read(client, seeded, method="events", events='["purchase"]', overview="1")
    assert response.status_code == 400
    assert response.json() == {"result": 'Invalid parameter "overview"'}


async def test_methods_and_preflight(client: httpx.AsyncClient, seeded: NewApp) -> None:
    response = await client.put("/o", params={"app_id": seeded.app.id, "method": "events"})
    assert response.status_code == 405
    assert response.json() == {"result": "Method not allowed"}
    response = await client.options("/o/analytics/events")
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "Authorization" in response.headers["access-control-allow-headers"]
