"""Logging in and out of the dashboard, in Chromium."""

from __future__ import annotations

from typing import Any

from dashboard_helpers import PASSWORD, USER_EMAIL, Dashboard, screenshot
from playwright.sync_api import expect


def test_log_in_with_the_form_then_log_out(
    anonymous_page: Any, dashboard: Dashboard, expected_errors: list[str]
) -> None:
    page = anonymous_page
    expected_errors.append("status of 401")  # the wrong password, on purpose
    page.goto(f"/apps/{dashboard.app.id}/trends?range=7d")
    # not logged in: the login form, which remembers where the user was going
    page.wait_for_url("**/login?next=*")
    heading = page.get_by_role("heading", name="Log in to Tally")
    heading.wait_for()
    screenshot(page, "login")

    page.get_by_label("Email").fill(USER_EMAIL)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("alert").wait_for()
    assert "do not match" in page.get_by_role("alert").inner_text()

    page.get_by_label("Email").fill(USER_EMAIL.upper())
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**/apps/{dashboard.app.id}/trends?range=7d")
    assert page.get_by_role("link", name="Trends").get_attribute("aria-current") == "page"

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    # the session ended on the server: the API no longer answers for the cookie
    assert page.request.get(f"{dashboard.url}/api/v1/session").status == 401


def test_unknown_page_and_unknown_app(page: Any, dashboard: Dashboard) -> None:
    page.goto("/apps/0123456789abcdef01234567")
    page.get_by_role("heading", name="Not found").wait_for()
    assert "no app with the id" in page.locator("main").inner_text()


def test_pages_carry_a_content_security_policy(dashboard: Dashboard) -> None:
    response = dashboard.client.get(f"{dashboard.url}/login")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["x-frame-options"] == "DENY"
    missing = dashboard.client.get(f"{dashboard.url}/dashboard/nope.js")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    plotly = dashboard.client.get(
        f"{dashboard.url}/dashboard/vendor/plotly.min.js", headers={"accept-encoding": "gzip"}
    )
    assert plotly.status_code == 200 and plotly.headers["content-encoding"] == "gzip"
    assert b"plotly" in plotly.content[:2000].lower()


def test_keyboard_only_navigation(page: Any, dashboard: Dashboard) -> None:
    """The skip link comes first; sections open with Enter; focus lands on the new heading."""
    page.goto(f"/apps/{dashboard.app.id}")
    page.get_by_role("heading", name="Shop: overview").wait_for()
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    page.get_by_role("link", name="Customers").focus()
    page.keyboard.press("Enter")
    heading = page.get_by_role("heading", name="Customers", exact=True)
    heading.wait_for()
    expect(heading).to_be_focused()
    assert page.title() == "Customers · Shop · Tally"
    assert page.get_by_role("link", name="Customers").get_attribute("aria-current") == "page"
