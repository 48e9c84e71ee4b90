"""Fixtures for the tests that run the official Countly SDKs, unchanged, against ``tally serve``.

The SDKs come from the repo's node_modules (package.json / package-lock.json) and the browser is
Debian's chromium; ``./scripts/test`` installs both. Every process a test starts (the server's
process group, the browser, node) is stopped when the test ends, however it ends.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import (
    SDK_TEST_WORKERS,
    App,
    Server,
    ServerFactory,
    chromium,
    create_app,
)

if not sys.platform.startswith("linux"):  # pragma: no cover
    pytest.skip("the SDK tests use process groups and /proc", allow_module_level=True)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def app(data_dir: Path) -> App:
    return create_app(data_dir, name="sdk")


@pytest.fixture
def tally(servers: ServerFactory, data_dir: Path, app: App) -> Server:
    """A running ``tally serve`` that knows ``app``."""
    return servers.start(data_dir, workers=SDK_TEST_WORKERS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright; one per test module."""
    with chromium() as launched:
        yield launched
