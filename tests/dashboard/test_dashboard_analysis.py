"""The analysis screens (trends, funnels, retention) in Chromium, against events sent through the
API: the tables must show what the test computes from the events it sent, and the URL must bring
the same query back."""

from __future__ import annotations

import json
import statistics
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from dashboard_helpers import Dashboard, screenshot
from playwright.sync_api import expect

TODAY = datetime.now(UTC).date()
WINDOW = timedelta(days=7)

# (user, event, days ago, hour, extra): signup -> view -> purchase over the last few days, UTC.
JOURNEYS: list[tuple[str, str, int, int, dict[str, Any]]] = [
    ("u1", "signup", 3, 10, {"source": "ads"}),
    ("u1", "view", 3, 11, {}),
    ("u1", "purchase", 3, 12, {"amount": 20, "plan": "pro"}),
    ("u1", "view", 2, 11, {}),
    ("u1", "view", 1, 11, {}),
    ("u1", "purchase", 1, 12, {"amount": 30, "plan": "pro"}),
    ("u2", "signup", 3, 10, {"source": "ads"}),
    ("u2", "view", 3, 11, {}),
    ("u2", "view", 1, 11, {}),
    ("u2", "purchase", 1, 12, {"amount": 10, "plan": "basic"}),
    ("u3", "signup", 3, 10, {"source": "ads"}),
    ("u3", "view", 3, 11, {}),
    ("u4", "signup", 3, 10, {"source": "organic"}),
    ("u5", "signup", 2, 10, {"source": "organic"}),
    ("u5", "view", 2, 11, {}),
    ("u5", "purchase", 2, 12, {"amount": 15, "plan": "pro"}),
    ("u5", "view", 1, 11, {}),
    ("u6", "signup", 2, 10, {"source": "organic"}),
]
NO_VALUE = "\u2013"  # what the dashboard shows for no number (an en dash)
LAST_7_DAYS = [TODAY - timedelta(days=n) for n in range(6, -1, -1)]


def when(days_ago: int, hour: int) -> datetime:
    return datetime.combine(TODAY - timedelta(days=days_ago), time(hour), UTC)


def native(user: str, name: str, days_ago: int, hour: int, extra: dict[str, Any]) -> dict:
    properties = {key: value for key, value in extra.items() if key != "amount"}
    event: dict[str, Any] = {
        "name": name,
        "user": user,
        "time": when(days_ago, hour).isoformat().replace("+00:00", "Z"),
        "properties": properties,
    }
    if "amount" in extra:
        event["sum"] = extra["amount"]
    return event


def sent(name: str) -> list[tuple[str, datetime, dict[str, Any]]]:
    return [(u, when(d, h), x) for u, n, d, h, x in JOURNEYS if n == name]


# how the dashboard formats numbers (Intl, en-GB): at most 2 (numbers) or 1 (percent) decimals
def number(value: float) -> str:
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def percent(rate: float) -> str:
    return f"{rate * 100:.1f}".rstrip("0").rstrip(".") + "%"


def duration(seconds: float) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{number(seconds / size)} {unit}"
    return f"{number(seconds)} s"


@pytest.fixture(scope="module")
def shop(dashboard: Dashboard) -> Dashboard:
    """The app with its events defined (filters and breakdowns need defined properties) and the
    journeys sent."""
    definitions = {
        "signup": [{"name": "source", "type": "string"}],
        "view": [],
        "purchase": [{"name": "plan", "type": "string"}],
    }
    for name, properties in definitions.items():
        response = dashboard.api(
            "PUT", dashboard.app_path("definitions", name), json={"properties": properties}
        )
        assert response.status_code in (200, 201), response.text
    reply = dashboard.send([native(*journey) for journey in JOURNEYS])
    assert reply["accepted"] == len(JOURNEYS), reply
    return dashboard


def expect_table(page: Any, caption: str, rows: list[list[str]]) -> None:
    """The table named `caption` has exactly these cell texts, header row included."""
    table = page.get_by_role("table", name=caption, exact=True)
    found = table.locator("tr")
    expect(found).to_have_count(len(rows))
    for index, cells in enumerate(rows):
        expect(found.nth(index).locator("th, td")).to_have_text(cells)


