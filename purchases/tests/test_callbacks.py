"""Operator callbacks (signed), reversals and refunds, and the sandbox's memory."""

import http.client
import json
import logging
import time
from decimal import Decimal

import pytest

from core.precompiled import statement_of
from core.signatures import sign
from purchases import services
from purchases.gateways import RechargeRequest, SandboxGateway
from purchases.models import Purchase, SandboxRecharge
from purchases.tests.helpers import FakeAggregatorEndpoint, assert_ledger_clean, balances, fund, give_margin
from wallet import services as ledger
from wallet.models import Transfer

pytestmark = pytest.mark.django_db
SECRET = "operator-callback-secret-0123456789"
URL = "/api/purchases/callbacks/sandbox/"


@pytest.fixture(autouse=True)
def callback_secret(settings):
    settings.RECHARGE_CALLBACK_SECRET = SECRET


@pytest.fixture
def shop(retailer, distributor):
    fund(distributor, "100.00")
    fund(retailer, "1000.00")
    give_margin(distributor, "2.00")
    give_margin(retailer, "3.00")
    return retailer, distributor


def _buy(retailer, plan, number):
    return services.purchase_recharge(buyer=retailer, plan_id=plan.pk, mobile_number=number).purchase


def _callback(api_client, body, *, secret=SECRET, timestamp=None, url=URL, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"HTTP_X_SIGNATURE": sign(secret=secret, body=data, timestamp=timestamp)} if secret else {}
    return api_client.post(url, data=data, content_type="application/json", **headers)


def _journal():
    return list(Transfer.objects.order_by("pk").values_list("pk", "status"))


# --- settling by callback ------------------------------------------------------------------------


def test_a_signed_success_callback_settles_a_pending_purchase(api_client, shop, plan):
    retailer, distributor = shop
    purchase = _buy(retailer, plan, SandboxGateway.PENDING_FOREVER)

    response = _callback(api_client, {"reference": f"P{purchase.pk}", "status": "SUCCESS", "operator_reference": "OP1"})

    assert response.status_code == 200, response.json()
    assert response.json() == {"purchase_id": purchase.pk, "status": "SUCCESS", "applied": True, "queued": False}
    purchase.refresh_from_db()
    assert (purchase.status, purchase.operator_reference) == ("SUCCESS", "OP1")
    assert balances(retailer, distributor) == [
        (Decimal("1000.00") - plan.amount + purchase.buyer_commission, Decimal("0.00")),
        (Decimal("100.00") + purchase.distributor_commission, Decimal("0.00")),
    ]
    assert_ledger_clean()


def test_a_replayed_callback_is_200_and_changes_nothing(api_client, shop, plan):
    purchase = _buy(shop[0], plan, SandboxGateway.PENDING_FOREVER)
    body = {"reference": f"P{purchase.pk}", "status": "FAILED", "message": "declined"}
    assert _callback(api_client, body).json()["applied"] is True
    journal = _journal()

    again = _callback(api_client, body)

    assert (again.status_code, again.json()["applied"], again.json()["status"]) == (200, False, "FAILED")
    assert _journal() == journal


@pytest.mark.parametrize(
    "signing",
    [
        {"secret": "not-the-secret"},
        {"secret": None},
        {"timestamp": int(time.time()) - 301},
    ],
    ids=["wrong-secret", "no-signature", "stale"],
)
def test_a_bad_signature_is_401_and_writes_nothing(api_client, shop, plan, signing, caplog):
    purchase = _buy(shop[0], plan, SandboxGateway.PENDING_FOREVER)
    journal = _journal()

    with caplog.at_level(logging.WARNING):
        response = _callback(api_client, {"reference": f"P{purchase.pk}", "status": "SUCCESS"}, **signing)

    assert response.status_code == 401
    assert response.json()["code"] in ("invalid_signature", "stale_signature")
    assert Purchase.objects.get(pk=purchase.pk).status == "PENDING" and _journal() == journal
    assert "refused" in caplog.text


def test_with_no_secret_configured_every_callback_is_refused(api_client, shop, plan, settings):
    purchase = _buy(shop[0], plan, SandboxGateway.PENDING_FOREVER)
    settings.RECHARGE_CALLBACK_SECRET = ""

    response = _callback(api_client, {"reference": f"P{purchase.pk}", "status": "SUCCESS"}, secret="")

    assert response.status_code == 401


@pytest.mark.parametrize("reference", ["P999999999", "X1", "P", "P-1", "P1e3", ""])
def test_an_unknown_reference_is_404(api_client, reference):
    response = _callback(api_client, {"reference": reference, "status": "SUCCESS"})
    assert response.status_code in (404, 400), response.json()
    if reference:
        assert response.status_code == 404


@pytest.mark.parametrize("reference", ["P999999999", "X1", "P", "P-1", "P1e3", "", "P99999999999999999999"])
@pytest.mark.parametrize("status", ["SUCCESS", "FAILED", "REVERSED"])
def test_the_worker_applying_a_callback_for_an_unknown_reference_finds_no_purchase(reference, status):
    with pytest.raises(services.NotFound):
        services.apply_operator_callback(reference=reference, status=status)


