"""tally.js, Tally's own browser tracker, in real headless Chromium (Debian's) against a real
``tally serve``.

The pages are served by the test on another port (every request to Tally is cross-origin, as on a
real site) and load the tracker from the server itself, ``{tally}/sdk/tally.js``. Each test runs in
a fresh browser context (a new visitor: new storage, new device id) and checks what was stored
through the read API, by the visitor's device id.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from support import (
    BROWSER_TIMEOUT_MS,
    SDK_TEST_WORKERS,
    App,
    PageServer,
    Server,
    ServerFactory,
    create_app,
    wait_for_events,
)
from tally import sdk

try:
    from playwright.sync_api import (
        Browser,
        BrowserContext,
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

STORE_TIMEOUT = 15.0
QUIET = 1.5
"""Seconds to wait before concluding that something was not sent (the tracker batches for 1 s)."""
EVENTS_PATH = "/sdk/v1/events"
CUSTOMER_EVENT = "account.upgrade"
LANDING = "/landing.html?utm_source=news&utm_medium=email&utm_campaign=spring"
SEARCH_REFERRER = "https://www.example.com/search?q=tally"
OPEN_TABS = "Object.keys(JSON.parse(localStorage.getItem('tally.tabs') || '{}')).length"
BOT_AGENT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"

PAGE = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>%(title)s</title>
<link rel="icon" href="data:,">
<script>
window.tally = window.tally || function () { (tally.q = tally.q || []).push(arguments); };
%(early)s
</script>
<script async src="%(tally)s/sdk/tally.js" data-app-key="%(app_key)s" %(attrs)s></script>
</head>
<body>%(body)s</body>
</html>
"""

SIGNUP_FORM = """
<form id="signup" data-tally-event data-tally-param-plan="pro" action="/thanks.html" method="get">
  <input data-tally-capture="email" value="ada@example.com">
  <input data-tally-capture="password" type="password" value="secret">
  <input id="age" data-tally-capture value="36">
  <input data-tally-capture="newsletter" type="checkbox" checked>
  <input value="not marked for capture">
  <button type="submit" id="go">Sign up</button>
</form>
<button id="buy" data-tally-event data-tally-param-item-id="sku-1" data-tally-label="Buy now">
  Buy
</button>
"""


def page_html(
    server: Server, app: App, title: str, *, attrs: str = "", early: str = "", body: str = ""
) -> bytes:
    values = {"title": title, "early": early, "body": body, "attrs": attrs}
    return (PAGE % {**values, "tally": server.url, "app_key": app.app_key}).encode()


@dataclass
class Site:
    server: Server
    app: App
    customer_key: rsa.RSAPrivateKey
    origin: str

    def url(self, path: str) -> str:
        return self.origin + path

    def events(self, device: str) -> list[dict[str, Any]]:
        with httpx.Client(timeout=5.0) as client:
            return self.server.read_events(client, self.app, user=device)

    def wait(
        self, device: str, done: Callable[[list[dict[str, Any]]], bool], what: str
    ) -> list[dict[str, Any]]:
        return wait_for_events(
            self.server, self.app, done, timeout=STORE_TIMEOUT, what=what, user=device
        )

    def customer_token(self, customer: str) -> str:
        claims = {"sub": customer, "exp": datetime.now(UTC) + timedelta(minutes=10)}
        return jwt.encode(claims, self.customer_key, algorithm="RS256")


def named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return sorted((e for e in events if e["name"] == name), key=lambda e: e["time"])


def has(name: str, count: int = 1, **properties: Any) -> Callable[[list[dict[str, Any]]], bool]:
    def done(events: list[dict[str, Any]]) -> bool:
        found = [
            e
            for e in named(events, name)
            if all(e["properties"].get(k) == v for k, v in properties.items())
        ]
        return len(found) >= count

    return done


