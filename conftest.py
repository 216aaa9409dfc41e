import os

import pytest
from django.db import InterfaceError, OperationalError, connection, connections
from rest_framework.test import APIClient

from accounts.tests.factories import AdminFactory, ClientFactory, DistributorFactory, RetailerFactory
from tests.helpers import client_for

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
def _self_top_up_as_in_the_demo(settings):
    # The suite runs with DEBUG off, where self top-up defaults to off; most tests top a wallet up the
    # way the demo (DEBUG on) does. tests/security/test_production_defaults.py checks the default.
    settings.WALLET_SELF_TOPUP_ENABLED = True


@pytest.fixture(autouse=True)
def _no_remembered_system_wallets():
    """A test may have created the system wallets inside its own transaction, which rolls back: the
    next test must not find their ids remembered (production never deletes them)."""
    from wallet.services import forget_system_wallets

    forget_system_wallets()
    yield
    forget_system_wallets()


@pytest.fixture(autouse=True)
def _fresh_cache():
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _on_commit_runs_when_the_code_under_test_commits(monkeypatch):
    """pytest-django wraps a test in a transaction that is never committed, so work deferred with
    `transaction.on_commit` (every task enqueue) would never run. In production it runs when the
    code's own outermost atomic block commits, or at once outside any: do the same here, treating the
    test's own transaction as the autocommit it stands for. A block that rolls back still drops its
    callbacks (Django discards them with the savepoint)."""
    from django.db import DEFAULT_DB_ALIAS, connections, transaction
    from django.db.backends.base.base import BaseDatabaseWrapper

    def only_the_tests_blocks_open(connection):
        return connection.in_atomic_block and all(block._from_testcase for block in connection.atomic_blocks)

    def run_pending(connection):
        while connection.run_on_commit and only_the_tests_blocks_open(connection):
            _, func, robust = connection.run_on_commit.pop(0)
            _call(func, robust)

    def _call(func, robust):
        if not robust:
            return func()
        try:
            func()
        except Exception:  # noqa: BLE001 - a robust callback's failure is logged, as Django does
            import logging

            logging.getLogger("django.db.backends.base").exception("on_commit callback failed")

    original_on_commit = BaseDatabaseWrapper.on_commit
    original_exit = transaction.Atomic.__exit__

    def on_commit(self, func, robust=False):
        if only_the_tests_blocks_open(self):
            return _call(func, robust)
        return original_on_commit(self, func, robust)

    def exit_(self, exc_type, exc_value, traceback):
        result = original_exit(self, exc_type, exc_value, traceback)
        run_pending(connections[self.using or DEFAULT_DB_ALIAS])
        return result

    monkeypatch.setattr(BaseDatabaseWrapper, "on_commit", on_commit)
    monkeypatch.setattr(transaction.Atomic, "__exit__", exit_)


@pytest.fixture
def commit_fails(monkeypatch):
    """The next COMMIT fails: `rolled_back` (nothing landed) or `landed` (it reached the server, but
    the answer was lost), as when a backend is killed at that instant."""
    wrapper = type(connections["default"])
    real_commit = wrapper._commit

    class Trap:
        mode = None
        fired = False

    trap = Trap()

    def failing_commit(self):
        if trap.mode is None or trap.fired:
            return real_commit(self)
        trap.fired = True
        if trap.mode == "landed":
            real_commit(self)
            raise InterfaceError("connection already closed")
        self._rollback()
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(wrapper, "_commit", failing_commit)
    return trap


@pytest.fixture
def api_client():
    return APIClient()


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
