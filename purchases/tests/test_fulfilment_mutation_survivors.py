"""Fulfilment, status checks and the sweep, held where mutation testing found them loose (issue 17,
docs/mutation.md): what the gateway is asked, what a purchase records, what the sweep reports and
enqueues, and what a worker logs. Purchases are accepted as with a broker whose task has not run yet
(PENDING, price held, never sent); each test then plays the worker, the sweep or a race."""

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from core import db_threads
from purchases import services
from purchases.gateways import BaseGateway, GatewayResult, GatewayUnavailable, RechargeRequest
from purchases.models import Purchase
from purchases.tests.gateways import calls
from purchases.tests.helpers import (
    age_purchase,
    assert_purchases_match_ledger,
    balances,
    fund,
    give_margin,
    queue_fulfilments,
)

pytestmark = pytest.mark.django_db

SUCCESS = GatewayResult(GatewayResult.SUCCESS, operator_reference="OP-1")
REFUSED = GatewayResult(GatewayResult.FAILED, message="Declined by the operator (test).")
WAITING = GatewayResult(GatewayResult.PENDING, message="Awaiting the operator (test).")
NOW = timedelta(0)


class ScriptedGateway(BaseGateway):
    """Answers as scripted (an exception is raised), by reference in `answers` or else the default of
    each call, and records every request. `during[reference]` runs inside the call about it, once:
    what another worker (or an operator's callback) does while the operator answers."""

    def __init__(self, *, recharge=SUCCESS, check_status=SUCCESS, answers=None, during=None):
        self.defaults = {"recharge": recharge, "check_status": check_status}
        self.answers = answers or {}
        self.during = dict(during or {})
        self.asked = []  # (call, RechargeRequest)

    def recharge(self, request):
        return self._answer("recharge", request)

    def check_status(self, request):
        return self._answer("check_status", request)

    def _answer(self, call, request):
        self.asked.append((call, request))
        work = self.during.pop(request.reference, None)
        if work is not None:
            work()
        answer = self.answers.get(request.reference, self.defaults[call])
        if isinstance(answer, Exception):
            raise answer
        return answer

    def calls(self):
        return [(call, request.reference) for call, request in self.asked]


@pytest.fixture
def buyer(retailer, distributor):
    fund(retailer, "5000.00")
    give_margin(retailer, "2.00")
    give_margin(distributor, "1.00")
    return retailer


@pytest.fixture
def queued(monkeypatch):
    """The ids of the fulfilments enqueued (a broker that holds them: nothing runs)."""
    return queue_fulfilments(monkeypatch)


@pytest.fixture
def accept(buyer, plan, queued, settings):
    settings.PURCHASE_DUPLICATE_WINDOW_MINUTES = 0  # the same number again, on purpose

    def accept(number="9876543210"):
        return services.purchase_recharge(buyer=buyer, plan_id=plan.pk, mobile_number=number).purchase.pk

    return accept


def _ref(purchase_id):
    return f"P{purchase_id}"


def _settle(**kwargs):
    return services.settle_pending_purchases(older_than=NOW, **kwargs)


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "purchases.services" and r.levelno >= logging.WARNING]


# --- sending -------------------------------------------------------------------------------------


def test_a_first_send_asks_the_operator_for_the_plan_sold_and_returns_the_settled_purchase(accept, plan):
    purchase_id = accept()
    gateway = ScriptedGateway()
    before = timezone.now()

    purchase = services.fulfil_purchase(purchase_id=purchase_id, gateway=gateway)

    assert isinstance(purchase, Purchase) and (purchase.pk, purchase.status) == (purchase_id, "SUCCESS")
    [(call, request)] = gateway.asked
    assert call == "recharge"
    assert request == RechargeRequest(
        reference=_ref(purchase_id),
        mobile_number="+919876543210",
        amount=Decimal("199.00"),
        operator="airtel",
        plan_code=plan.code,
        circle=plan.circle,
    )
    stored = Purchase.objects.get(pk=purchase_id)
    assert (stored.status, stored.operator_reference, stored.failure_reason) == ("SUCCESS", "OP-1", "")
    assert before <= stored.completed_at <= timezone.now()
    assert_purchases_match_ledger()


