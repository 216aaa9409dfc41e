"""The ledger's schema stopped naming purchases (wallet_transfer.purchase_id). A database from
before keeps every link: the migration gives each transfer of a purchase the purchase's reference,
then drops the column."""

import pytest
from django.db import connection
from django.utils import timezone

from core.roles import UserType
from purchases.models import Purchase
from tests.helpers import latest_migrations, migrate_to, with_every_other_app_latest
from wallet.models import Transfer

BEFORE_MOVE = [("purchases", "0002_purchase_sent_at"), ("wallet", "0008_transfer_reference")]
AFTER = [("purchases", "0003_link_existing_transfers")]


@pytest.fixture
def back_to_latest():
    """Whatever the test does, the database ends at the latest migrations (the flush needs them)."""
    yield
    migrate_to(latest_migrations())


def _columns():
    with connection.cursor() as cursor:
        return {column.name for column in connection.introspection.get_table_description(cursor, "wallet_transfer")}


@pytest.mark.django_db(transaction=True)
def test_a_database_from_before_the_move_keeps_every_purchase_linked_to_its_transfers(back_to_latest):
    old = migrate_to(with_every_other_app_latest(BEFORE_MOVE))
    with connection.cursor() as cursor:  # the column the old wallet 0001 created
        cursor.execute(
            "ALTER TABLE wallet_transfer ADD COLUMN purchase_id bigint NULL REFERENCES purchases_purchase (id)"
        )
    User, Wallet = old.get_model("accounts", "User"), old.get_model("wallet", "Wallet")
    OldTransfer, OldPurchase = old.get_model("wallet", "Transfer"), old.get_model("purchases", "Purchase")
    Provider, Plan = old.get_model("plans", "Provider"), old.get_model("plans", "RechargePlan")
    buyer = User.objects.create(username="buyer", user_type=UserType.RETAILER, password="!")
    wallet = Wallet.objects.create(user=buyer, balance="100.00")
    settlement = Wallet.objects.get_or_create(system_code="RECHARGE_SETTLEMENT")[0]
    commission = Wallet.objects.get_or_create(system_code="COMMISSION")[0]
    plan = Plan.objects.create(provider=Provider.objects.create(code="jio", name="Jio"), code="p", amount="10.00")
    now = timezone.now()

    def purchase_with(*legs):
        purchase = OldPurchase.objects.create(buyer=buyer, plan=plan, mobile_number="+919812345678", amount="10.00")
        ids = []
        for kind, source, destination in legs:
            # Created pending, linked, then finalised: final rows are immutable (wallet 0004).
            row = OldTransfer.objects.create(
                from_wallet=source,
                to_wallet=destination,
                amount="1.00",
                kind=kind,
                status="PENDING",
                created_at=now,
                updated_at=now,
            )
            with connection.cursor() as cursor:
                cursor.execute("UPDATE wallet_transfer SET purchase_id = %s WHERE id = %s", [purchase.pk, row.pk])
            OldTransfer.objects.filter(pk=row.pk).update(status="POSTED", finalized_at=now)
            ids.append(row.pk)
        return purchase.pk, ids

    sold, sold_legs = purchase_with(
        ("PURCHASE", wallet, settlement), ("COMMISSION", commission, wallet), ("REFUND", settlement, wallet)
    )
    failed, failed_legs = purchase_with(("PURCHASE", wallet, settlement))
    unrelated = OldTransfer.objects.create(
        from_wallet=commission,
        to_wallet=wallet,
        amount="1.00",
        kind="FUND",
        status="POSTED",
        created_at=now,
        updated_at=now,
        finalized_at=now,
    ).pk

    migrate_to(AFTER)
    migrate_to(latest_migrations())

    assert "purchase_id" not in _columns()
    purchases = {purchase.pk: purchase for purchase in Purchase.objects.all()}
    for pk, legs in ((sold, sold_legs), (failed, failed_legs)):
        assert sorted(Transfer.objects.filter(reference=purchases[pk].reference).values_list("pk", flat=True)) == legs
    assert Transfer.objects.get(pk=unrelated).reference is None
