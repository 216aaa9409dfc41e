"""The month's loads (wallet/limits.py, loaded_this_month) are read by one SQL statement on PostgreSQL
and through the ORM elsewhere: both must give the same answer as a plain sum over the journal, for
every kind and status of row and on both sides of the month's first second."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.tests.factories import ClientFactory, DistributorFactory
from wallet import limits, services
from wallet.models import Transfer, Wallet

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def expected_loads(wallet_id, since):
    """The rule, computed from the rows in Python: POSTED loads into the wallet since `since`."""
    rows = Transfer.objects.filter(to_wallet_id=wallet_id)
    return sum(
        (r.amount for r in rows if r.status == "POSTED" and r.kind in limits.LOAD_KINDS and r.created_at >= since),
        Decimal("0"),
    )


def test_the_sql_and_the_orm_paths_sum_the_same_loads(fund, monkeypatch):
    client, other = ClientFactory(), ClientFactory()
    distributor = DistributorFactory()
    fund(distributor, "500.00")
    fund(other, "300.00")
    this_month = limits.month_start()
    # Last month: a funding and a transfer in, which this month's allowance must not count.
    with monkeypatch.context() as patched:
        patched.setattr(timezone, "now", lambda: this_month - timedelta(microseconds=1))
        fund(client, "40.00")
        services.transfer_funds(sender=other, receiver=client, amount=Decimal("7.00"))
    # This month, from its first instant: every kind of row into the wallet, and some out of it.
    with monkeypatch.context() as patched:
        patched.setattr(timezone, "now", lambda: this_month)
        fund(client, "11.00")  # FUND, at the boundary itself
    services.credit_wallet(user=client, amount=Decimal("5.00"))  # CREDIT
    services.transfer_funds(sender=other, receiver=client, amount=Decimal("13.00"))  # TRANSFER
    sale, _ = services.post_transfer(transfer=services.hold_funds(user=client, amount=Decimal("2.00")))
    services.refund_transfer(transfer=sale)  # the sale REFUNDED; its REFUND into the wallet is not a load
    services.hold_funds(user=client, amount=Decimal("3.00"))  # PENDING, and out of the wallet
    services.transfer_funds(sender=client, receiver=other, amount=Decimal("1.00"))  # out
    services.debit_wallet(user=client, amount=Decimal("1.00"))  # DEBIT, out

    wallets = list(Wallet.objects.values_list("pk", flat=True))  # the system wallets too
    assert len(wallets) >= 5
    sinces = [this_month, this_month + timedelta(microseconds=1), this_month - timedelta(days=40), timezone.now()]
    for wallet_id in wallets:
        for since in sinces:
            expected = expected_loads(wallet_id, since)
            assert Decimal(limits._loaded_since_sql(wallet_id=wallet_id, since=since) or 0) == expected
            assert Decimal(limits._loaded_since_orm(wallet_id=wallet_id, since=since) or 0) == expected
    # The rows above, counted by hand: 11 + 5 + 13 this month; 40 + 7 more since last month.
    assert limits.loaded_this_month(wallet=Wallet.objects.get(pk=client.wallet.pk)) == Decimal("29.00")
    assert expected_loads(client.wallet.pk, this_month - timedelta(days=40)) == Decimal("76.00")
