from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.tests.factories import ClientFactory, RetailerFactory
from plans.tests.factories import RechargePlanFactory
from purchases import services
from purchases.gateways import SandboxGateway
from purchases.models import Purchase
from purchases.tests.gateways import ExplodingGateway, recharges
from purchases.tests.helpers import balances, fund, give_margin
from wallet.models import Transfer
from wallet.services import InsufficientFunds

pytestmark = pytest.mark.django_db
NOW = timedelta(0)
OK_NUMBER = "9876543210"


def buy(user, plan, number=OK_NUMBER, **kwargs):
    return services.purchase_recharge(buyer=user, plan_id=plan.pk, mobile_number=number, **kwargs)


def settle(**kwargs):
    return services.settle_pending_purchases(older_than=NOW, **kwargs)


@pytest.fixture
def funded_retailer(retailer, distributor):
    fund(distributor, "5000.00")
    fund(retailer, "1000.00")
    give_margin(distributor, "1.17")
    give_margin(retailer, "3.33")
    return retailer


def test_retailer_purchase_debits_the_price_and_pays_both_margins_rounded_down(funded_retailer, distributor, plan):
    outcome = buy(funded_retailer, plan)

    purchase = outcome.purchase
    assert purchase.status == Purchase.Status.SUCCESS
    # 199 x 3.33% = 6.6267 -> 6.62; 199 x 1.17% = 2.3283 -> 2.32 (down to the paisa, never up)
    assert (purchase.buyer_commission, purchase.distributor_commission) == (Decimal("6.62"), Decimal("2.32"))
    assert balances(funded_retailer, distributor) == [
        (Decimal("1000.00") - Decimal("199.00") + Decimal("6.62"), Decimal("0.00")),
        (Decimal("5002.32"), Decimal("0.00")),
    ]
    assert outcome.balance == Decimal("807.62")
    assert purchase.operator_reference.startswith("SBX")


def test_purchase_journal_rows_are_linked_to_the_purchase(funded_retailer, distributor, plan):
    purchase = buy(funded_retailer, plan).purchase

    rows = sorted(
        Transfer.objects.filter(reference=purchase.reference).values_list(
            "kind", "status", "amount", "to_wallet__user"
        ),
        key=str,
    )
    assert rows == sorted(
        [
            ("PURCHASE", "POSTED", Decimal("199.00"), None),
            ("COMMISSION", "POSTED", Decimal("6.62"), funded_retailer.pk),
            ("COMMISSION", "POSTED", Decimal("2.32"), distributor.pk),
        ],
        key=str,
    )


def test_client_without_margin_pays_full_price_and_earns_nothing(client_user, plan):
    fund(client_user, "500.00")

    purchase = buy(client_user, plan).purchase

    assert purchase.buyer_commission == 0 and purchase.distributor_id is None
    assert balances(client_user) == [(Decimal("301.00"), Decimal("0.00"))]
    assert not Transfer.objects.filter(kind=Transfer.Kind.COMMISSION).exists()


def test_a_margin_rounding_to_zero_paise_pays_nothing_and_still_succeeds(client_user):
    cheap = RechargePlanFactory(amount=Decimal("10.00"))
    fund(client_user, "50.00")
    give_margin(client_user, "0.01")  # 10 x 0.01% = 0.001 -> 0.00

    purchase = buy(client_user, cheap).purchase

    assert purchase.status == Purchase.Status.SUCCESS and purchase.buyer_commission == 0
    assert balances(client_user) == [(Decimal("40.00"), Decimal("0.00"))]


def test_failed_recharge_leaves_every_balance_as_it_was(funded_retailer, distributor, plan):
    before = balances(funded_retailer, distributor)

    purchase = buy(funded_retailer, plan, SandboxGateway.FAILS).purchase

    assert purchase.status == Purchase.Status.FAILED and purchase.failure_reason
    assert balances(funded_retailer, distributor) == before
    assert list(Transfer.objects.filter(reference=purchase.reference).values_list("status", flat=True)) == ["VOIDED"]


def test_a_failed_recharge_shows_that_nobody_earned_a_commission(funded_retailer, distributor, plan):
    purchase = buy(funded_retailer, plan, SandboxGateway.FAILS).purchase

    assert (purchase.buyer_commission, purchase.distributor_commission) == (0, 0)
    purchase.refresh_from_db()
    assert (purchase.buyer_commission, purchase.distributor_commission) == (0, 0)


