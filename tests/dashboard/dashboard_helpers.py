"""What the dashboard tests share: the server and its app, sending events, screenshots."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support import App, Server

USER_EMAIL = "owner@example.com"
PASSWORD = "correct horse battery staple"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@dataclass
class Dashboard:
    server: Server
    app: App
    client: httpx.Client

    @property
    def url(self) -> str:
        return self.server.url

    def log_in(self, page: Any) -> None:
        """Logs the page's browser context in through the API (the login form has its own test)."""
        response = page.request.post(
            f"{self.url}/api/v1/session", data={"email": USER_EMAIL, "password": PASSWORD}
        )
        assert response.status == 200, response.text()

    def send(self, events: list[dict[str, Any]], app: App | None = None) -> dict[str, Any]:
        """``POST /api/v1/events`` with the app's API key and secret; every event must be taken."""
        target = app or self.app
        response = self.client.post(
            f"{self.url}/api/v1/events", auth=target.auth, json={"events": events}
        )
        assert response.status_code == 200, response.text
        return response.json()

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A management API call with the app's API key and secret (Basic)."""
        return self.client.request(method, f"{self.url}{path}", auth=self.app.auth, **kwargs)

    def app_path(self, *parts: str) -> str:
        return "/".join([f"/api/v1/apps/{self.app.id}", *parts])


def screenshot(page: Any, name: str) -> Path:
    """Saves the whole page as docs/screenshots/NAME.png, once the view has rendered (the router
    drops ``aria-busy`` from <main>) and fonts and charts have settled."""
    page.wait_for_selector("main:not([aria-busy])")
    page.evaluate("document.fonts.ready")
    time.sleep(0.3)  # let plotly finish its transitions before the picture
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path
