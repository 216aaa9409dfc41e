"""Top-ups through the payment provider: intents, the signed webhook, the status check, refunds."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.tests.factories import ClientFactory
from payments import services
from payments.models import SandboxPayment, TopUp
from payments.tests.helpers import event_body, pay_in_sandbox, post_webhook, sandbox_events
from wallet.models import SystemWallet, Transfer, Wallet
from wallet.reconciliation import verify_ledger
from wallet.tests.helpers import assert_ledger_clean, balance_of, ledger_snapshot

pytestmark = pytest.mark.django_db
TOPUPS = "/api/wallet/topups/"


@pytest.fixture
def payer(db):
    return ClientFactory()


def open_top_up(user, amount="500.00", key=None):
    return services.create_top_up(user=user, amount=Decimal(amount), idempotency_key=key)


# --- intents ---------------------------------------------------------------------------------


def test_a_top_up_opens_a_pending_intent_with_where_to_pay(auth_client, payer):
    response = auth_client(payer).post(TOPUPS, {"amount": "500.00"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "PENDING" and body["amount"] == "500.00" and body["currency"] == "INR"
    assert body["provider"] == "sandbox" and body["provider_reference"].startswith("sbx_")
    assert body["payment_url"].endswith(f"/api/wallet/topups/sandbox/{body['provider_reference']}/")
    assert "am=500.00" in body["upi_intent"]
    assert sandbox_events(TopUp.objects.get(pk=body["id"])) == ["created"]
    assert balance_of(payer) == 0  # nothing is credited before the provider confirms


@pytest.mark.parametrize("amount", ["0.50", "0", "-5.00", "12.345", "abc", "100000.01"])
def test_a_top_up_amount_out_of_bounds_is_refused_and_writes_nothing(auth_client, payer, amount):
    response = auth_client(payer).post(TOPUPS, {"amount": amount}, format="json")
    assert response.status_code == 400
    # core.money's refusals (one parser), or the top-up bounds (an InvalidAmount too)
    assert response.json()["code"] in {
        "invalid_amount",
        "amount_not_plain_decimal",
        "amount_not_positive",
        "amount_too_precise",
        "amount_above_maximum",
    }
    assert "amount" in response.json()["errors"]
    assert not TopUp.objects.exists() and not SandboxPayment.objects.exists()


def test_the_service_refuses_an_amount_under_the_minimum(payer, settings):
    settings.PAYMENT_MIN_TOPUP_AMOUNT = Decimal("10.00")
    with pytest.raises(services.TopUpAmountOutOfBounds):
        open_top_up(payer, "9.99")
    assert not TopUp.objects.exists()


def test_the_same_idempotency_key_answers_the_same_intent(auth_client, payer):
    client = auth_client(payer)
    first = client.post(TOPUPS, {"amount": "200.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = client.post(TOPUPS, {"amount": "200.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert TopUp.objects.count() == 1 and SandboxPayment.objects.count() == 1


def test_a_key_reused_for_another_amount_is_refused_by_the_service(payer):
    open_top_up(payer, "200.00", key="k-2")
    with pytest.raises(services.TopUpKeyReused):
        open_top_up(payer, "300.00", key="k-2")
    assert TopUp.objects.count() == 1


def test_an_intent_the_provider_refuses_is_failed_with_the_reason(auth_client, payer):
    response = auth_client(payer).post(TOPUPS, {"amount": "100.13"}, format="json")  # sandbox: 13 paise
    assert response.status_code == 201
    assert response.json()["status"] == "FAILED" and "refused" in response.json()["failure_reason"]
    assert response.json()["payment_url"] == ""


def test_a_payer_lists_and_reads_only_its_own_top_ups(auth_client, payer):
    mine, theirs = open_top_up(payer), open_top_up(ClientFactory())
    client = auth_client(payer)
    listed = client.get(TOPUPS).json()
    assert [row["id"] for row in listed["results"]] == [mine.pk]
    assert client.get(f"{TOPUPS}{mine.pk}/").json()["status"] == "PENDING"
    other = client.get(f"{TOPUPS}{theirs.pk}/")
    assert other.status_code == 404 and other.json()["code"] == "not_found"


def test_top_ups_need_a_signed_in_caller(api_client):
    assert api_client.get(TOPUPS).status_code == 401
    assert api_client.post(TOPUPS, {"amount": "10.00"}, format="json").status_code == 401


# --- the webhook -----------------------------------------------------------------------------


def test_a_success_webhook_credits_the_wallet_once_from_the_payment_settlement_account(api_client, payer):
    top_up = open_top_up(payer, "500.00")
    pay_in_sandbox(top_up)
    response = post_webhook(api_client, event_body(top_up))
    assert response.status_code == 200, response.content
    assert response.json() == {"received": True, "applied": True, "status": "SUCCEEDED"}
    top_up.refresh_from_db()
    assert top_up.status == "SUCCEEDED" and top_up.completed_at is not None
    assert top_up.credit.kind == Transfer.Kind.TOPUP and top_up.credit.amount == Decimal("500.00")
    assert top_up.credit.from_wallet.system_code == SystemWallet.PAYMENT_SETTLEMENT
    assert balance_of(payer) == Decimal("500.00")
    assert_ledger_clean()


def test_a_replayed_success_webhook_is_200_and_credits_nothing_more(api_client, payer):
    top_up = open_top_up(payer, "500.00")
    body = event_body(top_up)
    post_webhook(api_client, body)
    before = ledger_snapshot()
    replay = post_webhook(api_client, body)
    assert replay.status_code == 200 and replay.json()["applied"] is False
    assert ledger_snapshot() == before and balance_of(payer) == Decimal("500.00")


@pytest.mark.parametrize("status", ["FAILED", "EXPIRED"])
def test_a_failure_or_expiry_webhook_credits_nothing(api_client, payer, status):
    top_up = open_top_up(payer)
    before = ledger_snapshot()
    response = post_webhook(api_client, event_body(top_up, status=status))
    assert response.status_code == 200 and response.json()["status"] == status
    top_up.refresh_from_db()
    assert top_up.status == status and top_up.credit is None and top_up.failure_reason
    assert ledger_snapshot() == before
    # ... and a late success for the closed intent changes nothing either.
    late = post_webhook(api_client, event_body(top_up))
    assert late.status_code == 200 and late.json() == {"received": True, "applied": False, "status": status}
    assert ledger_snapshot() == before


def test_a_pending_webhook_changes_nothing(api_client, payer):
    top_up = open_top_up(payer)
    response = post_webhook(api_client, event_body(top_up, status="PENDING"))
    assert response.json() == {"received": True, "applied": False, "status": "PENDING"}


def test_a_webhook_signed_with_another_secret_is_401_and_writes_nothing(api_client, payer):
    top_up = open_top_up(payer)
    before = ledger_snapshot()
    response = post_webhook(api_client, event_body(top_up), secret="not-our-secret")
    assert response.status_code == 401 and response.json()["code"] == "invalid_signature"
    assert ledger_snapshot() == before and TopUp.objects.get().status == "PENDING"


def test_a_webhook_without_a_signature_is_401(api_client, payer):
    top_up = open_top_up(payer)
    response = api_client.generic(
        "POST", "/api/wallet/topups/webhooks/sandbox/", event_body(top_up), "application/json"
    )
    assert response.status_code == 401 and TopUp.objects.get().status == "PENDING"


def test_a_webhook_with_a_stale_timestamp_is_401_and_writes_nothing(api_client, payer):
    top_up = open_top_up(payer)
    response = post_webhook(api_client, event_body(top_up), timestamp=int(time.time()) - 301)
    assert response.status_code == 401 and response.json()["code"] == "stale_signature"
    assert TopUp.objects.get().status == "PENDING" and balance_of(payer) == 0


def test_a_webhook_signed_with_a_rotated_in_secret_is_accepted(api_client, payer, settings):
    settings.PAYMENT_WEBHOOK_SECRETS = ["new-secret", "old-secret"]
    top_up = open_top_up(payer)
    assert post_webhook(api_client, event_body(top_up), secret="old-secret").status_code == 200
    assert balance_of(payer) == top_up.amount


def test_no_configured_secret_refuses_every_webhook(api_client, payer, settings):
    top_up = open_top_up(payer)
    settings.PAYMENT_WEBHOOK_SECRETS = []
    assert post_webhook(api_client, event_body(top_up), secret="anything").status_code == 401
    assert balance_of(payer) == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"amount": "5000.00"}, "amount"),
        ({"amount": "500.01"}, "amount"),
        ({"currency": "USD"}, "currency"),
        ({"merchant_reference": "T999999"}, "merchant_reference"),
    ],
)
def test_a_webhook_that_disagrees_with_the_intent_is_refused_logged_and_writes_nothing(
    api_client, payer, overrides, field, caplog
):
    top_up = open_top_up(payer, "500.00")
    before = ledger_snapshot()
    response = post_webhook(api_client, event_body(top_up, **overrides))
    assert response.status_code == 400
    assert response.json()["code"] == "payment_mismatch" and field in response.json()["errors"]
    assert ledger_snapshot() == before and TopUp.objects.get().status == "PENDING"
    assert any("does not match the intent" in record.getMessage() for record in caplog.records)


def test_a_webhook_for_someone_elses_intent_credits_nobody(api_client, payer):
    mine, theirs = open_top_up(payer, "500.00"), open_top_up(ClientFactory(), "500.00")
    # The provider's reference is theirs, our merchant reference mine: refused, nothing applied.
    response = post_webhook(api_client, event_body(theirs, merchant_reference=mine.merchant_reference))
    assert response.status_code == 400 and response.json()["code"] == "payment_mismatch"
    assert not Transfer.objects.filter(kind=Transfer.Kind.TOPUP).exists()


def test_a_webhook_for_an_unknown_intent_is_404_and_logged(api_client, payer, caplog):
    top_up = open_top_up(payer)
    response = post_webhook(api_client, event_body(top_up, reference="sbx_nobody"))
    assert response.status_code == 404 and response.json()["code"] == "unknown_intent"
    assert any("unknown reference" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"data": "x"}',
        b'{"data": {"reference": "r", "status": "PAID", "amount": "1", "currency": "INR"}}',
        b'{"data": {"reference": "r", "status": "SUCCEEDED", "amount": 5, "currency": "INR"}}',
        b'{"data": {"reference": "r", "status": "SUCCEEDED", "amount": "NaN", "currency": "INR"}}',
    ],
)
def test_a_malformed_webhook_body_is_400_and_writes_nothing(api_client, payer, body):
    open_top_up(payer)
    before = ledger_snapshot()
    response = post_webhook(api_client, body)
    assert response.status_code == 400 and response.json()["code"] == "invalid_payload"
    assert ledger_snapshot() == before


def test_a_webhook_for_another_provider_is_404(api_client, payer):
    top_up = open_top_up(payer)
    response = post_webhook(api_client, event_body(top_up), path="/api/wallet/topups/webhooks/stripe/")
    assert response.status_code == 404 and balance_of(payer) == 0


def test_a_paid_top_up_the_wallet_refuses_fails_and_is_returned_to_the_payer(api_client, payer):
    top_up = open_top_up(payer, "500.00")
    pay_in_sandbox(top_up)
    payer.is_active = False
    payer.save(update_fields=["is_active"])
    response = post_webhook(api_client, event_body(top_up))
    assert response.status_code == 200 and response.json()["status"] == "FAILED"
    top_up.refresh_from_db()
    assert top_up.failure_reason.startswith("wallet_inactive") and top_up.provider_refund_reference
    assert "refunded" in sandbox_events(top_up) and balance_of(payer) == 0
    assert_ledger_clean()


# --- the status check ------------------------------------------------------------------------


def test_the_status_check_credits_a_paid_top_up_whose_webhook_never_came(payer):
    top_up = open_top_up(payer, "250.00")
    pay_in_sandbox(top_up, "succeeded_silently")
    report = services.settle_stale_top_ups(older_than=timedelta(0))
    assert report.settled_ids == [top_up.pk]
    top_up.refresh_from_db()
    assert top_up.status == "SUCCEEDED" and balance_of(payer) == Decimal("250.00")
    assert "status_check" in sandbox_events(top_up)
    again = services.settle_stale_top_ups(older_than=timedelta(0))  # settled: not asked about again
    assert again.checked == 0 and balance_of(payer) == Decimal("250.00")
    assert_ledger_clean()


def test_the_status_check_leaves_an_unpaid_top_up_pending_until_it_expires(payer):
    top_up = open_top_up(payer)
    report = services.settle_stale_top_ups(older_than=timedelta(0))
    assert report.still_pending == 1 and TopUp.objects.get().status == "PENDING"
    SandboxPayment.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    report = services.settle_stale_top_ups(older_than=timedelta(0))
    top_up.refresh_from_db()
    assert report.settled == 1 and top_up.status == "EXPIRED" and balance_of(payer) == 0


def test_the_status_check_waits_for_the_webhook_first(payer):
    open_top_up(payer)
    assert services.settle_stale_top_ups(older_than=timedelta(minutes=2)).checked == 0


def test_an_intent_the_provider_never_answered_expires(payer):
    top_up = TopUp.objects.create(
        user=payer, amount="10.00", currency="INR", provider="sandbox", expires_at=timezone.now() - timedelta(1)
    )
    report = services.settle_stale_top_ups()
    top_up.refresh_from_db()
    assert report.expired_unsent == 1 and top_up.status == "EXPIRED"


def test_the_beat_task_runs_the_status_check(payer):
    from payments.tasks import settle_stale_top_ups

    top_up = open_top_up(payer)
    pay_in_sandbox(top_up, "succeeded_silently")
    TopUp.objects.update(created_at=timezone.now() - timedelta(hours=1))
    assert "1 settled" in settle_stale_top_ups.delay().get()
    assert balance_of(payer) == top_up.amount


# --- refunds --------------------------------------------------------------------------------


def succeeded_top_up(api_client, payer, amount="500.00"):
    top_up = open_top_up(payer, amount)
    pay_in_sandbox(top_up)
    post_webhook(api_client, event_body(top_up))
    top_up.refresh_from_db()
    return top_up


def test_a_refund_debits_the_wallet_through_the_ledger_and_is_recorded_by_the_provider(api_client, payer, admin_user):
    top_up = succeeded_top_up(api_client, payer)
    refunded = services.refund_top_up(top_up=top_up, initiated_by=admin_user)
    assert refunded.status == "REFUNDED" and refunded.provider_refund_reference.startswith("rfnd_")
    assert refunded.refund.kind == Transfer.Kind.TOPUP_REFUND and refunded.refund.status == Transfer.Status.POSTED
    assert refunded.refund.to_wallet.system_code == SystemWallet.PAYMENT_SETTLEMENT
    assert balance_of(payer) == 0
    assert SandboxPayment.objects.get().refunded_amount == Decimal("500.00")
    assert_ledger_clean()
    with pytest.raises(services.TopUpNotRefundable):
        services.refund_top_up(top_up=top_up, initiated_by=admin_user)
    assert balance_of(payer) == 0


def test_a_refund_of_money_already_spent_is_refused_and_changes_nothing(api_client, payer, admin_user):
    from wallet import services as ledger

    top_up = succeeded_top_up(api_client, payer)
    ledger.debit_wallet(user=payer, amount="100.00")
    before = ledger_snapshot()
    with pytest.raises(ledger.InsufficientFunds):
        services.refund_top_up(top_up=top_up, initiated_by=admin_user)
    assert ledger_snapshot() == before and TopUp.objects.get().status == "SUCCEEDED"
    assert SandboxPayment.objects.get().refunded_amount == 0


def test_a_refund_the_provider_refuses_releases_the_hold(api_client, payer, admin_user):
    top_up = succeeded_top_up(api_client, payer)
    SandboxPayment.objects.update(status=SandboxPayment.Status.FAILED)  # the provider lost it
    with pytest.raises(services.ProviderRefundFailed):
        services.refund_top_up(top_up=top_up, initiated_by=admin_user)
    top_up.refresh_from_db()
    wallet = Wallet.objects.get(user=payer)
    assert top_up.status == "SUCCEEDED" and top_up.refund is None
    assert wallet.balance == Decimal("500.00") and wallet.held == 0
    assert_ledger_clean()


def test_only_a_succeeded_top_up_is_refunded(payer, admin_user):
    top_up = open_top_up(payer)
    with pytest.raises(services.TopUpNotRefundable):
        services.refund_top_up(top_up=top_up, initiated_by=admin_user)


# --- verify_ledger proves top-ups equal settlements ------------------------------------------


def test_verify_ledger_flags_a_top_up_credit_that_no_top_up_accounts_for(payer):
    from wallet import services as ledger

    ledger.credit_top_up(user=payer, amount="50.00")
    report = verify_ledger()
    assert not report.ok
    assert any("matches no top-up" in line for line in report.mismatches)
    assert any("the top-ups say 0.00" in line for line in report.mismatches)


def test_verify_ledger_flags_a_succeeded_top_up_whose_amount_differs_from_its_credit(api_client, payer):
    top_up = succeeded_top_up(api_client, payer, "500.00")
    TopUp.objects.filter(pk=top_up.pk).update(amount="400.00")
    report = verify_ledger()
    assert not report.ok and any("matches no top-up" in line for line in report.mismatches)


# --- wallet limits ---------------------------------------------------------------------------


def test_a_top_up_the_wallet_could_not_take_is_refused_before_the_provider_is_asked(auth_client, payer, admin_user):
    from wallet import services as ledger

    ledger.fund_wallet(user=payer, amount="9800.00", initiated_by=admin_user)
    response = auth_client(payer).post(TOPUPS, {"amount": "500.00"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "balance_limit_exceeded"
    assert "200.00 more" in response.json()["detail"]
    assert not TopUp.objects.exists() and not SandboxPayment.objects.exists()


def test_a_paid_top_up_beyond_the_limit_by_then_fails_and_is_returned(api_client, payer, admin_user):
    from wallet import services as ledger

    top_up = open_top_up(payer, "500.00")
    ledger.fund_wallet(user=payer, amount="9800.00", initiated_by=admin_user)  # meanwhile
    pay_in_sandbox(top_up)
    response = post_webhook(api_client, event_body(top_up))
    assert response.status_code == 200 and response.json()["status"] == "FAILED"
    top_up.refresh_from_db()
    assert top_up.failure_reason.startswith("balance_limit_exceeded") and top_up.provider_refund_reference
    assert balance_of(payer) == Decimal("9800.00")
    assert_ledger_clean()


def test_the_settle_command_credits_a_silently_paid_top_up(payer):
    from io import StringIO

    from django.core.management import CommandError, call_command

    top_up = open_top_up(payer, "40.00")
    pay_in_sandbox(top_up, "succeeded_silently")
    out = StringIO()
    call_command("settle_stale_top_ups", "--older-than", "0", stdout=out)
    assert "1 settled" in out.getvalue() and balance_of(payer) == Decimal("40.00")
    with pytest.raises(CommandError):
        call_command("settle_stale_top_ups", "--older-than", "-1")


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5_000 + b"1" + b"}" * 5_000, b'{"data": "\xff\xfe"}', b'{"x": NaN}'],
    ids=["nested 100,000 deep", "objects nested 5,000 deep", "invalid UTF-8", "NaN"],
)
def test_a_signed_hostile_webhook_body_is_a_400_never_a_500(api_client, payer, body):
    open_top_up(payer)
    before = ledger_snapshot()
    response = post_webhook(api_client, body)
    assert response.status_code == 400 and response.json()["code"] == "invalid_payload"
    assert ledger_snapshot() == before