def test_gateway_unavailable_voids_the_hold(funded_retailer, plan):
    before = balances(funded_retailer)

    purchase = buy(funded_retailer, plan, SandboxGateway.UNAVAILABLE).purchase

    assert purchase.status == Purchase.Status.FAILED
    assert "unavailable" in purchase.failure_reason
    assert balances(funded_retailer) == before


def test_pending_recharge_holds_the_price_without_moving_it(funded_retailer, plan):
    outcome = buy(funded_retailer, plan, SandboxGateway.PENDING_THEN_SUCCESS)

    assert outcome.purchase.status == Purchase.Status.PENDING
    assert balances(funded_retailer) == [(Decimal("1000.00"), Decimal("199.00"))]
    assert outcome.available == Decimal("801.00")


def test_settling_a_pending_success_posts_it_and_pays_the_margins(funded_retailer, distributor, plan):
    purchase = buy(funded_retailer, plan, SandboxGateway.PENDING_THEN_SUCCESS).purchase

    report = settle()

    purchase.refresh_from_db()
    assert (report.succeeded, purchase.status) == (1, Purchase.Status.SUCCESS)
    assert balances(funded_retailer, distributor) == [
        (Decimal("807.62"), Decimal("0.00")),
        (Decimal("5002.32"), Decimal("0.00")),
    ]


def test_settling_a_pending_failure_voids_it_and_restores_the_balance(funded_retailer, distributor, plan):
    before = balances(funded_retailer, distributor)
    purchase = buy(funded_retailer, plan, SandboxGateway.PENDING_THEN_FAILS).purchase

    report = settle()

    purchase.refresh_from_db()
    assert (report.failed, purchase.status) == (1, Purchase.Status.FAILED)
    assert balances(funded_retailer, distributor) == before


def test_gateway_timeout_keeps_the_money_held_for_a_status_check(funded_retailer, plan):
    purchase = buy(funded_retailer, plan, SandboxGateway.TIMEOUT_THEN_SUCCESS).purchase

    assert purchase.status == Purchase.Status.PENDING
    assert balances(funded_retailer) == [(Decimal("1000.00"), Decimal("199.00"))]
    settle()
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.SUCCESS


def test_gateway_timeout_then_failure_returns_the_money(funded_retailer, plan):
    purchase = buy(funded_retailer, plan, SandboxGateway.TIMEOUT_THEN_FAILS).purchase

    settle()

    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.FAILED
    assert balances(funded_retailer) == [(Decimal("1000.00"), Decimal("0.00"))]


def test_an_unexpected_gateway_error_keeps_the_purchase_pending(funded_retailer, plan):
    outcome = buy(funded_retailer, plan, gateway=ExplodingGateway())

    assert outcome.purchase.status == Purchase.Status.PENDING
    assert balances(funded_retailer) == [(Decimal("1000.00"), Decimal("199.00"))]
    report = settle(gateway=ExplodingGateway())
    assert report.errors == 1
    assert Purchase.objects.get().status == Purchase.Status.PENDING


def test_settle_leaves_a_purchase_the_operator_still_reports_pending(funded_retailer, plan):
    buy(funded_retailer, plan, SandboxGateway.PENDING_FOREVER)

    report = settle()

    assert report.still_pending == 1
    assert Purchase.objects.get().status == Purchase.Status.PENDING


def test_settle_twice_settles_once(funded_retailer, plan):
    buy(funded_retailer, plan, SandboxGateway.PENDING_THEN_SUCCESS)

    first, second = settle(), settle()

    assert (first.succeeded, second.checked) == (1, 0)
    assert Transfer.objects.filter(kind=Transfer.Kind.COMMISSION).count() == 2


def test_settle_leaves_recent_purchases_to_their_own_request(funded_retailer, plan):
    buy(funded_retailer, plan, SandboxGateway.PENDING_THEN_SUCCESS)

    report = services.settle_pending_purchases(older_than=timedelta(minutes=5))

    assert report.checked == 0
    assert Purchase.objects.get().status == Purchase.Status.PENDING


