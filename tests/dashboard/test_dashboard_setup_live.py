"""Keys & install (the snippets, the tabs, rotating the API secret) and the live event stream, in
Chromium. The rotation test runs last: it changes the app's credentials for the whole module."""

from __future__ import annotations

import re
from typing import Any

import httpx
from dashboard_helpers import Dashboard, screenshot
from playwright.sync_api import expect


def live_badge(page: Any) -> Any:
    """The connection badge once it says the stream is open."""
    return page.locator(".live-status").get_by_text("Live", exact=True)


def test_setup_shows_the_keys_and_snippets_for_this_server(page: Any, dashboard: Dashboard) -> None:
    app = dashboard.app
    page.goto(f"/apps/{app.id}/setup")
    page.get_by_role("heading", name="Keys & install").wait_for()
    keys = page.locator(".key-list")
    for value in (app.id, app.app_key, app.api_key):
        assert value in keys.inner_text()
    assert app.api_secret not in page.locator("main").inner_text()
    assert "Not readable" in keys.inner_text()
    page.get_by_role("button", name="Copy app key").wait_for()

    # the first tab (tally.js) shows the documented tag with this server's address and key
    tab = page.get_by_role("tab", name="tally.js")
    assert tab.get_attribute("aria-selected") == "true"
    panel = page.get_by_role("tabpanel", name="tally.js")
    tag = f'<script async src="{dashboard.url}/sdk/tally.js" data-app-key="{app.app_key}">'
    assert tag in panel.inner_text()
    screenshot(page, "setup")

    # the keyboard moves between tabs: ArrowRight selects Countly and shows its panel
    tab.focus()
    page.keyboard.press("ArrowRight")
    countly = page.get_by_role("tab", name="Countly")
    assert countly.get_attribute("aria-selected") == "true"
    assert countly.evaluate("node => node === document.activeElement")
    assert tab.get_attribute("aria-selected") == "false"
    panel = page.get_by_role("tabpanel", name="Countly")
    text = panel.inner_text()
    assert f'Countly.init({{ app_key: "{app.app_key}", url: "{dashboard.url}" }});' in text
    assert f"curl -X POST {dashboard.url}/i" in text
    assert not page.get_by_role("tabpanel", name="tally.js").is_visible()
    page.wait_for_url("**/setup?tab=countly")

    # End goes to the last tab; Home back to the first
    page.keyboard.press("End")
    native = page.get_by_role("tabpanel", name="HTTP API").inner_text()
    assert f"X-Tally-Key: {app.app_key}" in native and f'-u "{app.api_key}:API_SECRET"' in native
    page.keyboard.press("Home")
    assert page.get_by_role("tab", name="tally.js").get_attribute("aria-selected") == "true"

    # every protocol's snippet carries this server and the right key
    for name, needle in (
        ("EngageLab", f'{dashboard.url}/v1/event/report -u "{app.api_key}:API_SECRET"'),
        ("Segment", f'apiHost: "{dashboard.url.split("://", 1)[1]}/v1"'),
        ("Python SDK", f'Tally("{dashboard.url}", app_key="{app.app_key}")'),
    ):
        page.get_by_role("tab", name=name).click()
        assert needle in page.get_by_role("tabpanel", name=name).inner_text()

    # the tab survives a reload (it is in the URL)
    page.reload()
    assert page.get_by_role("tab", name="Python SDK").get_attribute("aria-selected") == "true"


def test_setup_on_a_phone(phone_page: Any, dashboard: Dashboard) -> None:
    page = phone_page
    page.goto(f"/apps/{dashboard.app.id}/setup?tab=segment")
    page.get_by_role("tabpanel", name="Segment").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "setup-phone")


def test_setup_snippet_sends_an_event(page: Any, dashboard: Dashboard) -> None:
    """The native curl snippet, run as written (with httpx), is accepted by this server."""
    page.goto(f"/apps/{dashboard.app.id}/setup?tab=countly")
    text = page.get_by_role("tabpanel", name="Countly").inner_text()
    events = re.search(r"--data 'events=(\[.*\])'", text)
    assert events, text
    response = httpx.post(
        f"{dashboard.url}/i",
        data={"app_key": dashboard.app.app_key, "device_id": "setup-test", "events": events[1]},
    )
    assert response.json() == {"result": "Success"}