def test_while_the_operator_is_called_the_purchase_shows_it_was_sent(accept):
    """`updated_at` (in the API's purchase) moves when the purchase is sent, not only when it settles."""
    purchase_id = accept()
    seen = []
    gateway = ScriptedGateway(
        during={
            _ref(purchase_id): lambda: seen.append(
                Purchase.objects.values("status", "sent_at", "updated_at").get(pk=purchase_id)
            )
        }
    )

    services.fulfil_purchase(purchase_id=purchase_id, gateway=gateway)

    [row] = seen
    assert row["status"] == "PENDING" and row["sent_at"] is not None
    assert row["updated_at"] == row["sent_at"]


def test_a_worker_queries_the_database_only_on_its_database_threads(accept, monkeypatch):
    """core.db_threads: a worker's pool thread never opens a connection; the request to the operator
    is built from what the database thread loaded (the plan and its operator with the purchase)."""
    purchase_id = accept()
    depth = [0]
    real_run = db_threads.run

    def counted_run(fn, /, **kwargs):
        depth[0] += 1
        try:
            return real_run(fn, **kwargs)
        finally:
            depth[0] -= 1

    stray = []

    def watch(execute, sql, params, many, context):
        if not depth[0]:
            stray.append(sql)
        return execute(sql, params, many, context)

    monkeypatch.setattr(db_threads, "run", counted_run)
    with connection.execute_wrapper(watch):
        purchase = services.fulfil_purchase(purchase_id=purchase_id, gateway=ScriptedGateway())

    assert purchase.status == "SUCCESS"
    assert stray == []


def test_a_purchase_settled_before_its_task_ran_is_neither_sent_nor_marked_sent(accept):
    purchase_id = accept()
    services.apply_gateway_result(purchase_id=purchase_id, result=REFUSED)  # settled elsewhere first
    gateway = ScriptedGateway()

    assert services.fulfil_purchase(purchase_id=purchase_id, gateway=gateway) is None

    assert gateway.asked == []
    assert Purchase.objects.get(pk=purchase_id).sent_at is None


def test_a_gateway_refusing_the_connection_voids_the_purchase_and_warns_naming_it(accept, buyer, caplog):
    purchase_id = accept()
    gateway = ScriptedGateway(recharge=GatewayUnavailable("connection refused (test)"))

    with caplog.at_level(logging.WARNING, logger="purchases.services"):
        purchase = services.fulfil_purchase(purchase_id=purchase_id, gateway=gateway)

    assert purchase.status == "FAILED"
    assert purchase.failure_reason == "Operator gateway unavailable: connection refused (test)"
    assert balances(buyer) == [(Decimal("5000.00"), Decimal("0.00"))]
    [warning] = _warnings(caplog)
    assert warning.startswith(f"purchase {purchase_id}: ") and "connection refused (test)" in warning


def test_an_unexpected_gateway_error_keeps_the_purchase_pending_and_warns_naming_it(accept, buyer, caplog):
    purchase_id = accept()
    gateway = ScriptedGateway(recharge=RuntimeError("unexpected payload (test)"))

    with caplog.at_level(logging.WARNING, logger="purchases.services"):
        purchase = services.fulfil_purchase(purchase_id=purchase_id, gateway=gateway)

    assert (purchase.status, purchase.failure_reason, purchase.completed_at) == ("PENDING", "", None)
    assert balances(buyer) == [(Decimal("5000.00"), Decimal("199.00"))]
    [warning] = _warnings(caplog)
    assert warning.startswith(f"purchase {purchase_id}: ")
    assert "RuntimeError('unexpected payload (test)')" in warning


def test_an_unanswered_status_check_settles_nothing_and_warns_naming_the_purchase(accept, caplog):
    purchase_id = accept()
    age_purchase(purchase_id, sent=timedelta(minutes=5))
    gateway = ScriptedGateway(check_status=RuntimeError("status endpoint down (test)"))

    with caplog.at_level(logging.WARNING, logger="purchases.services"):
        purchase = services.fulfil_purchase(purchase_id=purchase_id, gateway=gateway)

    assert gateway.calls() == [("check_status", _ref(purchase_id))]
    assert purchase.status == "PENDING"
    [warning] = _warnings(caplog)
    assert warning.startswith(f"purchase {purchase_id}: ")
    assert "RuntimeError('status endpoint down (test)')" in warning


