"""Customer JWTs with real signed tokens: RS256 and ES256 with the app's PEM public key, HS256 with
a shared secret (write-only), expiry with 30 s of leeway, audience, issuer, the wrong key,
``alg: none`` and algorithm confusion; through ``verify_customer_token`` and the browser paths."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from security_support import HS_SECRET, customer_jwt, events_of, log_in, tally_cli

from tally.catalog import App, AppSettings, NewApp
from tally.catalog.catalog_file import dump_yaml, export_catalog
from tally.http.services import Services
from tally.tokens import InvalidToken, verify_customer_token

AUDIENCE = "https://shop.example.com"
ISSUER = "https://auth.example.com"


def app_with(**settings: Any) -> App:
    return App(
        id="a" * 24,
        name="Shop",
        app_key="k",
        api_key="ak",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        settings=AppSettings(**settings),
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_with(key: bytes, claims: dict[str, Any]) -> str:
    """An HS256 token made by hand (PyJWT refuses to use a PEM key as an HMAC secret)."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    signing_input = f"{header}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def claims(**extra: Any) -> dict[str, Any]:
    exp = int((datetime.now(UTC) + timedelta(minutes=5)).timestamp())
    return {"sub": "cust-42", "exp": exp, **extra}


def test_valid_tokens_of_each_kind(rsa_keys: tuple[bytes, str], ec_keys: tuple[bytes, str]) -> None:
    rsa_app = app_with(customer_jwt_key=rsa_keys[1])
    for algorithm in ("RS256", "RS512", "PS256"):
        assert verify_customer_token(rsa_app, customer_jwt(rsa_keys[0], algorithm)) == "cust-42"
    ec_app = app_with(customer_jwt_key=ec_keys[1])
    assert verify_customer_token(ec_app, customer_jwt(ec_keys[0], "ES256")) == "cust-42"
    hs_app = app_with(customer_jwt_secret=HS_SECRET)
    assert verify_customer_token(hs_app, customer_jwt(HS_SECRET, "HS256")) == "cust-42"
    both = app_with(customer_jwt_key=rsa_keys[1], customer_jwt_secret=HS_SECRET)
    assert verify_customer_token(both, customer_jwt(rsa_keys[0])) == "cust-42"
    assert verify_customer_token(both, customer_jwt(HS_SECRET, "HS256")) == "cust-42"


def refused(app: App, token: str, match: str) -> None:
    with pytest.raises(InvalidToken, match=match):
        verify_customer_token(app, token)


def test_expiry_with_leeway_and_required_claims(rsa_keys: tuple[bytes, str]) -> None:
    private, public = rsa_keys
    for app, key, algorithm in (
        (app_with(customer_jwt_key=public), private, "RS256"),
        (app_with(customer_jwt_secret=HS_SECRET), HS_SECRET, "HS256"),
    ):
        refused(app, customer_jwt(key, algorithm, expires_in=-60), "expired")
        # 10 s late is within the 30 s leeway for clock skew
        assert verify_customer_token(app, customer_jwt(key, algorithm, expires_in=-10))
        refused(app, customer_jwt(key, algorithm, exp=None), "exp")
        refused(app, customer_jwt(key, algorithm, sub=None), "sub")
        future = int((datetime.now(UTC) + timedelta(minutes=2)).timestamp())
        refused(app, customer_jwt(key, algorithm, nbf=future), "not yet valid")


def test_audience_and_issuer(rsa_keys: tuple[bytes, str]) -> None:
    private, public = rsa_keys
    plain = app_with(customer_jwt_key=public)
    assert verify_customer_token(plain, customer_jwt(private, aud="anything"))  # not checked
    for key, algorithm, settings in (
        (private, "RS256", {"customer_jwt_key": public}),
        (HS_SECRET, "HS256", {"customer_jwt_secret": HS_SECRET}),
    ):
        app = app_with(**settings, customer_jwt_audience=AUDIENCE, customer_jwt_issuer=ISSUER)
        good = {"aud": AUDIENCE, "iss": ISSUER}
        assert verify_customer_token(app, customer_jwt(key, algorithm, **good)) == "cust-42"
        both = {"aud": ["other", AUDIENCE], "iss": ISSUER}
        assert verify_customer_token(app, customer_jwt(key, algorithm, **both)) == "cust-42"
        refused(app, customer_jwt(key, algorithm, iss=ISSUER), "aud")
        wrong = {"aud": "https://evil.example", "iss": ISSUER}
        refused(app, customer_jwt(key, algorithm, **wrong), "Audience doesn't match")
        refused(app, customer_jwt(key, algorithm, aud=AUDIENCE), "iss")
        refused(app, customer_jwt(key, algorithm, aud=AUDIENCE, iss="https://evil"), "issuer")


