"""Payment providers: how money a user pays (card, UPI, netbanking) reaches its wallet.

The provider in use is chosen by `settings.PAYMENT_PROVIDER`, a dotted path, the way the operator
gateway is (purchases.gateways); `get_provider()` returns an instance. A provider implements:

- `create_intent(...)`: open a payment for an amount; answers its reference and what the payer needs
  (a payment URL, a UPI intent);
- `check_status(reference)`: what became of it (SUCCEEDED, FAILED, EXPIRED or still PENDING), for
  top-ups whose webhook never came;
- `refund(...)`: give a collected payment back to the payer;
- `parse_webhook(payload)`: read the body of its (already signature-checked) webhook.

`ProviderUnavailable` means the call did not reach the provider (nothing was created or refunded).
"""

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from core.signatures import InvalidPayload

logger = logging.getLogger(__name__)


class ProviderError(Exception):
    """Base of the errors a provider raises."""


class ProviderUnavailable(ProviderError):
    """The provider could not be reached or refused the call: nothing was done there."""


class PaymentStatus:
    PENDING = "PENDING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    ALL = (PENDING, SUCCEEDED, FAILED, EXPIRED)


@dataclass(frozen=True)
class PaymentIntent:
    reference: str
    payment_url: str
    upi_intent: str = ""
    expires_at: object = None


@dataclass(frozen=True)
class PaymentResult:
    """What the provider says about one payment (a status check's answer or a webhook's body)."""

    reference: str
    status: str
    amount: Decimal | None = None
    currency: str = ""
    merchant_reference: str = ""
    message: str = ""


@dataclass(frozen=True)
class ProviderRefund:
    reference: str


class BasePaymentProvider:
    code = ""

    def create_intent(self, *, merchant_reference, amount, currency, expires_at) -> PaymentIntent:
        raise NotImplementedError

    def check_status(self, *, reference) -> PaymentResult:
        raise NotImplementedError

    def refund(self, *, reference, amount, merchant_reference) -> ProviderRefund:
        raise NotImplementedError

    def parse_webhook(self, payload: dict) -> PaymentResult:
        raise NotImplementedError