# trends


def per_day(name: str, measure: str, keep: Any = lambda extra: True) -> list[float]:
    events = [(user, at, extra) for user, at, extra in sent(name) if keep(extra)]
    out = []
    for day in LAST_7_DAYS:
        that_day = [(user, extra) for user, at, extra in events if at.date() == day]
        if measure == "count":
            out.append(len(that_day))
        elif measure == "users":
            out.append(len({user for user, _ in that_day}))
        else:
            out.append(sum(extra["amount"] for _, extra in that_day))
    return out


def trend_rows(columns: dict[str, tuple[list[float], float]]) -> list[list[str]]:
    rows = [["Day", *columns]]
    for i, day in enumerate(LAST_7_DAYS):
        rows.append([day.isoformat(), *(number(values[i]) for values, _ in columns.values())])
    rows.append(["Total", *(number(total) for _, total in columns.values())])
    return rows


def test_trends_two_series_then_a_filter(page: Any, shop: Dashboard) -> None:
    page.goto(f"/apps/{shop.app.id}/trends")
    page.get_by_role("heading", name="Trends").wait_for()
    page.get_by_label("Series 1 event").press_sequentially("purchase")
    page.get_by_role("button", name="Add series").click()
    page.get_by_label("Series 2 event").fill("view")
    page.get_by_label("Series 2 measure").select_option(label="Users")
    page.get_by_label("Date range").select_option(label="Last 7 days")
    page.get_by_role("button", name="Show trend").click()

    purchases = per_day("purchase", "count")
    viewers = per_day("view", "users")
    distinct_viewers = len({user for user, _, _ in sent("view")})
    expected = trend_rows(
        {
            "purchase · Count": (purchases, sum(purchases)),
            "view · Users": (viewers, distinct_viewers),  # distinct people, not the sum of days
        }
    )
    expect_table(page, "Trend by day", expected)
    expect(page.locator(".chart .main-svg").first).to_be_visible()
    screenshot(page, "trends")

    # the URL holds the query: a reload (or a shared link) shows the same
    assert "event=purchase" in page.url and "range=7d" in page.url
    page.reload()
    expect(page.get_by_label("Series 1 event")).to_have_value("purchase")
    expect(page.get_by_label("Series 2 event")).to_have_value("view")
    expect(page.get_by_label("Series 2 measure")).to_have_value("users")
    expect(page.get_by_label("Date range")).to_have_value("7d")
    expect(page.get_by_label("Time zone")).to_have_value("UTC")
    expect_table(page, "Trend by day", expected)

    # one series, its sum, only the pro plan, against the (empty) previous period
    page.get_by_role("button", name="Remove series 2").click()
    page.get_by_label("Series 1 measure").select_option(label="Sum")
    page.get_by_role("button", name="Add filter").click()
    page.get_by_label("Filter 1 field").select_option("properties.plan")
    page.get_by_label("Filter 1 condition").select_option(label="equals")
    page.get_by_label("Filter 1 value").fill("pro")
    page.get_by_label("Compare with the previous period").check()
    page.get_by_role("button", name="Show trend").click()
    pro = per_day("purchase", "sum", lambda extra: extra["plan"] == "pro")
    rows = trend_rows({"purchase · Sum": (pro, sum(pro))})
    rows[0].append("purchase · Sum (previous period)")
    for row in rows[1:]:
        row.append("0")
    expect_table(page, "Trend by day", rows)
    expect(page.locator(".card .value").first).to_have_text(number(sum(pro)))

    page.reload()
    expect(page.get_by_label("Filter 1 field")).to_have_value("properties.plan")
    expect(page.get_by_label("Filter 1 value")).to_have_value("pro")
    expect(page.get_by_label("Compare with the previous period")).to_be_checked()
    expect_table(page, "Trend by day", rows)


