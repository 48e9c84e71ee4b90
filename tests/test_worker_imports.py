"""An HTTP worker of ``tally serve --workers N`` does not load the store's libraries: Arrow (with
numpy) and DuckDB cost every process that imports them ~20 MB of its own memory, and only the store
process and exports need them."""

from __future__ import annotations

import subprocess
import sys

WORKER_MODULES = (
    "tally.serve",
    "tally.catalog",
    "tally.http.app",
    "tally.http.services",
    "tally.store.remote",
)
"""What ``serve._worker_main`` imports to serve requests."""


def test_an_http_worker_loads_neither_arrow_nor_duckdb() -> None:
    script = (
        "import importlib, sys\n"
        f"for name in {WORKER_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(' '.join(sorted(m for m in ('pyarrow', 'numpy', 'duckdb') if m in sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout.split()
    assert loaded == []


def test_an_export_loads_arrow_when_it_runs() -> None:
    script = (
        "import sys\n"
        "from tally.transfer.export import export_chunks\n"
        "before = 'pyarrow' in sys.modules\n"
        "from tally.transfer.encoders import encoder\n"
        "encoder('csv')\n"
        "print(before, 'pyarrow' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True
    ).stdout.split()
    assert out == ["False", "True"]
