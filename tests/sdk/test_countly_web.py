"""countly-sdk-web, unchanged, in real headless Chromium (Debian's) against a real ``tally serve``.

Each scenario serves a page on its own origin (another port, so every SDK request is cross-origin,
as on a real site) that loads ``lib/countly.js`` straight from node_modules, tracks a session, a
page view and the seed's ``item purchase`` event, then ends the session. Playwright records every
request to Tally with Tally's answer, and the browser console; the stored events are read back
through the read API. A scenario runs once per module and several tests check what it left.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from support import (
    BROWSER_TIMEOUT_MS,
    App,
    PageServer,
    Server,
    module_server,
    sdk_package,
    wait_for_events,
)

try:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request
except ImportError:  # pragma: no cover
    pytest.fail(
        "playwright is not installed in the venv: add it to the test extras in pyproject.toml "
        "(./scripts/test installs those)",
        pytrace=False,
    )

STORE_TIMEOUT = 20.0
SDK_NAME = "javascript_native_web"
PAGE_PATH = "/index.html"
VIEW_KEY = "[CLY]_view"
VIEW_SECONDS = 2.5
USER_EVENT_NAMES = {
    "session.start",
    "session.update",
    "session.end",
    "view",
    "view.end",
    "item purchase",
}
SDK_CONFIG = {
    "debug": True,
    "ignore_bots": False,
    "use_session_cookie": False,
    "session_update": 2,
    "max_events": 100,
    "disable_sdk_behavior_settings_updates": True,
}
"""``Countly.init`` options besides app_key and url (the suggested init for headless Chromium)."""
PURCHASE = {
    "key": "item purchase",
    "count": 1,
    "sum": 0,
    "dur": 0,
    "segmentation": {"item_name": "rolex"},
}

PAGE = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>Tally SDK test</title>
<link rel="icon" href="data:,">
<script src="/countly.js"></script>
<script>
Countly.init(%(config)s);
Countly.track_sessions();
Countly.track_pageview();
Countly.add_event(%(event)s);
</script>
</head>
<body><p>countly-sdk-web against Tally</p></body>
</html>
"""


@dataclass
class Exchange:
    """One request the page made to Tally, and Tally's answer."""

    method: str
    url: str
    content_type: str | None
    body: str | None
    status: int | None
    response: str | None

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    @property
    def params(self) -> dict[str, str]:
        params = dict(parse_qsl(urlsplit(self.url).query, keep_blank_values=True))
        params.update(parse_qsl(self.body or "", keep_blank_values=True))
        return params

    @property
    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = json.loads(self.params.get("events", "[]"))
        return events

    def reply(self) -> Any:
        try:
            return json.loads(self.response or "")
        except ValueError:
            return None

    def accepted(self) -> bool:
        """What the SDK counts as success: a 2xx whose body is a JSON object with a ``result``
        (for ``/o/sdk``, which answers the server configuration, any JSON object)."""
        if self.status is None or not 200 <= self.status < 300:
            return False
        reply = self.reply()
        if self.path.startswith("/o/sdk"):
            return isinstance(reply, dict)
        return isinstance(reply, dict) and bool(reply.get("result"))


@dataclass
class Traffic:
    """What the page did with the Tally origin, and what its console said."""

    tally_origin: str
    requests: list[Request] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("request", self._on_request)
        page.on("requestfailed", self._on_failed)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def _on_request(self, request: Request) -> None:
        if request.url.startswith(self.tally_origin):
            self.requests.append(request)

    def _on_failed(self, request: Request) -> None:
        if request.url.startswith(self.tally_origin):
            self.failed.append(f"{request.method} {request.url}: {request.failure}")

    def _on_console(self, message: ConsoleMessage) -> None:
        self.console.append((message.type, message.text))

    def exchanges(self) -> list[Exchange]:
        """Every request to Tally with Tally's answer (call while the page is open)."""
        found = []
        for request in self.requests:
            response = request.response()
            found.append(
                Exchange(
                    method=request.method,
                    url=request.url,
                    content_type=request.headers.get("content-type"),
                    body=request.post_data,
                    status=None if response is None else response.status,
                    response=None if response is None else response.text(),
                )
            )
        return found