def test_wrong_keys_none_and_algorithm_confusion(
    rsa_keys: tuple[bytes, str],
    other_rsa_keys: tuple[bytes, str],
    ec_keys: tuple[bytes, str],
) -> None:
    private, public = rsa_keys
    rsa_app = app_with(customer_jwt_key=public)
    both = app_with(customer_jwt_key=public, customer_jwt_secret=HS_SECRET)
    hs_app = app_with(customer_jwt_secret=HS_SECRET)
    refused(rsa_app, customer_jwt(other_rsa_keys[0]), "Signature verification failed")
    refused(hs_app, customer_jwt("another-secret-of-at-least-32-characters", "HS256"), "Signature")
    # alg none: no signature at all
    unsigned = jwt.encode(claims(), None, algorithm="none")
    for app in (rsa_app, hs_app, both):
        refused(app, unsigned, "'none'")
    # the public key's PEM text used as an HMAC secret (the classic confusion attack)
    for pem in (public, public.strip(), public.replace("\n", "")):
        forged = hs256_with(pem.encode(), claims())
        refused(rsa_app, forged, "'HS256' is not one")
        refused(both, forged, "Signature verification failed")  # checked with the real secret
    # only the algorithms that fit the configured key
    refused(hs_app, customer_jwt(private), "'RS256' is not one")
    refused(rsa_app, customer_jwt(ec_keys[0], "ES256"), "'ES256' is not one")
    refused(app_with(customer_jwt_key=ec_keys[1]), customer_jwt(private), "'RS256' is not one")
    p384 = ec.generate_private_key(ec.SECP384R1())
    refused(
        app_with(customer_jwt_key=ec_keys[1]), customer_jwt(p384, "ES384"), "'ES384' is not one"
    )
    refused(hs_app, customer_jwt(HS_SECRET * 2, "HS512"), "'HS512' is not one")
    refused(app_with(), customer_jwt(private), "accepts no customer JWTs")
    refused(rsa_app, "not-a-jwt", "not valid")


# Through the browser paths: the Synerise tracker and Tally's own /sdk/v1/events.


def synerise(token: str | None, new_app: NewApp) -> Callable[[httpx.AsyncClient], Any]:
    async def send(client: httpx.AsyncClient) -> httpx.Response:
        body = {"action": "page.visit", "label": "Home", "client": {"uuid": "dev-1"}}
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return await client.post(
            "/v4/events/custom", params={"token": new_app.app.app_key}, json=body, headers=headers
        )

    return send


def native(token: str | None, new_app: NewApp) -> Callable[[httpx.AsyncClient], Any]:
    async def send(client: httpx.AsyncClient) -> httpx.Response:
        body: dict[str, Any] = {"events": [{"name": "page.visit", "device": "dev-1"}]}
        if token:
            body["access_token"] = token
        return await client.post(
            "/sdk/v1/events", json=body, headers={"x-tally-key": new_app.app.app_key}
        )

    return send


async def patch(client: httpx.AsyncClient, new_app: NewApp, **settings: Any) -> httpx.Response:
    return await client.patch(
        f"/api/v1/apps/{new_app.app.id}/settings",
        json=settings,
        auth=(new_app.app.api_key, new_app.api_secret),
    )


