"""The data management screens in Chromium: Events (definitions and aliases), Rules (the app's
settings and discarded counts) and Failed events (inspect and replay). Every change is made by
clicking and typing, then checked through the API with the app's key and secret."""

from __future__ import annotations

import re
from typing import Any

from dashboard_helpers import Dashboard, screenshot
from playwright.sync_api import expect


def test_define_edit_alias_and_delete_an_event(
    page: Any, dashboard: Dashboard, expected_errors: list[str]
) -> None:
    expected_errors.append("status of 400")  # the reserved name, on purpose
    page.goto(f"/apps/{dashboard.app.id}/events")
    page.get_by_role("heading", name="Events", exact=True).wait_for()
    expect(page.get_by_role("row").filter(has_text="page.visit")).to_contain_text("built-in")

    page.get_by_role("button", name="Define an event").click()
    editor = page.get_by_role("form", name="Define an event")
    expect(page).to_have_url(re.compile(r"[?&]new=1"))
    # a reserved name is refused by the API, and the reason is shown in the form
    editor.get_by_label("Name", exact=True).fill("transaction.charge")
    editor.get_by_role("button", name="Define event").click()
    expect(editor.get_by_role("alert")).to_contain_text("reserved")

    editor.get_by_label("Name", exact=True).fill("checkout.start")
    editor.get_by_label("Display name").fill("Checkout start")
    editor.get_by_label("Description", exact=True).fill("The basket's checkout button")
    editor.get_by_label("Label template").fill("Checkout of {{items}} items")
    editor.get_by_role("radio", name=re.compile("^Anonymous")).check()
    editor.get_by_role("button", name="Add a property").click()
    expect(editor.get_by_label("Property 1 name")).to_be_focused()
    editor.get_by_label("Property 1 name").fill("items")
    editor.get_by_label("Property 1 type").select_option("number")
    editor.get_by_label("Property 1 required").check()
    editor.get_by_label("Property 1 description").fill("How many items are in the basket")
    screenshot(page, "event-editor")
    editor.get_by_role("button", name="Define event").click()

    row = page.get_by_role("row").filter(has_text="checkout.start")
    expect(row).to_contain_text("Anonymous")
    expect(row.get_by_role("cell").nth(2)).to_have_text("1")  # one property
    expect(page.locator("main .notice")).to_have_text("Defined checkout.start.")
    definition = dashboard.api("GET", dashboard.app_path("definitions", "checkout.start")).json()
    assert definition["permission"] == "anonymous"
    assert definition["label_template"] == "Checkout of {{items}} items"
    assert [(p["name"], p["type"], p["required"]) for p in definition["properties"]] == [
        ("items", "number", True)
    ]

    # edit: the name stays, a property is added; the URL names the event being edited
    row.get_by_role("button", name="Edit checkout.start").click()
    editor = page.get_by_role("form", name="Edit checkout.start")
    expect(page).to_have_url(re.compile(r"[?&]edit=checkout.start"))
    expect(editor.get_by_label("Name", exact=True)).to_have_attribute("readonly", "")
    expect(editor.get_by_label("Property 1 name")).to_have_value("items")
    editor.get_by_role("button", name="Add a property").click()
    editor.get_by_label("Property 2 name").fill("coupon")
    editor.get_by_label("Description", exact=True).fill("Checkout started")
    editor.get_by_role("button", name="Save changes").click()
    expect(row.get_by_role("cell").nth(2)).to_have_text("2")
    definition = dashboard.api("GET", dashboard.app_path("definitions", "checkout.start")).json()
    assert definition["description"] == "Checkout started"
    assert [p["name"] for p in definition["properties"]] == ["items", "coupon"]
    assert definition["properties"][1]["type"] == "string"

    # the search narrows the list
    page.get_by_label("Search events").fill("checkout")
    expect(page.get_by_role("table", name=re.compile("Event definitions"))).to_contain_text("1 of")
    page.get_by_label("Search events").fill("")
    screenshot(page, "events")

    # an alias, then removing it
    page.get_by_label("Alias (the name clients send)").fill("begin_checkout")
    page.get_by_label("Store it as").fill("checkout.start")
    page.get_by_role("button", name="Add alias").click()
    expect(page.get_by_role("row").filter(has_text="begin_checkout")).to_contain_text(
        "checkout.start"
    )
    aliases = dashboard.api("GET", dashboard.app_path("aliases")).json()["aliases"]
    assert aliases == [{"alias": "begin_checkout", "name": "checkout.start"}]
    page.get_by_role("button", name="Remove alias begin_checkout").click()
    expect(page.get_by_role("row").filter(has_text="begin_checkout")).to_have_count(0)
    assert dashboard.api("GET", dashboard.app_path("aliases")).json()["aliases"] == []

    # deleting asks first: cancel keeps it, confirming deletes it
    row.get_by_role("button", name="Delete checkout.start").click()
    expect(page.get_by_role("button", name="Yes, delete checkout.start")).to_be_focused()
    page.get_by_role("button", name="Cancel").click()
    assert dashboard.api("GET", dashboard.app_path("definitions", "checkout.start")).is_success
    row.get_by_role("button", name="Delete checkout.start").click()
    page.get_by_role("button", name="Yes, delete checkout.start").click()
    expect(page.get_by_role("row").filter(has_text="checkout.start")).to_have_count(0)
    gone = dashboard.api("GET", dashboard.app_path("definitions", "checkout.start"))
    assert gone.status_code == 404


