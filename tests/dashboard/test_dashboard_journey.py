"""A new user's whole first session, by clicking in Chromium: log in, create an app, make it
strict, define an event, send events with the keys the page showed, see them in trends, live and
the customer's feed, find a rejected event among the failed ones, define it and replay it."""

from __future__ import annotations

import re
from typing import Any

import httpx
from dashboard_helpers import PASSWORD, USER_EMAIL, Dashboard, screenshot
from playwright.sync_api import expect


def send(dashboard: Dashboard, auth: tuple[str, str], events: list[dict[str, Any]]) -> Any:
    return dashboard.client.post(
        f"{dashboard.url}/api/v1/events", auth=auth, json={"events": events}
    )


def keys_shown(page: Any) -> dict[str, str]:
    """The new app's keys, as the page printed them once ("App id:     ..." lines)."""
    text = page.locator(".created pre").inner_text()
    pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, value in pairs}


def test_first_session(anonymous_page: Any, dashboard: Dashboard) -> None:
    page = anonymous_page
    page.goto("/")
    page.wait_for_url("**/login")
    page.get_by_label("Email").fill(USER_EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    # one app ("Shop") exists: its overview opens
    page.get_by_role("heading", name="Shop: overview").wait_for()

    # create an app; its API secret is shown once
    page.get_by_role("link", name="All apps").click()
    page.get_by_role("heading", name="Apps").wait_for()
    page.get_by_label("New app name").fill("Blog")
    page.get_by_role("button", name="Create app").click()
    page.get_by_role("heading", name="Created Blog").wait_for()
    keys = keys_shown(page)
    auth = (keys["API key"], keys["API secret"])
    app_id = keys["App id"]
    expect(page.get_by_role("row").filter(has_text="Blog")).to_be_visible()
    screenshot(page, "apps")

    # strict: only defined events are taken
    page.get_by_role("link", name="Install Tally in Blog").click()
    page.get_by_role("heading", name="Keys & install").wait_for()
    nav = page.get_by_role("navigation", name="App sections")
    nav.get_by_role("link", name="Rules").click()
    page.get_by_label("Strict mode: every event needs a definition").check()
    page.get_by_role("button", name="Save rules").click()
    expect(page.get_by_text("Saved: the rules apply")).to_be_visible()

    # define the event the blog sends
    nav.get_by_role("link", name="Events", exact=True).click()
    page.get_by_role("button", name="Define an event").click()
    editor = page.get_by_role("form", name="Define an event")
    editor.get_by_label("Name", exact=True).fill("article.read")
    editor.get_by_label("Label template").fill("Read {{title}}")
    editor.get_by_role("button", name="Add a property").click()
    editor.get_by_label("Property 1 name").fill("title")
    editor.get_by_role("button", name="Define event").click()
    expect(page.get_by_role("row").filter(has_text="article.read")).to_be_visible()

    # the blog sends three reads and a share, which is not defined yet
    reads = [
        {"name": "article.read", "user": "reader-1", "properties": {"title": "Hello"}},
        {"name": "article.read", "user": "reader-1", "properties": {"title": "Again"}},
        {"name": "article.read", "user": "reader-2", "properties": {"title": "Hello"}},
    ]
    reply = send(dashboard, auth, [*reads, {"name": "article.share", "user": "reader-1"}])
    assert reply.status_code == 200, reply.text
    assert reply.json()["accepted"] == 3
    assert [r["code"] for r in reply.json()["rejected"]] == ["undefined_event"]

    # trends: three reads today
    nav.get_by_role("link", name="Trends").click()
    page.get_by_label("Series 1 event").fill("article.read")
    page.get_by_label("Date range").select_option(label="Today")
    page.get_by_role("button", name="Show trend").click()
    trend = page.get_by_role("table", name=re.compile("Trend by"))
    expect(trend.get_by_role("row").last).to_contain_text("3")

    # live: a read arriving now shows up
    nav.get_by_role("link", name="Live").click()
    page.get_by_role("heading", name="Live events").wait_for()
    page.locator(".live-status").get_by_text("Live", exact=True).wait_for()
    more = {"name": "article.read", "user": "reader-3", "properties": {"title": "Live!"}}
    assert send(dashboard, auth, [more]).json()["accepted"] == 1
    page.get_by_role("rowheader", name="article.read").wait_for()
    expect(page.get_by_role("link", name="reader-3")).to_be_visible()

    # the customer's feed, from the live list
    page.get_by_role("link", name="reader-3").click()
    page.get_by_role("heading", name="Customer reader-3").wait_for()
    expect(page.get_by_role("list", name="Activity, newest first")).to_contain_text("Read Live!")
    nav.get_by_role("link", name="Customers").click()
    page.get_by_label("Search customers").fill("reader-1")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="reader-1").click()
    feed = page.get_by_role("list", name="Activity, newest first")
    expect(feed.locator("li")).to_have_count(2)
    expect(feed).to_contain_text("Read Again")

    # the share was refused: find it, define it, replay it
    nav.get_by_role("link", name="Failed events").click()
    failed = page.get_by_role("table", name=re.compile("failed events?, newest first"))
    row = failed.get_by_role("row").filter(has_text="article.share")
    expect(row).to_contain_text("undefined_event")
    nav.get_by_role("link", name="Events", exact=True).click()
    page.get_by_role("button", name="Define an event").click()
    editor = page.get_by_role("form", name="Define an event")
    editor.get_by_label("Name", exact=True).fill("article.share")
    editor.get_by_role("button", name="Define event").click()
    expect(page.get_by_role("row").filter(has_text="article.share")).to_be_visible()
    nav.get_by_role("link", name="Failed events").click()
    page.get_by_role("button", name="Replay all waiting that match").click()
    expect(
        page.get_by_role("main").get_by_role("status").filter(has_text="Replayed")
    ).to_contain_text("1 passed")

    with httpx.Client(timeout=30) as client:
        stored = client.get(
            f"{dashboard.url}/api/v1/apps/{app_id}/events", auth=auth, params={"limit": 100}
        ).json()["events"]
    assert sorted(e["name"] for e in stored) == ["article.read"] * 4 + ["article.share"]
