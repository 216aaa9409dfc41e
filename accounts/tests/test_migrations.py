"""Margins moved from the ledger's tables to accounts with their ids (the API shows them)."""

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from accounts.models import UserMargin
from core.roles import UserType

BEFORE_MOVE = [("wallet", "0008_transfer_reference"), ("accounts", "0003_otp_phone_guard")]


def _everything_else_latest(targets):
    """`targets`, and every other app at its latest migration (the state's models match the tables)."""
    named = {app for app, _ in targets}
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    return [*targets, *(node for node in leaves if node[0] not in named)]


@pytest.fixture
def back_to_latest():
    """Whatever the test does, the database ends at the latest migrations (the flush needs them)."""
    yield
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_margins_set_before_the_move_keep_their_values_ids_and_authors(back_to_latest):
    old = _migrate(_everything_else_latest(BEFORE_MOVE))
    User, OldMargin = old.get_model("accounts", "User"), old.get_model("wallet", "UserMargin")
    boss = User.objects.create(username="boss", user_type=UserType.ADMIN, password="!")
    shop = User.objects.create(username="shop", user_type=UserType.RETAILER, password="!")
    kept = OldMargin.objects.create(user=shop, margin_percentage=Decimal("2.50"), set_by=boss)

    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    moved = UserMargin.objects.get()
    assert (moved.pk, moved.user_id, moved.margin_percentage, moved.set_by_id) == (
        kept.pk,
        shop.pk,
        Decimal("2.50"),
        boss.pk,
    )
    assert "wallet_usermargin" not in connection.introspection.table_names()
    # The id sequence follows the copied rows: the next margin does not collide.
    assert UserMargin.objects.create(user_id=boss.pk, margin_percentage=Decimal("1.00")).pk > kept.pk
