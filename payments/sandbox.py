"""The sandbox provider's payer side and webhook sender (development, tests, the benchmark).

`complete_payment` is what a payer does on the sandbox's payment page (`POST` to the intent's
`payment_url`, README "How a mobile client adds money"); `deliver_webhook` is the provider calling
us back: the signed JSON POST to PAYMENT_SANDBOX_WEBHOOK_URL, sent by a task after the commit and
retried while the receiver fails. Both only exist while the sandbox is the configured provider.
"""

import json
import logging
import secrets
import time
import urllib.error
import urllib.request

from django.conf import settings
from django.db import transaction

from core import signatures
from core.errors import DomainError, NotFound
from core.queue import enqueue_after_commit
from payments.models import SandboxPayment
from payments.providers import PaymentStatus, SandboxPaymentProvider, expire_if_due, get_provider, log_entry

logger = logging.getLogger(__name__)

OUTCOMES = {
    "succeeded": (PaymentStatus.SUCCEEDED, True),
    "failed": (PaymentStatus.FAILED, True),
    "expired": (PaymentStatus.EXPIRED, True),
    "succeeded_silently": (PaymentStatus.SUCCEEDED, False),  # paid, but the webhook is lost
}


class SandboxDisabled(NotFound):
    message = "Not found."


class SandboxPaymentClosed(DomainError):
    code = "payment_closed"
    message = "This payment is already {status}."
    status_code = 409


class WebhookDeliveryFailed(Exception):
    """The receiver did not answer 2xx (or could not be reached): the task tries again."""


def ensure_enabled():
    """The sandbox's pages answer only while the sandbox is the configured provider and switched on."""
    if not settings.PAYMENT_SANDBOX_ENABLED or not isinstance(get_provider(), SandboxPaymentProvider):
        raise SandboxDisabled()


def payment(*, reference) -> SandboxPayment:
    ensure_enabled()
    found = SandboxPayment.objects.filter(reference=reference).first()
    if found is None:
        raise NotFound("No such sandbox payment.")
    return found


def complete_payment(*, reference, outcome) -> SandboxPayment:
    """The payer pays (or the payment fails or lapses): settle the sandbox payment once and, unless
    the outcome loses it, send the webhook after the commit. A settled payment is 409."""
    ensure_enabled()
    status, notify = OUTCOMES[outcome]
    with transaction.atomic():
        found = SandboxPayment.objects.select_for_update().filter(reference=reference).first()
        if found is None:
            raise NotFound("No such sandbox payment.")
        expire_if_due(found)
        if found.status != SandboxPayment.Status.PENDING:
            found.save(update_fields=["status", "log", "updated_at"])
            raise SandboxPaymentClosed(status=found.status)
        found.status = status
        found.log.append(log_entry("payer", outcome=outcome))
        found.save(update_fields=["status", "log", "updated_at"])
        if notify:
            from payments.tasks import deliver_sandbox_webhook

            enqueue_after_commit(deliver_sandbox_webhook, reference=reference)
    return found


def webhook_body(payment) -> bytes:
    event = {
        "id": "evt_" + secrets.token_hex(12),
        "type": f"payment.{payment.status.lower()}",
        "created": int(time.time()),
        "data": {
            "reference": payment.reference,
            "merchant_reference": payment.merchant_reference,
            "status": payment.status,
            "amount": f"{payment.amount:.2f}",
            "currency": payment.currency,
        },
    }
    return json.dumps(event, separators=(",", ":")).encode()


def deliver_webhook(*, reference) -> int:
    """POST the payment's current status, signed with PAYMENT_WEBHOOK_SECRET, to
    PAYMENT_SANDBOX_WEBHOOK_URL. Returns the HTTP status; raises WebhookDeliveryFailed unless 2xx.
    Each attempt and its answer is recorded in the payment's log."""
    found = SandboxPayment.objects.get(reference=reference)
    body = webhook_body(found)
    url = sandbox_webhook_url()
    secret = (settings.PAYMENT_WEBHOOK_SECRETS or [""])[0]
    request = urllib.request.Request(  # noqa: S310 - the URL is a setting, http(s) checked below
        url,
        data=body,
        headers={"Content-Type": "application/json", signatures.HEADER: signatures.sign(secret=secret, body=body)},
        method="POST",
    )
    try:
        if not url.startswith(("http://", "https://")):
            raise urllib.error.URLError(f"not an http(s) URL: {url!r}")
        with urllib.request.urlopen(request, timeout=settings.PAYMENT_SANDBOX_WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310
            answer = response.status
    except urllib.error.HTTPError as refusal:
        answer = refusal.code
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        _record(reference, log_entry("webhook", url=url, answer=None, error=str(exc)[:200]))
        logger.warning("sandbox webhook for %s not delivered to %s: %s", reference, url, exc)
        raise WebhookDeliveryFailed(str(exc)) from None
    _record(reference, log_entry("webhook", url=url, answer=answer, type=f"payment.{found.status.lower()}"))
    if not 200 <= answer < 300:
        logger.warning("sandbox webhook for %s refused by %s: HTTP %s", reference, url, answer)
        raise WebhookDeliveryFailed(f"HTTP {answer}")
    return answer


def sandbox_webhook_url() -> str:
    return settings.PAYMENT_SANDBOX_WEBHOOK_URL or (
        f"{settings.PAYMENT_SANDBOX_BASE_URL.rstrip('/')}/api/wallet/topups/webhooks/{SandboxPaymentProvider.code}/"
    )


def _record(reference, entry):
    with transaction.atomic():
        found = SandboxPayment.objects.select_for_update().get(reference=reference)
        found.log.append(entry)
        found.save(update_fields=["log", "updated_at"])
