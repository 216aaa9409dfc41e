import os

import pytest
from django.db import connection
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.factories import AdminFactory, ClientFactory, DistributorFactory, RetailerFactory

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_collection_modifyitems(config, items):
    if connection.vendor == "postgresql":
        return
    reason = "needs PostgreSQL (set DATABASE_URL=postgres://...): SQLite has no row locks"
    for item in items:
        if "postgres" in item.keywords:
            if IN_CI:
                item.add_marker(pytest.mark.usefixtures("_fail_without_postgres"))
            else:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def _fail_without_postgres():
    pytest.fail("CI=true: this test needs PostgreSQL, but DATABASE_URL points elsewhere")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Password hashing is not what the suite measures; PBKDF2 costs ~0.4 s per factory user.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def api_client():
    return APIClient()


def client_for(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture
def auth_client():
    """auth_client(user) -> an APIClient sending that user's Bearer access token."""
    return client_for


@pytest.fixture
def admin_user(db):
    return AdminFactory()


@pytest.fixture
def distributor(db):
    return DistributorFactory()


@pytest.fixture
def retailer(distributor):
    return RetailerFactory(parent=distributor)


@pytest.fixture
def client_user(db):
    return ClientFactory()