def test_rules_are_saved_and_discards_counted(
    page: Any, dashboard: Dashboard, expected_errors: list[str]
) -> None:
    expected_errors.append("status of 400")  # the bad network, on purpose
    page.goto(f"/apps/{dashboard.app.id}/rules")
    page.get_by_role("heading", name="Rules", exact=True).wait_for()
    strict = page.get_by_label("Strict mode: every event needs a definition")
    expect(strict).not_to_be_checked()
    strict.check()
    page.get_by_label("Deny list").fill("debug.*\n\n  test.*  \n")
    page.get_by_label("Internal addresses").fill("10.0.0.0/8\nnot-an-address")
    page.get_by_role("button", name="Save rules").click()
    # the API's refusal is shown, and beside the setting it is about
    expect(page.get_by_role("alert")).to_contain_text("not-an-address")
    internal = page.get_by_label("Internal addresses")
    expect(internal).to_have_attribute("aria-invalid", "true")
    expect(internal).to_be_focused()
    assert (
        dashboard.api("GET", dashboard.app_path("settings")).json()["settings"]["strict"] is False
    )

    internal.fill("10.0.0.0/8")
    page.get_by_label("Keep events for (days)").fill("400")
    page.get_by_role("button", name="Save rules").click()
    expect(page.get_by_role("main").get_by_role("status").filter(has_text="Saved")).to_be_visible()
    expect(internal).not_to_have_attribute("aria-invalid", "true")
    settings = dashboard.api("GET", dashboard.app_path("settings")).json()["settings"]
    assert settings["strict"] is True
    assert settings["denylist"] == ["debug.*", "test.*"]
    assert settings["internal_ips"] == ["10.0.0.0/8"]
    assert settings["retention_days"] == 400

    # a denied event is discarded (not failed) and counted per rule and day
    reply = dashboard.send([{"name": "debug.ping", "user": "ann"}])
    assert reply["accepted"] == 0 and reply["rejected"] == []
    page.reload()
    expect(page.get_by_label("Strict mode: every event needs a definition")).to_be_checked()
    expect(page.get_by_label("Deny list")).to_have_value("debug.*\ntest.*")
    expect(page.get_by_label("Keep events for (days)")).to_have_value("400")
    per_rule = page.get_by_role("table", name="Per rule")
    expect(per_rule.get_by_role("row").filter(has_text="debug.*")).to_contain_text("1")
    screenshot(page, "rules")

    # the Countly salt is a secret: it can be replaced or removed, and is never shown
    saved = page.get_by_role("main").get_by_role("status").filter(has_text="Saved")
    page.get_by_label("Countly checksum salt").fill("pepper")
    page.get_by_role("button", name="Save rules").click()
    expect(saved).to_be_visible()
    expect(page.get_by_label("Countly checksum salt")).to_have_value("")
    settings = dashboard.api("GET", dashboard.app_path("settings")).json()["settings"]
    assert settings["countly_salt"] == "set"
    page.get_by_label("Remove the salt").check()
    page.get_by_role("button", name="Save rules").click()
    expect(saved).to_be_visible()
    expect(page.get_by_label("Remove the salt")).to_be_hidden()
    settings = dashboard.api("GET", dashboard.app_path("settings")).json()["settings"]
    assert settings["countly_salt"] is None

    # browsers' origins and the customer JWT checks; the HS256 secret is never shown either
    origins = page.get_by_label("Allowed origins")
    origins.fill("https://shop.example.com\nshop.example.com/path")
    page.get_by_role("button", name="Save rules").click()
    expect(origins).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("alert")).to_contain_text("allowed_origins")
    origins.fill("https://shop.example.com\n  https://*.example.com ")
    page.get_by_label("Customer JWT audience").fill("tally")
    page.get_by_label("Customer JWT issuer").fill("https://login.example.com")
    page.get_by_label("Customer JWT secret (HS256)").fill("s" * 40)
    page.get_by_role("button", name="Save rules").click()
    expect(saved).to_be_visible()
    settings = dashboard.api("GET", dashboard.app_path("settings")).json()["settings"]
    assert settings["allowed_origins"] == ["https://shop.example.com", "https://*.example.com"]
    assert settings["customer_jwt_audience"] == "tally"
    assert settings["customer_jwt_issuer"] == "https://login.example.com"
    assert settings["customer_jwt_secret"] == "set"
    page.reload()
    expect(page.get_by_label("Customer JWT secret (HS256)")).to_have_value("")
    expect(page.get_by_label("Allowed origins")).to_have_value(
        "https://shop.example.com\nhttps://*.example.com"
    )
    page.get_by_label("Remove the secret").check()
    page.get_by_label("Allowed origins").fill("")
    page.get_by_label("Customer JWT audience").fill("")
    page.get_by_role("button", name="Save rules").click()
    expect(saved).to_be_visible()
    settings = dashboard.api("GET", dashboard.app_path("settings")).json()["settings"]
    assert settings["customer_jwt_secret"] is None
    assert settings["allowed_origins"] == []
    assert settings["customer_jwt_audience"] is None
    assert settings["customer_jwt_issuer"] == "https://login.example.com"

    # saving with nothing changed sends nothing
    page.get_by_role("button", name="Save rules").click()
    expect(
        page.get_by_role("main").get_by_role("status").filter(has_text="Nothing changed")
    ).to_be_visible()
    reset = {
        "strict": False,
        "denylist": [],
        "internal_ips": [],
        "retention_days": None,
        "customer_jwt_issuer": None,
    }
    assert dashboard.api("PATCH", dashboard.app_path("settings"), json=reset).is_success


