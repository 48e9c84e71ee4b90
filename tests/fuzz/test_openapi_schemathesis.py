"""schemathesis against ``/openapi.json`` of a real ``tally serve`` (one worker): every documented
operation, with the app's Basic credentials and a logged-in dashboard session (cookie and CSRF
token), must never answer 5xx and must answer what the document says (status codes, content
types, bodies matching the response schemas)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import fuzz_settings
import httpx
import pytest
import schemathesis
from fuzz_settings import examples
from hypothesis import settings
from schemathesis import checks

from support import App, ServerFactory, _server_env, create_app
from tally.http.dashboard_auth import COOKIE
from tally.http.openapi import openapi_document

EMAIL = "fuzz@example.com"
PASSWORD = "fuzz correct horse"
TALLY = (sys.executable, "-m", "tally")
SKIPPED = (
    r"^/api/v1/session$",  # logging in and out would end the session the other calls use
    r"/live$",  # Server-Sent Events: the stream never ends
    # Same adapters as /v4/events/custom and /v1/track: fuzzed once there.
    r"^/v4/events/(?!custom$|batch$)",
    r"^/v1/[tipsgab]$",
)


@dataclass
class Served:
    url: str
    app: App
    cookie: str
    csrf: str


def _create_user(data_dir: Path) -> None:
    subprocess.run(
        [*TALLY, "users", "create", EMAIL, "--password-stdin", "--data", str(data_dir)],
        input=f"{PASSWORD}\n",
        env=_server_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("schemathesis")
    data_dir = root / "data"
    app = create_app(data_dir, "Fuzz")
    _create_user(data_dir)
    factory = ServerFactory(root)
    try:
        server = factory.start(data_dir, workers=1)
        login = httpx.post(
            f"{server.url}/api/v1/session", json={"email": EMAIL, "password": PASSWORD}
        )
        assert login.status_code == 200, login.text
        yield Served(
            url=server.url,
            app=app,
            cookie=f"{COOKIE}={login.cookies[COOKIE]}",
            csrf=login.json()["csrf_token"],
        )
    finally:
        factory.cleanup()


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
"""Not ``positive_data_acceptance``: a body can match the schema and still break a rule the
schema cannot express (an empty name, an undefined event), and is refused by design."""


def _schema() -> schemathesis.BaseSchema:
    """The document ``/openapi.json`` serves (test_the_served_document_is_this_one), loaded at
    collection so that each operation is a test of its own."""
    loaded = schemathesis.openapi.from_dict(openapi_document())
    # The coverage phase makes every boundary case of every schema (hundreds per operation, far
    # past the CI budget); the examples and the fuzzing phase remain.
    loaded.config.phases.coverage.enabled = fuzz_settings.PROFILE == "long"
    for pattern in SKIPPED:
        loaded = loaded.exclude(path_regex=pattern)
    return loaded


schema = _schema()


def test_the_served_document_is_this_one(served: Served) -> None:
    assert httpx.get(f"{served.url}/openapi.json").json() == openapi_document()


@schema.parametrize()
@settings(max_examples=examples(3))
def test_every_operation_answers_as_documented(case: schemathesis.Case, served: Served) -> None:
    if case.path_parameters and "app_id" in case.path_parameters:
        case.path_parameters["app_id"] = served.app.id
    case.call_and_validate(
        base_url=served.url,
        headers={"cookie": served.cookie, "x-csrf-token": served.csrf},
        auth=served.app.auth,
        timeout=30,
        checks=CHECKS,
    )
