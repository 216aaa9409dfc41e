"""Margins moved from the ledger's tables to accounts with their ids (the API shows them)."""

from decimal import Decimal

import pytest
from django.db import connection

from accounts.models import UserMargin
from core.roles import UserType
from tests.helpers import latest_migrations, migrate_to, with_every_other_app_latest

BEFORE_MOVE = [("wallet", "0008_transfer_reference"), ("accounts", "0003_otp_phone_guard")]


@pytest.fixture
def back_to_latest():
    """Whatever the test does, the database ends at the latest migrations (the flush needs them)."""
    yield
    migrate_to(latest_migrations())


@pytest.mark.django_db(transaction=True)
def test_margins_set_before_the_move_keep_their_values_ids_and_authors(back_to_latest):
    old = migrate_to(with_every_other_app_latest(BEFORE_MOVE))
    User, OldMargin = old.get_model("accounts", "User"), old.get_model("wallet", "UserMargin")
    boss = User.objects.create(username="boss", user_type=UserType.ADMIN, password="!")
    shop = User.objects.create(username="shop", user_type=UserType.RETAILER, password="!")
    kept = OldMargin.objects.create(user=shop, margin_percentage=Decimal("2.50"), set_by=boss)

    migrate_to(latest_migrations())

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
