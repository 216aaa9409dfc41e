"""Accepting a recharge purchase (purchases.services.purchase_recharge and its helpers): what the
first mutation run (issue 17) showed no test held. The journal rows' remarks and keys, commissions
under one rupee, the duplicate refusal's wording and choice of the earlier purchase, a keyed request
that loses the race to its own retry, and the answer when the purchase cannot be read back."""

import contextlib
import logging
from datetime import timedelta
from decimal import Decimal
from unittest import mock

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tests.factories import RetailerFactory
from plans.tests.factories import RechargePlanFactory
from purchases import services
from purchases.api.serializers import PurchaseSerializer
from purchases.gateways import SandboxGateway
from purchases.models import Purchase
from purchases.tests.gateways import recharges
from purchases.tests.helpers import assert_purchases_match_ledger, balances, fund, give_margin
from wallet.models import Transfer

pytestmark = pytest.mark.django_db
NUMBER = "9876543210"
E164 = "+919876543210"


def buy(user, plan, number=NUMBER, **kwargs):
    return services.purchase_recharge(buyer=user, plan_id=plan.pk, mobile_number=number, **kwargs)


def stamp(purchase, *, minutes_ago):
    """Move a purchase's creation time, as a request minutes earlier (or a server clock ahead) would have."""
    Purchase.objects.filter(pk=purchase.pk).update(created_at=timezone.now() - timedelta(minutes=minutes_ago))


@pytest.fixture
def seller(retailer, distributor):
    """A retailer with Rs 1000, earning 3.33% on a sale; its distributor earns 1.17%."""
    fund(retailer, "1000.00")
    give_margin(retailer, "3.33")
    give_margin(distributor, "1.17")
    return retailer


# --- the journal rows of a sale --------------------------------------------------------------


def test_a_keyed_sale_records_its_key_and_names_the_purchase_on_every_journal_row(seller, distributor, plan):
    outcome = buy(seller, plan, idempotency_key="k-journal")

    purchase = outcome.purchase
    assert (purchase.status, outcome.replayed) == (Purchase.Status.SUCCESS, False)
    assert Purchase.objects.get().idempotency_key == "k-journal"
    rows = Transfer.objects.filter(reference=purchase.reference)
    hold = rows.get(kind=Transfer.Kind.PURCHASE)
    assert hold.remarks == f"Recharge {E164} Airtel Rs 199.00 (purchase #{purchase.pk})"
    assert hold.idempotency_key == "k-journal"
    margins = dict(rows.filter(kind=Transfer.Kind.COMMISSION).values_list("to_wallet__user", "remarks"))
    assert margins == {
        seller.pk: f"Margin on recharge #{purchase.pk} ({E164})",
        distributor.pk: f"Distributor margin on recharge #{purchase.pk} by {seller.username}",
    }


def test_an_unkeyed_sale_answers_with_a_fresh_not_replayed_outcome(seller, plan):
    outcome = buy(seller, plan)

    assert outcome.replayed is False
    assert outcome.purchase.status == Purchase.Status.SUCCESS
    assert (outcome.balance, outcome.available) == (Decimal("807.62"), Decimal("807.62"))


def test_commissions_under_one_rupee_are_paid(retailer, distributor, plan):
    fund(retailer, "1000.00")
    give_margin(retailer, "0.50")  # 199 x 0.5% = 0.995 -> 0.99
    give_margin(distributor, "0.50")

    purchase = buy(retailer, plan).purchase

    assert (purchase.buyer_commission, purchase.distributor_commission) == (Decimal("0.99"), Decimal("0.99"))
    paid = dict(
        Transfer.objects.filter(reference=purchase.reference, kind=Transfer.Kind.COMMISSION).values_list(
            "to_wallet__user", "amount"
        )
    )
    assert paid == {retailer.pk: Decimal("0.99"), distributor.pk: Decimal("0.99")}
    assert balances(retailer, distributor) == [(Decimal("801.99"), Decimal("0.00")), (Decimal("0.99"), Decimal("0.00"))]
    assert_purchases_match_ledger()


def test_a_commission_of_exactly_one_rupee_is_paid(retailer, distributor):
    ten = RechargePlanFactory(amount=Decimal("100.00"))
    fund(retailer, "500.00")
    give_margin(retailer, "1.00")  # 100 x 1% = 1.00
    give_margin(distributor, "1.00")

    buy(retailer, ten)

    assert balances(retailer, distributor) == [(Decimal("401.00"), Decimal("0.00")), (Decimal("1.00"), Decimal("0.00"))]
    assert_purchases_match_ledger()


