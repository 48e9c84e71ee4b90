"""countly-sdk-nodejs, unchanged, run by the machine's ``node`` against a real ``tally serve``.

tests/sdk/countly_node.js drives the SDK (``Countly`` for one device, ``CountlyBulk`` for
``/i/bulk``) and reports every HTTP exchange the SDK had; the test checks that the server accepted
each one the way the SDK needs (2xx with a ``result``, or the SDK retries and stalls its queue) and
then reads the stored events back through the read API.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from support import App, Server, sdk_package, wait_for_events

SCRIPT = Path(__file__).with_name("countly_node.js")
QUEUE_DEADLINE = 20.0
"""Seconds the SDK's queues may take to empty (the script stops with exit code 2 after that)."""
NODE_TIMEOUT = QUEUE_DEADLINE + 20.0
STORE_TIMEOUT = 20.0
SDK_NAME = "javascript_native_nodejs"
BULK_SDK_NAME = "javascript_native_nodejs_bulk"
"""What CountlyBulk puts in every item of ``requests``."""


@dataclass
class Exchange:
    method: str
    path: str
    body: str
    status: int | None
    response: str | None
    error: str | None

    @property
    def params(self) -> dict[str, str]:
        """The request's parameters: query string, then an urlencoded body over it."""
        params = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        params.update(parse_qsl(self.body, keep_blank_values=True))
        return params

    def accepted(self) -> bool:
        """What the SDK counts as success: a 2xx whose body is a JSON object with a ``result``."""
        if self.status is None or not 200 <= self.status < 300 or self.response is None:
            return False
        try:
            reply = json.loads(self.response)
        except ValueError:
            return False
        return isinstance(reply, dict) and bool(reply.get("result"))


@dataclass
class NodeRun:
    returncode: int
    output: str
    exchanges: list[Exchange]

    def describe(self) -> str:
        sent = "\n".join(
            f"{x.method} {x.path} body={x.body!r} -> {x.status} {x.response!r}"
            + (f" error={x.error}" if x.error else "")
            for x in self.exchanges
        )
        return (
            f"node exit code {self.returncode}\n--- exchanges ---\n{sent}\n"
            f"--- node output ---\n{self.output[-8000:]}--- end of node output ---"
        )


