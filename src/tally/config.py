"""Settings shared by the CLI and the server, from options or TALLY_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from tally.catalog import sqlite_url
from tally.limits import Limits

DEFAULT_DATA_DIR = "tally-data"
DEFAULT_PORT = 8000


def default_workers() -> int:
    return max(1, os.cpu_count() or 1)


@dataclass
class Settings:
    data_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("TALLY_DATA", DEFAULT_DATA_DIR))
    )
    catalog: str | None = field(default_factory=lambda: os.environ.get("TALLY_CATALOG") or None)
    store: str | None = field(default_factory=lambda: os.environ.get("TALLY_STORE") or None)
    """Event store URL (``clickhouse://...``); None: DuckDB in the data folder."""
    log: str | None = field(default_factory=lambda: os.environ.get("TALLY_LOG") or None)
    """Log URL (``nats://...``) between collectors and the store; None: no log (embedded)."""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = field(default_factory=default_workers)
    commit_delay: float = 0.002
    limits: Limits = field(default_factory=Limits.from_env)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()

    def check(self) -> None:
        """Raise ``ValueError`` for a combination that cannot run."""
        if self.store is not None and not self.store.startswith("clickhouse://"):
            raise ValueError(f"--store takes a clickhouse:// URL (got {self.store!r})")
        if self.log is not None:
            if not self.log.startswith(("nats://", "tls://")):
                raise ValueError(f"--log takes a nats:// URL (got {self.log!r})")
            if self.store is None:
                raise ValueError(
                    "--log needs --store: the loaders (`tally loader`) move the log into an event "
                    "store that the collectors read, e.g. --store clickhouse://127.0.0.1:9000/tally"
                )

    @property
    def external_store(self) -> bool:
        """The events live outside the data folder (ClickHouse, behind a log or not)."""
        return self.store is not None

    @property
    def catalog_url(self) -> str:
        return self.catalog or sqlite_url(self.data_dir)

    @property
    def run_dir(self) -> Path:
        """Sockets and per-run scratch files; recreated by every ``tally serve``."""
        return self.data_dir / "run"

    def ensure_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