def test_the_worker_reads_the_purchase_once_to_settle_a_callback_under_its_lock(shop, plan):
    # The settlement reads it under the lock; a read before it, one per callback on the worker that
    # settles them all, told nothing more.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    purchase = _buy(shop[0], plan, SandboxGateway.PENDING_FOREVER)

    with CaptureQueriesContext(connection) as queries:
        outcome = services.apply_operator_callback(
            reference=f"P{purchase.pk}", status="SUCCESS", operator_reference="OP9"
        )

    assert (outcome.applied, outcome.purchase.status) == (True, "SUCCESS")
    statements = [statement_of(q["sql"]) for q in queries.captured_queries]
    reads = [sql for sql in statements if sql.startswith('SELECT "purchases_purchase"')]
    assert len(reads) == 1
    assert_ledger_clean()


def test_an_unknown_gateway_is_404(api_client):
    assert (
        _callback(
            api_client, {"reference": "P1", "status": "SUCCESS"}, url="/api/purchases/callbacks/acme/"
        ).status_code
        == 404
    )


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"[1, 2]", b'{"reference": "P1"}', b'{"reference": "P1", "status": "DONE"}', b"[" * 5000],
)
def test_a_malformed_signed_body_is_400_and_writes_nothing(api_client, raw):
    journal = _journal()
    response = _callback(api_client, None, raw=raw)
    assert response.status_code == 400, response.content
    assert _journal() == journal


def test_a_final_status_contradicting_the_purchase_is_409_logged_and_changes_nothing(api_client, shop, plan, caplog):
    purchase = _buy(shop[0], plan, "9876543210")  # SUCCESS at once
    journal = _journal()

    with caplog.at_level(logging.ERROR):
        response = _callback(api_client, {"reference": f"P{purchase.pk}", "status": "FAILED"})

    assert response.status_code == 409
    assert (response.json()["code"], response.json()["current"]) == ("callback_conflict", "SUCCESS")
    assert Purchase.objects.get(pk=purchase.pk).status == "SUCCESS" and _journal() == journal
    assert f"P{purchase.pk}" in caplog.text


# --- with a broker: the request verifies and reads, a worker applies ------------------------------


def _queue_callbacks(monkeypatch, *, broker_down=False) -> list:
    """Callbacks as with a broker: what the view would hand to a worker is appended to the list."""
    from purchases import tasks

    queued = []

    def apply_async(args=None, kwargs=None, **options):
        if broker_down:
            raise ConnectionRefusedError("broker down (test)")
        queued.append(kwargs)

    monkeypatch.setattr(services, "fulfilled_in_process", lambda: False)
    monkeypatch.setattr(tasks.apply_operator_callback, "apply_async", apply_async)
    return queued


@pytest.mark.parametrize("reported", ["SUCCESS", "FAILED", "REVERSED"])
def test_with_a_broker_news_is_answered_202_and_applied_by_the_worker_not_the_request(
    api_client, shop, plan, monkeypatch, reported
):
    from purchases import tasks

    retailer, _ = shop
    purchase = _buy(retailer, plan, SandboxGateway.PENDING_FOREVER)
    queued = _queue_callbacks(monkeypatch)
    journal, held = _journal(), balances(retailer)
    body = {"reference": f"P{purchase.pk}", "status": reported, "operator_reference": "OP7", "message": "m"}

    response = _callback(api_client, body)

    assert response.status_code == 202, response.json()
    assert response.json() == {"purchase_id": purchase.pk, "status": "PENDING", "applied": False, "queued": True}
    assert queued == [body]
    assert Purchase.objects.get(pk=purchase.pk).status == "PENDING"
    assert (_journal(), balances(retailer)) == (journal, held)

    tasks.apply_operator_callback(**queued[0])
    tasks.apply_operator_callback(**queued[0])  # delivered twice: the second changes nothing

    purchase.refresh_from_db()
    assert purchase.status == ("SUCCESS" if reported == "SUCCESS" else "FAILED")
    assert balances(retailer)[0][1] == Decimal("0.00")  # nothing held any more
    assert_ledger_clean()


@pytest.mark.parametrize("reported", ["SUCCESS", "FAILED"])
def test_with_a_broker_and_apply_in_the_request_news_is_applied_before_the_answer_and_nothing_queued(
    api_client, shop, plan, monkeypatch, settings, reported
):
    retailer, _ = shop
    purchase = _buy(retailer, plan, SandboxGateway.PENDING_FOREVER)
    queued = _queue_callbacks(monkeypatch)
    settings.RECHARGE_CALLBACK_APPLY = "request"
    body = {"reference": f"P{purchase.pk}", "status": reported, "operator_reference": "OP8", "message": "m"}

    response = _callback(api_client, body)

    assert response.status_code == 200, response.json()
    assert response.json() == {"purchase_id": purchase.pk, "status": reported, "applied": True, "queued": False}
    assert queued == []
    assert Purchase.objects.get(pk=purchase.pk).status == reported
    assert balances(retailer)[0][1] == Decimal("0.00")  # nothing held any more
    assert _callback(api_client, body).json()["applied"] is False  # the same news again: nothing changes
    assert_ledger_clean()