@dataclass
class Visitor:
    """One browser context (one visitor) and what its pages sent to Tally."""

    context: BrowserContext
    tally_origin: str
    requests: list[Request] = field(default_factory=list)
    console: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def open(self, url: str, *, tracking: bool = True, **goto: Any) -> Page:
        """Open ``url`` in a new tab; wait until the tracker runs (and, if ``tracking``, has a
        device id)."""
        page = self.context.new_page()
        page.set_default_timeout(BROWSER_TIMEOUT_MS)
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.goto(url, wait_until="load", **goto)
        ready = "window.tally && window.tally.version"
        page.wait_for_function(ready + (" && tally.device()" if tracking else ""))
        return page

    def watch(self) -> None:
        self.context.on("request", self._on_request)

    def _on_request(self, request: Request) -> None:
        if request.url.startswith(self.tally_origin + EVENTS_PATH):
            self.requests.append(request)

    def _on_console(self, message: ConsoleMessage) -> None:
        self.console.append((message.type, message.text))

    def seen(self) -> list[Request]:
        """The requests to Tally so far. Playwright's sync API delivers events only while it is
        called, so make a call first: the list is up to date after it."""
        self.context.cookies()
        return self.requests

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.post_data or "{}") for r in self.seen() if r.method == "POST"]

    def sent(self, name: str) -> list[dict[str, Any]]:
        return [e for body in self.bodies() for e in body["events"] if e["name"] == name]

    def report(self) -> str:
        sent = "\n".join(f"{r.method} {r.url} {r.post_data}" for r in self.seen())
        console = "\n".join(f"[{kind}] {text}" for kind, text in self.console)
        return (
            f"--- requests to Tally ---\n{sent}\n--- page errors ---\n{self.errors}\n"
            f"--- console ---\n{console}\n--- end ---"
        )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One ``tally serve`` with an app whose catalog defines the custom events the pages send,
    and the pages, on their own origin."""
    tmp = tmp_path_factory.mktemp("tally-js")
    factory = ServerFactory(tmp)
    try:
        data_dir = tmp / "data"
        app = create_app(data_dir, name="tally-js")
        server = factory.start(data_dir, workers=SDK_TEST_WORKERS)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        base = f"{server.url}/api/v1/apps/{app.id}"
        with httpx.Client(timeout=10.0, auth=app.auth) as client:
            answers = [
                client.patch(f"{base}/settings", json={"customer_jwt_key": public.decode()}),
                client.put(
                    f"{base}/definitions/signup.done",
                    json={"permission": "anonymous", "label_template": "Signed up"},
                ),
                client.put(f"{base}/definitions/{CUSTOMER_EVENT}", json={"permission": "customer"}),
            ]
        for answer in answers:
            assert answer.is_success, answer.text
        time.sleep(1.2)  # every worker sees catalog changes within a second
        routes = {
            LANDING: page_html(server, app, "Spring sale"),
            "/app.html": page_html(server, app, "Shop", attrs="data-spa"),
            "/form.html": page_html(server, app, "Sign up", body=SIGNUP_FORM),
            "/thanks.html?": page_html(server, app, "Thanks"),
            "/custom.html": page_html(
                server,
                app,
                "Custom",
                early="tally('track', 'signup.done', {plan: 'early'}, 'Before load');",
            ),
            "/plain.html": page_html(server, app, "Plain"),
            "/idle.html": page_html(server, app, "Idle", attrs='data-session-timeout="0.03"'),
            "/dnt.html": page_html(server, app, "DNT", attrs="data-respect-dnt"),
            "/consent.html": page_html(server, app, "Consent", attrs="data-require-consent"),
        }
        pages = {path: ("text/html; charset=utf-8", html) for path, html in routes.items()}
        with PageServer(pages) as page_server:
            yield Site(server, app, key, page_server.origin)
    finally:
        factory.cleanup()


@pytest.fixture
def visitor(browser: Browser, site: Site) -> Iterator[Visitor]:
    context = browser.new_context(locale="pl-PL", timezone_id="Europe/Warsaw")
    found = Visitor(context, site.server.url)
    found.watch()
    try:
        yield found
    finally:
        context.close()


def test_the_script_is_served_with_caching_headers(site: Site) -> None:
    url = f"{site.server.url}/sdk/tally.js"
    with httpx.Client(timeout=5.0) as client:
        zipped = client.get(url, headers={"accept-encoding": "gzip"})
        plain = client.get(url, headers={"accept-encoding": "identity"})
        again = client.get(url, headers={"if-none-match": zipped.headers["etag"]})
    assert zipped.status_code == plain.status_code == 200
    assert zipped.headers["content-type"].startswith("application/javascript")
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content == sdk.SOURCE  # httpx decompresses
    assert zipped.headers["cache-control"] == "public, max-age=300"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in plain.headers
    assert plain.headers["etag"] == sdk.ETAG != zipped.headers["etag"]
    assert again.status_code == 304 and not again.content
    assert gzip.decompress(sdk.GZIPPED) == sdk.SOURCE


def test_first_load(site: Site, visitor: Visitor) -> None:
    page = visitor.open(site.url(LANDING), referer=SEARCH_REFERRER)
    device = page.evaluate("tally.device()")
    assert page.evaluate("localStorage.getItem('tally.device')") == device
    events = site.wait(
        device, lambda found: has("page.visit")(found) and has("session.start")(found), "first load"
    )
    [visit] = named(events, "page.visit")
    [start] = named(events, "session.start")
    assert visit["label"] == "Visited page Spring sale"
    assert visit["properties"] == {
        "url": site.url(LANDING),
        "path": "/landing.html",
        "referrer": SEARCH_REFERRER,
        "title": "Spring sale",
        "utm_source": "news",
        "utm_medium": "email",
        "utm_campaign": "spring",
    }
    assert visit["context"]["url"] == site.url(LANDING)
    assert visit["context"]["referrer"] == SEARCH_REFERRER
    assert visit["context"]["locale"] == "pl-PL"
    assert visit["context"]["timezone"] == "Europe/Warsaw"
    assert visit["context"]["browser"] and visit["context"]["os"] == "Linux"
    assert visit["session"] == start["session"] == page.evaluate("tally.session()")
    assert visit["device"] == start["device"] == device and visit["user"] is None
    assert uuid.UUID(visit["id"]) and uuid.UUID(device)
    # One batch, sent as text/plain (no CORS preflight), every event with its own id.
    requests = visitor.seen()
    assert [r.method for r in requests] == ["POST"], visitor.report()
    assert requests[0].headers["content-type"].startswith("text/plain")
    body = visitor.bodies()[0]
    assert body["app_key"] == site.app.app_key and "sent_at" in body
    assert [e["name"] for e in body["events"]] == ["session.start", "page.visit"]
    assert requests[0].response().json() == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert not visitor.errors, visitor.report()


def test_spa_route_changes(site: Site, visitor: Visitor) -> None:
    page = visitor.open(site.url("/app.html"))
    device = page.evaluate("tally.device()")
    site.wait(device, has("page.visit"), "the first visit")
    page.evaluate("history.pushState({}, '', '/app/products/42'); document.title = 'Product 42'")
    site.wait(device, has("page.visit", path="/app/products/42"), "pushState")
    page.evaluate("history.replaceState({}, '', '/app/products/42?tab=reviews')")
    site.wait(device, has("page.visit", count=3), "replaceState")
    page.evaluate("history.replaceState({}, '', location.href)")  # the same address: no visit
    page.go_back()  # popstate, same document
    events = site.wait(device, has("page.visit", count=4), "popstate")
    time.sleep(QUIET)
    visits = named(site.events(device), "page.visit")
    assert [(v["properties"]["path"], v["properties"]["title"]) for v in visits] == [
        ("/app.html", "Shop"),
        ("/app/products/42", "Product 42"),
        ("/app/products/42", "Product 42"),
        ("/app.html", "Product 42"),
    ], visitor.report()
    assert visits[1]["properties"]["referrer"] == site.url("/app.html")
    assert visits[2]["properties"]["url"] == site.url("/app/products/42?tab=reviews")
    assert visits[3]["properties"]["referrer"] == site.url("/app/products/42?tab=reviews")
    assert visits[1]["label"] == "Visited page Product 42"
    assert len({v["session"] for v in visits}) == 1
    assert len(named(events, "session.start")) == 1


def test_form_submit_and_clicks(site: Site, visitor: Visitor) -> None:
    page = visitor.open(site.url("/form.html"))
    device = page.evaluate("tally.device()")
    page.click("#buy")
    page.evaluate(
        "document.body.insertAdjacentHTML('beforeend',"
        ' \'<a id="late" data-tally-event data-tally-param-where="footer">Later</a>\')'
    )
    assert page.evaluate("tally.rescan()") == 3  # the form, #buy and the new link
    page.click("#late")
    page.click("#go")  # submits the form: a navigation to /thanks.html on the same site
    page.wait_for_url("**/thanks.html?")
    page.wait_for_function("window.tally && window.tally.version && tally.device()")
    events = site.wait(
        device,
        lambda found: (
            has("form.submit")(found)
            and has("button.click", count=2)(found)
            and has("page.visit", path="/thanks.html")(found)
        ),
        "the clicks, the form and the next page",
    )
    [submit] = named(events, "form.submit")
    assert submit["properties"] == {
        "form": "signup",
        "plan": "pro",
        "email": "ada@example.com",
        "age": "36",
        "newsletter": True,
    }, "the password is never captured, unmarked fields neither"
    clicks = {e["label"]: e["properties"] for e in named(events, "button.click")}
    assert clicks == {"Buy now": {"itemId": "sku-1"}, None: {"where": "footer"}}
    # A navigation within the site continues the session: no session.end, one session.start.
    time.sleep(QUIET)
    events = site.wait(device, has("page.visit", count=2), "both pages")
    assert not named(events, "session.end"), visitor.report()
    assert len(named(events, "session.start")) == 1
    assert len({e["session"] for e in events}) == 1


def test_custom_events_and_identity(site: Site, visitor: Visitor) -> None:
    page = visitor.open(site.url("/custom.html"))
    device = page.evaluate("tally.device()")
    token = site.customer_token("cust-jwt")
    page.evaluate(
        """token => {
        tally.track('signup.done', {plan: 'team'}, 'Signed up');
        SR.event.trackCustomEvent('signup.done', {plan: 'moving'}, 'From Synerise');
        tally.track('never.defined', {x: 1});
        tally.identify('cust-7', {email: 'ada@example.com'});
        tally.track('signup.done', {plan: 'identified'});
        tally.setAccessToken(token);
        tally.track('account.upgrade', {tier: 'gold'});
        tally.setAccessToken(null);
    }""",
        token,
    )
    events = site.wait(
        device,
        lambda found: has("signup.done", count=4)(found) and has(CUSTOMER_EVENT)(found),
        "the custom events",
    )
    labels = {
        e["properties"]["plan"]: (e["label"], e["user"]) for e in named(events, "signup.done")
    }
    assert labels == {
        "early": ("Before load", None),  # queued by the snippet before the script loaded
        "team": ("Signed up", None),
        "moving": ("From Synerise", None),
        "identified": ("Signed up", "cust-7"),  # the definition's label_template
    }
    [upgrade] = named(events, CUSTOMER_EVENT)
    assert upgrade["user"] == "cust-jwt" and upgrade["device"] == device
    assert upgrade["properties"] == {"tier": "gold"}
    [with_token] = [b for b in visitor.bodies() if "access_token" in b]
    assert with_token["access_token"] == token
    assert [e["name"] for e in with_token["events"]] == [CUSTOMER_EVENT]
    # The undefined event was refused and is not sent again.
    page.wait_for_function("tally.pending() === 0")
    time.sleep(QUIET)
    assert len(visitor.sent("never.defined")) == 1, visitor.report()
    assert any("never.defined rejected: undefined_event" in t for _, t in visitor.console)
    with httpx.Client(timeout=5.0) as client:
        failed = client.get(
            f"{site.server.url}/api/v1/apps/{site.app.id}/failed-events",
            params={"name": "never.defined"},
            auth=site.app.auth,
        ).json()
    assert [f["reason"] for f in failed["failed_events"]] == ["undefined_event"]


def test_offline_then_online(site: Site, visitor: Visitor) -> None:
    page = visitor.open(site.url("/plain.html"))
    device = page.evaluate("tally.device()")
    site.wait(device, has("page.visit"), "the visit")
    visitor.context.set_offline(True)
    page.evaluate("tally.track('signup.done', {plan: 'offline'})")
    time.sleep(QUIET)
    assert page.evaluate("tally.pending()") == 1
    queue = json.loads(page.evaluate(f"localStorage.getItem('tally.queue.{site.app.app_key}')"))
    assert [item["e"]["name"] for item in queue["q"]] == ["signup.done"]
    assert not named(site.events(device), "signup.done")
    visitor.context.set_offline(False)
    events = site.wait(device, has("signup.done", plan="offline"), "the event kept offline")
    page.wait_for_function("tally.pending() === 0")
    assert len(named(events, "signup.done")) == 1


def test_server_errors_are_retried_and_invalid_requests_are_not(
    site: Site, visitor: Visitor
) -> None:
    answers = [503, 500]

    def flaky(route: Route) -> None:
        body = json.loads(route.request.post_data or "{}")
        if any(e["name"] == "signup.done" for e in body.get("events", [])) and answers:
            route.fulfill(status=answers.pop(0), body="{}", headers=CORS)
        else:
            route.continue_()

    visitor.context.route(f"{site.server.url}{EVENTS_PATH}", flaky)
    page = visitor.open(site.url("/plain.html"))
    device = page.evaluate("tally.device()")
    page.evaluate("tally.track('signup.done', {plan: 'retried'})")
    # Route handlers run while Playwright is called: wait in the browser (backoff 2 s, then 4 s).
    page.wait_for_function("tally.pending() === 0", timeout=20_000)
    site.wait(device, has("signup.done", plan="retried"), "the event after two server errors")
    assert len(visitor.sent("signup.done")) == 3, visitor.report()

    def invalid(route: Route) -> None:
        reply = {"error": {"code": "invalid_body", "message": "test"}}
        route.fulfill(status=400, body=json.dumps(reply), headers=CORS)

    visitor.context.unroute(f"{site.server.url}{EVENTS_PATH}")
    visitor.context.route(f"{site.server.url}{EVENTS_PATH}", invalid)
    page.evaluate("tally.track('signup.done', {plan: 'refused'})")
    page.wait_for_function("tally.pending() === 0")
    time.sleep(2 * QUIET)
    assert (
        len([e for e in visitor.sent("signup.done") if e["properties"]["plan"] == "refused"]) == 1
    )


CORS = {"access-control-allow-origin": "*", "content-type": "application/json"}


def test_tab_close_ends_the_session(site: Site, visitor: Visitor) -> None:
    first = visitor.open(site.url("/plain.html"))
    second = visitor.open(site.url("/custom.html"))
    device = first.evaluate("tally.device()")
    assert second.evaluate("tally.device()") == device
    site.wait(device, has("page.visit", count=2), "two tabs")
    # Each tab lists itself in localStorage; a write reaches the other tabs' renderers soon, not
    # at once: wait until the first tab sees both, then only itself.
    first.wait_for_function(f"{OPEN_TABS} === 2")
    second.close(run_before_unload=True)  # another tab of the site is still open
    first.wait_for_function(f"{OPEN_TABS} === 1")
    time.sleep(QUIET)
    assert not named(site.events(device), "session.end"), visitor.report()
    first.close(run_before_unload=True)  # the last one
    events = site.wait(device, has("session.end"), "session.end by sendBeacon")
    [start] = named(events, "session.start")
    [end] = named(events, "session.end")
    assert end["session"] == start["session"]
    assert end["dur"] is not None and end["dur"] >= 0


def test_a_session_ends_after_inactivity(site: Site, visitor: Visitor) -> None:
    page = visitor.open(site.url("/idle.html"))  # a session timeout of 1.8 s
    device = page.evaluate("tally.device()")
    first = page.evaluate("tally.session()")
    site.wait(device, has("page.visit"), "the visit")
    time.sleep(2.5)
    page.evaluate("tally.track('signup.done', {plan: 'later'})")
    events = site.wait(device, has("signup.done"), "the event after the pause")
    [end] = named(events, "session.end")
    starts = named(events, "session.start")
    [event] = named(events, "signup.done")
    assert end["session"] == first and len(starts) == 2
    assert event["session"] == starts[1]["session"] != first
    assert end["time"] <= event["time"]


def test_bots_do_not_track_and_nothing_is_stored(browser: Browser, site: Site) -> None:
    context = browser.new_context(user_agent=BOT_AGENT)
    visitor = Visitor(context, site.server.url)
    visitor.watch()
    try:
        page = context.new_page()
        page.goto(site.url("/plain.html"), wait_until="load")
        page.wait_for_function("window.tally && window.tally.version")
        page.evaluate("tally.track('signup.done', {plan: 'bot'})")
        time.sleep(QUIET)
        assert not visitor.seen(), visitor.report()
        assert page.evaluate("Object.keys(localStorage)") == []
    finally:
        context.close()


def test_do_not_track_opt_out_and_consent(site: Site, visitor: Visitor) -> None:
    visitor.context.add_init_script(
        "Object.defineProperty(Navigator.prototype, 'doNotTrack', {get: () => '1'})"
    )
    dnt = visitor.open(site.url("/dnt.html"), tracking=False)
    dnt.evaluate("tally.track('signup.done')")
    time.sleep(QUIET)
    assert not visitor.seen(), visitor.report()
    # Consent required: nothing stored or sent until it is given, then what was held goes out.
    page = visitor.open(site.url("/consent.html"))
    device = page.evaluate("tally.device()")
    time.sleep(QUIET)
    assert not visitor.seen(), visitor.report()
    assert page.evaluate("Object.keys(localStorage)") == []
    page.evaluate("tally.consent(true)")
    site.wait(device, lambda f: has("page.visit")(f) and has("session.start")(f), "consent")
    assert page.evaluate("localStorage.getItem('tally.device')") == device
    # Opted out: nothing more is sent.
    before = len(visitor.seen())
    page.evaluate("tally.optOut(); tally.track('signup.done', {plan: 'opted-out'})")
    time.sleep(QUIET)
    assert len(visitor.seen()) == before, visitor.report()