@pytest.mark.parametrize("path", [synerise, native], ids=["synerise", "native"])
async def test_tokens_on_the_browser_paths(
    client: httpx.AsyncClient,
    services: Services,
    new_app: NewApp,
    rsa_keys: tuple[bytes, str],
    path: Callable[..., Any],
) -> None:
    private = rsa_keys[0]
    response = await patch(
        client, new_app, customer_jwt_secret=HS_SECRET, customer_jwt_audience=AUDIENCE
    )
    assert response.status_code == 200, response.text
    good = customer_jwt(HS_SECRET, "HS256", aud=AUDIENCE)
    bad = {
        "expired": customer_jwt(HS_SECRET, "HS256", aud=AUDIENCE, expires_in=-120),
        "audience": customer_jwt(HS_SECRET, "HS256", aud="https://other.example"),
        "key": customer_jwt("x" * 40, "HS256", aud=AUDIENCE),
        "none": jwt.encode(claims(aud=AUDIENCE), None, algorithm="none"),
        "rsa": customer_jwt(private, aud=AUDIENCE),  # no PEM key is set
    }
    for why, token in bad.items():
        response = await path(token, new_app)(client)
        assert response.status_code == 401, (why, response.text)
        body = response.json()
        if path is native:
            assert body["error"]["code"] == "invalid_token", why
        else:
            assert body["status"] == 401 and [e["code"] for e in body["errors"]] == [1016], why
    assert await events_of(services, new_app.app.id) == []

    response = await path(good, new_app)(client)
    assert response.status_code in (200, 202), response.text
    anonymous = await path(None, new_app)(client)
    assert anonymous.status_code in (200, 202), anonymous.text
    users = sorted(str(e["user_id"]) for e in await events_of(services, new_app.app.id))
    assert users == ["None", "cust-42"]


async def test_jwt_settings_are_checked(
    client: httpx.AsyncClient, new_app: NewApp, rsa_keys: tuple[bytes, str]
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    ed_public = (
        ed25519.Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    for settings, message in (
        ({"customer_jwt_secret": "too short"}, "at least 32"),
        ({"customer_jwt_secret": rsa_keys[1]}, "PEM"),
        ({"customer_jwt_key": ed_public}, "RSA or EC"),
        ({"customer_jwt_audience": ""}, "customer_jwt_audience"),
        ({"customer_jwt_issuer": "x" * 256}, "customer_jwt_issuer"),
    ):
        response = await patch(client, new_app, **settings)
        assert response.status_code == 400, settings
        error = response.json()["error"]
        assert error["code"] == "invalid_settings" and message in error["message"]


async def test_the_shared_secret_is_write_only(
    client: httpx.AsyncClient, services: Services, new_app: NewApp, tmp_path: Path
) -> None:
    response = await patch(client, new_app, customer_jwt_secret=HS_SECRET, countly_salt="pepper")
    assert response.status_code == 200
    shown = response.json()["settings"]
    assert shown["customer_jwt_secret"] == "set" and shown["countly_salt"] == "set"
    # A view sent back as read leaves the secrets alone.
    assert (await patch(client, new_app, **shown)).status_code == 200
    app = services.catalog.get_app(new_app.app.id)
    assert app is not None and app.settings.customer_jwt_secret == HS_SECRET
    assert app.settings.countly_salt == "pepper"

    unset = await patch(client, new_app, customer_jwt_secret=None)
    assert unset.json()["settings"]["customer_jwt_secret"] is None
    assert (await patch(client, new_app, customer_jwt_secret=HS_SECRET)).status_code == 200

    settings_url = f"/api/v1/apps/{new_app.app.id}/settings"
    answers = [await client.get(settings_url, auth=(new_app.app.api_key, new_app.api_secret))]
    csrf = await log_in(client, services)
    answers.append(await client.get("/api/v1/apps"))
    answers.append(
        await client.post(
            f"/api/v1/apps/{new_app.app.id}/rotate",
            json={"overlap_seconds": 0},
            headers={"x-csrf-token": csrf},
        )
    )
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert HS_SECRET not in answer.text and "pepper" not in answer.text
        assert '"customer_jwt_secret":"set"' in answer.text
    assert HS_SECRET not in dump_yaml(export_catalog(services.catalog, new_app.app.id))


def test_apps_show_and_set_never_print_secrets(tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    run = tally_cli(data)

    created = json.loads(run("apps", "create", "Shop", "--json"))
    from tally.catalog import Catalog, sqlite_url

    catalog = Catalog(sqlite_url(Path(data)))
    try:
        catalog.update_settings(created["id"], customer_jwt_secret=HS_SECRET)
    finally:
        catalog.close()
    outputs = [
        run("apps", "show", created["id"]),
        run("apps", "show", created["id"], "--json"),
        run("apps", "list", "--json"),
        run("apps", "set", created["id"], "--countly-salt", "pepper"),
        run("apps", "set", created["id"], "--json"),
    ]
    for out in outputs:
        assert HS_SECRET not in out and "pepper" not in out
    assert json.loads(outputs[1])["settings"]["customer_jwt_secret"] == "set"
