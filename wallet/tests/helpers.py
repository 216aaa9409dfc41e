from decimal import Decimal

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