# --- asking about a send -------------------------------------------------------------------------


def test_a_send_made_exactly_at_the_given_cutoff_has_ended_and_is_asked_about(accept):
    purchase_id = accept()
    age_purchase(purchase_id, sent=timedelta(seconds=1))  # well within the default status-check age
    sent_at = Purchase.objects.get(pk=purchase_id).sent_at
    gateway = ScriptedGateway(check_status=REFUSED)

    purchase = services.fulfil_purchase(purchase_id=purchase_id, gateway=gateway, sent_before=sent_at)

    assert gateway.calls() == [("check_status", _ref(purchase_id))]
    assert (purchase.status, purchase.failure_reason) == ("FAILED", REFUSED.message)


def test_recheck_asks_with_the_gateway_given_once_the_gateway_timeout_has_passed(accept, settings):
    settings.RECHARGE_GATEWAY_TIMEOUT_SECONDS = 10
    settings.PURCHASE_STATUS_CHECK_AFTER_SECONDS = 40
    purchase_id = accept()
    age_purchase(purchase_id, sent=timedelta(seconds=20))  # past the gateway's timeout, not yet the sweep's age
    gateway = ScriptedGateway(check_status=SUCCESS)

    purchase = services.recheck_purchase(purchase_id=purchase_id, gateway=gateway)

    assert purchase.status == "SUCCESS"
    assert gateway.calls() == [("check_status", _ref(purchase_id))]
    assert calls == []  # not the configured gateway


def test_recheck_leaves_a_send_younger_than_the_gateway_timeout_to_its_own_run(accept, settings):
    settings.RECHARGE_GATEWAY_TIMEOUT_SECONDS = 10
    purchase_id = accept()
    age_purchase(purchase_id, sent=timedelta(seconds=2))
    gateway = ScriptedGateway()

    purchase = services.recheck_purchase(purchase_id=purchase_id, gateway=gateway)

    assert purchase.status == "PENDING" and gateway.asked == []


# --- settling by the answer ----------------------------------------------------------------------


def test_an_operator_reference_is_kept_to_its_100_characters_whatever_the_answer(accept):
    succeeded, waiting = accept(), accept()
    long_reference = "R" * 150

    settled = services.apply_gateway_result(
        purchase_id=succeeded, result=GatewayResult(GatewayResult.SUCCESS, operator_reference=long_reference)
    )
    pending = services.apply_gateway_result(
        purchase_id=waiting, result=GatewayResult(GatewayResult.PENDING, operator_reference=long_reference)
    )

    for purchase in (settled, pending):
        purchase.refresh_from_db()
        assert purchase.operator_reference == "R" * 100
    assert (settled.status, pending.status) == ("SUCCESS", "PENDING")


def test_a_pending_answer_records_the_operator_reference_it_brings_and_keeps_the_one_known(accept):
    purchase_id = accept()

    first = services.apply_gateway_result(
        purchase_id=purchase_id, result=GatewayResult(GatewayResult.PENDING, operator_reference="OP-7", message="wait")
    )
    second = services.apply_gateway_result(purchase_id=purchase_id, result=WAITING)

    assert (first.status, first.operator_reference, first.failure_reason) == ("PENDING", "OP-7", "")
    second.refresh_from_db()
    assert (second.status, second.operator_reference, second.failure_reason, second.completed_at) == (
        "PENDING",
        "OP-7",
        "",
        None,
    )


def test_a_refusal_without_a_reason_says_the_operator_refused_and_a_long_reason_is_cut_to_255(accept):
    silent, verbose = accept(), accept()
    before = timezone.now()

    services.apply_gateway_result(purchase_id=silent, result=GatewayResult(GatewayResult.FAILED))
    services.apply_gateway_result(purchase_id=verbose, result=GatewayResult(GatewayResult.FAILED, message="x" * 300))

    silent_row, verbose_row = Purchase.objects.get(pk=silent), Purchase.objects.get(pk=verbose)
    assert (silent_row.status, silent_row.failure_reason) == ("FAILED", "The operator refused the recharge.")
    assert verbose_row.failure_reason == "x" * 255
    assert before <= silent_row.completed_at <= timezone.now()
    assert_purchases_match_ledger()


# --- the sweep in this process (settle_pending_purchases) ----------------------------------------