class SandboxPaymentProvider(BasePaymentProvider):
    """A stand-in for a payment provider, for development, tests and the benchmark.

    It keeps what it received in `payments.SandboxPayment` (the admin shows it) and behaves like a
    real one:

    - every API call first waits PAYMENT_SANDBOX_LATENCY_MS;
    - an amount with 13 paise (e.g. "100.13") is refused at creation (ProviderUnavailable);
    - the payer completes a payment at its `payment_url` (`POST {"outcome": ...}`, see
      payments.sandbox): `succeeded`, `failed`, `expired`, or `succeeded_silently` (paid, but the
      webhook is lost: only the status check finds out); an unpaid payment stays PENDING and becomes
      EXPIRED at its expiry time;
    - each outcome but the silent one sends the signed webhook over HTTP to
      PAYMENT_SANDBOX_WEBHOOK_URL (from a task, retried while the receiver fails);
    - refunds are recorded against the payment.
    """

    code = "sandbox"
    UNAVAILABLE_PAISE = 13

    def create_intent(self, *, merchant_reference, amount, currency, expires_at):
        from payments.models import SandboxPayment

        self._wait()
        if int(amount * 100) % 100 == self.UNAVAILABLE_PAISE:
            raise ProviderUnavailable("The payment provider refused the request (sandbox: 13 paise).")
        reference = "sbx_" + secrets.token_urlsafe(18)
        SandboxPayment.objects.create(
            reference=reference,
            merchant_reference=merchant_reference,
            amount=amount,
            currency=currency,
            expires_at=expires_at,
            log=[
                log_entry("created", amount=f"{amount:.2f}", currency=currency, merchant_reference=merchant_reference)
            ],
        )
        return PaymentIntent(
            reference=reference,
            payment_url=sandbox_payment_url(reference),
            upi_intent=f"upi://pay?pa=sandbox@payments&pn=Recharge%20Wallet&am={amount:.2f}&cu={currency}&tr={reference}",
            expires_at=expires_at,
        )

    def check_status(self, *, reference):
        from payments.models import SandboxPayment

        self._wait()
        with transaction.atomic():
            payment = SandboxPayment.objects.select_for_update().filter(reference=reference).first()
            if payment is None:
                return PaymentResult(reference=reference, status=PaymentStatus.FAILED, message="No such payment.")
            expire_if_due(payment)
            payment.log.append(log_entry("status_check", answered=payment.status))
            payment.save(update_fields=["status", "log", "updated_at"])
        return result_of(payment)

    def refund(self, *, reference, amount, merchant_reference):
        from payments.models import SandboxPayment

        self._wait()
        with transaction.atomic():
            payment = SandboxPayment.objects.select_for_update().filter(reference=reference).first()
            if payment is None or payment.status != SandboxPayment.Status.SUCCEEDED:
                raise ProviderUnavailable("The provider has no collected payment to refund (sandbox).")
            if payment.refunded_amount + amount > payment.amount:
                raise ProviderUnavailable("Refunds would exceed the payment (sandbox).")
            refund_reference = "rfnd_" + secrets.token_hex(8)
            payment.refunded_amount += amount
            payment.log.append(log_entry("refunded", amount=f"{amount:.2f}", refund_reference=refund_reference))
            payment.save(update_fields=["refunded_amount", "log", "updated_at"])
        return ProviderRefund(reference=refund_reference)

    def parse_webhook(self, payload):
        data = payload.get("data")
        if not isinstance(data, dict):
            raise InvalidPayload()
        reference, status = data.get("reference"), data.get("status")
        amount, currency = data.get("amount"), data.get("currency")
        merchant_reference = data.get("merchant_reference", "")
        if not all(isinstance(value, str) for value in (reference, status, amount, currency, merchant_reference)):
            raise InvalidPayload()
        if status not in PaymentStatus.ALL or not reference or len(reference) > 100:
            raise InvalidPayload()
        try:
            value = Decimal(amount)
        except InvalidOperation:
            raise InvalidPayload() from None
        if not value.is_finite():
            raise InvalidPayload()
        return PaymentResult(
            reference=reference, status=status, amount=value, currency=currency, merchant_reference=merchant_reference
        )

    @staticmethod
    def _wait():
        if not settings.PAYMENT_SANDBOX_ENABLED:
            raise ProviderUnavailable("The sandbox payment provider is switched off (PAYMENT_SANDBOX_ENABLED).")
        latency = settings.PAYMENT_SANDBOX_LATENCY_MS / 1000
        if latency > 0:
            time.sleep(latency)


def sandbox_payment_url(reference) -> str:
    return f"{settings.PAYMENT_SANDBOX_BASE_URL.rstrip('/')}/api/wallet/topups/sandbox/{reference}/"


def expire_if_due(payment):
    """A sandbox payment still unpaid at its expiry time is EXPIRED (the caller saves it)."""
    if payment.status == payment.Status.PENDING and payment.expires_at <= timezone.now():
        payment.status = payment.Status.EXPIRED
        payment.log.append(log_entry("expired"))


def result_of(payment) -> PaymentResult:
    return PaymentResult(
        reference=payment.reference,
        status=payment.status,
        amount=payment.amount,
        currency=payment.currency,
        merchant_reference=payment.merchant_reference,
    )


def log_entry(event, **details) -> dict:
    return {"at": timezone.now().isoformat(), "event": event, **details}


def default_expiry():
    return timezone.now() + timedelta(minutes=settings.PAYMENT_INTENT_TTL_MINUTES)


def get_provider(path=None) -> BasePaymentProvider:
    """The configured provider (settings.PAYMENT_PROVIDER), or the one at `path`."""
    return import_string(path or settings.PAYMENT_PROVIDER)()
