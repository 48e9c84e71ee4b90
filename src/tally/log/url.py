"""``nats://host:port[,host:port...][?stream=NAME&consumer=NAME&duplicate_window=SECONDS]``."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

DEFAULT_STREAM = "TALLY"
DEFAULT_DUPLICATE_WINDOW = 120.0
"""Seconds JetStream remembers message ids (its own default); see docs/scaling.md."""


@dataclass(frozen=True)
class NatsUrl:
    servers: tuple[str, ...]
    stream: str = DEFAULT_STREAM
    consumer: str | None = None
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW

    @classmethod
    def parse(cls, url: str) -> NatsUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("nats", "tls"):
            raise ValueError(f"a log URL starts with nats:// (got {url!r})")
        if not parts.netloc:
            raise ValueError(f"the log URL names no server: {url!r}")
        auth, _, hosts = parts.netloc.rpartition("@")
        prefix = f"{parts.scheme}://" + (f"{auth}@" if auth else "")
        servers = tuple(prefix + host for host in hosts.split(",") if host)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        unknown = set(query) - {"stream", "consumer", "duplicate_window"}
        if unknown:
            raise ValueError(f"unknown log URL option(s): {', '.join(sorted(unknown))}")
        stream = query.get("stream", DEFAULT_STREAM)
        if not stream or any(c in stream for c in " .*>\t"):
            raise ValueError(f"stream name {stream!r} must not contain spaces, '.', '*' or '>'")
        try:
            window = float(query.get("duplicate_window", DEFAULT_DUPLICATE_WINDOW))
        except ValueError:
            raise ValueError("duplicate_window is a number of seconds") from None
        return cls(servers, stream, query.get("consumer") or None, window)

    @property
    def durable(self) -> str:
        """The loaders' shared durable consumer."""
        return self.consumer or f"{self.stream}_loader"

    def subject(self, kind: str) -> str:
        """``STREAM.event``, ``STREAM.failed``, ``STREAM.discarded`` (in the stream) and
        ``STREAM.live`` (core NATS, not in the stream)."""
        return f"{self.stream}.{kind}"
