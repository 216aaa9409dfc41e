"""The sweep that settles purchases left pending locks the purchase rows it claims and nothing else,
and skips a purchase someone else holds instead of waiting for it (PostgreSQL row locks)."""

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from accounts.tests.factories import RetailerFactory
from plans.models import RechargePlan
from purchases import services
from purchases.models import Purchase
from purchases.tests.helpers import assert_ledger_clean, assert_purchases_match_ledger, fund, queue_fulfilments

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

HOLD_SECONDS = 5


class RowHolder(threading.Thread):
    """Holds a row lock on its own connection until told to let go (or HOLD_SECONDS pass);
    `let_go_in_time` says whether it was told before then."""

    def __init__(self, queryset):
        super().__init__(daemon=True)
        self.queryset = queryset
        self.locked, self.done = threading.Event(), threading.Event()
        self.let_go_in_time = None

    def run(self):
        try:
            with transaction.atomic():
                list(self.queryset.select_for_update())
                self.locked.set()
                self.let_go_in_time = self.done.wait(HOLD_SECONDS)
        finally:
            connection.close()

    def __enter__(self):
        self.start()
        assert self.locked.wait(HOLD_SECONDS)
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.join()


@pytest.fixture
def left_pending(settings, monkeypatch, plan):
    """Two purchases accepted while the broker lost their tasks: PENDING, never sent."""
    settings.PURCHASE_DUPLICATE_WINDOW_MINUTES = 0
    queue_fulfilments(monkeypatch)
    buyer = RetailerFactory()
    fund(buyer, "1000.00")
    made = [
        services.purchase_recharge(buyer=buyer, plan_id=plan.pk, mobile_number=f"987650000{i}").purchase
        for i in range(2)
    ]
    monkeypatch.undo()  # the sweep fulfils in this process
    return made


def test_the_sweep_skips_a_purchase_another_worker_holds_and_settles_the_rest(left_pending):
    busy, free = left_pending
    with RowHolder(Purchase.objects.filter(pk=busy.pk)) as holder:
        report = services.settle_pending_purchases(older_than=timedelta(0))
    assert holder.let_go_in_time, "the sweep waited for the busy purchase instead of skipping it"
    assert (report.skipped, report.checked, report.succeeded) == (1, 1, 1)
    assert report.settled_ids == [free.pk]
    statuses = dict(Purchase.objects.values_list("pk", "status"))
    assert statuses == {busy.pk: Purchase.Status.PENDING, free.pk: Purchase.Status.SUCCESS}
    assert_purchases_match_ledger()
    assert_ledger_clean()


def test_the_sweep_locks_only_purchases_not_the_plan_they_sell(left_pending, plan):
    """An admin editing the plan (its row locked) neither hides its purchases from the sweep nor
    holds their settlement up."""
    with RowHolder(RechargePlan.objects.filter(pk=plan.pk)) as holder:
        report = services.settle_pending_purchases(older_than=timedelta(0))
    assert holder.let_go_in_time, "settling waited for the plan's row lock"
    assert (report.skipped, report.checked, report.succeeded) == (0, 2, 2)
    assert set(Purchase.objects.values_list("status", flat=True)) == {Purchase.Status.SUCCESS}
    assert_purchases_match_ledger()


def test_purchases_left_at_the_same_instant_are_taken_in_the_order_they_were_made(settings, monkeypatch, plan):
    """Oldest first, and by id among purchases of the same instant (a bulk import, a clock's
    resolution). The first one made is rewritten last, so PostgreSQL keeps its row after the second
    one's and only the id tie-break puts it first."""
    settings.PURCHASE_DUPLICATE_WINDOW_MINUTES = 0
    queued = queue_fulfilments(monkeypatch)
    buyer = RetailerFactory()
    fund(buyer, "1000.00")
    first, second = (
        services.purchase_recharge(buyer=buyer, plan_id=plan.pk, mobile_number=f"987650001{i}").purchase
        for i in range(2)
    )
    same_instant = timezone.now() - timedelta(hours=1)
    for purchase in (second, first):
        Purchase.objects.filter(pk=purchase.pk).update(created_at=same_instant)
    queued.clear()
    assert services.enqueue_pending_purchases(unsent_after=timedelta(0)) == 2
    assert queued == [first.pk, second.pk]
