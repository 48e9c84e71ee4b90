"""A throwaway ClickHouse server for the tests and the query benchmark (bench/queries.py):
Debian's ``clickhouse-server`` (18.16) or an upstream build, started as an unprivileged process on
free ports, in a temporary folder that holds its config.xml, users.xml, data and logs, and removed
when it stops.

As root, the server runs as ``nobody`` (``setpriv``): the tests must not depend on a database that
runs with more rights than a real deployment gives it. The config also defines a one-shard cluster
``tally_test`` made of the server itself, so a ``Distributed`` table can be created on one server.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BINARIES = ("/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/bin/clickhouse")
"""Debian's package ships /usr/sbin/clickhouse-server; upstream packages /usr/bin/clickhouse."""
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
UNPRIVILEGED_USER = "nobody"
TEST_CLUSTER = "tally_test"
MAX_MEMORY_USAGE = 2_000_000_000
"""Bytes one query may use (the tests' cap; ClickHouse's own default is 10 GB)."""

_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{dir}/log/server.log</log>
        <errorlog>{dir}/log/error.log</errorlog>
        <size>10M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp_port}</tcp_port>
    <http_port>{http_port}</http_port>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>0</uncompressed_cache_size>
    <max_concurrent_queries>50</max_concurrent_queries>
    <mlock_executable>false</mlock_executable>
    <remote_servers>
        <{cluster}>
            <shard><replica><host>127.0.0.1</host><port>{tcp_port}</port></replica></shard>
        </{cluster}>
    </remote_servers>
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>{max_memory_usage}</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval>
        <duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
    </interval></default></quotas>
</yandex>
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_binary() -> str | None:
    """The server executable installed on this machine, if any."""
    for path in BINARIES:
        if os.access(path, os.X_OK):
            return path
    return None


@dataclass
class ClickHouseServer:
    url: str
    """``clickhouse://127.0.0.1:PORT/`` (the native protocol)."""
    http_port: int
    directory: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Stop the server (its whole process group) and remove its folder."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT)
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_tail(self, chars: int = 4000) -> str:
        parts = []
        for name in ("log/error.log", "stderr.log"):
            path = self.directory / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(parts)


def _command(binary: str, config: Path) -> list[str]:
    args = [binary, "server"] if binary.endswith("/clickhouse") else [binary]
    args.append(f"--config-file={config}")
    if os.geteuid() == 0:
        user = pwd.getpwnam(UNPRIVILEGED_USER)
        drop = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        return ["setpriv", *drop, *args]
    return args


def _answers(http_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/ping", timeout=1) as reply:
            return reply.read().strip() == b"Ok."
    except OSError:
        return False


def start_clickhouse(
    timeout: float = READY_TIMEOUT, *, max_memory_usage: int = MAX_MEMORY_USAGE
) -> ClickHouseServer:
    """Start a server and wait until it answers; raise ``RuntimeError`` with its log if not.
    ``max_memory_usage``: the bytes one query may use."""
    binary = server_binary()
    if binary is None:
        raise RuntimeError(
            "ClickHouse is not installed (apt-get install clickhouse-server; scripts/test does "
            "it); or set TALLY_TEST_CLICKHOUSE=clickhouse://host:port/ to use a running server"
        )
    directory = Path(tempfile.mkdtemp(prefix="tally-clickhouse-"))
    tcp_port, http_port = free_port(), free_port()
    while http_port == tcp_port:
        http_port = free_port()
    config = directory / "config.xml"
    config.write_text(
        _CONFIG.format(dir=directory, tcp_port=tcp_port, http_port=http_port, cluster=TEST_CLUSTER)
    )
    (directory / "users.xml").write_text(_USERS.format(max_memory_usage=int(max_memory_usage)))
    for sub in ("log", "data", "tmp", "user_files", "format_schemas"):
        (directory / sub).mkdir()
    if os.geteuid() == 0:
        user = pwd.getpwnam(UNPRIVILEGED_USER)
        for path in [directory, *directory.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)
    with open(directory / "stderr.log", "wb") as stderr:
        process = subprocess.Popen(
            _command(binary, config),
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
        )
    server = ClickHouseServer(
        url=f"clickhouse://127.0.0.1:{tcp_port}/",
        http_port=http_port,
        directory=directory,
        process=process,
    )
    deadline = time.monotonic() + timeout
    while not _answers(http_port):
        if process.poll() is not None or time.monotonic() > deadline:
            log = server.log_tail()
            server.stop()
            raise RuntimeError(f"ClickHouse did not start ({binary}):\n{log}")
        time.sleep(0.05)
    return server
