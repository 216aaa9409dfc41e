"""Purchases off the request path: acceptance answers at once, a worker's task fulfils, sweeps recover.

The suite has no broker; `queue_fulfilments` stands in for one (the task is enqueued, not run), and
each test runs the task's service itself when it wants the worker's part."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone

from core.models import IdempotencyRecord
from purchases import services
from purchases.gateways import SandboxGateway
from purchases.models import Purchase
from purchases.tests.gateways import calls, recharges
from purchases.tests.helpers import (
    age_purchase,
    assert_ledger_clean,
    assert_purchases_match_ledger,
    balances,
    fund,
    queue_fulfilments,
)

PURCHASE = "/api/purchases/purchase/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def funded_retailer(retailer):
    fund(retailer, "1000.00")
    return retailer


def _buy(auth_client, user, plan, number="9876543210", **headers):
    return auth_client(user).post(PURCHASE, {"plan_id": plan.pk, "mobile_number": number}, **headers)


# --- acceptance ------------------------------------------------------------------------------


def test_acceptance_answers_202_pending_with_the_price_held_and_the_operator_not_yet_called(
    auth_client, funded_retailer, plan, monkeypatch
):
    queued = queue_fulfilments(monkeypatch)

    response = _buy(auth_client, funded_retailer, plan)

    assert response.status_code == 202, response.data
    purchase = response.data["purchase"]
    assert purchase["status"] == "PENDING"
    assert response.headers["Location"] == f"/api/purchases/{purchase['id']}/"
    assert (response.data["balance"], response.data["available"]) == ("1000.00", "801.00")
    assert queued == [purchase["id"]]
    assert calls == []  # the operator is called by the worker, not in the request
    assert Purchase.objects.get(pk=purchase["id"]).sent_at is None


def test_the_location_answers_the_final_status_once_the_worker_ran(auth_client, funded_retailer, plan, monkeypatch):
    queued = queue_fulfilments(monkeypatch)
    location = _buy(auth_client, funded_retailer, plan).headers["Location"]

    services.fulfil_purchase(purchase_id=queued[0])

    polled = auth_client(funded_retailer).get(location)
    assert (polled.status_code, polled.data["status"]) == (200, "SUCCESS")
    assert balances(funded_retailer) == [(Decimal("801.00"), Decimal("0.00"))]
    assert_purchases_match_ledger()


def test_a_broker_down_at_acceptance_loses_nothing_the_sweep_sends_it_later(
    auth_client, funded_retailer, plan, monkeypatch
):
    queue_fulfilments(monkeypatch, broker_down=True)
    response = _buy(auth_client, funded_retailer, plan)
    assert (response.status_code, response.data["purchase"]["status"]) == (202, "PENDING")
    purchase_id = response.data["purchase"]["id"]

    queued = queue_fulfilments(monkeypatch)  # the broker is back
    assert services.enqueue_pending_purchases() == 0  # too recent: its own task may still come
    age_purchase(purchase_id, created=timedelta(minutes=5))
    assert services.enqueue_pending_purchases() == 1
    assert queued == [purchase_id]

    services.fulfil_purchase(purchase_id=purchase_id)
    assert Purchase.objects.get(pk=purchase_id).status == "SUCCESS"
    assert_ledger_clean()


# --- fulfilment -----------------------------------------------------------------------------


def test_fulfilment_run_twice_recharges_once_and_settles_once(auth_client, funded_retailer, plan, monkeypatch):
    queued = queue_fulfilments(monkeypatch)
    _buy(auth_client, funded_retailer, plan)

    services.fulfil_purchase(purchase_id=queued[0])
    services.fulfil_purchase(purchase_id=queued[0])

    assert len(recharges()) == 1
    assert_purchases_match_ledger()


@pytest.mark.parametrize("operator_got_it", [True, False])
def test_a_redelivered_task_never_sends_again_and_asks_once_the_first_send_must_have_ended(
    auth_client, funded_retailer, plan, monkeypatch, operator_got_it
):
    # A worker marked the purchase sent, then died: before its request left, or after the operator got it.
    queued = queue_fulfilments(monkeypatch)
    _buy(auth_client, funded_retailer, plan)
    purchase = Purchase.objects.select_related("plan__provider").get(pk=queued[0])
    Purchase.objects.filter(pk=purchase.pk).update(sent_at=timezone.now())
    if operator_got_it:
        SandboxGateway().recharge(services.recharge_request(purchase=purchase))

    services.fulfil_purchase(purchase_id=purchase.pk)  # redelivered at once: that send may still be running
    assert calls == []
    assert Purchase.objects.get(pk=purchase.pk).status == "PENDING"

    age_purchase(purchase.pk, sent=timedelta(minutes=5))  # long past the gateway timeout: that send has ended
    services.fulfil_purchase(purchase_id=purchase.pk)

    assert [call[0] for call in calls] == ["check_status"]  # asked, never sent again
    assert Purchase.objects.get(pk=purchase.pk).status == ("SUCCESS" if operator_got_it else "FAILED")
    assert balances(funded_retailer)[0] == (
        (Decimal("801.00"), Decimal("0.00")) if operator_got_it else (Decimal("1000.00"), Decimal("0.00"))
    )
    assert_purchases_match_ledger()


def test_fulfilment_of_a_purchase_already_final_calls_nobody(auth_client, funded_retailer, plan, monkeypatch):
    queued = queue_fulfilments(monkeypatch)
    _buy(auth_client, funded_retailer, plan, number=SandboxGateway.FAILS)
    services.fulfil_purchase(purchase_id=queued[0])
    calls.clear()

    assert services.fulfil_purchase(purchase_id=queued[0]) is None
    assert services.fulfil_purchase(purchase_id=10**9) is None
    assert calls == []


def test_the_sweep_enqueues_unsent_and_unsettled_purchases_but_not_fresh_ones(
    auth_client, funded_retailer, plan, monkeypatch
):
    queued = queue_fulfilments(monkeypatch)
    for number in ("9876500001", SandboxGateway.PENDING_FOREVER, "9876500003"):
        _buy(auth_client, funded_retailer, plan, number=number)
    lost, pending, fresh = queued
    services.fulfil_purchase(purchase_id=pending)  # sent; the operator answered PENDING
    queued.clear()

    assert services.enqueue_pending_purchases() == 0 and queued == []  # all recent: their tasks may still run
    age_purchase(lost, created=timedelta(minutes=5))
    age_purchase(pending, sent=timedelta(minutes=5))
    assert services.enqueue_pending_purchases() == 2
    assert sorted(queued) == sorted([lost, pending])
    assert fresh not in queued


def test_beat_runs_the_sweep_and_the_key_purge():
    from django.conf import settings

    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"purchases.settle_pending_purchases", "core.purge_idempotency_keys"} <= tasks


# --- duplicates without a key (12.2) ---------------------------------------------------------


def test_an_unkeyed_repeat_is_409_duplicate_purchase_naming_the_first_and_buys_nothing(
    auth_client, funded_retailer, plan
):
    first = _buy(auth_client, funded_retailer, plan)

    repeat = _buy(auth_client, funded_retailer, plan, number="+91 98765 43210")

    assert repeat.status_code == 409, repeat.data
    assert (repeat.data["code"], repeat.data["purchase_id"]) == ("duplicate_purchase", first.data["purchase"]["id"])
    assert repeat.data["status"] == "SUCCESS"
    assert f"#{first.data['purchase']['id']}" in repeat.data["detail"]
    assert Purchase.objects.count() == 1 and len(recharges()) == 1
    assert balances(funded_retailer) == [(Decimal("801.00"), Decimal("0.00"))]


def test_an_unkeyed_repeat_of_a_failed_purchase_buys_again(auth_client, funded_retailer, plan):
    assert _buy(auth_client, funded_retailer, plan, number=SandboxGateway.FAILS).data["purchase"]["status"] == "FAILED"

    again = _buy(auth_client, funded_retailer, plan, number=SandboxGateway.FAILS)

    assert again.status_code == 202 and Purchase.objects.count() == 2


def test_an_unkeyed_repeat_after_the_window_or_for_another_number_buys_again(
    auth_client, funded_retailer, plan, settings
):
    settings.PURCHASE_DUPLICATE_WINDOW_MINUTES = 5
    first = _buy(auth_client, funded_retailer, plan)
    assert _buy(auth_client, funded_retailer, plan, number="9876543211").status_code == 202
    age_purchase(first.data["purchase"]["id"], created=timedelta(minutes=6))

    assert _buy(auth_client, funded_retailer, plan).status_code == 202


def test_requests_with_distinct_keys_are_distinct_purchases_and_the_window_can_be_off(
    auth_client, funded_retailer, plan, settings
):
    assert _buy(auth_client, funded_retailer, plan, HTTP_IDEMPOTENCY_KEY="a").status_code == 202
    assert _buy(auth_client, funded_retailer, plan, HTTP_IDEMPOTENCY_KEY="b").status_code == 202
    settings.PURCHASE_DUPLICATE_WINDOW_MINUTES = 0
    assert _buy(auth_client, funded_retailer, plan).status_code == 202
    assert _buy(auth_client, funded_retailer, plan).status_code == 202
    assert Purchase.objects.count() == 4


# --- truthful answers after the commit (12.2) -------------------------------------------------


def test_an_answer_that_cannot_be_stored_after_the_commit_still_names_the_purchase_and_a_retry_returns_it(
    auth_client, funded_retailer, plan, monkeypatch
):
    """With no broker the acceptance commits, the operator is called, and only then is the key answered."""
    from core import idempotency

    real_complete = idempotency.complete

    def connection_lost(record, response):
        raise InterfaceError("connection already closed")

    monkeypatch.setattr(idempotency, "complete", connection_lost)
    first = _buy(auth_client, funded_retailer, plan, HTTP_IDEMPOTENCY_KEY="k-lost")
    monkeypatch.setattr(idempotency, "complete", real_complete)

    # Never "database_unavailable: nothing was changed": the purchase exists and the answer says so.
    assert first.status_code == 202, first.data
    assert first.data["purchase"]["status"] == "SUCCESS"
    assert not IdempotencyRecord.objects.exists()  # released: the retry runs the view again

    retry = _buy(auth_client, funded_retailer, plan, HTTP_IDEMPOTENCY_KEY="k-lost")
    assert (retry.status_code, retry.data["purchase"]["id"]) == (202, first.data["purchase"]["id"])
    assert Purchase.objects.count() == 1


def test_with_a_broker_the_keys_answer_commits_with_the_purchase_or_neither_does(
    auth_client, funded_retailer, plan, monkeypatch
):
    """With a broker the answer is the acceptance transaction's last statement (core.idempotency): an
    answer that cannot be written takes the purchase and its hold back with it, and nothing is queued."""
    from core import idempotency

    queued = queue_fulfilments(monkeypatch)

    def answer_refused(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    real_store = idempotency._store_answer
    monkeypatch.setattr(idempotency, "_store_answer", answer_refused)
    refused = _buy(auth_client, funded_retailer, plan, HTTP_IDEMPOTENCY_KEY="k-one")
    monkeypatch.setattr(idempotency, "_store_answer", real_store)

    assert (refused.status_code, refused.data["code"]) == (503, "database_unavailable")  # true: nothing was kept
    assert (Purchase.objects.count(), IdempotencyRecord.objects.count(), queued) == (0, 0, [])
    assert balances(funded_retailer) == [(Decimal("1000.00"), Decimal("0.00"))]

    first = _buy(auth_client, funded_retailer, plan, HTTP_IDEMPOTENCY_KEY="k-one")
    record = IdempotencyRecord.objects.get()
    assert (first.status_code, record.state, record.response_body) == (202, "COMPLETED", first.data)
    assert queued == [first.data["purchase"]["id"]]

    again = _buy(auth_client, funded_retailer, plan, HTTP_IDEMPOTENCY_KEY="k-one")
    assert (again.status_code, again.data, again.headers["Idempotent-Replayed"]) == (202, first.data, "true")
    assert again.headers["Location"] == first.headers["Location"]
    assert (Purchase.objects.count(), queued) == (1, [first.data["purchase"]["id"]])


@pytest.mark.django_db(transaction=True)
def test_with_a_broker_an_acceptance_whose_commit_landed_as_the_connection_died_answers_its_purchase(
    auth_client, funded_retailer, plan, monkeypatch, commit_fails
):
    """The purchase and its key's answer committed, but the connection died before saying so: the
    answer is the purchase (found by its key), not "nothing was changed"; its fulfilment, never
    enqueued (the commit hooks did not run), is sent by the sweep; a retry replays the answer."""
    queued = queue_fulfilments(monkeypatch)
    commit_fails.mode = "landed"

    first = _buy(auth_client, funded_retailer, plan, HTTP_IDEMPOTENCY_KEY="k-lost-commit")

    purchase = Purchase.objects.get()
    assert commit_fails.fired and first.status_code == 202, first.data
    assert (first.data["purchase"]["id"], first.data["purchase"]["status"]) == (purchase.pk, "PENDING")
    assert queued == []
    age_purchase(purchase.pk, created=timedelta(minutes=10))
    assert services.enqueue_pending_purchases() == 1 and queued == [purchase.pk]
    again = _buy(auth_client, funded_retailer, plan, HTTP_IDEMPOTENCY_KEY="k-lost-commit")
    assert (again.status_code, again.data["purchase"]["id"], again.headers["Idempotent-Replayed"]) == (
        202,
        purchase.pk,
        "true",
    )
    assert balances(funded_retailer) == [(Decimal("1000.00"), Decimal("199.00"))]


def _copy_that_started_before_the_first_committed(monkeypatch):
    """The copy's first look for a purchase under its key finds none (the first had not committed)."""
    real_lookup, looks = services._purchase_for_key, []

    def lookup(**kwargs):
        looks.append(kwargs["key"])
        return None if len(looks) == 1 else real_lookup(**kwargs)

    monkeypatch.setattr(services, "_purchase_for_key", lookup)
    return looks


