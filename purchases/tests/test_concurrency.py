"""Purchases under real concurrency (PostgreSQL row locks): threads released together."""

from decimal import Decimal

import pytest

from accounts.tests.factories import DistributorFactory, RetailerFactory
from plans.tests.factories import RechargePlanFactory
from purchases import services
from purchases.gateways import SandboxGateway
from purchases.models import Purchase
from purchases.tests.helpers import (
    FakeAggregatorEndpoint,
    assert_ledger_clean,
    assert_purchases_match_ledger,
    balances,
    fund,
    give_margin,
    queue_fulfilments,
)
from tests.concurrency import run_together
from wallet.services import InsufficientFunds

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def shop(settings):
    settings.RECHARGE_GATEWAY_LATENCY_MS = 20  # holds overlap while the operator "answers"
    settings.PURCHASE_DUPLICATE_WINDOW_MINUTES = 0  # these buyers repeat numbers on purpose, unkeyed
    distributor = DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    give_margin(distributor, "1.50")
    give_margin(retailer, "3.00")
    plan = RechargePlanFactory(amount=Decimal("199.00"))
    return distributor, retailer, plan


def test_concurrent_purchases_beyond_the_balance_succeed_exactly_as_far_as_it_goes(shop):
    distributor, retailer, plan = shop
    fund(retailer, "1095.00")  # covers 5 purchases of 199 (margins come back too late for a 6th)
    attempts = 16

    results, errors = run_together(
        [
            lambda i=i: services.purchase_recharge(buyer=retailer, plan_id=plan.pk, mobile_number=f"98765{i:05d}")
            for i in range(attempts)
        ]
    )

    succeeded = [r for r in results if r is not None]
    refused = [e for e in errors if e is not None]
    assert all(isinstance(error, InsufficientFunds) for error in refused), refused
    assert len(succeeded) == 5 and len(refused) == attempts - 5
    assert Purchase.objects.count() == 5
    assert set(Purchase.objects.values_list("status", flat=True)) == {"SUCCESS"}
    # 1095 - 5 x 199 + 5 x 5.97 (3% of 199); the distributor earns 5 x 2.98 (1.5%, rounded down)
    assert balances(retailer, distributor) == [
        (Decimal("129.85"), Decimal("0.00")),
        (Decimal("14.90"), Decimal("0.00")),
    ]
    assert_purchases_match_ledger()
    assert_ledger_clean()


def test_settling_while_purchases_arrive_settles_each_pending_purchase_exactly_once(shop):
    distributor, retailer, plan = shop
    fund(retailer, "20000.00")
    numbers = [SandboxGateway.PENDING_THEN_SUCCESS, SandboxGateway.PENDING_THEN_FAILS, "9876512345"]
    for i in range(12):  # pending purchases waiting for a status check
        services.purchase_recharge(buyer=retailer, plan_id=plan.pk, mobile_number=numbers[i % 2])
    reports = []

    def settler():
        for _ in range(4):
            reports.append(services.settle_pending_purchases(older_than=_zero()))

    def buyer(offset):
        def work():
            for i in range(6):
                services.purchase_recharge(buyer=retailer, plan_id=plan.pk, mobile_number=numbers[(offset + i) % 3])

        return work

    _, errors = run_together([settler, settler, settler, buyer(0), buyer(1), buyer(2)])

    assert errors == [None] * 6, errors
    reports.append(services.settle_pending_purchases(older_than=_zero()))  # whatever arrived last
    settled = [purchase_id for report in reports for purchase_id in report.settled_ids]
    assert len(settled) == len(set(settled)), "a purchase was settled twice"
    assert not Purchase.objects.filter(status=Purchase.Status.PENDING).exists()
    assert Purchase.objects.count() == 12 + 18
    assert_purchases_match_ledger()
    assert balances(retailer)[0][1] == Decimal("0.00")  # no hold left behind
    assert_ledger_clean()


def test_two_identical_unkeyed_purchases_at_once_buy_once(shop, settings):
    settings.PURCHASE_DUPLICATE_WINDOW_MINUTES = 5
    distributor, retailer, plan = shop
    fund(retailer, "5000.00")

    results, errors = run_together(
        [lambda: services.purchase_recharge(buyer=retailer, plan_id=plan.pk, mobile_number="9876543210")] * 6
    )

    assert len([r for r in results if r is not None]) == 1
    assert all(isinstance(error, services.DuplicatePurchase) for error in errors if error is not None), errors
    assert Purchase.objects.count() == 1
    assert_purchases_match_ledger()
    assert_ledger_clean()


def _zero():
    from datetime import timedelta

    return timedelta(0)


def test_twenty_copies_of_a_keyed_purchase_at_once_with_a_broker_hold_once_queue_once_and_answer_the_same(
    shop, auth_client, monkeypatch
):
    """With a broker the key's answer commits with the purchase (core.idempotency): the copies wait on
    the purchase's unique (buyer, key) or on the key, are rolled back, and replay the first's answer."""
    distributor, retailer, plan = shop
    fund(retailer, "5000.00")
    queued = queue_fulfilments(monkeypatch)
    body = {"plan_id": plan.pk, "mobile_number": "9876543210"}

    def buy():
        return auth_client(retailer).post("/api/purchases/purchase/", body, HTTP_IDEMPOTENCY_KEY="buy-once")

    results, errors = run_together([buy] * 20)

    assert errors == [None] * 20
    assert {(r.status_code, r.json()["purchase"]["id"]) for r in results} == {(202, Purchase.objects.get().pk)}
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in results) == 19
    assert queued == [Purchase.objects.get().pk]
    assert balances(retailer) == [(Decimal("5000.00"), Decimal("199.00"))]
    assert_ledger_clean()


def test_sandbox_senders_running_at_once_send_each_callback_once(settings, monkeypatch):
    # Beat starts a sender every second and another machine may run one too: each claims what is due
    # under row locks (SKIP LOCKED) with a lease, so no callback is claimed, and sent, by two.
    import urllib.request
    from collections import Counter
    from datetime import timedelta

    from django.utils import timezone

    from purchases import gateways
    from purchases.models import SandboxRecharge

    settings.RECHARGE_SANDBOX_CALLBACK_URL = "http://127.0.0.1:9/callbacks/"
    past = timezone.now() - timedelta(seconds=1)
    SandboxRecharge.objects.bulk_create(
        SandboxRecharge(
            reference=f"P{n}",
            mobile_number="+919876543210",
            amount=Decimal("10.00"),
            status="SUCCESS",
            callback_due_at=past,
        )
        for n in range(200)
    )
    endpoint = FakeAggregatorEndpoint()
    monkeypatch.setattr(urllib.request, "urlopen", endpoint)

    def sender():
        delivered = 0
        while sent_now := gateways.deliver_due_sandbox_callbacks():
            delivered += sent_now
        return delivered

    results, errors = run_together([sender for _ in range(4)])

    assert errors == [None] * 4
    sent = Counter(body["reference"] for body, _, _ in endpoint.sent)
    assert sum(results) == 200 and len(sent) == 200 and set(sent.values()) == {1}
    assert not SandboxRecharge.objects.filter(callback_delivered_at=None).exists()
