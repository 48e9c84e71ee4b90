"""Segment's browser library, analytics.js (``@segment/analytics-next``), unchanged, in real
headless Chromium (Debian's) against a real ``tally serve``.

Each scenario serves a page on its own origin (another port, so every request to Tally is
cross-origin, as on a real site) that loads the library's UMD build straight from node_modules,
with its settings given inline (``cdnSettings``) so it never fetches them from cdn.segment.com:
the ``Segment.io`` destination's ``apiKey`` (the write key it sends; the Tally app key),
``apiHost`` (Tally's ``host:port/v1``) and ``protocol``. The page tracks a page view, an event,
identifies the user and tracks another event. Every request leaving the browser for anything but
the page's origin and Tally is refused and recorded, so the scenario proves that analytics.js
works offline against Tally alone.

The library posts each call to ``/v1/<first letter of its type>`` (``/v1/p``, ``/v1/t``,
``/v1/i``) or, with the ``batching`` delivery strategy, ``{writeKey, batch, sentAt}`` to
``/v1/b``; always as ``Content-Type: text/plain`` with ``Authorization: Basic`` (so the browser
sends a CORS preflight first).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

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
    from playwright.sync_api import (
        Browser,
        ConsoleMessage,
        Page,
        Request,
        Route,
    )
except ImportError:  # pragma: no cover
    pytest.fail(
        "playwright is not installed in the venv: add it to the test extras in pyproject.toml "
        "(./scripts/test installs those)",
        pytrace=False,
    )

PACKAGE = "@segment/analytics-next"
STORE_TIMEOUT = 20.0
PAGE_PATH = "/shop/checkout.html"
PAGE_TITLE = "Tally analytics.js test"
USER_ID = "user-42"
TRAITS = {"email": "peter@example.com", "plan": "pro", "logins": 3}
PURCHASE = {"item_name": "rolex", "revenue": 14.99, "tags": ["gold", "watch"]}
CHECKOUT = {"step": 2}
PAGE_PROPERTIES = {"plan": "pro"}
EVENT_NAMES = ("page.visit", "Item Purchased", "identity.identify", "Checkout Started")

PAGE = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>%(title)s</title>
<link rel="icon" href="data:,">
<script src="/analytics.js"></script>
<script>
window.scenario = (async () => {
  const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(%(settings)s, %(options)s);
  window.analytics = analytics;
  await analytics.page("Docs", "Pricing", %(page)s);
  await analytics.track("Item Purchased", %(purchase)s);
  await analytics.identify(%(user)s, %(traits)s);
  await analytics.track("Checkout Started", %(checkout)s);
  return analytics.user().anonymousId();
})();
</script>
</head>
<body><p>analytics.js against Tally</p></body>
</html>
"""
"""Each call is awaited, so the calls reach Tally in this order (with the default delivery, the
promise resolves once Tally has answered)."""


@dataclass
class Exchange:
    """One request the page made to Tally, and Tally's answer."""

    method: str
    url: str
    headers: dict[str, str]
    body: str | None
    status: int | None
    response: str | None
    response_headers: dict[str, str]

    @property
    def path(self) -> str:
        return urlsplit(self.url).path

    def json(self) -> Any:
        return json.loads(self.body or "")

    def accepted(self) -> bool:
        """Tally stored everything: 200 ``{"success": true}`` with nothing rejected."""
        try:
            reply = json.loads(self.response or "")
        except ValueError:
            return False
        return self.status == 200 and reply == {"success": True}


@dataclass
class Traffic:
    """What the page did with the network, and what its console said."""

    tally_origin: str
    page_origin: str = ""
    requests: list[Request] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    """Requests to anywhere but the page's origin and Tally (refused)."""
    console: list[tuple[str, str]] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.route("**/*", self._route)
        page.on("request", self._on_request)
        page.on("requestfailed", self._on_failed)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def _route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith((self.tally_origin + "/", self.page_origin + "/")):
            route.continue_()
        else:
            self.blocked.append(f"{route.request.method} {url}")
            route.abort()

    def _on_request(self, request: Request) -> None:
        if request.url.startswith(self.tally_origin + "/"):
            self.requests.append(request)

    def _on_failed(self, request: Request) -> None:
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
                    headers=request.all_headers(),
                    body=request.post_data,
                    status=None if response is None else response.status,
                    response=None if response is None else response.text(),
                    response_headers={} if response is None else response.all_headers(),
                )
            )
        return found


