"""The sandbox provider end to end: the payer completes a payment at its URL, and the sandbox
delivers its signed webhook over real HTTP to the configured URL (a live server)."""

from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.tests.factories import ClientFactory
from payments import services
from payments.models import SandboxPayment, TopUp
from payments.providers import BasePaymentProvider
from wallet.models import Wallet
from wallet.tests.helpers import assert_ledger_clean

WEBHOOK_PATH = "/api/wallet/topups/webhooks/sandbox/"


@pytest.fixture
def live_webhook(live_server, settings):
    settings.PAYMENT_SANDBOX_WEBHOOK_URL = live_server.url + WEBHOOK_PATH
    return settings.PAYMENT_SANDBOX_WEBHOOK_URL


@pytest.mark.django_db(transaction=True)
def test_paying_at_the_sandbox_url_delivers_the_signed_webhook_over_http_and_credits_the_wallet(
    api_client, live_webhook
):
    payer = ClientFactory()
    top_up = services.create_top_up(user=payer, amount=Decimal("300.00"))
    response = api_client.post(
        top_up.payment_url.split("127.0.0.1:8000", 1)[1], {"outcome": "succeeded"}, format="json"
    )
    assert response.status_code == 200, response.content
    top_up.refresh_from_db()
    assert top_up.status == "SUCCEEDED"
    assert Wallet.objects.get(user=payer).balance == Decimal("300.00")
    log = SandboxPayment.objects.get().log
    assert [entry["event"] for entry in log] == ["created", "payer", "webhook"]
    assert log[-1]["answer"] == 200 and log[-1]["url"] == live_webhook
    assert_ledger_clean()


@pytest.mark.django_db(transaction=True)
def test_a_failed_payment_sends_its_webhook_and_credits_nothing(api_client, live_webhook):
    payer = ClientFactory()
    top_up = services.create_top_up(user=payer, amount=Decimal("300.00"))
    api_client.post(f"/api/wallet/topups/sandbox/{top_up.provider_reference}/", {"outcome": "failed"}, format="json")
    top_up.refresh_from_db()
    assert top_up.status == "FAILED" and Wallet.objects.get(user=payer).balance == 0


@pytest.mark.django_db
def test_a_payment_can_be_completed_once(api_client):
    top_up = services.create_top_up(user=ClientFactory(), amount=Decimal("10.00"))
    url = f"/api/wallet/topups/sandbox/{top_up.provider_reference}/"
    api_client.post(url, {"outcome": "succeeded_silently"}, format="json")
    again = api_client.post(url, {"outcome": "succeeded"}, format="json")
    assert again.status_code == 409 and again.json()["code"] == "payment_closed"


@pytest.mark.django_db
def test_the_silent_outcome_sends_no_webhook(api_client):
    top_up = services.create_top_up(user=ClientFactory(), amount=Decimal("10.00"))
    url = f"/api/wallet/topups/sandbox/{top_up.provider_reference}/"
    api_client.post(url, {"outcome": "succeeded_silently"}, format="json")
    page = api_client.get(url).json()
    assert page["status"] == "SUCCEEDED" and [entry["event"] for entry in page["log"]] == ["created", "payer"]
    assert TopUp.objects.get().status == "PENDING"


@pytest.mark.django_db
def test_an_undeliverable_webhook_is_recorded_and_retried(settings):
    from payments import sandbox

    settings.PAYMENT_SANDBOX_WEBHOOK_URL = "http://127.0.0.1:9/nothing-listens-here/"
    top_up = services.create_top_up(user=ClientFactory(), amount=Decimal("10.00"))
    SandboxPayment.objects.update(status="SUCCEEDED")
    with pytest.raises(sandbox.WebhookDeliveryFailed):
        sandbox.deliver_webhook(reference=top_up.provider_reference)
    entry = SandboxPayment.objects.get().log[-1]
    assert entry["event"] == "webhook" and entry["answer"] is None and entry["error"]


@pytest.mark.django_db
def test_the_sandbox_pages_are_gone_when_another_provider_is_configured(api_client, settings):
    top_up = services.create_top_up(user=ClientFactory(), amount=Decimal("10.00"))
    settings.PAYMENT_PROVIDER = "payments.tests.test_sandbox.OtherProvider"
    url = f"/api/wallet/topups/sandbox/{top_up.provider_reference}/"
    assert api_client.get(url).status_code == 404
    assert api_client.post(url, {"outcome": "succeeded"}, format="json").status_code == 404
    assert SandboxPayment.objects.get().status == "PENDING"


@pytest.mark.django_db
def test_the_sandbox_waits_its_configured_latency(settings):
    import time

    settings.PAYMENT_SANDBOX_LATENCY_MS = 200
    started = time.monotonic()
    services.create_top_up(user=ClientFactory(), amount=Decimal("10.00"))
    assert time.monotonic() - started >= 0.2


class OtherProvider(BasePaymentProvider):
    code = "other"


@pytest.mark.django_db
def test_a_switched_off_sandbox_opens_no_payment_and_shows_no_page(api_client, settings):
    top_up = services.create_top_up(user=ClientFactory(), amount=Decimal("10.00"))
    settings.PAYMENT_SANDBOX_ENABLED = False
    url = f"/api/wallet/topups/sandbox/{top_up.provider_reference}/"
    assert api_client.post(url, {"outcome": "succeeded"}, format="json").status_code == 404
    refused = services.create_top_up(user=ClientFactory(), amount=Decimal("10.00"))
    assert refused.status == "FAILED" and "switched off" in refused.failure_reason
    report = services.settle_stale_top_ups(older_than=timedelta(0))
    assert report.errors == 1 and TopUp.objects.get(pk=top_up.pk).status == "PENDING"