def test_settle_reports_each_outcome_of_every_purchase_it_checked(accept):
    ok = [accept(), accept()]
    refused = [accept(), accept()]
    unknown = [accept(), accept()]  # the send raised: outcome unknown, kept pending
    unanswered = [accept(), accept()]  # sent earlier; the status check raises
    for purchase_id in unanswered:
        age_purchase(purchase_id, sent=timedelta(minutes=5))
    answers = {_ref(pk): REFUSED for pk in refused}
    answers |= {_ref(pk): RuntimeError("read timed out (test)") for pk in unknown + unanswered}

    report = _settle(gateway=ScriptedGateway(answers=answers))

    assert (report.checked, report.succeeded, report.failed, report.still_pending, report.errors, report.skipped) == (
        8,
        2,
        2,
        2,
        2,
        0,
    )
    assert report.settled_ids == ok + refused
    assert set(Purchase.objects.filter(pk__in=unknown + unanswered).values_list("status", flat=True)) == {"PENDING"}
    assert_purchases_match_ledger()


def test_settle_counts_purchases_the_operator_still_reports_pending(accept):
    waiting = [accept(), accept()]

    report = _settle(gateway=ScriptedGateway(recharge=WAITING))

    assert (report.checked, report.still_pending, report.skipped, report.settled_ids) == (2, 2, 0, [])
    assert set(Purchase.objects.filter(pk__in=waiting).values_list("status", flat=True)) == {"PENDING"}


def test_settle_skips_purchases_a_worker_settled_before_their_turn_and_carries_on(accept):
    first, taken, also_taken, last = accept(), accept(), accept(), accept()

    def worker_settles_two():
        for purchase_id in (taken, also_taken):
            services.apply_gateway_result(purchase_id=purchase_id, result=SUCCESS)

    gateway = ScriptedGateway(during={_ref(first): worker_settles_two})

    report = _settle(gateway=gateway)

    assert (report.checked, report.skipped, report.succeeded, report.failed) == (2, 2, 2, 0)
    assert report.settled_ids == [first, last]
    assert gateway.calls() == [("recharge", _ref(first)), ("recharge", _ref(last))]
    assert_purchases_match_ledger()


def test_settle_skips_purchases_settled_between_their_claim_and_their_send(accept, monkeypatch):
    purchase_ids = [accept(), accept()]
    real_claim = services._claim_pending

    def claim_then_lose_the_race(purchase_id):
        claimed = real_claim(purchase_id)
        services.apply_gateway_result(purchase_id=purchase_id, result=REFUSED)  # a worker, right after our claim
        return claimed

    monkeypatch.setattr(services, "_claim_pending", claim_then_lose_the_race)
    gateway = ScriptedGateway()

    report = _settle(gateway=gateway)

    assert (report.checked, report.skipped, report.errors, report.settled_ids) == (2, 2, 0, [])
    assert gateway.asked == []
    assert set(Purchase.objects.filter(pk__in=purchase_ids).values_list("status", flat=True)) == {"FAILED"}


def test_settle_skips_purchases_whose_callback_settled_them_while_the_operator_answered(accept):
    purchase_ids = [accept(), accept()]

    def callback(purchase_id):
        return lambda: services.apply_operator_callback(reference=_ref(purchase_id), status="SUCCESS")

    gateway = ScriptedGateway(during={_ref(pk): callback(pk) for pk in purchase_ids})

    report = _settle(gateway=gateway)

    assert (report.checked, report.skipped, report.succeeded, report.settled_ids) == (2, 2, 0, [])
    assert set(Purchase.objects.filter(pk__in=purchase_ids).values_list("status", flat=True)) == {"SUCCESS"}
    assert_purchases_match_ledger()


def test_settle_by_default_leaves_a_send_younger_than_the_status_check_age(accept, settings):
    settings.PURCHASE_STATUS_CHECK_AFTER_SECONDS = 40
    old, young = accept(), accept()
    age_purchase(old, created=timedelta(minutes=5), sent=timedelta(minutes=5))
    age_purchase(young, created=timedelta(minutes=5), sent=timedelta(seconds=10))
    gateway = ScriptedGateway()

    report = services.settle_pending_purchases(gateway=gateway)

    assert report.settled_ids == [old]
    assert gateway.calls() == [("check_status", _ref(old))]
    assert Purchase.objects.get(pk=young).status == "PENDING"


