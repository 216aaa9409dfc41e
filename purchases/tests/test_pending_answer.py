"""A gateway that answers "pending" with nothing new (in callback mode, every send) costs no transaction."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import RetailerFactory
from core.precompiled import statement_of
from purchases import services
from purchases.gateways import BaseGateway, GatewayResult
from purchases.models import Purchase
from purchases.tests.helpers import fund, queue_fulfilments
from wallet.models import Transfer

pytestmark = pytest.mark.django_db


class PendingGateway(BaseGateway):
    def __init__(self, operator_reference=""):
        self.operator_reference = operator_reference

    def recharge(self, request):
        return GatewayResult(GatewayResult.PENDING, operator_reference=self.operator_reference, message="later")


@pytest.fixture
def accepted(plan, monkeypatch):
    queue_fulfilments(monkeypatch)
    retailer = RetailerFactory()
    fund(retailer, "500.00")
    return services.purchase_recharge(buyer=retailer, plan_id=plan.pk, mobile_number="9812345678").purchase


def test_pending_with_nothing_new_is_the_claim_alone(accepted):
    before = Purchase.objects.get(pk=accepted.pk)
    with CaptureQueriesContext(connection) as queries:
        returned = services.fulfil_purchase(purchase_id=accepted.pk, gateway=PendingGateway())
    assert [statement_of(q["sql"]).split()[0] for q in queries] == [
        "UPDATE",
        "SELECT",
    ]  # the claim, and the purchase read back
    after = Purchase.objects.get(pk=accepted.pk)
    assert returned.pk == accepted.pk and returned.status == after.status == Purchase.Status.PENDING
    assert after.sent_at is not None and before.sent_at is None
    assert (after.operator_reference, after.failure_reason) == ("", "")
    hold = Transfer.objects.get(reference=accepted.reference)
    assert hold.status == Transfer.Status.PENDING  # still held, for the callback or a status check


def test_pending_with_the_operators_reference_records_it(accepted):
    services.fulfil_purchase(purchase_id=accepted.pk, gateway=PendingGateway(operator_reference="OP-77"))
    after = Purchase.objects.get(pk=accepted.pk)
    assert (after.status, after.operator_reference) == (Purchase.Status.PENDING, "OP-77")


def test_pending_clears_a_reason_left_on_a_pending_purchase(accepted):
    Purchase.objects.filter(pk=accepted.pk).update(failure_reason="an earlier note")
    services.fulfil_purchase(purchase_id=accepted.pk, gateway=PendingGateway())
    assert Purchase.objects.get(pk=accepted.pk).failure_reason == ""


def test_pending_repeating_the_known_operator_reference_is_the_claim_alone(accepted):
    Purchase.objects.filter(pk=accepted.pk).update(operator_reference="OP-77")
    with CaptureQueriesContext(connection) as queries:
        services.fulfil_purchase(purchase_id=accepted.pk, gateway=PendingGateway(operator_reference="OP-77"))
    assert [statement_of(q["sql"]).split()[0] for q in queries] == ["UPDATE", "SELECT"]
