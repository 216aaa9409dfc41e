"""The purchase path's reads compiled once (core.precompiled) answer what their plain querysets answer."""

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.margins import sale_margins
from accounts.tests.factories import DistributorFactory, RetailerFactory
from core.precompiled import statement_of
from purchases import services
from purchases.models import Purchase
from purchases.tests.helpers import fund, give_margin, queue_fulfilments
from wallet.models import Transfer
from wallet.selectors import purchase_transfer

pytestmark = pytest.mark.django_db


def _fields(instance):
    return {field.attname: getattr(instance, field.attname) for field in instance._meta.concrete_fields}


@pytest.fixture
def accepted(plan, monkeypatch):
    """A retailer of a distributor, both with margins, and one PENDING purchase with its key."""
    queue_fulfilments(monkeypatch)
    distributor = DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    give_margin(distributor, "3.00")
    give_margin(retailer, "1.50")
    fund(retailer, "1000.00")
    outcome = services.purchase_recharge(
        buyer=retailer, plan_id=plan.pk, mobile_number="9812345678", idempotency_key="k-1"
    )
    return outcome.purchase


def test_the_pending_purchase_comes_with_its_plan_and_operator(accepted):
    expected = Purchase.objects.select_related("plan__provider").get(pk=accepted.pk)
    with CaptureQueriesContext(connection) as queries:
        (loaded,) = services._PENDING_PURCHASE.fetch(accepted.pk)
        operator = loaded.plan.provider
    assert len(queries) == 1
    assert _fields(loaded) == _fields(expected)
    assert _fields(loaded.plan) == _fields(expected.plan)
    assert _fields(operator) == _fields(expected.plan.provider)
    Purchase.objects.filter(pk=accepted.pk).update(status=Purchase.Status.FAILED)
    assert services._PENDING_PURCHASE.fetch(accepted.pk) == []
    assert services._PENDING_PURCHASE.fetch(accepted.pk + 1000) == []


def test_the_purchase_to_settle_is_locked_with_its_buyer(accepted):
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        (loaded,) = services._PURCHASE_FOR_SETTLING.fetch(accepted.pk)
        names = (loaded.buyer.username, loaded.plan.provider.code)
    assert len(queries) == 1
    assert names == (accepted.buyer.username, accepted.plan.provider.code)
    assert _fields(loaded) == _fields(Purchase.objects.get(pk=accepted.pk))
    if connection.vendor == "postgresql":  # the purchase alone: the buyer's row is read, not locked
        assert 'FOR UPDATE OF "purchases_purchase"' in statement_of(queries[0]["sql"])


def test_settling_a_purchase_that_does_not_exist_says_so(db):
    with pytest.raises(Purchase.DoesNotExist):
        services.apply_gateway_result(purchase_id=10**9, result=services.GatewayResult("SUCCESS"))


def test_the_hold_is_found_by_its_reference_and_nothing_else(accepted):
    hold = purchase_transfer(reference=accepted.reference)
    assert _fields(hold) == _fields(Transfer.objects.get(reference=accepted.reference, kind=Transfer.Kind.PURCHASE))
    assert hold.status == Transfer.Status.PENDING
    with pytest.raises(Transfer.DoesNotExist):
        purchase_transfer(reference="P0")


def test_two_purchase_transfers_under_one_reference_are_an_error_as_with_get(accepted):
    hold = purchase_transfer(reference=accepted.reference)
    Transfer.objects.filter(pk=hold.pk).update(reference="P-twice")
    hold.pk = None
    hold.save()  # a second row with the same reference
    Transfer.objects.filter(pk=hold.pk).update(reference="P-twice")
    with pytest.raises(Transfer.MultipleObjectsReturned):
        purchase_transfer(reference="P-twice")


def test_a_key_names_the_buyers_own_purchase_only(accepted):
    (found,) = services._PURCHASE_FOR_KEY.fetch(accepted.buyer_id, "k-1")
    assert found.pk == accepted.pk
    assert found.plan.provider.code == accepted.plan.provider.code
    assert services._PURCHASE_FOR_KEY.fetch(accepted.buyer_id, "k-2") == []
    assert services._PURCHASE_FOR_KEY.fetch(accepted.distributor_id, "k-1") == []


@pytest.mark.parametrize("plan_id", ["abc", None, "", 0, -5, 2**63, "9" * 30, "1.5", float("inf"), float("nan")])
def test_a_plan_id_that_names_no_plan_is_plan_not_found_not_an_error(plan, plan_id):
    with pytest.raises(services.PlanNotFound):
        services._sellable_plan(plan_id)


def test_a_plan_id_given_as_text_names_its_plan(plan):
    assert services._sellable_plan(str(plan.pk)).pk == plan.pk
    assert services._sellable_plan(plan.pk).provider.code == "airtel"


def test_sale_margins_read_the_buyer_and_its_distributor_in_one_query(db):
    distributor = DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    lone = RetailerFactory(parent=None)
    give_margin(distributor, "3.00")
    give_margin(retailer, "1.25")
    with CaptureQueriesContext(connection) as queries:
        margins = sale_margins(buyer=retailer)
    assert len(queries) == 1
    assert (margins[0], margins[1].pk, margins[2]) == (Decimal("1.25"), distributor.pk, Decimal("3.00"))
    assert sale_margins(buyer=distributor) == (Decimal("3.00"), None, Decimal("0.00"))
    assert sale_margins(buyer=lone) == (Decimal("0.00"), None, Decimal("0.00"))


def test_a_callbacks_reference_names_its_purchase_with_plan_and_operator(accepted):
    with CaptureQueriesContext(connection) as queries:
        found = services.purchase_by_reference(accepted.reference)
        operator = found.plan.provider.code
    assert len(queries) == 1
    assert (found.pk, operator) == (accepted.pk, accepted.plan.provider.code)
    assert _fields(found) == _fields(Purchase.objects.get(pk=accepted.pk))
    for unknown in (f"P{accepted.pk + 1000}", "P", "Pabc", f"X{accepted.pk}", "P" + "9" * 19):
        with pytest.raises(services.NotFound):
            services.purchase_by_reference(unknown)


# --- and its writes ------------------------------------------------------------------------------


def test_an_accepted_purchase_is_the_row_the_orms_create_would_write(accepted):
    stored = Purchase.objects.get(pk=accepted.pk)
    given = {name: getattr(stored, name) for name in services._INSERTED_FIELDS if not name.endswith("_at")}
    twin = _fields(Purchase.objects.get(pk=Purchase.objects.create(**given | {"idempotency_key": "k-twin"}).pk))
    differs = {name for name, value in _fields(stored).items() if twin[name] != value}
    assert differs == {"id", "idempotency_key", "created_at", "updated_at"}
    assert _fields(stored) == _fields(accepted)  # the instance returned is the row written
    assert stored.created_at == stored.updated_at


@pytest.mark.parametrize("result", ["SUCCESS", "FAILED"])
def test_a_settlement_writes_what_saving_its_fields_would(accepted, result):
    from purchases.gateways import GatewayResult

    settled = services.apply_gateway_result(
        purchase_id=accepted.pk, result=GatewayResult(result, operator_reference="OP-1", message="no")
    )

    stored = Purchase.objects.get(pk=accepted.pk)
    assert _fields(stored) == _fields(settled)
    assert stored.status == result and stored.completed_at is not None and stored.updated_at > accepted.updated_at
    expected = (Decimal("2.98"), Decimal("5.97")) if result == "SUCCESS" else (Decimal("0.00"), Decimal("0.00"))
    assert (stored.buyer_commission, stored.distributor_commission) == expected
