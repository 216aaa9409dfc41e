"""Operator callbacks, reversals and refunds, called as services: what issue 17's mutation run showed the
API-level tests in test_callbacks.py leave unchecked (the defaults of a callback with no operator
reference or message, the reasons a purchase records, the journal rows of a refund, what operators
read in the errors and the logs)."""

import logging
from decimal import Decimal

import pytest

from core.errors import NotFound
from purchases import services
from purchases.gateways import SandboxGateway
from purchases.models import Purchase
from purchases.tests.helpers import assert_ledger_clean, balances, fund, give_margin
from wallet import services as ledger
from wallet.models import Transfer

pytestmark = pytest.mark.django_db

SERVICES_LOGGER = "purchases.services"


@pytest.fixture
def shop(retailer, distributor):
    fund(distributor, "100.00")
    fund(retailer, "1000.00")
    give_margin(distributor, "2.00")  # 3.98 on a 199.00 plan
    give_margin(retailer, "3.00")  # 5.97
    return retailer, distributor


def _pending(retailer, plan):
    return services.purchase_recharge(
        buyer=retailer, plan_id=plan.pk, mobile_number=SandboxGateway.PENDING_FOREVER
    ).purchase


def _sold(retailer, plan):
    purchase = services.purchase_recharge(buyer=retailer, plan_id=plan.pk, mobile_number="9876543210").purchase
    assert purchase.status == "SUCCESS"
    return purchase


def _records(caplog, level):
    return [r.getMessage() for r in caplog.records if r.name == SERVICES_LOGGER and r.levelno == level]


# --- finding a purchase by its reference ------------------------------------------------------------


def test_only_P_and_the_purchase_id_name_a_purchase_anything_else_is_not_found_on_the_reference_field(shop, plan):
    purchase = _pending(shop[0], plan)
    assert services.purchase_by_reference(f"P{purchase.pk}").pk == purchase.pk

    for reference in (f"X{purchase.pk}", f"p{purchase.pk}", "P" + "9" * 19, "", None):
        with pytest.raises(NotFound) as refused:
            services.purchase_by_reference(reference)
        assert (refused.value.code, refused.value.field) == ("not_found", "reference"), reference
        assert refused.value.message == "No purchase with this reference.", reference


# --- callbacks without an operator reference or a message ---------------------------------------------


@pytest.mark.parametrize("entry", ["receive_operator_callback", "apply_operator_callback"])
def test_a_success_callback_without_operator_reference_records_none(shop, plan, entry):
    purchase = _pending(shop[0], plan)

    outcome = getattr(services, entry)(reference=f"P{purchase.pk}", status="SUCCESS")

    assert (outcome.applied, outcome.purchase.status) == (True, "SUCCESS")
    purchase.refresh_from_db()
    assert (purchase.status, purchase.operator_reference, purchase.failure_reason) == ("SUCCESS", "", "")


@pytest.mark.parametrize("entry", ["receive_operator_callback", "apply_operator_callback"])
@pytest.mark.parametrize(
    ("message", "reason"),
    [(None, "The operator refused the recharge."), ("Number barred by the operator", "Number barred by the operator")],
    ids=["no-message", "message"],
)
def test_a_failed_callback_records_the_operators_message_or_a_plain_refusal(shop, plan, entry, message, reason):
    retailer, _ = shop
    purchase = _pending(retailer, plan)
    kwargs = {} if message is None else {"message": message}

    outcome = getattr(services, entry)(reference=f"P{purchase.pk}", status="FAILED", **kwargs)

    assert (outcome.applied, outcome.purchase.status) == (True, "FAILED")
    purchase.refresh_from_db()
    assert (purchase.status, purchase.failure_reason) == ("FAILED", reason)
    assert balances(retailer) == [(Decimal("1000.00"), Decimal("0.00"))]


def test_a_replayed_callback_applied_by_a_worker_changes_nothing_and_raises_nothing(shop, plan):
    """The worker (tasks.apply_operator_callback) gets a callback twice: the second is a replay."""
    purchase = _pending(shop[0], plan)
    reference = f"P{purchase.pk}"
    services.apply_operator_callback(reference=reference, status="SUCCESS", operator_reference="OP9")
    journal = list(Transfer.objects.values_list("pk", "status"))

    again = services.apply_operator_callback(reference=reference, status="SUCCESS", operator_reference="OP9")

    assert (again.applied, again.purchase.pk, again.purchase.status) == (False, purchase.pk, "SUCCESS")
    assert list(Transfer.objects.values_list("pk", "status")) == journal