def test_trends_bad_url_state_falls_back_and_api_errors_show(
    page: Any, shop: Dashboard, expected_errors: list[str]
) -> None:
    query = {"event": "purchase", "interval": "fortnight", "range": "bogus", "tz": "Mars/Base"}
    page.goto(f"/apps/{shop.app.id}/trends?{urlencode(query)}")
    expect(page.get_by_label("Interval")).to_have_value("day")
    expect(page.get_by_label("Date range")).to_have_value("30d")
    expect(page.get_by_label("Time zone")).to_have_value("UTC")
    totals = page.get_by_role("table", name="Trend by day", exact=True).locator("tfoot")
    expect(totals).to_have_text(f"Total{len(sent('purchase'))}")

    expected_errors.append("status of 400")  # the undefined property, on purpose
    bad = [{"field": "properties.nope", "op": "is_set"}]
    page.goto(f"/apps/{shop.app.id}/trends?event=purchase&filters={json.dumps(bad)}")
    expect(page.get_by_role("alert")).to_contain_text("undefined_property")
    # the form stays usable next to the error
    expect(page.get_by_role("button", name="Show trend")).to_be_enabled()


def test_trends_on_a_phone(phone_page: Any, shop: Dashboard) -> None:
    page = phone_page
    query = [("event", "purchase"), ("measure", "count"), ("event", "view"), ("measure", "users")]
    page.goto(f"/apps/{shop.app.id}/trends?{urlencode([*query, ('range', '7d')])}")
    expect(page.get_by_role("table", name="Trend by day", exact=True)).to_be_visible()
    expect(page.locator(".chart .main-svg").first).to_be_visible()
    # nothing but the tables scrolls sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "trends-phone")


# funnels


def funnel(steps: list[str], people: set[str] | None = None) -> list[dict[str, Any]]:
    """Per step: people, and the seconds each took from the previous step (docs/queries.md)."""
    by_user: dict[str, list[tuple[str, datetime]]] = {}
    for user, name, days_ago, hour, _ in JOURNEYS:
        by_user.setdefault(user, []).append((name, when(days_ago, hour)))
    reached: list[list[float]] = [[] for _ in steps]
    for user, events in by_user.items():
        if people is not None and user not in people:
            continue
        times = sorted(at for name, at in events if name == steps[0])
        if not times:
            continue
        entry = previous = times[0]
        reached[0].append(0)
        for i, step in enumerate(steps[1:], start=1):
            later = [at for n, at in events if n == step and previous < at <= entry + WINDOW]
            if not later:
                break
            reached[i].append((min(later) - previous).total_seconds())
            previous = min(later)
    return [{"count": len(waits), "waits": waits} for waits in reached]


def test_funnel_three_steps_and_a_breakdown(page: Any, shop: Dashboard) -> None:
    page.goto(f"/apps/{shop.app.id}/funnels")
    page.get_by_role("heading", name="Funnels").wait_for()
    page.get_by_label("Step 1", exact=True).fill("signup")
    page.get_by_label("Step 2", exact=True).fill("view")
    page.get_by_role("button", name="Add step").click()
    page.get_by_label("Step 3", exact=True).press_sequentially("purchase")
    page.get_by_label("Conversion window").fill("7")
    page.get_by_label("Window unit").select_option(label="Days")
    page.get_by_label("Date range").select_option(label="Last 7 days")
    page.get_by_role("button", name="Show funnel").click()

    steps = ["signup", "view", "purchase"]
    counts = funnel(steps)
    header = ["Step", "People", "From the previous step", "Overall"]
    rows = [[*header, "Median time from the previous step"]]
    for i, step in enumerate(counts):
        rows.append(
            [
                f"{i + 1}. {steps[i]}",
                number(step["count"]),
                percent(step["count"] / counts[i - 1]["count"]) if i else NO_VALUE,
                percent(step["count"] / counts[0]["count"]),
                duration(statistics.median(step["waits"])) if i else NO_VALUE,
            ]
        )
    expect_table(page, "People per step", rows)
    expect(page.locator(".chart .main-svg").first).to_be_visible()
    screenshot(page, "funnels")

    page.reload()
    for i, step in enumerate(steps):
        expect(page.get_by_label(f"Step {i + 1}", exact=True)).to_have_value(step)
    expect_table(page, "People per step", rows)

    # grouped by the signup's source: both groups have three people, so by value
    page.get_by_label("Break down by").select_option("properties.source")
    page.get_by_role("button", name="Show funnel").click()
    groups = {
        source: {u for u, _, x in sent("signup") if x["source"] == source}
        for source in ("ads", "organic")
    }
    breakdown = [["Value", *(f"{i + 1}. {s}" for i, s in enumerate(steps)), "Overall"]]
    for source, people in groups.items():
        found = funnel(steps, people)
        breakdown.append(
            [
                source,
                *(number(step["count"]) for step in found),
                percent(found[-1]["count"] / found[0]["count"]),
            ]
        )
    expect_table(page, "People per step, by breakdown value", breakdown)


