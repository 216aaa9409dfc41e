"""Helpers shared by the tests of every app (fixtures live in conftest.py)."""

from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from rest_framework.test import APIClient

from accounts.tokens import token_pair_for


def client_for(user):
    """An APIClient sending `user`'s Bearer access token."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_pair_for(user)['access']}")
    return client


def latest_migrations():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def with_every_other_app_latest(targets):
    """`targets`, and every other app at its latest migration (the state's models match the tables)."""
    named = {app for app, _ in targets}
    return [*targets, *(node for node in latest_migrations() if node[0] not in named)]


def migrate_to(targets):
    """Migrate the test database to `targets`; returns the apps of that state (its historical models)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps
