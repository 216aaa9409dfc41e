from decimal import Decimal

import pytest

from wallet import services
from wallet.models import Transfer, Wallet
from wallet.reconciliation import verify_ledger


def balance_of(user) -> Decimal:
    return Wallet.objects.get(user=user).balance


def ledger_snapshot():
    """Everything a refused request must leave as it was: the journal and every stored balance."""
    return (
        Transfer.objects.count(),
        list(Wallet.objects.order_by("pk").values_list("pk", "balance", "held")),
    )


def assert_ledger_clean():
    report = verify_ledger()
    assert report.ok, report.mismatches


@pytest.fixture
def fund(admin_user):
    """fund(user, "100.00"): an admin funding through the ledger service."""

    def _fund(user, amount):
        return services.fund_wallet(user=user, amount=Decimal(amount), initiated_by=admin_user)

    return _fund
