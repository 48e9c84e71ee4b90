"""Fixtures for the dashboard tests: a real ``tally serve`` with a dashboard user and an app, and
Debian's Chromium driven by Playwright. Every page a test opens fails the test at teardown if the
browser logged a console error or an uncaught exception.

Screens are saved to docs/screenshots/ with ``screenshot(page, name)`` (README shows them).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dashboard_helpers import PASSWORD, USER_EMAIL, Dashboard

from support import (
    BROWSER_TIMEOUT_MS,
    ServerFactory,
    _server_env,
    chromium,
    create_app,
)

if not sys.platform.startswith("linux"):  # pragma: no cover
    pytest.skip("the dashboard tests use process groups and /proc", allow_module_level=True)


def create_user(data_dir: Path, email: str, password: str) -> None:
    """``tally users create EMAIL --password-stdin``, as a real subprocess."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tally",
            "users",
            "create",
            email,
            "--data",
            str(data_dir),
            "--password-stdin",
        ],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env=_server_env(),
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"tally users create failed:\n{result.stdout}\n{result.stderr}")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """One server per test module, with the dashboard user and one app ("Shop")."""
    tmp = tmp_path_factory.mktemp("dashboard")
    factory = ServerFactory(tmp)
    data_dir = tmp / "data"
    try:
        app = create_app(data_dir, name="Shop")
        create_user(data_dir, USER_EMAIL, PASSWORD)
        server = factory.start(data_dir, workers=1)
        with httpx.Client(timeout=30) as client:
            yield Dashboard(server=server, app=app, client=client)
    finally:
        factory.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def expected_errors() -> list[str]:
    """Texts of console errors a test causes on purpose (a wrong password's 401...)."""
    return []


def _open_page(
    browser: Any, dashboard: Dashboard, viewport: dict[str, int], expected: list[str]
) -> Iterator[Any]:
    context = browser.new_context(
        viewport=viewport, base_url=dashboard.url, locale="en-GB", timezone_id="UTC"
    )
    context.set_default_timeout(BROWSER_TIMEOUT_MS)
    page = context.new_page()
    problems: list[str] = []
    page.on(
        "console",
        lambda message: (
            problems.append(f"console.{message.type}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    try:
        yield page
    finally:
        context.close()
    problems = [p for p in problems if not any(text in p for text in expected)]
    assert not problems, "the browser reported errors:\n" + "\n".join(problems)


@pytest.fixture
def anonymous_page(browser: Any, dashboard: Dashboard, expected_errors: list[str]) -> Iterator[Any]:
    """A desktop-sized page with no session."""
    yield from _open_page(browser, dashboard, {"width": 1280, "height": 860}, expected_errors)


@pytest.fixture
def page(browser: Any, dashboard: Dashboard, expected_errors: list[str]) -> Iterator[Any]:
    """A desktop-sized page logged in as the dashboard user (through the API, to be quick)."""
    for page in _open_page(browser, dashboard, {"width": 1280, "height": 860}, expected_errors):
        dashboard.log_in(page)
        yield page


@pytest.fixture
def phone_page(browser: Any, dashboard: Dashboard, expected_errors: list[str]) -> Iterator[Any]:
    """A phone-sized page (390x844), logged in."""
    for page in _open_page(browser, dashboard, {"width": 390, "height": 844}, expected_errors):
        dashboard.log_in(page)
        yield page
