"""Connections to ClickHouse over the native protocol (clickhouse-driver), from a store URL.

A driver ``Client`` holds one connection and is not thread-safe: each thread of the store's pool
gets its own (``Connections``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from clickhouse_driver import Client
from clickhouse_driver.util.escape import escape_param

from tally.store.clickhouse_schema import quote

DEFAULT_PORT = 9000
MUTATION_TIMEOUT = 300.0


@dataclass(frozen=True)
class ClickHouseUrl:
    host: str
    port: int = DEFAULT_PORT
    database: str = "default"
    user: str = "default"
    password: str = ""
    cluster: str | None = None

    @classmethod
    def parse(cls, url: str) -> ClickHouseUrl:
        """``clickhouse://[user[:password]@]host[:port]/database[?cluster=NAME]``."""
        parts = urlsplit(url)
        if parts.scheme != "clickhouse" or not parts.hostname:
            raise ValueError(
                f"not a ClickHouse URL: {url!r} (clickhouse://[user[:password]@]host:port/database)"
            )
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = set(query) - {"cluster"}
        if unknown:
            raise ValueError(f"unknown ClickHouse URL options: {', '.join(sorted(unknown))}")
        cluster = query.get("cluster", [""])[-1] or None
        return cls(
            host=parts.hostname,
            port=parts.port or DEFAULT_PORT,
            database=unquote(parts.path.strip("/")) or "default",
            user=unquote(parts.username) if parts.username else "default",
            password=unquote(parts.password) if parts.password else "",
            cluster=cluster,
        )

    def client(self, database: str | None = None) -> Client:
        return Client(
            host=self.host,
            port=self.port,
            database=database or self.database,
            user=self.user,
            password=self.password,
            connect_timeout=5,
            send_receive_timeout=300,
        )


class Connections:
    """One driver client per thread, all closed by ``close``."""

    def __init__(self, url: ClickHouseUrl) -> None:
        self.url = url
        self._local = threading.local()
        self._all: list[Client] = []
        self._lock = threading.Lock()

    def get(self) -> Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self.url.client()
            with self._lock:
                self._all.append(client)
        return client

    def execute(self, sql: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return self.get().execute(sql, params, **kwargs)

    def close(self) -> None:
        with self._lock:
            clients, self._all = self._all, []
        for client in clients:
            client.disconnect()


def create_database(url: ClickHouseUrl) -> None:
    """Create the URL's database if this server lacks it (on every host of the cluster, with
    one); a database that exists is left alone, so a user without DDL rights can use it."""
    on_cluster = f" ON CLUSTER {quote(url.cluster)}" if url.cluster else ""
    client = url.client(database="default")
    try:
        [(exists,)] = client.execute(
            "SELECT count() FROM system.databases WHERE name = %(name)s", {"name": url.database}
        )
        if not exists:
            client.execute(f"CREATE DATABASE IF NOT EXISTS {quote(url.database)}{on_cluster}")
    finally:
        client.disconnect()


@dataclass(frozen=True)
class Raw:
    """A parameter written into the SQL as it is (a name the caller made, never user input)."""

    text: str


def positional(sql: str, params: Sequence[Any], client: Client) -> str:
    """``sql`` with each ``%s`` replaced by the next parameter as a ClickHouse literal (escaped by
    the driver: strings quoted, tuples as ``(a, b)`` for ``IN``, lists as arrays); ``%%`` is a
    literal ``%``. The parameter style of ``run_sql`` (the driver itself takes only named ones)."""
    return sql % tuple(_literal(value, client) for value in params)


def _literal(value: Any, client: Client) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_literal(item, client) for item in value)
        if isinstance(value, list):
            return f"[{inner}]"
        return f"({inner})"
    if isinstance(value, float) and value and abs(value) < sys.float_info.min:
        # 18.16's parser refuses subnormal literals (5e-324); as text it reads them (as 0.0).
        return f"toFloat64('{value!r}')"
    return str(escape_param(value, client.connection.context))


def wait_for_mutations(connections: Connections, database: str, table: str) -> None:
    """Wait until the table has no unfinished mutation. ``mutations_sync`` is newer than 18.16,
    so poll ``system.mutations``; ALTER ... DELETE returns as soon as the mutation is queued."""
    deadline = time.monotonic() + MUTATION_TIMEOUT
    delay = 0.01
    while True:
        [(pending,)] = connections.execute(
            "SELECT count() FROM system.mutations "
            "WHERE database = %(db)s AND table = %(table)s AND is_done = 0",
            {"db": database, "table": table},
        )
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"mutations of {database}.{table} still running")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