def test_live_shows_events_as_they_arrive(page: Any, dashboard: Dashboard) -> None:
    page.goto(f"/apps/{dashboard.app.id}/live")
    page.get_by_role("heading", name="Live events").wait_for()
    live_badge(page).wait_for()  # the stream is open
    assert "Waiting for events" in page.locator("tbody").inner_text()

    dashboard.send(
        [
            {
                "name": "checkout.done",
                "user": "customer-42",
                "sum": 120.5,
                "properties": {"item": "rolex", "colour": "gold"},
            },
            {"name": "page.view", "device": "device-7", "properties": {"path": "/pricing"}},
        ]
    )
    rows = page.locator("tbody tr")
    page.get_by_role("rowheader", name="checkout.done").wait_for()
    page.get_by_role("rowheader", name="page.view").wait_for()
    assert rows.count() == 2
    assert "page.view" in rows.nth(0).inner_text()  # newest on top
    first = rows.nth(1).inner_text()
    assert "native" in first and "item: rolex" in first and "sum: 120.5" in first
    link = page.get_by_role("link", name="customer-42")
    assert link.get_attribute("href") == f"/apps/{dashboard.app.id}/customers/customer-42"
    counter = page.locator(".card", has_text="Since opened").locator(".value")
    expect(counter).to_have_text("2")

    # a filter hides what does not match, now and from then on; it goes in the URL
    page.get_by_label("Event name contains").fill("checkout")
    page.wait_for_url("**/live?name=checkout")
    page.get_by_role("rowheader", name="page.view").wait_for(state="detached")
    dashboard.send([{"name": "page.view", "device": "device-8"}, {"name": "checkout.failed"}])
    page.get_by_role("rowheader", name="checkout.failed").wait_for()
    expect(counter).to_have_text("4")  # the page.view arrived too, and is not shown
    assert page.get_by_role("rowheader", name="page.view").count() == 0
    page.get_by_label("User or device contains").fill("CUSTOMER-4")
    page.wait_for_url("**/live?name=checkout&who=CUSTOMER-4")
    assert rows.count() == 1 and "checkout.done" in rows.nth(0).inner_text()
    page.get_by_label("User or device contains").fill("")
    page.get_by_label("Event name contains").fill("")
    page.get_by_role("rowheader", name="page.view").first.wait_for()

    # paused: new events are held (and counted) until Resume
    page.get_by_role("button", name="Pause").click()
    dashboard.send([{"name": "held.event", "user": "customer-43"}])
    page.get_by_text("1 new event held while paused").wait_for()
    assert page.get_by_role("rowheader", name="held.event").count() == 0
    expect(counter).to_have_text("5")
    screenshot(page, "live")
    page.get_by_role("button", name="Resume").click()
    page.get_by_role("rowheader", name="held.event").wait_for()
    assert "held.event" in rows.nth(0).inner_text()

    # the filter in the URL is applied when the page opens
    page.goto(f"/apps/{dashboard.app.id}/live?name=held")
    live_badge(page).wait_for()
    assert page.get_by_label("Event name contains").input_value() == "held"
    assert "No event matches" in page.locator("tbody").inner_text()


def test_live_on_a_phone(phone_page: Any, dashboard: Dashboard) -> None:
    page = phone_page
    page.goto(f"/apps/{dashboard.app.id}/live")
    live_badge(page).wait_for()
    dashboard.send([{"name": "phone.check", "user": "customer-44", "properties": {"a": 1}}])
    page.get_by_role("rowheader", name="phone.check").wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "live-phone")


def test_rotate_the_api_secret_through_the_confirm_step(page: Any, dashboard: Dashboard) -> None:
    app = dashboard.app
    events = f"{dashboard.url}{dashboard.app_path('events')}"
    page.goto(f"/apps/{app.id}/setup")
    page.get_by_role("button", name="Rotate API secret").click()
    confirm = page.get_by_role("group", name="Rotate the API secret?")
    confirm.wait_for()
    # cancel changes nothing
    confirm.get_by_role("button", name="Cancel").click()
    assert not confirm.is_visible()
    assert httpx.get(events, auth=app.auth).status_code == 200

    # by default the old secret keeps working for 24 hours, so back ends can switch over
    page.get_by_role("button", name="Rotate API secret").click()
    overlap = confirm.get_by_label("The old credentials keep working for")
    assert overlap.input_value() == "86400"
    confirm.get_by_role("button", name="Rotate now").click()
    page.get_by_role("heading", name="New API secret").wait_for()
    overlapped = page.get_by_label("The new API secret", exact=True).inner_text().strip()
    assert overlapped and overlapped != app.api_secret
    text = page.locator("main").inner_text()
    assert "will not show it again" in text
    assert "The old secret keeps working until" in text
    screenshot(page, "setup-rotated")
    assert httpx.get(events, auth=(app.api_key, overlapped)).status_code == 200
    assert httpx.get(events, auth=app.auth).status_code == 200

    # "at once": the secret replaced a moment ago stops now
    page.get_by_role("button", name="Rotate API secret").click()
    overlap.select_option(label="no time: they stop at once")
    confirm.get_by_role("button", name="Rotate now").click()
    page.get_by_text("The old secret no longer works").wait_for()
    new_secret = page.get_by_label("The new API secret", exact=True).inner_text().strip()
    assert new_secret not in (app.api_secret, overlapped)
    assert httpx.get(events, auth=(app.api_key, new_secret)).status_code == 200
    assert httpx.get(events, auth=(app.api_key, overlapped)).status_code == 401
    assert httpx.get(events, auth=app.auth).status_code == 401
    app.api_secret = new_secret

    # also replacing the app key: the page shows the new key in the keys and the snippets
    page.get_by_role("button", name="Rotate API secret").click()
    page.get_by_label("Also replace the app key").check()
    page.get_by_role("button", name="Rotate now").click()
    page.get_by_text("The app key changed too").wait_for()
    assert "The old secret and app key keep working until" in page.locator("main").inner_text()
    newer_secret = page.get_by_label("The new API secret", exact=True).inner_text().strip()
    assert newer_secret != new_secret
    app.api_secret = newer_secret
    keys = page.locator(".key-list").inner_text()
    new_key = re.search(r"App key\s+([0-9a-f]{40})", keys)
    assert new_key and new_key[1] != app.app_key
    old_key, app.app_key = app.app_key, new_key[1]
    assert f'data-app-key="{app.app_key}"' in page.get_by_role("tabpanel").inner_text()
    sent = httpx.post(
        f"{dashboard.url}/api/v1/events",
        headers={"x-tally-key": old_key},
        json={"events": [{"name": "x"}]},
    )
    assert sent.status_code == 200  # during the overlap, pages still carrying the old key count
    assert httpx.get(events, auth=app.auth).status_code == 200