@dataclass
class WebRun:
    """What one scenario left: the SDK's traffic, the browser's console, the stored events."""

    page_url: str
    device: str
    user_agent: str
    sdk_version: str
    exchanges: list[Exchange]
    traffic: Traffic
    events: list[dict[str, Any]]
    """Every stored event of the scenario's device."""

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["name"] == name]

    def report(self) -> str:
        sent = "\n".join(
            f"{x.method} {x.url} [{x.content_type}]\n  body: {x.body}\n  -> {x.status} {x.response}"
            for x in self.exchanges
        )
        console = "\n".join(f"[{kind}] {text}" for kind, text in self.traffic.console)
        return (
            f"page {self.page_url}, device {self.device}\n"
            f"--- requests to Tally ---\n{sent}\n"
            f"--- failed requests ---\n{self.traffic.failed}\n"
            f"--- page errors ---\n{self.traffic.page_errors}\n"
            f"--- browser console ---\n{console}\n"
            f"--- stored events ---\n{json.dumps(self.events, indent=1)}\n--- end ---"
        )


def run_scenario(browser: Browser, tally: Server, app: App, **config: Any) -> WebRun:
    """Load the page in a fresh browser context, end the session, wait until the SDK is idle."""
    sdk_dir, version = sdk_package("countly-sdk-web")
    options = {"app_key": app.app_key, "url": tally.url, **SDK_CONFIG, **config}
    page_html = PAGE % {"config": json.dumps(options), "event": json.dumps(PURCHASE)}
    traffic = Traffic(tally_origin=tally.url)
    routes = {
        PAGE_PATH: ("text/html; charset=utf-8", page_html.encode()),
        "/countly.js": (
            "text/javascript; charset=utf-8",
            (sdk_dir / "lib" / "countly.js").read_bytes(),
        ),
    }
    with PageServer(routes) as pages:
        page_url = pages.origin + PAGE_PATH
        context = browser.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(BROWSER_TIMEOUT_MS)
            traffic.watch(page)
            page.goto(page_url, wait_until="load")
            loaded = time.monotonic()
            device: str = page.evaluate("Countly.get_device_id()")
            user_agent: str = page.evaluate("navigator.userAgent")

            def names(found: list[dict[str, Any]]) -> set[str]:
                return {e["name"] for e in found if e["device"] == device}

            wait_for_events(
                tally,
                app,
                lambda found: {"session.start", "view", "item purchase"} <= names(found),
                timeout=STORE_TIMEOUT,
                what=f"session.start, view and item purchase of device {device}",
            )
            # The SDK reports time on a view in whole seconds: stay long enough for it to be
            # non-zero, or it sends no duration at all.
            time.sleep(max(0.0, VIEW_SECONDS - (time.monotonic() - loaded)))
            page.evaluate("Countly.end_session()")
            wait_for_events(
                tally,
                app,
                lambda found: "session.end" in names(found),
                timeout=STORE_TIMEOUT,
                what=f"session.end of device {device}",
            )
            # The SDK keeps a request at the head of its queue until the server accepts it.
            page.wait_for_function(
                "Countly._internals.getRequestQueue().length === 0"
                " && Countly._internals.getEventQueue().length === 0"
            )
            exchanges = traffic.exchanges()
        finally:
            context.close()
    with httpx.Client(timeout=5.0) as client:
        stored = tally.read_events(client, app)
    return WebRun(
        page_url=page_url,
        device=device,
        user_agent=user_agent,
        sdk_version=version,
        exchanges=exchanges,
        traffic=traffic,
        events=[e for e in stored if e["device"] == device],
    )


@pytest.fixture(scope="module")
def web_tally(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, App]]:
    """One ``tally serve`` and app for the module's scenarios (each has its own device)."""
    with module_server(tmp_path_factory, "countly-web") as running:
        yield running


@pytest.fixture(scope="module")
def web_run(browser: Browser, web_tally: tuple[Server, App]) -> WebRun:
    """The suggested init: server configuration fetch off."""
    return run_scenario(browser, *web_tally)


@pytest.fixture(scope="module")
def web_run_server_config(browser: Browser, web_tally: tuple[Server, App]) -> WebRun:
    """As ``web_run``, with the SDK's default of fetching ``/o/sdk?method=sc`` at start."""
    return run_scenario(browser, *web_tally, disable_sdk_behavior_settings_updates=False)


def test_every_request_accepted(web_run: WebRun) -> None:
    assert web_run.exchanges, web_run.report()
    refused = [x for x in web_run.exchanges if not x.accepted()]
    assert not refused, f"Tally refused requests the SDK sent: {refused}\n{web_run.report()}"
    assert not web_run.traffic.failed, web_run.report()
    assert not web_run.traffic.page_errors, web_run.report()
    errors = [text for kind, text in web_run.traffic.console if kind == "error"]
    assert not errors, f"the browser console shows errors: {errors}\n{web_run.report()}"