def test_with_a_broker_a_copy_that_lost_the_race_for_the_purchases_key_replays_the_first(
    auth_client, funded_retailer, plan, monkeypatch
):
    """The unique (buyer, key) of a purchase refuses a copy's INSERT once the first commits: the copy is
    rolled back whole and answers what the first answered, which committed with it."""
    queued = queue_fulfilments(monkeypatch)
    first = _buy(auth_client, funded_retailer, plan, HTTP_IDEMPOTENCY_KEY="k-race")
    looks = _copy_that_started_before_the_first_committed(monkeypatch)

    copy = _buy(auth_client, funded_retailer, plan, HTTP_IDEMPOTENCY_KEY="k-race")

    assert looks == ["k-race"]  # run once: the key's answer was there
    assert (copy.status_code, copy.data, copy.headers["Idempotent-Replayed"]) == (202, first.data, "true")
    assert (Purchase.objects.count(), queued) == (1, [first.data["purchase"]["id"]])
    assert balances(funded_retailer) == [(Decimal("1000.00"), Decimal("199.00"))]


def test_with_a_broker_a_copy_that_lost_the_race_to_a_purchase_whose_answer_is_gone_runs_again_and_finds_it(
    auth_client, funded_retailer, plan, monkeypatch
):
    """The key's answer purged (purge_idempotency_keys) but the purchase kept: the copy, refused by the
    purchase's unique key, runs once more, finds the purchase under its key and answers it."""
    queued = queue_fulfilments(monkeypatch)
    first = _buy(auth_client, funded_retailer, plan, HTTP_IDEMPOTENCY_KEY="k-old")
    IdempotencyRecord.objects.all().delete()
    looks = _copy_that_started_before_the_first_committed(monkeypatch)

    copy = _buy(auth_client, funded_retailer, plan, HTTP_IDEMPOTENCY_KEY="k-old")

    assert looks == ["k-old", "k-old"]
    assert copy.status_code == 202, copy.data
    assert copy.data["purchase"]["id"] == first.data["purchase"]["id"]
    assert IdempotencyRecord.objects.get().response_body == copy.data
    assert (Purchase.objects.count(), queued) == (1, [first.data["purchase"]["id"]])
    assert balances(funded_retailer) == [(Decimal("1000.00"), Decimal("199.00"))]


def test_a_database_error_reading_back_an_accepted_purchase_answers_the_acceptance(
    auth_client, funded_retailer, plan, monkeypatch
):
    def lost(*args, **kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(services, "_outcome", lost)

    response = _buy(auth_client, funded_retailer, plan)

    assert response.status_code == 202, response.data
    assert response.data["purchase"]["id"] == Purchase.objects.get().pk