def test_settle_never_asks_about_a_send_a_worker_started_after_the_listing(accept):
    first, second = accept(), accept()
    age_purchase(first, created=timedelta(minutes=5))
    age_purchase(second, created=timedelta(minutes=4))

    def worker_sends_second():
        Purchase.objects.filter(pk=second).update(sent_at=timezone.now())

    gateway = ScriptedGateway(during={_ref(first): worker_sends_second})

    report = services.settle_pending_purchases(older_than=timedelta(seconds=60), gateway=gateway)

    assert report.settled_ids == [first]
    assert gateway.calls() == [("recharge", _ref(first))]  # that send may still be running: never asked
    assert Purchase.objects.get(pk=second).status == "PENDING"


def test_settle_with_a_limit_takes_the_oldest_purchases_first(accept):
    accepted_first, accepted_second = accept(), accept()
    age_purchase(accepted_first, created=timedelta(minutes=1))
    age_purchase(accepted_second, created=timedelta(minutes=2))  # the older, though its id is higher

    report = _settle(limit=1, gateway=ScriptedGateway())

    assert (report.checked, report.settled_ids) == (1, [accepted_second])
    assert Purchase.objects.get(pk=accepted_first).status == "PENDING"


# --- the periodic sweep (enqueue_pending_purchases) ----------------------------------------------


def test_the_sweep_uses_the_ages_it_is_given_and_never_the_creation_time_of_a_sent_purchase(accept, queued, settings):
    settings.PURCHASE_RESEND_AFTER_SECONDS = 30
    settings.PURCHASE_STATUS_CHECK_AFTER_SECONDS = 60
    unsent, sent = accept(), accept()
    age_purchase(sent, created=timedelta(minutes=10), sent=timedelta(seconds=1))  # old, but its send just started
    queued.clear()

    assert services.enqueue_pending_purchases() == 0
    assert services.enqueue_pending_purchases(unsent_after=NOW) == 1
    assert queued == [unsent]
    assert services.enqueue_pending_purchases(sent_after=NOW) == 1
    assert queued == [unsent, sent]


@pytest.mark.parametrize(
    ("waiting", "unsent_for", "resent"),
    [
        (None, 60, True),  # no broker, or it cannot say: as always
        (0, 60, True),
        (1, 60, False),  # behind a backlog it is most likely still in the queue
        (2500, 60, False),
        (2500, 299, False),
        (2500, 301, True),  # ten times the usual wait: really lost, sent after all
    ],
)
def test_behind_a_backlog_the_sweep_resends_only_long_unsent_purchases_and_still_asks_about_sent_ones(
    accept, queued, monkeypatch, settings, waiting, unsent_for, resent
):
    # A copy of every purchase not yet sent, every few seconds, was thousands of tasks more for a
    # worker already behind; a sent purchase whose outcome is unknown is not in the queue at all.
    settings.PURCHASE_RESEND_AFTER_SECONDS = 30
    settings.PURCHASE_STATUS_CHECK_AFTER_SECONDS = 60
    unsent, sent = accept(), accept()
    age_purchase(unsent, created=timedelta(seconds=unsent_for))
    age_purchase(sent, created=timedelta(minutes=10), sent=timedelta(minutes=2))
    queued.clear()
    monkeypatch.setattr(services, "queue_depth", lambda: waiting)

    services.enqueue_pending_purchases()

    assert sorted(queued) == sorted([unsent, sent] if resent else [sent])


def test_the_sweep_enqueues_at_most_1000_purchases_a_run_the_oldest_first(buyer, plan, queued):
    long_ago = timezone.now() - timedelta(minutes=10)
    Purchase.objects.bulk_create(
        Purchase(buyer=buyer, plan=plan, mobile_number=f"+9198765{i:05d}", amount=plan.amount) for i in range(1001)
    )
    ids = list(Purchase.objects.order_by("pk").values_list("pk", flat=True))
    Purchase.objects.update(created_at=long_ago)
    Purchase.objects.filter(pk=ids[-1]).update(created_at=long_ago - timedelta(minutes=1))

    assert services.enqueue_pending_purchases() == 1000
    assert queued == [ids[-1], *ids[:999]]