def test_events_carry_protocol_and_sdk(web_run: WebRun) -> None:
    user_events = {e["name"] for e in web_run.events if not e["internal"]}
    assert user_events <= USER_EVENT_NAMES, web_run.report()
    for event in web_run.events:
        assert event["protocol"] == "countly", web_run.report()
        assert event["sdk"] == {"name": SDK_NAME, "version": web_run.sdk_version}


def test_item_purchase_stored(web_run: WebRun) -> None:
    [purchase] = web_run.named("item purchase")
    assert purchase["properties"] == {"item_name": "rolex"}
    assert purchase["count"] == 1
    assert not purchase["sum"]  # Countly leaves a sum of 0 out
    assert not purchase["dur"]
    assert purchase["internal"] is False


def test_session_start_stored(web_run: WebRun) -> None:
    [start] = web_run.named("session.start")
    assert start["properties"]["_ua"] == web_run.user_agent
    assert start["context"]["user_agent"] == web_run.user_agent
    assert start["context"]["os"] == "Linux"


def test_page_view_stored(web_run: WebRun) -> None:
    # The SDK reports the page as window.location.pathname (Countly.getViewUrl and getViewName).
    visits = [e for e in web_run.named("view") if e["properties"].get("visit") == 1]
    assert len(visits) == 1, web_run.report()
    [visit] = visits
    assert visit["context"]["url"] == PAGE_PATH
    assert visit["label"] == PAGE_PATH
    assert visit["properties"]["view"] == PAGE_PATH
    assert visit["properties"]["domain"] == "127.0.0.1"
    assert not web_run.named(VIEW_KEY), web_run.report()


def test_session_end_stored(web_run: WebRun) -> None:
    [sent] = [x.params for x in web_run.exchanges if x.params.get("end_session") == "1"]
    ends = web_run.named("session.end")
    assert len(ends) == 1, web_run.report()
    assert ends[0]["dur"] == float(sent["session_duration"])


def test_view_duration_stored(web_run: WebRun) -> None:
    """The time spent on the page is stored, as the view's ``view.end`` event.

    The SDK reports it when the view ends (here at ``end_session``) as a second ``[CLY]_view``
    with ``dur`` and ``{name}``, under the same event ``id`` as the visit (Countly uses the id to
    find the view the duration belongs to). docs/protocols.md: it is stored as ``view.end`` with
    that ``dur`` and ``properties.view_id`` = the visit's id, never dropped as a resend.
    """
    reports = [(x, item) for x in web_run.exchanges for item in x.events if item["key"] == VIEW_KEY]
    durations = [(x, item) for x, item in reports if item.get("dur")]
    assert durations, f"the SDK reported no view duration\n{web_run.report()}"
    [(exchange, item)] = durations
    visit_ids = [i["id"] for _, i in reports if i.get("segmentation", {}).get("visit") == 1]
    stored = [e["dur"] for e in web_run.named("view.end")]
    assert float(item["dur"]) in stored, (
        f"the SDK reported {item['dur']} s on view {item['segmentation'].get('name')!r} "
        f"(event id {item['id']}; ids of the visits: {visit_ids}) and Tally answered "
        f"{exchange.status} {exchange.response}, but no stored view has that dur "
        f"(stored view.end durs: {stored})\n{web_run.report()}"
    )
    [end] = [e for e in web_run.named("view.end") if e["dur"] == float(item["dur"])]
    assert end["properties"]["view_id"] == item["id"] in visit_ids, web_run.report()


def test_server_config_fetched(web_run_server_config: WebRun) -> None:
    run = web_run_server_config
    fetches = [x for x in run.exchanges if x.path == "/o/sdk"]
    assert [x.params.get("method") for x in fetches] == ["sc"], run.report()
    [fetch] = fetches
    assert fetch.accepted(), run.report()
    reply = fetch.reply()
    assert reply["c"] == {}, run.report()
    assert any("Config fetched successfully" in text for _, text in run.traffic.console)
    refused = [x for x in run.exchanges if not x.accepted()]
    assert not refused, run.report()
    errors = [text for kind, text in run.traffic.console if kind == "error"]
    assert not errors, run.report()
    # An empty configuration leaves the SDK sending as usual.
    [purchase] = run.named("item purchase")
    assert purchase["properties"] == {"item_name": "rolex"}
    assert len(run.named("session.start")) == 1
    assert len(run.named("session.end")) == 1