# --- refusals: plan and key --------------------------------------------------------------------


def test_an_unknown_plan_is_refused_naming_the_plan_id(seller):
    with pytest.raises(services.PlanNotFound) as refused:
        services.purchase_recharge(buyer=seller, plan_id=987654, mobile_number=NUMBER)

    assert (refused.value.code, refused.value.field) == ("plan_not_found", "plan_id")
    assert str(refused.value) == "No recharge plan with id 987654."
    assert not Purchase.objects.exists()


def test_a_retired_plan_is_refused_on_the_plan_id_field(seller):
    retired = RechargePlanFactory(is_active=False)

    with pytest.raises(services.PlanInactive) as refused:
        buy(seller, retired)

    assert (refused.value.code, refused.value.field) == ("plan_inactive", "plan_id")


def test_a_key_reused_for_another_purchase_is_refused_on_the_key_field(seller, plan):
    buy(seller, plan, idempotency_key="k-reused")

    with pytest.raises(services.PurchaseKeyReused) as refused:
        buy(seller, plan, "9876500000", idempotency_key="k-reused")

    assert refused.value.field == "idempotency_key"
    assert Purchase.objects.count() == 1


# --- a keyed request that loses the race to its own retry ----------------------------------------


def test_a_keyed_request_beaten_by_its_retry_answers_with_the_winners_purchase(seller, plan, monkeypatch):
    """Both requests found no purchase under the key; the retry committed first, so this one's insert
    breaks the unique (buyer, key) constraint: it answers with the retry's purchase, replayed, and
    nothing is bought or held twice."""
    real_sellable_plan = services._sellable_plan
    winner = []

    def retry_commits_first(plan_id):
        monkeypatch.setattr(services, "_sellable_plan", real_sellable_plan)
        winner.append(buy(seller, plan, "+91 98765-43210", idempotency_key="k-race").purchase)
        return real_sellable_plan(plan_id)

    monkeypatch.setattr(services, "_sellable_plan", retry_commits_first)

    outcome = buy(seller, plan, idempotency_key="k-race")

    assert outcome.replayed is True
    assert outcome.purchase.pk == winner[0].pk
    assert outcome.purchase.status == Purchase.Status.SUCCESS
    assert outcome.balance == Decimal("807.62")
    assert Purchase.objects.count() == 1 and len(recharges()) == 1
    assert balances(seller) == [(Decimal("807.62"), Decimal("0.00"))]
    assert_purchases_match_ledger()


def test_a_keyed_replay_reads_the_purchase_with_its_operator_in_one_query(seller, plan):
    first = buy(seller, plan, idempotency_key="k-replay")

    with CaptureQueriesContext(connection) as queries:
        again = buy(seller, plan, idempotency_key="k-replay")

    assert again.replayed and again.purchase.pk == first.purchase.pk
    # The purchase with its plan and operator (whose country reads the number), the buyer, its wallet.
    assert len(queries) == 3, [query["sql"] for query in queries]


# --- unkeyed duplicates ---------------------------------------------------------------------------


def test_an_unkeyed_repeat_is_refused_saying_which_purchase_it_repeats(seller, plan):
    first = buy(seller, plan).purchase

    with pytest.raises(services.DuplicatePurchase) as refused:
        buy(seller, plan, "+91 98765 43210")

    error = refused.value
    assert error.context == {
        "purchase_id": first.pk,
        "status": "SUCCESS",
        "mobile_number": E164,
        "amount": "199.00",
        "minutes": 0,
    }
    assert str(error) == (
        f"Purchase #{first.pk} recharged {E164} with Rs 199.00 0 min ago and has not failed (status SUCCESS): "
        "this looks like a retry, so nothing was bought. Check that purchase; to buy again on purpose, send an "
        "Idempotency-Key."
    )
    assert Purchase.objects.count() == 1 and balances(seller) == [(Decimal("807.62"), Decimal("0.00"))]


def test_a_duplicate_says_how_many_whole_minutes_ago_the_earlier_purchase_was(seller, plan):
    first = buy(seller, plan).purchase
    stamp(first, minutes_ago=4)

    with pytest.raises(services.DuplicatePurchase) as refused:
        buy(seller, plan)

    assert (refused.value.context["purchase_id"], refused.value.context["minutes"]) == (first.pk, 4)
    assert " 4 min ago " in str(refused.value)