def test_with_apply_in_the_request_a_reversal_of_a_success_refunds_before_the_answer(
    api_client, shop, plan, monkeypatch, settings
):
    retailer, _ = shop
    purchase = _buy(retailer, plan, "9876543210")  # the sandbox recharges it: SUCCESS
    paid = balances(retailer)[0][0]
    queued = _queue_callbacks(monkeypatch)
    settings.RECHARGE_CALLBACK_APPLY = "request"

    response = _callback(api_client, {"reference": f"P{purchase.pk}", "status": "REVERSED", "message": "m"})

    assert response.status_code == 200, response.json()
    assert response.json() == {"purchase_id": purchase.pk, "status": "REFUNDED", "applied": True, "queued": False}
    assert queued == [] and balances(retailer)[0][0] > paid  # the price is back
    assert_ledger_clean()


def test_with_a_broker_a_reversal_of_a_success_is_queued_and_refunds_on_the_worker(api_client, shop, plan, monkeypatch):
    from purchases import tasks

    retailer, distributor = shop
    purchase = _buy(retailer, plan, "9876543210")
    queued = _queue_callbacks(monkeypatch)

    response = _callback(api_client, {"reference": f"P{purchase.pk}", "status": "REVERSED"})

    assert (response.status_code, response.json()["status"], response.json()["queued"]) == (202, "SUCCESS", True)
    assert Purchase.objects.get(pk=purchase.pk).status == "SUCCESS"
    tasks.apply_operator_callback(**queued[0])
    assert Purchase.objects.get(pk=purchase.pk).status == "REFUNDED"
    assert balances(retailer, distributor) == [
        (Decimal("1000.00"), Decimal("0.00")),
        (Decimal("100.00"), Decimal("0.00")),
    ]


@pytest.mark.parametrize(
    ("settled_by", "reported", "code"),
    [("SUCCESS", "SUCCESS", 200), ("FAILED", "REVERSED", 200), ("SUCCESS", "FAILED", 409), ("FAILED", "SUCCESS", 409)],
)
def test_with_a_broker_replays_and_conflicts_are_answered_in_the_request_and_queue_nothing(
    api_client, shop, plan, monkeypatch, caplog, settled_by, reported, code
):
    purchase = _buy(shop[0], plan, SandboxGateway.PENDING_FOREVER)
    services.apply_operator_callback(reference=f"P{purchase.pk}", status=settled_by)
    queued = _queue_callbacks(monkeypatch)
    journal = _journal()

    with caplog.at_level(logging.ERROR):
        response = _callback(api_client, {"reference": f"P{purchase.pk}", "status": reported})

    assert response.status_code == code, response.json()
    if code == 200:
        assert (response.json()["applied"], response.json()["queued"]) == (False, False)
    else:
        assert response.json()["code"] == "callback_conflict" and f"P{purchase.pk}" in caplog.text
    assert queued == [] and _journal() == journal


def test_with_the_broker_down_a_callback_is_applied_in_the_request(api_client, shop, plan, monkeypatch):
    purchase = _buy(shop[0], plan, SandboxGateway.PENDING_FOREVER)
    _queue_callbacks(monkeypatch, broker_down=True)

    response = _callback(api_client, {"reference": f"P{purchase.pk}", "status": "SUCCESS"})

    assert response.status_code == 200, response.json()
    assert response.json() == {"purchase_id": purchase.pk, "status": "SUCCESS", "applied": True, "queued": False}
    assert_ledger_clean()


def test_a_conflict_the_worker_finds_only_under_the_lock_is_logged_and_changes_nothing(shop, plan, caplog):
    """A status check settled the purchase between the request's read and the worker's run."""
    from purchases import tasks

    purchase = _buy(shop[0], plan, SandboxGateway.PENDING_FOREVER)
    services.apply_operator_callback(reference=f"P{purchase.pk}", status="FAILED")
    journal = _journal()

    with caplog.at_level(logging.ERROR):
        tasks.apply_operator_callback(reference=f"P{purchase.pk}", status="SUCCESS")

    assert Purchase.objects.get(pk=purchase.pk).status == "FAILED" and _journal() == journal
    assert "already FAILED" in caplog.text


