"""The tests' ClickHouse server: ``tally.testing.clickhouse_server`` (shared with the query
benchmark), re-exported under the name ``conftest`` imports."""

from tally.testing.clickhouse_server import (
    TEST_CLUSTER,
    ClickHouseServer,
    server_binary,
    start_clickhouse,
)

__all__ = ["TEST_CLUSTER", "ClickHouseServer", "server_binary", "start_clickhouse"]