@dataclass
class WebRun:
    """What one scenario left: the library's traffic, the browser's console, the stored events."""

    tally: Server
    app: App
    page_url: str
    anonymous_id: str
    sdk_version: str
    user_agent: str
    exchanges: list[Exchange]
    traffic: Traffic
    events: list[dict[str, Any]]
    """Every stored event of the scenario's anonymous id."""

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["name"] == name]

    def posts(self) -> list[Exchange]:
        return [x for x in self.exchanges if x.method == "POST"]

    def messages(self) -> list[dict[str, Any]]:
        """Every message the library sent, batched or not."""
        found: list[dict[str, Any]] = []
        for post in self.posts():
            body = post.json()
            found.extend(body["batch"] if post.path == "/v1/b" else [body])
        return found

    def report(self) -> str:
        sent = "\n".join(
            f"{x.method} {x.url} [{x.headers.get('content-type')}]\n  body: {x.body}\n"
            f"  -> {x.status} {x.response}"
            for x in self.exchanges
        )
        console = "\n".join(f"[{kind}] {text}" for kind, text in self.traffic.console)
        return (
            f"page {self.page_url}, anonymousId {self.anonymous_id}\n"
            f"--- requests to Tally ---\n{sent}\n"
            f"--- failed requests ---\n{self.traffic.failed}\n"
            f"--- blocked requests (not to the page or Tally) ---\n{self.traffic.blocked}\n"
            f"--- page errors ---\n{self.traffic.page_errors}\n"
            f"--- browser console ---\n{console}\n"
            f"--- stored events ---\n{json.dumps(self.events, indent=1)}\n--- end ---"
        )


def run_scenario(
    browser: Browser, tally: Server, app: App, delivery: dict[str, Any] | None = None
) -> WebRun:
    """Load the page in a fresh browser context and wait until the four calls are stored."""
    library_dir, version = sdk_package(PACKAGE)
    segment_io: dict[str, Any] = {
        "apiKey": app.app_key,
        "apiHost": f"{urlsplit(tally.url).netloc}/v1",
        "protocol": "http",
    }
    if delivery is not None:
        segment_io["deliveryStrategy"] = delivery
    settings = {
        "writeKey": app.app_key,
        # Inline settings: nothing is fetched from cdn.segment.com. sampleRate 0 turns off the
        # library's own usage metrics (posted to <apiHost>/m, which Tally does not take).
        "cdnSettings": {"integrations": {"Segment.io": segment_io}, "metrics": {"sampleRate": 0}},
    }
    page_html = PAGE % {
        "title": PAGE_TITLE,
        "settings": json.dumps(settings),
        "options": json.dumps({}),
        "page": json.dumps(PAGE_PROPERTIES),
        "purchase": json.dumps(PURCHASE),
        "user": json.dumps(USER_ID),
        "traits": json.dumps(TRAITS),
        "checkout": json.dumps(CHECKOUT),
    }
    traffic = Traffic(tally_origin=tally.url)
    library = (library_dir / "dist" / "umd" / "index.js").read_bytes()
    routes = {
        PAGE_PATH: ("text/html; charset=utf-8", page_html.encode()),
        "/analytics.js": ("text/javascript; charset=utf-8", library),
    }
    with PageServer(routes) as pages:
        traffic.page_origin = pages.origin
        page_url = pages.origin + PAGE_PATH
        context = browser.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(BROWSER_TIMEOUT_MS)
            traffic.watch(page)
            page.goto(page_url, wait_until="load")
            anonymous_id: str = page.evaluate("window.scenario")
            user_agent: str = page.evaluate("navigator.userAgent")

            def stored_all(found: list[dict[str, Any]]) -> bool:
                names = {e["name"] for e in found if e["device"] == anonymous_id}
                return set(EVENT_NAMES) <= names

            # Wait inside the page (the route handler that keeps the browser offline runs only
            # while Playwright is called), reading the store between waits.
            deadline = time.monotonic() + STORE_TIMEOUT
            with httpx.Client(timeout=5.0) as client:
                while not stored_all(tally.read_events(client, app)):
                    if time.monotonic() >= deadline:
                        break
                    page.wait_for_timeout(200)
            wait_for_events(
                tally,
                app,
                stored_all,
                timeout=1.0,
                what=f"{', '.join(EVENT_NAMES)} of anonymousId {anonymous_id}",
            )
            exchanges = traffic.exchanges()
        finally:
            context.close()
    with httpx.Client(timeout=5.0) as client:
        stored = tally.read_events(client, app)
    return WebRun(
        tally=tally,
        app=app,
        page_url=page_url,
        anonymous_id=anonymous_id,
        sdk_version=version,
        user_agent=user_agent,
        exchanges=exchanges,
        traffic=traffic,
        events=[e for e in stored if e["device"] == anonymous_id],
    )


@pytest.fixture(scope="module")
def web_tally(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, App]]:
    """One ``tally serve`` and app for the module's scenarios (each has its own anonymousId)."""
    with module_server(tmp_path_factory, "segment-web") as running:
        yield running