def test_a_worker_whose_database_fails_retries_the_callback_until_it_is_applied(shop, plan, monkeypatch):
    """The operator has its 202 and will not send the callback again: a failing database must not lose it."""
    from django.db import OperationalError

    from purchases import tasks

    purchase = _buy(shop[0], plan, SandboxGateway.PENDING_FOREVER)
    real, calls = services.apply_operator_callback, []

    def flaky(**kwargs):
        calls.append(kwargs)
        if len(calls) < 3:
            raise OperationalError("canceling statement due to lock timeout (test)")
        return real(**kwargs)

    monkeypatch.setattr(services, "apply_operator_callback", flaky)
    monkeypatch.setattr(tasks.apply_operator_callback, "retry_backoff", False)  # no sleeping in a test

    tasks.apply_operator_callback.apply(kwargs={"reference": f"P{purchase.pk}", "status": "SUCCESS"})

    assert len(calls) == 3
    assert Purchase.objects.get(pk=purchase.pk).status == "SUCCESS"
    assert_ledger_clean()


def test_a_reversal_that_read_pending_refunds_a_purchase_settled_success_meanwhile(shop, plan, monkeypatch):
    """A SUCCESS callback and its reversal on two workers: the reversal read PENDING, the SUCCESS
    committed before the reversal took the lock. The reversal must refund, not report a conflict."""
    retailer, distributor = shop
    purchase = _buy(retailer, plan, SandboxGateway.PENDING_FOREVER)
    stale = Purchase.objects.get(pk=purchase.pk)  # PENDING, as the reversal read it
    services.apply_operator_callback(reference=f"P{purchase.pk}", status="SUCCESS")
    monkeypatch.setattr(services, "purchase_by_reference", lambda reference: stale)

    outcome = services.apply_operator_callback(reference=f"P{purchase.pk}", status="REVERSED")

    assert (outcome.applied, outcome.purchase.status) == (True, "REFUNDED")
    assert balances(retailer, distributor) == [
        (Decimal("1000.00"), Decimal("0.00")),
        (Decimal("100.00"), Decimal("0.00")),
    ]
    assert_ledger_clean()


# --- reversals and refunds -----------------------------------------------------------------------


def test_a_reversal_refunds_the_buyer_and_takes_both_margins_back(api_client, shop, plan):
    retailer, distributor = shop
    purchase = _buy(retailer, plan, "9876543210")
    assert purchase.status == "SUCCESS"

    response = _callback(api_client, {"reference": f"P{purchase.pk}", "status": "REVERSED"})

    assert response.json() == {"purchase_id": purchase.pk, "status": "REFUNDED", "applied": True, "queued": False}
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.REFUNDED and purchase.commission_unrecovered == 0
    # Back where they were before the sale: the price returned, each margin taken back.
    assert balances(retailer, distributor) == [
        (Decimal("1000.00"), Decimal("0.00")),
        (Decimal("100.00"), Decimal("0.00")),
    ]
    assert_ledger_clean()

    again = _callback(api_client, {"reference": f"P{purchase.pk}", "status": "REVERSED"})
    assert (again.status_code, again.json()["applied"]) == (200, False)
    assert balances(retailer) == [(Decimal("1000.00"), Decimal("0.00"))]


def test_a_reversal_never_takes_a_spent_margin_below_zero_and_records_the_shortfall(shop, plan, client_user):
    retailer, distributor = shop
    purchase = _buy(retailer, plan, "9876543210")
    spendable = balances(distributor)[0][0]
    ledger.transfer_funds(sender=distributor, receiver=client_user, amount=spendable)  # spends everything

    refunded, done = services.refund_purchase(purchase_id=purchase.pk, reason="test")

    assert done and refunded.status == "REFUNDED"
    assert balances(distributor) == [(Decimal("0.00"), Decimal("0.00"))]
    assert refunded.commission_unrecovered == purchase.distributor_commission > 0
    assert balances(retailer) == [(Decimal("1000.00"), Decimal("0.00"))]
    assert_ledger_clean()


def test_a_reversal_of_a_pending_purchase_fails_it_and_releases_the_hold(api_client, shop, plan):
    retailer, _ = shop
    purchase = _buy(retailer, plan, SandboxGateway.PENDING_FOREVER)

    response = _callback(api_client, {"reference": f"P{purchase.pk}", "status": "REVERSED"})

    assert response.json()["status"] == "FAILED"
    assert balances(retailer) == [(Decimal("1000.00"), Decimal("0.00"))]


def test_only_a_success_purchase_can_be_refunded(shop, plan):
    purchase = _buy(shop[0], plan, SandboxGateway.PENDING_FOREVER)
    with pytest.raises(services.PurchaseNotRefundable):
        services.refund_purchase(purchase_id=purchase.pk)


def test_the_admin_refunds_a_purchase_and_rechecks_stuck_ones(client, admin_user, shop, plan, settings):
    retailer, _ = shop
    sold = _buy(retailer, plan, "9876543210")
    stuck = _buy(retailer, plan, SandboxGateway.PENDING_THEN_SUCCESS)
    Purchase.objects.filter(pk=stuck.pk).update(
        created_at=stuck.created_at - settings_minutes(settings), sent_at=stuck.created_at - settings_minutes(settings)
    )
    client.force_login(admin_user)

    listing = client.get("/admin/purchases/purchase/", {"stuck": "yes"})
    assert listing.status_code == 200
    assert list(listing.context["cl"].queryset.values_list("pk", flat=True)) == [stuck.pk]

    changelist = "/admin/purchases/purchase/"
    client.post(changelist, {"action": "recheck_status", "_selected_action": [stuck.pk]})
    assert Purchase.objects.get(pk=stuck.pk).status == "SUCCESS"

    client.post(changelist, {"action": "refund", "_selected_action": [sold.pk]})
    refunded = Purchase.objects.get(pk=sold.pk)
    assert refunded.status == "REFUNDED" and admin_user.username in refunded.failure_reason
    assert Transfer.objects.filter(kind=Transfer.Kind.REFUND, initiated_by=admin_user).count() == 1
    assert_ledger_clean()


def settings_minutes(settings):
    from datetime import timedelta

    return timedelta(minutes=settings.PURCHASE_STUCK_MINUTES + 1)


# --- the sandbox's memory ------------------------------------------------------------------------


def _request(reference="P424242", number="+919876543210"):
    return RechargeRequest(
        reference=reference, mobile_number=number, amount=Decimal("10.00"), operator="x", plan_code="p", circle=""
    )


def test_the_sandbox_answers_never_received_for_a_recharge_it_never_got():
    result = SandboxGateway().check_status(_request())
    assert result.status == "FAILED" and "No such recharge" in result.message


def test_the_sandbox_remembers_what_it_received_and_counts_a_second_receipt():
    gateway = SandboxGateway()
    assert gateway.recharge(_request()).status == "SUCCESS"
    assert gateway.check_status(_request()).status == "SUCCESS"

    gateway.recharge(_request())

    assert SandboxRecharge.objects.get(reference="P424242").times_received == 2


@pytest.mark.django_db(transaction=True)
def test_on_a_workers_database_thread_a_receipt_commits_by_itself_and_a_second_is_still_counted(monkeypatch):
    # A worker's database threads run in autocommit: BEGIN and COMMIT around the one INSERT were two
    # round trips per recharge, on the threads every purchase queues for.
    from django.db import connection

    create = SandboxRecharge.objects.create
    autocommit = []

    def recording_create(**fields):
        autocommit.append(connection.get_autocommit())
        return create(**fields)

    monkeypatch.setattr(SandboxRecharge.objects, "create", recording_create)
    gateway = SandboxGateway()
    gateway.recharge(_request())
    gateway.recharge(_request())

    assert autocommit == [True, True]
    assert SandboxRecharge.objects.get(reference="P424242").times_received == 2


def test_a_reversal_in_the_sandbox_is_remembered_and_only_for_a_successful_recharge():
    gateway = SandboxGateway()
    gateway.recharge(_request())

    assert SandboxGateway.reverse("P424242") is True
    assert SandboxGateway.reverse("P424242") is False  # already reversed
    assert SandboxGateway.reverse("P999") is False  # never received
    result = gateway.check_status(_request())
    assert result.status == "FAILED" and "reversed" in result.message


def test_a_timeout_that_never_reached_the_operator_is_not_in_its_memory():
    from purchases.gateways import GatewayTimeout

    with pytest.raises(GatewayTimeout):
        SandboxGateway().recharge(_request(number=SandboxGateway.TIMEOUT_THEN_FAILS))
    assert not SandboxRecharge.objects.exists()


# --- the sandbox in callback mode, over real HTTP ---------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_in_callback_mode_the_sandbox_answers_pending_then_calls_back_over_http(live_server, settings, retailer, plan):
    settings.RECHARGE_SANDBOX_CALLBACK_URL = live_server.url + URL
    fund(retailer, "1000.00")

    purchase = _buy(retailer, plan, "9876543210")  # fulfilled in process: the callback is delivered at once

    record = SandboxRecharge.objects.get(reference=f"P{purchase.pk}")
    assert record.callback_delivered_at is not None and record.callback_due_at is None
    purchase.refresh_from_db()
    assert purchase.status == "SUCCESS" and purchase.operator_reference == record.operator_reference
    assert_ledger_clean()


@pytest.fixture
def aggregator_endpoint(settings, monkeypatch):
    import urllib.request

    settings.RECHARGE_SANDBOX_CALLBACK_URL = "http://127.0.0.1:9/callbacks/"
    endpoint = FakeAggregatorEndpoint()
    monkeypatch.setattr(urllib.request, "urlopen", endpoint)
    return endpoint


def _with_a_broker(settings):
    # The test suite runs tasks eagerly; with a broker the sandbox defers its callbacks to its loop.
    settings.CELERY_TASK_ALWAYS_EAGER = False


def _record(reference, status="SUCCESS", *, due_in=0.0, operator_reference="SBX1"):
    from datetime import timedelta

    from django.utils import timezone

    return SandboxRecharge.objects.create(
        reference=reference,
        mobile_number="+919876543210",
        amount=Decimal("10.00"),
        status=status,
        operator_reference=operator_reference,
        callback_due_at=None if due_in is None else timezone.now() + timedelta(seconds=due_in),
    )


def test_with_a_broker_a_recharge_answers_pending_and_its_one_insert_puts_the_callback_in_the_outbox(
    settings, aggregator_endpoint
):
    # Scheduling a Celery message per callback (with a countdown) was a sixth of the busy hour's worker
    # CPU in callback mode: the sandbox's own record is its outbox, written by the INSERT it makes anyway.
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    _with_a_broker(settings)
    before = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        result = SandboxGateway().recharge(_request())
    after = timezone.now()

    assert result.status == "PENDING"
    statements = [statement_of(q["sql"]).split()[0] for q in queries.captured_queries]
    assert [verb for verb in statements if verb not in ("SAVEPOINT", "RELEASE")] == ["INSERT"]  # test's transaction
    record = SandboxRecharge.objects.get(reference="P424242")
    delay = timedelta(milliseconds=settings.RECHARGE_SANDBOX_CALLBACK_DELAY_MS)
    assert before + delay <= record.callback_due_at <= after + delay
    assert (record.status, record.callback_attempts, record.callback_delivered_at) == ("SUCCESS", 0, None)
    assert aggregator_endpoint.sent == []  # sent later, by the operator loop


def test_the_operator_loop_sends_what_is_due_signed_with_its_status_and_marks_it_delivered(aggregator_endpoint):
    from core import signatures
    from purchases import gateways

    _record("P1", "SUCCESS", due_in=-1, operator_reference="SBX1")
    _record("P2", "FAILED", due_in=-0.5, operator_reference="")
    _record("P3", "SUCCESS", due_in=60)  # not yet
    _record("P4", "SUCCESS", due_in=None)  # nothing to send

    assert gateways.deliver_due_sandbox_callbacks() == 2

    sent = sorted(aggregator_endpoint.sent, key=lambda sent: sent[0]["reference"])
    assert [(body["reference"], body["status"], body["operator_reference"]) for body, _, _ in sent] == [
        ("P1", "SUCCESS", "SBX1"),
        ("P2", "FAILED", ""),
    ]
    for _, header, raw in sent:
        assert signatures.verify(secrets=[SECRET], body=raw, header=header)
    delivered = SandboxRecharge.objects.exclude(callback_delivered_at=None)
    assert dict(delivered.values_list("reference", "callback_due_at")) == {"P1": None, "P2": None}
    assert SandboxRecharge.objects.get(reference="P3").callback_due_at is not None
    assert gateways.deliver_due_sandbox_callbacks() == 0  # delivered once


@pytest.mark.parametrize("failure", [503, ConnectionRefusedError("refused"), http.client.BadStatusLine("HTTP/9")])
def test_a_callback_not_delivered_comes_due_again_later_and_is_given_up_after_its_attempts(
    settings, aggregator_endpoint, failure, caplog
):
    from datetime import timedelta

    from django.utils import timezone

    from purchases import gateways

    aggregator_endpoint.status = failure
    _record("P1", due_in=-1)

    before = timezone.now()
    assert gateways.deliver_due_sandbox_callbacks() == 0
    record = SandboxRecharge.objects.get(reference="P1")
    assert record.callback_attempts == 1 and record.callback_delivered_at is None
    assert record.callback_due_at >= before + timedelta(seconds=gateways.CALLBACK_LEASE_SECONDS)
    assert "not delivered (attempt 1 of 8" in caplog.text
    assert gateways.deliver_due_sandbox_callbacks() == 0 and len(aggregator_endpoint.sent) == 1  # not yet due

    aggregator_endpoint.status = 200
    SandboxRecharge.objects.update(callback_due_at=timezone.now(), callback_attempts=3)
    assert gateways.deliver_due_sandbox_callbacks() == 1


def test_a_callback_is_given_up_after_its_last_attempt_and_leaves_the_outbox(aggregator_endpoint, caplog):
    from django.utils import timezone

    from purchases import gateways

    aggregator_endpoint.status = 503
    _record("P1", due_in=-1)
    SandboxRecharge.objects.update(callback_attempts=gateways.CALLBACK_ATTEMPTS - 1)

    assert gateways.deliver_due_sandbox_callbacks() == 0

    assert "attempt 8 of 8, giving up" in caplog.text
    record = SandboxRecharge.objects.get(reference="P1")
    assert (record.callback_due_at, record.callback_delivered_at) == (None, None)
    assert not SandboxRecharge.objects.filter(callback_due_at__lte=timezone.now()).exists()


def test_a_claimed_callback_is_not_claimed_again_until_its_retry_time(settings, aggregator_endpoint):
    # The claim commits its lease before the POSTs: a second loop (another beat round, another machine)
    # running meanwhile finds nothing to send; a loop that died leaves it to the next after the lease.
    from purchases import gateways

    _record("P1", due_in=-1)

    claimed = gateways._claim_due_callbacks()

    assert [callback.reference for callback in claimed] == ["P1"]
    assert gateways._claim_due_callbacks() == []


