"""Races on PostgreSQL (real row locks): the webhook, its duplicates and the status check all try to
settle one paid top-up at once; the wallet is credited exactly once."""

from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.tests.factories import ClientFactory
from payments import services
from payments.models import TopUp
from payments.providers import get_provider
from payments.tests.helpers import pay_in_sandbox
from tests.concurrency import run_together
from wallet.models import Transfer, Wallet
from wallet.tests.helpers import assert_ledger_clean

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_duplicate_webhooks_racing_the_status_check_credit_the_wallet_once():
    payer = ClientFactory()
    top_up = services.create_top_up(user=payer, amount=Decimal("700.00"))
    pay_in_sandbox(top_up)
    result = get_provider().check_status(reference=top_up.provider_reference)

    def webhook():
        return services.apply_payment_result(provider_code="sandbox", result=result)[1]

    def status_check():
        return services.settle_stale_top_ups(older_than=timedelta(0)).settled

    results, errors = run_together([webhook] * 4 + [status_check] * 2)
    assert not any(errors), errors
    assert sum(int(applied) for applied in results) == 1  # one of the six applied it, the others saw it done
    assert Transfer.objects.filter(kind=Transfer.Kind.TOPUP).count() == 1
    assert Wallet.objects.get(user=payer).balance == Decimal("700.00")
    assert TopUp.objects.get().status == "SUCCEEDED"
    assert_ledger_clean()
