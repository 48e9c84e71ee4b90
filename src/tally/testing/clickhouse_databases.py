"""Throwaway databases on a ClickHouse server, for tests: one per test or module, dropped after."""

from __future__ import annotations

import uuid
from urllib.parse import urlsplit, urlunsplit

from tally.store.clickhouse_client import ClickHouseUrl
from tally.store.clickhouse_db import ClickHouseDB
from tally.store.clickhouse_schema import MIGRATIONS, Ddl, Layout


def fresh_database_url(server_url: str, prefix: str = "tally_test") -> str:
    """``server_url`` with a new database name (``<prefix>_<random>``); the store creates it."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


def drop_database(url: str) -> None:
    parsed = ClickHouseUrl.parse(url)
    client = parsed.client(database="default")
    try:
        client.execute(f"DROP DATABASE IF EXISTS {parsed.database}")
    finally:
        client.disconnect()


def create_cluster_tables(url: str, cluster: str) -> bool:
    """The cluster layout's tables (local ones plus Distributed ones over ``cluster``) in the
    database of ``url``, on one server: the DDL runs without ON CLUSTER, which needs ZooKeeper.
    False if the server has no such cluster."""
    plain = ClickHouseDB(url)  # creates the database
    try:
        [(clusters,)] = plain.conn.execute(
            "SELECT count() FROM system.clusters WHERE cluster = %(c)s", {"c": cluster}
        )
        if not clusters:
            return False
        layout = Layout(plain.layout.database, cluster=cluster)
        ddl = Ddl(
            layout, execute=lambda sql: plain.conn.execute(sql.replace(layout.on_cluster, ""))
        )
        for migration in MIGRATIONS:
            migration.apply(ddl)
        return True
    finally:
        plain.close()
