"""What the fuzzers found, pinned: each case once, through the real app and store."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from fuzz_live import Live

from tally.model import MAX_COUNT
from tally.store.query import EventQuery

DEEP = '{"a":[' * 5000 + "1" + "]}" * 5000


def _events(live: Live, user: str) -> list[dict]:
    query = EventQuery(app_id=live.new_app.app.id, user=user)
    return live.run(live.services.store.fetch_events(query))


def test_a_body_nested_too_deeply_is_refused_in_each_protocols_shape(live: Live) -> None:
    """RecursionError from the JSON decoder used to escape as a 500."""
    key = live.new_app.app.app_key
    headers = {"x-tally-key": key, "content-type": "application/json"}
    for body in (DEEP, f'{{"events":[{{"name":"ok"}},{{"name":"x","properties":{DEEP}}}]}}'):
        response = live.request("POST", "/api/v1/events", content=body.encode(), headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "invalid_body"

    batch = f'{{"writeKey":"{key}","batch":[{DEEP},{{"type":"track","event":"ok"}}]}}'
    response = live.request("POST", "/v1/batch", content=batch.encode())
    assert response.status_code == 400
    assert response.json()["success"] is False and response.json()["code"] == "invalid_body"

    response = live.request(
        "POST", "/v4/events/batch", content=f"[{DEEP}]".encode(), auth=live.auth
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == 1002  # invalid_body

    response = live.request("POST", "/v1/event/report", content=DEEP.encode(), auth=live.auth)
    assert response.status_code == 400 and response.json()["code"] == 40002
    live.check_store()


def test_a_count_above_the_stores_range_is_rejected_not_acknowledged(live: Live) -> None:
    """A count above 2**63 - 1 used to be acknowledged, then stop the journal loader for good."""
    events = [
        {"name": "huge", "user": "count-1", "count": MAX_COUNT + 1},
        {"name": "largest", "user": "count-1", "count": MAX_COUNT},
    ]
    response = live.request(
        "POST",
        "/api/v1/events",
        json={"events": events},
        headers={"x-tally-key": live.new_app.app.app_key},
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert [r["code"] for r in response.json()["rejected"]] == ["invalid_event"]
    live.check_store()
    assert [(e["name"], e["count"]) for e in _events(live, "count-1")] == [("largest", MAX_COUNT)]


def test_a_skew_correction_past_the_calendar_keeps_the_time_as_sent(live: Live) -> None:
    """sent_at far from an event time of 9999-12-31 used to overflow datetime (a 500)."""
    body = {
        "sent_at": "2000-01-01T00:00:00Z",
        "events": [{"name": "far", "user": "skew-1", "time": "9999-12-31T23:59:59Z"}],
    }
    response = live.request(
        "POST",
        "/api/v1/events",
        content=json.dumps(body).encode(),
        headers={"x-tally-key": live.new_app.app.app_key},
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    (event,) = _events(live, "skew-1")
    assert event["time"] <= datetime.now(UTC)  # clamped: never in the future


def test_a_dashboard_path_with_a_line_break_is_a_documented_404(live: Live) -> None:
    """The long schemathesis run sent ``/apps/…%0A…``: no screen's route matches a line break,
    and the 404 was missing from /openapi.json."""
    response = live.request("GET", "/apps/abc%0Atrends")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    spec = live.request("GET", "/openapi.json").json()
    assert "404" in spec["paths"]["/apps/{rest}"]["get"]["responses"]
