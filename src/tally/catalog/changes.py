"""Catalog changes announced by PostgreSQL, so every collector applies an edit at once.

A trigger on ``apps`` (catalog migration 5) sends the app's id on ``CHANGES_CHANNEL`` whenever its
row changes: settings, keys, and its catalog version, which every definition change bumps. A
``ChangeListener`` holds one connection that LISTENs on that channel, in a thread, and hands each
id to a callback; while it is connected the app resolver can cache apps for long, and when the
connection drops it reconnects while the resolver falls back to re-reading every second.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tally.catalog.schema import CHANGES_CHANNEL

log = logging.getLogger("tally.catalog")

RECONNECT_SECONDS = 1.0


def listen_url(catalog_url: str) -> str | None:
    """The libpq URL to listen on for ``catalog_url``; None when the catalog is not PostgreSQL."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if catalog_url.startswith(prefix):
            return "postgresql://" + catalog_url[len(prefix) :]
    return None


class ChangeListener:
    def __init__(self, url: str, on_change: Callable[[str], None]) -> None:
        self.url = url
        self.on_change = on_change
        """Called from the listener's thread with the id of each app that changed."""
        self.on_reconnect: Callable[[], None] = lambda: None
        """Called after (re)connecting: changes made while away were not announced."""
        self._connected = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tally-catalog-changes", daemon=True)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        self._thread.start()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def _run(self) -> None:
        import psycopg

        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    self._connected.set()
                    self.on_reconnect()
                    while not self._stopping.is_set():
                        for notice in conn.notifies(timeout=0.5):
                            self.on_change(notice.payload)
            except Exception as exc:
                if not self._stopping.is_set():
                    log.warning("catalog change listener: %s; reconnecting", exc)
            finally:
                self._connected.clear()
            self._stopping.wait(RECONNECT_SECONDS)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
