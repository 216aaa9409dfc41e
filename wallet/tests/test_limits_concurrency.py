"""Wallet limits under concurrency (PostgreSQL, real row locks): loads racing into one client wallet
are checked one after the other under its lock, so exactly what the limit allows lands."""

from decimal import Decimal

import pytest

from accounts.tests.factories import AdminFactory, ClientFactory
from tests.concurrency import run_together
from wallet import services
from wallet.models import Transfer, Wallet
from wallet.tests.helpers import assert_ledger_clean

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_concurrent_transfers_in_stop_exactly_at_the_balance_limit():
    admin, receiver = AdminFactory(), ClientFactory()
    services.fund_wallet(user=receiver, amount="8000.00", initiated_by=admin)
    senders = [ClientFactory() for _ in range(8)]
    for sender in senders:
        services.fund_wallet(user=sender, amount="500.00", initiated_by=admin)

    def send(sender):
        try:
            services.transfer_funds(sender=sender, receiver=receiver, amount="500.00")
            return "landed"
        except services.BalanceLimitExceeded:
            return "refused"

    results, errors = run_together([lambda s=s: send(s) for s in senders])
    assert not any(errors), errors
    assert results.count("landed") == 4 and results.count("refused") == 4  # (10000 - 8000) / 500
    assert Wallet.objects.get(user=receiver).balance == Decimal("10000.00")
    assert Transfer.objects.filter(to_wallet__user=receiver, kind=Transfer.Kind.TRANSFER).count() == 4
    assert_ledger_clean()


def test_concurrent_loads_stop_exactly_at_the_monthly_load_limit():
    admin, receiver = AdminFactory(), ClientFactory()
    services.fund_wallet(user=receiver, amount="7000.00", initiated_by=admin)
    services.debit_wallet(user=receiver, amount="7000.00")  # empty again, but 7000 loaded this month

    def load():
        try:
            services.fund_wallet(user=receiver, amount="1000.00", initiated_by=admin)
            return "landed"
        except services.MonthlyLoadLimitExceeded:
            return "refused"

    results, errors = run_together([load] * 6)
    assert not any(errors), errors
    assert results.count("landed") == 3
    assert Wallet.objects.get(user=receiver).balance == Decimal("3000.00")
    assert_ledger_clean()