def test_a_late_gateway_answer_for_a_settled_purchase_changes_nothing(funded_retailer, plan):
    purchase = buy(funded_retailer, plan, SandboxGateway.PENDING_THEN_FAILS).purchase
    settle()

    from purchases.gateways import GatewayResult

    again = services.apply_gateway_result(purchase_id=purchase.pk, result=GatewayResult(GatewayResult.SUCCESS, "X1"))

    assert again.status == Purchase.Status.FAILED
    assert balances(funded_retailer) == [(Decimal("1000.00"), Decimal("0.00"))]


def test_insufficient_funds_writes_nothing(retailer, plan):
    fund(retailer, "100.00")

    with pytest.raises(InsufficientFunds):
        buy(retailer, plan)

    assert not Purchase.objects.exists()
    assert not Transfer.objects.filter(kind=Transfer.Kind.PURCHASE).exists()
    assert balances(retailer) == [(Decimal("100.00"), Decimal("0.00"))]


def test_inactive_plan_is_refused_and_writes_nothing(funded_retailer):
    retired = RechargePlanFactory(is_active=False)

    with pytest.raises(services.PlanInactive):
        buy(funded_retailer, retired)

    assert not Purchase.objects.exists()


def test_a_plan_of_a_deactivated_operator_is_refused(funded_retailer, plan):
    plan.provider.is_active = False
    plan.provider.save()

    with pytest.raises(services.PlanInactive):
        buy(funded_retailer, plan)


def test_the_same_key_recharges_once(funded_retailer, plan):
    first = buy(funded_retailer, plan, idempotency_key="k-1")
    second = buy(funded_retailer, plan, idempotency_key="k-1")

    assert second.purchase.pk == first.purchase.pk and second.replayed
    assert len(recharges()) == 1
    assert balances(funded_retailer) == [(Decimal("807.62"), Decimal("0.00"))]


def test_a_key_reused_for_another_number_is_refused(funded_retailer, plan):
    buy(funded_retailer, plan, idempotency_key="k-1")

    with pytest.raises(services.PurchaseKeyReused):
        buy(funded_retailer, plan, "9876500000", idempotency_key="k-1")
    assert Purchase.objects.count() == 1


def test_the_same_key_from_two_buyers_makes_two_purchases(funded_retailer, plan):
    other = ClientFactory()
    fund(other, "500.00")

    buy(funded_retailer, plan, idempotency_key="shared")
    buy(other, plan, idempotency_key="shared")

    assert Purchase.objects.count() == 2


def test_a_retailer_without_distributor_earns_only_its_own_margin(plan):
    orphan = RetailerFactory(parent=None)
    fund(orphan, "500.00")
    give_margin(orphan, "2.00")

    purchase = buy(orphan, plan).purchase

    assert (purchase.buyer_commission, purchase.distributor_commission) == (Decimal("3.98"), Decimal("0"))


def test_a_gateway_slower_than_its_timeout_keeps_the_money_held_for_a_status_check(funded_retailer, plan, settings):
    settings.RECHARGE_GATEWAY_TIMEOUT_SECONDS = 0
    settings.RECHARGE_GATEWAY_LATENCY_MS = 50
    [(balance, held)] = balances(funded_retailer)
    outcome = buy(funded_retailer, plan)
    assert outcome.purchase.status == Purchase.Status.PENDING
    assert balances(funded_retailer) == [(balance, held + plan.amount)]  # held, neither spent nor returned


def test_a_keyed_retry_finds_its_purchase_however_the_number_is_written(funded_retailer, plan):
    first = buy(funded_retailer, plan, "9876543210", idempotency_key="spelled")

    again = buy(funded_retailer, plan, "+91 98765-43210", idempotency_key="spelled")

    assert again.replayed and again.purchase.pk == first.purchase.pk
    assert Purchase.objects.count() == 1


def test_a_keyed_retry_of_a_purchase_made_before_the_strict_rules_still_finds_it(funded_retailer, plan):
    """A purchase stored for a number today's rules refuse (the loose rules took `+1234567890`) is
    still found by its key: the retry learns what happened instead of a 400."""
    old = Purchase.objects.create(
        buyer=funded_retailer, plan=plan, mobile_number="+1234567890", amount=plan.amount, idempotency_key="old"
    )

    again = buy(funded_retailer, plan, "+1234567890", idempotency_key="old")

    assert again.replayed and again.purchase.pk == old.pk
