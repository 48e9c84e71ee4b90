"""A full disk, for real: the data folder on a small tmpfs the test mounts, filled to the last byte.

Ingest must answer 503 with Retry-After and acknowledge nothing it could not store, keep serving
reads, and take events again as soon as there is room, without a restart. Mounting needs root (or
CAP_SYS_ADMIN); where the machine forbids it the tests are skipped and say why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tally.catalog import NewApp
from tally.http.services import Services
from tally.store.query import EventQuery

URL = "/api/v1/events"
DISK_BYTES = 32 * 1024 * 1024


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    """The data folder on its own 32 MB tmpfs (overrides conftest's ``data_dir``)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the disk-full test needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"this machine does not allow mounting a tmpfs: {done.stderr.strip()}")
    try:
        path = mount / "data"
        path.mkdir()
        yield path
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; returns it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):  # big writes, then the last bytes
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    assert os.statvfs(directory).f_bavail == 0
    return filler


def events(*ids: str) -> dict:
    return {"events": [{"name": "page_view", "id": i, "user": "u1"} for i in ids]}


async def test_a_full_disk_answers_503_stores_nothing_and_recovers_without_a_restart(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, data_dir: Path
) -> None:
    key = {"x-tally-key": new_app.app.app_key}
    before = await client.post(URL, json=events("before"), headers=key)
    assert before.status_code == 200 and before.json()["accepted"] == 1

    filler = fill(data_dir)
    # A file's last page may still have room: requests are acknowledged while their records
    # fit, then refused. Each answer is one or the other, never anything else.
    acked, refused = ["before"], []
    for attempt in range(200):
        ids = [f"during-{attempt}-{k}" for k in range(20)]
        response = await client.post(URL, json=events(*ids), headers=key)
        if response.status_code == 200:
            assert response.json() == {"accepted": 20, "duplicates": 0, "rejected": []}
            acked += ids
            continue
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "store_unavailable"
        assert response.headers["retry-after"] == "1"
        refused += ids
        if len(refused) >= 60:
            break
    assert refused, "the full disk never refused a request"
    ready = await client.get("/readyz")
    assert ready.status_code == 503, ready.text

    # reads go on while the disk is full (from what is loaded)
    stored = await services.store.fetch_events(EventQuery(app_id=new_app.app.id, limit=5000))
    assert {e["id"] for e in stored} <= set(acked)

    filler.unlink()
    # loading resumes by itself; every acknowledged event is there, nothing refused is
    services.store.loaded(timeout=30)  # type: ignore[attr-defined]
    stored = await services.store.fetch_events(EventQuery(app_id=new_app.app.id, limit=5000))
    assert sorted(e["id"] for e in stored) == sorted(acked)
    # the refused requests, sent again, are taken
    again = await client.post(URL, json=events(*refused[:20]), headers=key)
    assert again.json() == {"accepted": 20, "duplicates": 0, "rejected": []}
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