# retention


def retention(periods: int) -> dict[date, tuple[int, list[int | None]]]:
    """Per cohort day of the last 7: its size and, per reached period, who viewed that day."""
    first: dict[str, datetime] = {}
    for user, at, _ in sorted(sent("signup"), key=lambda item: item[1]):
        first.setdefault(user, at)
    grid = {}
    for day in LAST_7_DAYS:
        cohort = {user: at for user, at in first.items() if at.date() == day}
        values: list[int | None] = []
        for k in range(periods):
            if day + timedelta(days=k) > TODAY:
                values.append(None)  # not reached yet
                continue
            back = {
                user
                for user, at, _ in sent("view")
                if user in cohort and at >= cohort[user] and (at.date() - day).days == k
            }
            values.append(len(back))
        grid[day] = (len(cohort), values)
    return grid


def test_retention_grid(page: Any, shop: Dashboard) -> None:
    periods = 4
    page.goto(f"/apps/{shop.app.id}/retention")
    page.get_by_role("heading", name="Retention").wait_for()
    page.get_by_label("Start event").fill("signup")
    page.get_by_label("Return event").fill("view")
    page.get_by_label("Cohorts by").select_option(label="Day")
    page.get_by_label("Periods").fill(str(periods))
    page.get_by_label("Date range").select_option(label="Last 7 days")
    page.get_by_role("button", name="Show retention").click()

    grid = retention(periods)
    rows = [["Day", "People", *(f"Day {k}" for k in range(periods))]]
    average = []
    for k in range(periods):
        cells = [(size, values[k]) for size, values in grid.values() if values[k] is not None]
        people, size = sum(v for _, v in cells), sum(s for s, _ in cells)
        average.append(
            "not yet" if not cells else f"{percent(people / size)} ({people})" if size else NO_VALUE
        )
    total = sum(size for size, _ in grid.values())
    rows.append(["All cohorts", number(total), *average])
    for day, (size, values) in grid.items():
        cells = [
            "not yet" if v is None else f"{percent(v / size)} ({v})" if size else NO_VALUE
            for v in values
        ]
        rows.append([day.isoformat(), number(size), *cells])
    expect_table(page, "Retained people per cohort (percent of the cohort, with the count)", rows)
    expect(page.locator(".chart .main-svg").first).to_be_visible()
    # the shade follows the rate
    shades = page.locator("table.retention td[style]").evaluate_all(
        """cells => cells.map(cell => [parseFloat(cell.textContent),
                                       parseFloat(cell.style.backgroundColor.split(",")[3])])"""
    )
    assert len(shades) == sum(1 for row in rows[1:] for cell in row if cell.endswith(")"))
    assert [alpha for _, alpha in sorted(shades)] == sorted(alpha for _, alpha in shades)
    assert min(shades)[1] < max(shades)[1]
    screenshot(page, "retention")

    page.reload()
    expect(page.get_by_label("Start event")).to_have_value("signup")
    expect(page.get_by_label("Return event")).to_have_value("view")
    expect(page.get_by_label("Periods")).to_have_value(str(periods))
    expect_table(page, "Retained people per cohort (percent of the cohort, with the count)", rows)