def test_inspect_and_replay_a_failed_event(
    page: Any, dashboard: Dashboard, expected_errors: list[str]
) -> None:
    assert dashboard.api("PATCH", dashboard.app_path("settings"), json={"strict": True}).is_success
    # every event of the request is rejected, so the reply is a 400 with the usual body
    response = dashboard.client.post(
        f"{dashboard.url}/api/v1/events",
        auth=dashboard.app.auth,
        json={
            "events": [
                {"name": "wishlist.add", "user": "ann", "properties": {"sku": "A-1"}},
                {"user": "ann", "properties": {"sku": "B-2"}},
            ]
        },
    )
    assert response.status_code == 400, response.text
    reply = response.json()
    assert reply["accepted"] == 0
    assert [r["code"] for r in reply["rejected"]] == ["undefined_event", "missing_name"]

    page.goto(f"/apps/{dashboard.app.id}/failed")
    page.get_by_role("heading", name="Failed events", exact=True).wait_for()
    failed = page.get_by_role("table", name=re.compile("failed events?, newest first"))
    expect(failed.get_by_role("row")).to_have_count(3)  # the header and two events
    page.get_by_label("Reason").select_option("undefined_event")
    expect(page).to_have_url(re.compile(r"reason=undefined_event"))
    expect(failed.get_by_role("row")).to_have_count(2)
    row = failed.get_by_role("row").filter(has_text="wishlist.add")
    expect(row).to_contain_text("undefined_event")
    screenshot(page, "failed-events")

    row.get_by_role("button", name=re.compile("^Details of wishlist.add")).click()
    detail = page.get_by_role("region", name="Failed event wishlist.add")
    expect(detail).to_contain_text("the event has no definition")
    payload = detail.locator("pre.payload")
    expect(payload).to_contain_text('"name": "wishlist.add"')
    expect(page).to_have_url(re.compile(r"open="))
    screenshot(page, "failed-event-payload")
    # the filter and the open event come back with the URL
    page.reload()
    expect(page.get_by_label("Reason")).to_have_value("undefined_event")
    expect(detail.locator("pre.payload")).to_contain_text('"sku": "A-1"')

    # define the event on the Events screen, then come back and replay it
    page.get_by_role("navigation", name="App sections").get_by_role(
        "link", name="Events", exact=True
    ).click()
    page.get_by_role("button", name="Define an event").click()
    editor = page.get_by_role("form", name="Define an event")
    editor.get_by_label("Name", exact=True).fill("wishlist.add")
    editor.get_by_role("button", name="Add a property").click()
    editor.get_by_label("Property 1 name").fill("sku")
    editor.get_by_role("button", name="Define event").click()
    expect(page.get_by_role("row").filter(has_text="wishlist.add")).to_be_visible()
    page.go_back()
    expect(detail).to_be_visible()

    row.get_by_role("checkbox", name=re.compile("^Select wishlist.add")).check()
    page.get_by_role("button", name="Replay selected (1)").click()
    report = page.get_by_role("main").get_by_role("status").filter(has_text="Replayed")
    expect(report).to_contain_text("1 passed (1 stored")
    expect(detail).to_contain_text("replayed")
    expect(failed.get_by_role("row").filter(has_text="wishlist.add")).to_have_count(0)
    events = dashboard.api(
        "GET", dashboard.app_path("events"), params={"name": "wishlist.add"}
    ).json()["events"]
    assert [(e["name"], e["properties"]["sku"]) for e in events] == [("wishlist.add", "A-1")]

    # the nameless one cannot pass: replaying it reports why
    page.get_by_label("Reason").select_option("")
    page.get_by_role("button", name="Replay all waiting that match").click()
    expect(report).to_contain_text("0 passed")
    still = page.get_by_role("table", name=re.compile("Still failing"))
    expect(still).to_contain_text("missing_name")
    assert dashboard.api("PATCH", dashboard.app_path("settings"), json={"strict": False}).is_success


def test_data_screens_fit_a_phone(phone_page: Any, dashboard: Dashboard) -> None:
    page = phone_page
    for path, title in (("/events", "Events"), ("/rules", "Rules"), ("/failed", "Failed events")):
        page.goto(f"/apps/{dashboard.app.id}{path}")
        page.get_by_role("heading", name=title, exact=True).wait_for()
        page.wait_for_selector("main:not([aria-busy])")
        if path == "/events":
            page.get_by_role("button", name="Define an event").click()
            page.get_by_role("button", name="Add a property").click()
        # wide tables scroll inside their frame; the page itself never scrolls sideways
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} is {overflow}px wider than the phone"