def run_sdk(mode: str, tally: Server, app: App, storage: Path) -> NodeRun:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: ./scripts/test installs Debian's nodejs if it is missing")
    sdk_package("countly-sdk-nodejs")
    storage.mkdir()
    env = {
        **os.environ,
        "COUNTLY_APP_KEY": app.app_key,
        "COUNTLY_URL": tally.url,
        "COUNTLY_STORAGE": str(storage),
        "COUNTLY_DEADLINE_MS": str(int(QUEUE_DEADLINE * 1000)),
    }
    try:
        # On a timeout, run() kills node (it starts no children) and waits for it.
        result = subprocess.run(
            [node, str(SCRIPT), mode],
            cwd=SCRIPT.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout or ""
        output = output.decode(errors="replace") if isinstance(output, bytes) else output
        pytest.fail(
            f"node {SCRIPT.name} {mode} did not finish within {NODE_TIMEOUT:.0f} s\n"
            f"--- node output ---\n{output[-8000:]}\n{tally.describe()}"
        )
    exchanges = []
    for line in result.stdout.splitlines():
        if line.startswith("EXCHANGE "):
            raw: dict[str, Any] = json.loads(line.removeprefix("EXCHANGE "))
            exchanges.append(
                Exchange(
                    method=raw["method"],
                    path=raw["path"],
                    body=raw.get("body", ""),
                    status=raw.get("status"),
                    response=raw.get("response"),
                    error=raw.get("error"),
                )
            )
    run = NodeRun(result.returncode, result.stdout + result.stderr, exchanges)
    if result.returncode != 0 or "DONE" not in result.stdout.splitlines():
        pytest.fail(
            f"the SDK did not empty its queues (exit code 2 means it stalled)\n"
            f"{run.describe()}\n{tally.describe()}"
        )
    refused = [x for x in run.exchanges if not x.accepted()]
    assert not refused, f"the server refused requests the SDK sent\n{run.describe()}"
    return run


def names(events: list[dict[str, Any]]) -> list[str]:
    return sorted(e["name"] for e in events)


def only(events: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [e for e in events if e["name"] == name]
    assert len(found) == 1, f"expected one {name!r}, got {json.dumps(events, indent=1)}"
    return found[0]


def instant_ms(event: dict[str, Any]) -> int:
    """The stored ``time`` (ISO 8601, UTC) as epoch milliseconds."""
    return round(datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp() * 1000)


def test_node_sdk_session_and_event(tally: Server, app: App, tmp_path: Path) -> None:
    _, version = sdk_package("countly-sdk-nodejs")
    run = run_sdk("single", tally, app, tmp_path / "countly-storage")

    assert run.exchanges, run.describe()
    assert all(urlsplit(x.path).path == "/i" for x in run.exchanges), run.describe()
    sent_events = [item for x in run.exchanges for item in json.loads(x.params.get("events", "[]"))]
    [signup_sent] = [item for item in sent_events if item["key"] == "signup"]
    [end_sent] = [x.params for x in run.exchanges if x.params.get("end_session") == "1"]

    expected = ["session.end", "session.start", "signup"]
    events = wait_for_events(
        tally,
        app,
        lambda found: names(found) == expected,
        timeout=STORE_TIMEOUT,
        what=f"{expected} for node-device-1",
    )
    for event in events:
        assert event["device"] == "node-device-1"
        assert event["protocol"] == "countly"
        assert event["sdk"] == {"name": SDK_NAME, "version": version}
        assert event["internal"] is False

    signup = only(events, "signup")
    assert signup["count"] == 2
    assert signup["sum"] == 9.5
    assert signup["dur"] is None
    assert signup["properties"] == {"plan": "pro"}
    assert instant_ms(signup) == signup_sent["timestamp"]

    start = only(events, "session.start")
    assert start["properties"]["_os"] == "Linux"
    assert start["properties"]["_app_version"] == "0.0"
    assert start["context"]["os"] == "Linux"

    end = only(events, "session.end")
    assert end["dur"] == float(end_sent["session_duration"])
    assert instant_ms(end) == int(end_sent["timestamp"])


def test_node_sdk_bulk(tally: Server, app: App, tmp_path: Path) -> None:
    _, version = sdk_package("countly-sdk-nodejs")
    run = run_sdk("bulk", tally, app, tmp_path / "countly-bulk-storage")

    assert run.exchanges, run.describe()
    assert all(urlsplit(x.path).path == "/i/bulk" for x in run.exchanges), run.describe()
    items = [item for x in run.exchanges for item in json.loads(x.params["requests"])]
    assert {item["device_id"] for item in items} == {"bulk-device-1", "bulk-device-2"}

    expected = {
        "bulk-device-1": ["purchase", "session.start", "session.update", "session.update"],
        "bulk-device-2": ["purchase"],
    }
    events = wait_for_events(
        tally,
        app,
        lambda found: (
            {device: names([e for e in found if e["device"] == device]) for device in expected}
            == expected
            and len(found) == 5
        ),
        timeout=STORE_TIMEOUT,
        what=f"{expected}",
    )
    for event in events:
        assert event["protocol"] == "countly"
        assert event["sdk"] == {"name": BULK_SDK_NAME, "version": version}

    first = [e for e in events if e["device"] == "bulk-device-1"]
    start = only(first, "session.start")
    assert start["properties"] == {"_os": "Linux", "_os_version": "6.1", "_app_version": "2.0"}
    assert start["context"]["os"] == "Linux"
    assert sorted(e["dur"] for e in first if e["name"] == "session.update") == [30.0, 60.0]
    purchase = only(first, "purchase")
    assert (purchase["count"], purchase["sum"], purchase["dur"]) == (3, 29.97, None)
    assert purchase["properties"] == {"sku": "A-1"}

    second = only([e for e in events if e["device"] == "bulk-device-2"], "purchase")
    assert (second["count"], second["sum"], second["dur"]) == (1, 5.0, 1.5)
    assert second["properties"] == {"sku": "B-2"}
    [sent] = [item for item in items if item["device_id"] == "bulk-device-2"]
    assert instant_ms(second) == sent["events"][0]["timestamp"]