@pytest.fixture(scope="module", params=["standard", "batching"])
def web_run(
    request: pytest.FixtureRequest, browser: Browser, web_tally: tuple[Server, App]
) -> WebRun:
    """The library's default delivery (one request per call), and its ``batching`` strategy."""
    delivery = (
        {"strategy": "batching", "config": {"size": 10, "timeout": 300}}
        if request.param == "batching"
        else None
    )
    return run_scenario(browser, *web_tally, delivery=delivery)


def test_every_request_accepted_and_nothing_leaves_for_segment(web_run: WebRun) -> None:
    assert web_run.posts(), web_run.report()
    refused = [x for x in web_run.posts() if not x.accepted()]
    assert not refused, f"Tally refused requests the library sent: {refused}\n{web_run.report()}"
    for exchange in web_run.exchanges:
        assert exchange.response_headers.get("access-control-allow-origin") == "*"
    assert not web_run.traffic.blocked, web_run.report()
    assert not web_run.traffic.failed, web_run.report()
    assert not web_run.traffic.page_errors, web_run.report()
    errors = [text for kind, text in web_run.traffic.console if kind == "error"]
    assert not errors, f"the browser console shows errors: {errors}\n{web_run.report()}"


def test_the_library_uses_the_short_paths_as_text_plain_with_the_write_key(
    web_run: WebRun,
) -> None:
    paths = [x.path for x in web_run.posts()]
    if "/v1/b" in paths:
        assert set(paths) == {"/v1/b"}, web_run.report()
        for post in web_run.posts():
            body = post.json()
            assert body["writeKey"] == web_run.app.app_key
            assert "sentAt" in body
            assert all("sentAt" not in message for message in body["batch"])
    else:
        assert paths == ["/v1/p", "/v1/t", "/v1/i", "/v1/t"], web_run.report()
        for post in web_run.posts():
            body = post.json()
            assert body["writeKey"] == web_run.app.app_key
            assert {"sentAt", "_metadata", "messageId", "type"} <= set(body)
    token = base64.b64encode(f"{web_run.app.app_key}:".encode()).decode()
    for post in web_run.posts():
        assert post.headers["content-type"] == "text/plain", web_run.report()
        assert post.headers["authorization"] == f"Basic {token}"
    # Authorization makes the request non-simple: the browser asked first, and Tally said yes.
    assert not web_run.traffic.failed, web_run.report()


def test_events_carry_protocol_sdk_and_page_context(web_run: WebRun) -> None:
    assert len(web_run.events) == 4, web_run.report()
    for event in web_run.events:
        assert event["protocol"] == "segment", web_run.report()
        assert event["sdk"] == {"name": "analytics.js", "version": f"next-{web_run.sdk_version}"}
        assert event["context"]["user_agent"] == web_run.user_agent
        assert event["context"]["url"].startswith(web_run.page_url)
        assert event["context"]["locale"]
        assert event["context"]["timezone"]
        assert event["id"].startswith("ajs-next-")
    sent_ids = {m["messageId"] for m in web_run.messages()}
    assert {e["id"] for e in web_run.events} == sent_ids


def test_page_stored(web_run: WebRun) -> None:
    [visit] = web_run.named("page.visit")
    assert visit["label"] == "Pricing"
    assert visit["internal"] is False
    assert visit["user"] is None
    assert visit["context"]["url"] == web_run.page_url
    properties = visit["properties"]
    assert properties["category"] == "Docs"
    assert properties["plan"] == "pro"
    assert properties["name"] == "Pricing"
    assert (properties["path"], properties["title"]) == (PAGE_PATH, PAGE_TITLE)
    assert properties["url"] == web_run.page_url


def test_track_before_identify_stored_with_the_anonymous_id(web_run: WebRun) -> None:
    [purchase] = web_run.named("Item Purchased")
    assert purchase["properties"] == PURCHASE
    assert (purchase["user"], purchase["device"]) == (None, web_run.anonymous_id)
    assert purchase["internal"] is False


def test_identify_stored_with_traits(web_run: WebRun) -> None:
    [identify] = web_run.named("identity.identify")
    assert identify["internal"] is True
    assert (identify["user"], identify["device"]) == (USER_ID, web_run.anonymous_id)
    assert identify["properties"] == TRAITS


def test_track_after_identify_carries_the_user_id(web_run: WebRun) -> None:
    [checkout] = web_run.named("Checkout Started")
    assert checkout["properties"] == CHECKOUT
    assert (checkout["user"], checkout["device"]) == (USER_ID, web_run.anonymous_id)


def test_reading_by_user_finds_the_anonymous_history(web_run: WebRun) -> None:
    """identify with both ids links them: the page and the purchase before it are the user's."""
    with httpx.Client(timeout=5.0) as client:
        by_user = web_run.tally.read_events(client, web_run.app, user=USER_ID)
    names = {e["name"] for e in by_user if e["device"] == web_run.anonymous_id}
    assert names == set(EVENT_NAMES)
