"""Fixtures for end-to-end tests against the real ``tally serve`` process tree.

Every server runs in its own session (``start_new_session=True``), so its process group id is its
pid and ``os.killpg`` reaches the supervisor, the HTTP workers, the store process and the
multiprocessing helpers at once. The ``servers`` fixture kills every group it started when the test
ends, however the test ends. The helpers themselves live in tests/support.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from support import App, create_app

if not sys.platform.startswith("linux"):  # pragma: no cover
    pytest.skip("the end-to-end tests use process groups and /proc", allow_module_level=True)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def app(data_dir: Path) -> App:
    return create_app(data_dir)