def test_a_duplicate_names_the_most_recently_created_earlier_purchase(seller, plan):
    older_id = buy(seller, plan, idempotency_key="a").purchase
    newer_id = buy(seller, plan, idempotency_key="b").purchase
    # The higher id was stamped earlier (another app server's clock): creation time decides.
    stamp(newer_id, minutes_ago=3)
    stamp(older_id, minutes_ago=1)

    with pytest.raises(services.DuplicatePurchase) as refused:
        buy(seller, plan)

    assert (refused.value.context["purchase_id"], refused.value.context["minutes"]) == (older_id.pk, 1)


def test_earlier_purchases_created_at_the_same_instant_name_the_latest_id(seller, plan):
    first = buy(seller, plan, idempotency_key="a").purchase
    second = buy(seller, plan, idempotency_key="b").purchase
    at = timezone.now() - timedelta(minutes=2)
    Purchase.objects.filter(pk__in=[first.pk, second.pk]).update(created_at=at)

    with pytest.raises(services.DuplicatePurchase) as refused:
        buy(seller, plan)

    assert refused.value.context["purchase_id"] == max(first.pk, second.pk)


def test_the_same_number_and_amount_from_another_buyer_is_no_duplicate(seller, plan):
    other = RetailerFactory()
    fund(other, "500.00")
    buy(other, plan)

    purchase = buy(seller, plan).purchase

    assert purchase.status == Purchase.Status.SUCCESS and Purchase.objects.count() == 2


def test_another_amount_to_the_same_number_is_no_duplicate(seller, plan):
    buy(seller, plan)
    bigger = RechargePlanFactory(provider=plan.provider, amount=Decimal("299.00"))

    purchase = buy(seller, bigger).purchase

    assert purchase.status == Purchase.Status.SUCCESS and Purchase.objects.count() == 2


def test_a_window_of_zero_minutes_turns_the_duplicate_check_off(seller, plan, settings):
    settings.PURCHASE_DUPLICATE_WINDOW_MINUTES = 0
    first = buy(seller, plan).purchase
    stamp(first, minutes_ago=-1)  # stamped by an app server whose clock runs a minute ahead

    second = buy(seller, plan).purchase

    assert second.status == Purchase.Status.SUCCESS and Purchase.objects.count() == 2


# --- the answer: the purchase read back after its fulfilment ---------------------------------------


def test_the_answer_carries_the_purchase_with_what_its_serializer_reads_already_loaded(seller, plan, monkeypatch):
    real_fresh_outcome = services._fresh_outcome
    read_back = []

    def counted(outcome):
        with CaptureQueriesContext(connection) as queries:
            fresh = real_fresh_outcome(outcome)
        read_back.append(len(queries))
        return fresh

    monkeypatch.setattr(services, "_fresh_outcome", counted)

    outcome = buy(seller, plan, gateway=SandboxGateway())

    assert read_back == [2]  # the purchase with its plan, operator, buyer and distributor; the wallet
    with CaptureQueriesContext(connection) as queries:
        body = PurchaseSerializer(outcome.purchase).data
    assert len(queries) == 0, [query["sql"] for query in queries]
    assert (body["provider_name"], body["buyer"], body["status"]) == ("Airtel", seller.username, "SUCCESS")
    assert body["distributor"] == seller.parent.username


def test_a_purchase_that_cannot_be_read_back_is_answered_as_accepted_and_logged(seller, plan, monkeypatch, caplog):
    real_fulfil = services.fulfil_purchase
    database_down = contextlib.ExitStack()

    def fulfil_then_the_database_fails(**kwargs):
        fulfilled = real_fulfil(**kwargs)
        lost = OperationalError("server closed the connection unexpectedly (test)")
        database_down.enter_context(mock.patch.object(Purchase.objects, "select_related", side_effect=lost))
        return fulfilled

    monkeypatch.setattr(services, "fulfil_purchase", fulfil_then_the_database_fails)

    with database_down, caplog.at_level(logging.WARNING, logger="purchases.services"):
        outcome = buy(seller, plan, gateway=SandboxGateway())

    # The acceptance, as it was before the fulfilment: pending, its price held.
    assert (outcome.purchase.status, outcome.replayed) == (Purchase.Status.PENDING, False)
    assert (outcome.balance, outcome.available) == (Decimal("1000.00"), Decimal("801.00"))
    assert Purchase.objects.get().status == Purchase.Status.SUCCESS
    [record] = [r for r in caplog.records if r.name == "purchases.services"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"purchase {outcome.purchase.pk}: accepted; its state could not be read back"
    assert record.exc_info is not None and isinstance(record.exc_info[1], OperationalError)