# --- conflicts: what the caller and the operators read --------------------------------------------------


def _assert_conflict(refused, caplog, *, reference, current, reported):
    error = refused.value
    assert (error.code, error.context["current"]) == ("callback_conflict", current)
    assert error.message == f"Purchase {reference} is already {current}; a callback saying {reported} changes nothing."
    assert _records(caplog, logging.ERROR) == [
        f"operator callback for {reference} says {reported}, but the purchase is already {current}: "
        "nothing changed; check with the operator"
    ]


def test_a_callback_contradicting_a_success_is_refused_in_the_request_naming_both_statuses(shop, plan, caplog):
    purchase = _sold(shop[0], plan)
    reference = f"P{purchase.pk}"

    with caplog.at_level(logging.ERROR), pytest.raises(services.CallbackConflict) as refused:
        services.receive_operator_callback(reference=reference, status="FAILED")

    _assert_conflict(refused, caplog, reference=reference, current="SUCCESS", reported="FAILED")
    assert Purchase.objects.get(pk=purchase.pk).status == "SUCCESS"


def test_a_conflict_found_by_the_worker_names_the_purchase_and_both_statuses(shop, plan, caplog):
    purchase = _pending(shop[0], plan)
    reference = f"P{purchase.pk}"
    services.apply_operator_callback(reference=reference, status="FAILED")

    with caplog.at_level(logging.ERROR), pytest.raises(services.CallbackConflict) as refused:
        services.apply_operator_callback(reference=reference, status="SUCCESS")

    _assert_conflict(refused, caplog, reference=reference, current="FAILED", reported="SUCCESS")
    assert Purchase.objects.get(pk=purchase.pk).status == "FAILED"


# --- reversals ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "reason"),
    [(None, "The operator reversed the recharge."), ("Number ported out", "Number ported out")],
    ids=["no-message", "message"],
)
def test_a_reversal_of_a_pending_purchase_fails_it_with_the_operators_reason(shop, plan, message, reason):
    retailer, _ = shop
    purchase = _pending(retailer, plan)
    kwargs = {} if message is None else {"message": message}

    outcome = services.apply_operator_callback(reference=f"P{purchase.pk}", status="REVERSED", **kwargs)

    assert outcome.applied is True
    assert (outcome.purchase.pk, outcome.purchase.status) == (purchase.pk, "FAILED")
    purchase.refresh_from_db()
    assert (purchase.status, purchase.failure_reason) == ("FAILED", reason)
    assert balances(retailer) == [(Decimal("1000.00"), Decimal("0.00"))]


@pytest.mark.parametrize(
    ("message", "reason"),
    [(None, "Reversed by the operator."), ("Chargeback 42", "Reversed by the operator. Chargeback 42")],
    ids=["no-message", "message"],
)
def test_a_reversal_of_a_success_refunds_it_and_says_so(shop, plan, message, reason):
    retailer, _ = shop
    purchase = _sold(retailer, plan)
    kwargs = {} if message is None else {"message": message}

    outcome = services.apply_operator_callback(reference=f"P{purchase.pk}", status="REVERSED", **kwargs)

    assert outcome.applied is True
    assert (outcome.purchase.pk, outcome.purchase.status, outcome.purchase.failure_reason) == (
        purchase.pk,
        "REFUNDED",
        reason,
    )
    assert Purchase.objects.get(pk=purchase.pk).failure_reason == reason


@pytest.mark.parametrize("settle", ["FAILED", "REVERSED"])
def test_a_reversal_of_a_failed_or_refunded_purchase_answers_it_unchanged(shop, plan, settle):
    retailer, _ = shop
    purchase = _pending(retailer, plan) if settle == "FAILED" else _sold(retailer, plan)
    reference = f"P{purchase.pk}"
    services.apply_operator_callback(reference=reference, status=settle)
    before = Purchase.objects.get(pk=purchase.pk)
    journal = list(Transfer.objects.values_list("pk", "status"))

    outcome = services.apply_operator_callback(reference=reference, status="REVERSED")

    assert outcome.applied is False
    assert (outcome.purchase.pk, outcome.purchase.status) == (purchase.pk, before.status)
    assert list(Transfer.objects.values_list("pk", "status")) == journal


# --- refunds --------------------------------------------------------------------------------------------


