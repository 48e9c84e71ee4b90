"""Fixtures of the security tests: two apps on the in-process server (the shared ``services`` and
``client`` of tests/conftest.py), key pairs made once per module, and the seeded deployment of
the injection tests on each store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from injection_support import Deployment, deployment
from security_support import ec_pair, rsa_pair

from analytics.analytics_stores import STORES
from tally.catalog import NewApp
from tally.http.services import Services


@pytest.fixture
def app_a(services: Services) -> NewApp:
    return services.catalog.create_app("App A")


@pytest.fixture
def app_b(services: Services) -> NewApp:
    return services.catalog.create_app("App B")


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[bytes, str]:
    """(private PEM, public PEM): the app's back end signs customer JWTs with the private key."""
    return rsa_pair()


@pytest.fixture(scope="module")
def other_rsa_keys() -> tuple[bytes, str]:
    return rsa_pair()


@pytest.fixture(scope="module")
def ec_keys() -> tuple[bytes, str]:
    return ec_pair()


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=STORES)
async def tally(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Deployment]:
    """Two apps seeded with every hostile payload (tests/security/injection_support.py), behind
    the in-process server, on each store (``indirect`` parametrization picks one)."""
    data_dir: Path = tmp_path_factory.mktemp("injection")
    async with deployment(request.param, request, data_dir) as found:
        yield found