def test_an_idle_senders_poll_is_one_plain_read():
    # Each sender polls twenty times a second: with nothing due, no transaction and no row lock.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from purchases import gateways

    _record("P1", due_in=60)
    with CaptureQueriesContext(connection) as queries:
        assert gateways._claim_due_callbacks() == []
    assert [statement_of(q["sql"]).split()[0] for q in queries.captured_queries] == ["SELECT"]


def test_a_reversal_while_a_callback_is_on_its_way_is_called_back_after_it(settings, aggregator_endpoint):
    from purchases import gateways

    _with_a_broker(settings)
    _record("P1", "SUCCESS", due_in=-1)
    SandboxRecharge.objects.update(callback_attempts=2)  # a reversal starts its callback's count afresh
    claimed = gateways._claim_due_callbacks()
    assert SandboxGateway.reverse("P1") is True  # the operator refunds it while SUCCESS is being sent
    assert SandboxRecharge.objects.get(reference="P1").callback_attempts == 0

    gateways._record_outcomes(delivered=claimed, given_up=[])  # SUCCESS delivered

    record = SandboxRecharge.objects.get(reference="P1")
    assert record.status == "REVERSED" and record.callback_delivered_at is None
    SandboxRecharge.objects.update(callback_due_at=record.callback_due_at.replace(year=2000))
    assert gateways.deliver_due_sandbox_callbacks() == 1
    assert aggregator_endpoint.sent[-1][0]["status"] == "REVERSED"
    assert SandboxRecharge.objects.get(reference="P1").callback_due_at is None


def test_the_operator_loop_sends_a_callback_that_comes_due_while_it_runs(settings, aggregator_endpoint):
    from purchases import gateways

    _record("P1", due_in=0.3)

    started = time.monotonic()
    assert gateways.run_sandbox_operator(seconds=1.0) == 1
    assert time.monotonic() - started >= 1.0
    assert [body["reference"] for body, _, _ in aggregator_endpoint.sent] == ["P1"]


def test_the_operator_loop_task_runs_one_round(settings, aggregator_endpoint):
    from purchases import tasks

    settings.RECHARGE_SANDBOX_CALLBACK_ROUND_SECONDS = 0.1
    _record("P1", due_in=-1)

    assert tasks.deliver_sandbox_callbacks.delay().get() == 1


def test_a_second_receipt_while_the_first_callback_is_on_its_way_is_called_back_again(settings, aggregator_endpoint):
    from purchases import gateways

    _with_a_broker(settings)
    gateway = SandboxGateway()
    gateway.recharge(_request())
    SandboxRecharge.objects.update(callback_due_at=SandboxRecharge.objects.get().callback_due_at.replace(year=2000))
    claimed = gateways._claim_due_callbacks()

    gateway.recharge(_request())  # received again while the first callback is being sent
    gateways._record_outcomes(delivered=claimed, given_up=[])

    record = SandboxRecharge.objects.get(reference="P424242")
    assert record.times_received == 2 and record.callback_attempts == 0
    assert record.callback_due_at is not None and record.callback_delivered_at is None


def test_with_no_broker_a_recharge_sends_its_own_callback_at_once_and_only_its_own(aggregator_endpoint):
    _record("P9", due_in=-1)  # someone else's, due: left to the sender

    assert SandboxGateway().recharge(_request()).status == "PENDING"

    assert [body["reference"] for body, _, _ in aggregator_endpoint.sent] == ["P424242"]
    assert SandboxRecharge.objects.get(reference="P424242").callback_delivered_at is not None
    assert SandboxRecharge.objects.get(reference="P9").callback_delivered_at is None


def test_with_no_broker_a_reversal_is_called_back_at_once(aggregator_endpoint):
    SandboxGateway().recharge(_request())

    assert SandboxGateway.reverse("P424242") is True

    assert [body["status"] for body, _, _ in aggregator_endpoint.sent] == ["SUCCESS", "REVERSED"]
    record = SandboxRecharge.objects.get(reference="P424242")
    assert record.callback_delivered_at is not None and record.callback_due_at is None


