"""The fuzz suite's hypothesis profiles (fuzz_settings) and one real app per module
(fuzz_live.Live)."""

from __future__ import annotations

from collections.abc import Iterator

import fuzz_settings  # noqa: F401  (registers and loads the hypothesis profile)
import pytest
from fuzz_live import Live


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    data_dir.mkdir()
    harness = Live(data_dir)
    try:
        yield harness
    finally:
        harness.close()
