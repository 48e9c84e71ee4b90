"""The overview (today / 7 / 30 days with change, top events, live counter) and the customers
screens (search, profile, activity feed), in Chromium."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dashboard_helpers import Dashboard, screenshot


def at(days_ago: int, hour: int = 0) -> str:
    """A time ``days_ago`` days before now (the events land in the past whatever the hour)."""
    moment = datetime.now(UTC) - timedelta(days=days_ago, hours=hour, minutes=1)
    return moment.isoformat()


@pytest.fixture(scope="module")
def history(dashboard: Dashboard) -> None:
    """Today: 3 events by 2 users; 10 days ago: 4 events by 1 user (in 30 days, not in 7)."""
    dashboard.send(
        [
            {"name": "page.visit", "user": "ann", "device": "ann-phone", "time": at(0)},
            {
                "name": "purchase",
                "user": "ann",
                "device": "ann-phone",
                "time": at(0),
                "label": "Bought a lamp",
                "properties": {"item": "lamp"},
            },
            {"name": "page.visit", "device": "visitor-9", "time": at(0)},
            *[
                {"name": "page.visit", "user": "bob", "device": "bob-laptop", "time": at(10, i)}
                for i in range(4)
            ],
            {
                "name": "identity.identify",
                "user": "ann",
                "time": at(0),
                "properties": {"plan": "pro", "email": "ann@example.com"},
            },
        ]
    )


def card_values(page: Any, metric: str) -> list[str]:
    card = page.get_by_role("region", name=metric)
    return [v.strip() for v in card.locator(".value").all_inner_texts()]


def test_overview(page: Any, dashboard: Dashboard, history: None) -> None:
    page.goto(f"/apps/{dashboard.app.id}")
    page.get_by_role("heading", name="Shop: overview").wait_for()
    page.locator(".overview-cards").wait_for()
    # today, 7 days, 30 days
    assert card_values(page, "Events") == ["4", "4", "8"]
    assert card_values(page, "Users") == ["2", "2", "3"]
    assert card_values(page, "Sessions") == ["0", "0", "0"]
    events_card = page.get_by_role("region", name="Events")
    assert events_card.locator(".change").all_inner_texts()[0].startswith("new")

    top = page.get_by_role("table", name="Top events, last 30 days")
    assert top.locator("tbody tr").first.inner_text().split("\t")[:2] == ["page.visit", "6"]
    page.locator(".chart .main-svg").first.wait_for()

    # the live counter counts what arrives while the page is open
    page.get_by_text("live", exact=True).wait_for()
    dashboard.send([{"name": "page.visit", "device": "visitor-10"}])
    page.locator(".live-card .value").filter(has_text="1").wait_for()
    screenshot(page, "overview")

    # a top event links to its trend
    top.get_by_role("link", name="purchase").click()
    page.wait_for_url("**/trends?event=purchase&range=30d")


def test_customers_search_profile_and_feed(page: Any, dashboard: Dashboard, history: None) -> None:
    page.goto(f"/apps/{dashboard.app.id}/customers")
    page.get_by_role("heading", name="Customers").wait_for()
    page.get_by_label("Search customers").fill("AN")
    page.get_by_role("button", name="Search").click()
    results = page.get_by_role("table", name="Customers matching “AN”")
    results.wait_for()
    assert results.locator("tbody th").all_inner_texts() == ["ann"]
    assert "search=AN" in page.url
    screenshot(page, "customers")

    results.get_by_role("link", name="ann").click()
    page.get_by_role("heading", name="Customer ann").wait_for()
    feed = page.get_by_role("list", name="Activity, newest first")
    feed.locator("li").first.wait_for()
    assert "Bought a lamp" in feed.inner_text()
    assert feed.locator("li").count() == 3
    assert "ann-phone" in page.get_by_role("table", name="Devices").inner_text()
    properties = page.get_by_role("table", name="Properties").inner_text()
    assert "ann@example.com" in properties and "pro" in properties
    screenshot(page, "customer")

    # the profile's URL can be opened directly
    page.reload()
    page.get_by_role("heading", name="Customer ann").wait_for()


def test_overview_on_a_phone(phone_page: Any, dashboard: Dashboard, history: None) -> None:
    phone_page.goto(f"/apps/{dashboard.app.id}")
    phone_page.locator(".overview-cards").wait_for()
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "nothing is wider than the phone's screen"
    screenshot(phone_page, "overview-phone")
