"""What the auth tests share: key pairs and signed customer JWTs, a dashboard log-in, and what the
store holds for an app (events, failed requests)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tally.cli import main
from tally.http.services import Services
from tally.store.query import EventQuery

EMAIL = "sec@example.com"
PASSWORD = "correct horse battery"
HS_SECRET = "a-shared-secret-of-more-than-32-characters"


def _pem(private_key: Any) -> tuple[bytes, str]:
    private = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public.decode()


def rsa_pair() -> tuple[bytes, str]:
    """(private PEM, public PEM) of a new RSA key."""
    return _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_pair() -> tuple[bytes, str]:
    """(private PEM, public PEM) of a new P-256 key."""
    return _pem(ec.generate_private_key(ec.SECP256R1()))


def customer_jwt(
    key: Any, algorithm: str = "RS256", *, expires_in: float = 300, **claims: Any
) -> str:
    """A customer JWT for ``cust-42`` signed with ``key``; ``claims`` add or replace claims
    (``exp=None`` leaves ``exp`` out)."""
    body: dict[str, Any] = {
        "sub": "cust-42",
        "exp": datetime.now(UTC) + timedelta(seconds=expires_in),
        **claims,
    }
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=algorithm)


async def log_in(client: httpx.AsyncClient, services: Services) -> str:
    """Creates the dashboard user if needed and logs the client in; returns the CSRF token."""
    if services.catalog.users.get(EMAIL) is None:
        services.catalog.users.create(EMAIL, PASSWORD)
    response = await client.post("/api/v1/session", json={"email": EMAIL, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf_token"])


async def events_of(
    services: Services, app_id: str, *, internal: bool = False
) -> list[dict[str, Any]]:
    """The app's stored events; SDK bookkeeping and identity links only with ``internal``."""
    stored = await services.store.fetch_events(EventQuery(app_id=app_id, limit=1000))
    return [e for e in stored if internal or not e["internal"]]


def failed_of(services: Services, app_id: str) -> list[tuple[str, str]]:
    """(reason, message) of the app's failed events and requests, oldest first."""
    rows = (
        services.store.loaded()  # type: ignore[attr-defined]
        .conn.execute(
            "SELECT reason, message FROM failed_events WHERE app_id = ? ORDER BY received_at",
            [app_id],
        )
        .fetchall()
    )
    return [(str(reason), str(message)) for reason, message in rows]


def tally_cli(data: str) -> Callable[..., str]:
    """Runs ``tally ARGS --data DATA`` in-process; returns its output, asserting it succeeded."""
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, [*args, "--data", data], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    return run