def test_a_refund_without_a_reason_says_refunded_and_happens_once(shop, plan):
    retailer, _ = shop
    purchase = _sold(retailer, plan)

    refunded, done = services.refund_purchase(purchase_id=purchase.pk)
    again, done_again = services.refund_purchase(purchase_id=purchase.pk)

    assert (done, refunded.status, refunded.failure_reason) == (True, "REFUNDED", "Refunded.")
    assert (done_again, again.status) == (False, "REFUNDED")
    assert Purchase.objects.get(pk=purchase.pk).failure_reason == "Refunded."
    assert balances(retailer) == [(Decimal("1000.00"), Decimal("0.00"))]


def test_a_refund_reason_is_cut_to_the_columns_255_characters(shop, plan):
    purchase = _sold(shop[0], plan)

    refunded, _ = services.refund_purchase(purchase_id=purchase.pk, reason="r" * 300)

    assert refunded.failure_reason == "r" * 255
    assert Purchase.objects.get(pk=purchase.pk).failure_reason == "r" * 255


def test_refusing_a_refund_says_which_purchase_and_why(shop, plan):
    purchase = _pending(shop[0], plan)

    with pytest.raises(NotFound) as missing:
        services.refund_purchase(purchase_id=purchase.pk + 1000)
    with pytest.raises(services.PurchaseNotRefundable) as refused:
        services.refund_purchase(purchase_id=purchase.pk)

    assert missing.value.message == "Purchase not found."
    assert refused.value.code == "purchase_not_refundable"
    assert refused.value.message == f"Purchase #{purchase.pk} is PENDING: only a SUCCESS purchase can be refunded."


def test_an_admins_refund_journals_the_refund_and_each_margin_taken_back_as_that_admins(shop, plan, admin_user, caplog):
    retailer, distributor = shop
    purchase = _sold(retailer, plan)
    last = Transfer.objects.order_by("-pk").values_list("pk", flat=True).first()

    with caplog.at_level(logging.WARNING):
        refunded, done = services.refund_purchase(purchase_id=purchase.pk, reason="Refunded.", initiated_by=admin_user)

    assert done and refunded.commission_unrecovered == 0
    rows = Transfer.objects.filter(pk__gt=last).order_by("pk")
    assert sorted(rows.values_list("kind", "amount", "remarks", "initiated_by", "reference")) == sorted(
        [
            (
                "REFUND",
                plan.amount,
                f"Refund of recharge #{purchase.pk} ({purchase.mobile_number})",
                admin_user.pk,
                f"P{purchase.pk}",
            ),
            (
                "COMMISSION",
                Decimal("5.97"),
                f"Margin taken back: recharge #{purchase.pk} refunded",
                admin_user.pk,
                f"P{purchase.pk}",
            ),
            (
                "COMMISSION",
                Decimal("3.98"),
                f"Margin taken back: recharge #{purchase.pk} refunded",
                admin_user.pk,
                f"P{purchase.pk}",
            ),
        ]
    )
    assert _records(caplog, logging.WARNING) == []  # everything was taken back: nothing to report
    assert balances(retailer, distributor) == [
        (Decimal("1000.00"), Decimal("0.00")),
        (Decimal("100.00"), Decimal("0.00")),
    ]
    assert_ledger_clean()


def test_a_refund_with_no_margins_paid_records_a_decimal_zero_shortfall(retailer, plan):
    fund(retailer, "1000.00")  # no margins for the retailer nor its distributor: nothing was paid out
    purchase = _sold(retailer, plan)

    refunded, done = services.refund_purchase(purchase_id=purchase.pk)

    assert done and isinstance(refunded.commission_unrecovered, Decimal)
    assert refunded.commission_unrecovered == Decimal("0.00")
    assert balances(retailer) == [(Decimal("1000.00"), Decimal("0.00"))]


def test_a_shortfall_under_one_rupee_is_recorded_and_logged_with_the_purchase_and_amount(
    shop, plan, client_user, caplog
):
    retailer, distributor = shop
    purchase = _sold(retailer, plan)
    # The distributor (103.98 after its 3.98 margin) keeps 3.48: 0.50 of its margin cannot come back.
    ledger.transfer_funds(sender=distributor, receiver=client_user, amount=Decimal("100.50"))

    with caplog.at_level(logging.WARNING):
        refunded, done = services.refund_purchase(purchase_id=purchase.pk)

    assert done and refunded.commission_unrecovered == Decimal("0.50")
    assert Purchase.objects.get(pk=purchase.pk).commission_unrecovered == Decimal("0.50")
    assert _records(caplog, logging.WARNING) == [
        f"purchase {purchase.pk} refunded; 0.50 of its margins could not be taken back"
    ]
    assert balances(distributor) == [(Decimal("0.00"), Decimal("0.00"))]
    assert_ledger_clean()