def test_with_no_broker_a_callback_that_cannot_be_sent_does_not_fail_the_recharge(
    aggregator_endpoint, monkeypatch, caplog
):
    from django.db import OperationalError

    from purchases import gateways

    def locked(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(gateways, "_claim_due_callbacks", locked)

    assert SandboxGateway().recharge(_request()).status == "PENDING"  # received: not an unknown outcome
    assert "the callback of P424242 could not be sent" in caplog.text
    assert SandboxRecharge.objects.filter(reference="P424242").exists()


@pytest.mark.parametrize("status", ["SUCCESS", "FAILED"])
def test_a_settlement_writes_the_purchase_before_it_locks_the_wallets(shop, plan, status):
    # Every sale of a distributor's retailers locks its wallet (the margin), from the lock to the
    # COMMIT: the purchase's own UPDATE runs before it, not while the wallets are held.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    purchase = _buy(shop[0], plan, SandboxGateway.PENDING_FOREVER)

    with CaptureQueriesContext(connection) as queries:
        services.apply_operator_callback(reference=f"P{purchase.pk}", status=status, operator_reference="OP9")

    statements = [statement_of(q["sql"]) for q in queries.captured_queries]
    purchase_update = next(i for i, sql in enumerate(statements) if sql.startswith('UPDATE "purchases_purchase"'))
    wallet_lock = next(i for i, sql in enumerate(statements) if 'FROM "wallet_wallet"' in sql)
    assert purchase_update < wallet_lock
    assert not any(sql.startswith('UPDATE "purchases_purchase"') for sql in statements[wallet_lock:])
    assert_ledger_clean()


@pytest.mark.parametrize("status", ["SUCCESS", "FAILED"])
def test_a_ledger_refusal_rolls_back_the_purchase_written_before_it(shop, plan, status):
    # The purchase is written before the ledger locks the wallets: if the ledger then refuses (here the
    # hold is no longer pending), the purchase must stay as it was, commissions included.
    from wallet import selectors as wallet_selectors
    from wallet.services import TransferNotPending

    purchase = _buy(shop[0], plan, SandboxGateway.PENDING_FOREVER)
    before = Purchase.objects.get(pk=purchase.pk)
    ledger.void_transfer(transfer=wallet_selectors.purchase_transfer(reference=purchase.reference))

    with pytest.raises(TransferNotPending):
        services.apply_operator_callback(reference=f"P{purchase.pk}", status=status, operator_reference="OP9")

    after = Purchase.objects.get(pk=purchase.pk)
    columns = [field.attname for field in Purchase._meta.concrete_fields]  # every one, updated_at too
    assert {name: getattr(after, name) for name in columns} == {name: getattr(before, name) for name in columns}
    assert after.status == "PENDING"
    assert_ledger_clean()


def test_a_reversal_claimed_by_a_second_sender_is_not_marked_by_the_first(settings, aggregator_endpoint):
    # The first sender's SUCCESS is still on its way when the REVERSED callback comes due and another
    # sender claims it: the first one's answer must not mark the row, or a REVERSED that fails is lost.
    from purchases import gateways

    _with_a_broker(settings)
    _record("P1", "SUCCESS", due_in=-1)
    first = gateways._claim_due_callbacks()
    SandboxGateway.reverse("P1")
    SandboxRecharge.objects.update(callback_due_at=SandboxRecharge.objects.get().callback_due_at.replace(year=2000))
    second = gateways._claim_due_callbacks()
    assert [(c.status, c.attempt) for c in first + second] == [("SUCCESS", 1), ("REVERSED", 1)]

    gateways._record_outcomes(delivered=first, given_up=[])

    record = SandboxRecharge.objects.get(reference="P1")
    assert record.callback_delivered_at is None and record.callback_due_at == second[0].leased_until


def test_a_sender_posts_its_whole_claim_at_once_within_a_timeout_shorter_than_its_lease(
    aggregator_endpoint, monkeypatch
):
    # A claim larger than the POSTs running at once would send its last ones after the lease, when
    # another sender may have claimed them again.
    import threading

    from purchases import gateways

    for n in range(gateways.CALLBACK_SENDERS + 4):
        _record(f"P{n}", due_in=-1)
    together = threading.Barrier(gateways.CALLBACK_SENDERS, timeout=5)
    timeouts = []

    def urlopen(request, timeout):
        timeouts.append(timeout)
        together.wait()  # every POST of the claim is in flight at the same moment
        return aggregator_endpoint(request, timeout)

    import urllib.request

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)

    assert gateways.deliver_due_sandbox_callbacks() == gateways.CALLBACK_SENDERS
    assert timeouts == [gateways.CALLBACK_TIMEOUT_SECONDS] * gateways.CALLBACK_SENDERS  # the rest: the next claim
    assert 2 * gateways.CALLBACK_TIMEOUT_SECONDS < gateways.CALLBACK_LEASE_SECONDS


def test_with_no_broker_a_callback_that_fails_is_given_up_not_left_due(aggregator_endpoint):
    aggregator_endpoint.status = 503

    SandboxGateway().recharge(_request())

    record = SandboxRecharge.objects.get(reference="P424242")
    assert (record.callback_attempts, record.callback_due_at, record.callback_delivered_at) == (1, None, None)


@pytest.mark.parametrize("again", ["received twice", "reversed"])
def test_a_callback_due_again_is_no_longer_shown_delivered(settings, aggregator_endpoint, again):
    SandboxGateway().recharge(_request())  # no broker: delivered at once
    assert SandboxRecharge.objects.get().callback_delivered_at is not None

    _with_a_broker(settings)
    if again == "reversed":
        SandboxGateway.reverse("P424242")
    else:
        SandboxGateway().recharge(_request())

    record = SandboxRecharge.objects.get()
    assert record.callback_delivered_at is None and record.callback_due_at is not None
