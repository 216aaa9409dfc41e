"""Top-ups: money in through the payment provider (README, "How a mobile client adds money").

1. `create_top_up`: one transaction records the intent (CREATED); the provider is called with no
   transaction open; a second one stores its reference and payment URL (PENDING). Idempotent on
   (user, Idempotency-Key): a retry, even after a crash between the steps, gets the first intent.
2. `apply_payment_result`: what the provider says (its signed webhook, or a status check) is applied
   under the top-up's row lock: SUCCEEDED credits the wallet once through wallet.services (TOPUP,
   from the PAYMENT_SETTLEMENT system wallet); FAILED and EXPIRED credit nothing; a top-up already
   settled is left as it is (a replayed or duplicate webhook, or one racing the status check, has no
   effect). The provider's amount, currency and merchant reference are never trusted over the
   intent's own: a mismatch is refused and logged, and writes nothing.
3. `settle_stale_top_ups` (beat): asks the provider about top-ups whose webhook has not come.
4. `refund_top_up` (admin): a two-phase transfer back to the provider around its refund call.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.errors import DomainError
from core.idempotency import IdempotencyKeyReused
from core.money import InvalidAmount
from core.queue import enqueue_after_commit
from payments.models import TopUp
from payments.providers import PaymentResult, PaymentStatus, ProviderError, default_expiry, get_provider
from wallet import selectors as wallet_selectors
from wallet import services as ledger
from wallet.models import SystemWallet, Transfer

logger = logging.getLogger(__name__)

Status = TopUp.Status
OPEN = (Status.CREATED, Status.PENDING)


class TopUpAmountOutOfBounds(InvalidAmount):
    message = "A top-up must be from {minimum} to {maximum}, with at most two decimal places."


class TopUpKeyReused(IdempotencyKeyReused):
    message = "This Idempotency-Key was already used for another top-up."


class UnknownIntent(DomainError):
    code = "unknown_intent"
    message = "No top-up has this provider reference."
    status_code = 404


class PaymentMismatch(DomainError):
    code = "payment_mismatch"
    message = "The provider's {what} does not match the top-up's; nothing was applied."


class TopUpNotRefundable(ledger.NotRefundable):
    message = "Top-up #{pk} is {status}; only a succeeded top-up is refunded, once."


class ProviderRefundFailed(DomainError):
    code = "payment_provider_unavailable"
    message = "The payment provider did not take the refund ({reason}); nothing was debited."
    status_code = 502


# --- creating -------------------------------------------------------------------------


def create_top_up(*, user, amount, idempotency_key=None, provider=None) -> TopUp:
    """Open a payment of `amount` at the provider for `user`'s wallet. Refuses (writing nothing) an
    amount out of bounds or one the wallet's limits would refuse now. If the provider refuses, the
    top-up is FAILED with the reason; if its answer is lost, it stays CREATED and the sweep expires it."""
    amount = _valid_amount(amount)
    if idempotency_key is not None:
        existing = _top_up_for_key(user=user, key=idempotency_key, amount=amount)
        if existing is not None:
            return existing
    # Refused early, with the same codes, if the wallet could not take it now (checked again, under the
    # wallet's lock, when the money arrives: a top-up paid meanwhile beyond the limits is given back).
    ledger.check_load_limits(wallet=wallet_selectors.wallet_of(user=user), amount=amount, side="your")
    provider = provider or get_provider()
    try:
        with transaction.atomic():
            top_up = TopUp.objects.create(
                user=user,
                amount=amount,
                currency=settings.WALLET_CURRENCY,
                provider=provider.code,
                idempotency_key=idempotency_key,
                expires_at=default_expiry(),
            )
    except IntegrityError:
        existing = _top_up_for_key(user=user, key=idempotency_key, amount=amount) if idempotency_key else None
        if existing is None:
            raise
        return existing
    try:
        intent = provider.create_intent(
            merchant_reference=top_up.merchant_reference,
            amount=amount,
            currency=top_up.currency,
            expires_at=top_up.expires_at,
        )
    except ProviderError as exc:
        logger.warning("top-up %s: the provider refused the intent: %s", top_up.pk, exc)
        return _close(top_up.pk, Status.FAILED, reason=f"The payment provider refused the payment: {exc}")
    except Exception as exc:  # noqa: BLE001 - the answer is lost: the sweep expires the intent later
        logger.warning("top-up %s: no answer from the provider: %r", top_up.pk, exc)
        return top_up
    with transaction.atomic():
        TopUp.objects.filter(pk=top_up.pk, status=Status.CREATED).update(
            status=Status.PENDING,
            provider_reference=intent.reference[:100],
            payment_url=intent.payment_url[:500],
            upi_intent=intent.upi_intent[:500],
            updated_at=timezone.now(),
        )
    top_up.refresh_from_db()
    return top_up


def _valid_amount(amount) -> Decimal:
    minimum, maximum = settings.PAYMENT_MIN_TOPUP_AMOUNT, settings.PAYMENT_MAX_TOPUP_AMOUNT
    try:
        value = ledger.validate_amount(amount=amount)
    except InvalidAmount:
        value = None
    if value is None or not minimum <= value <= maximum:
        raise TopUpAmountOutOfBounds(field="amount", minimum=f"{minimum:.2f}", maximum=f"{maximum:.2f}")
    return value


def _top_up_for_key(*, user, key, amount):
    existing = TopUp.objects.filter(user=user, idempotency_key=key).first()
    if existing is not None and existing.amount != amount:
        raise TopUpKeyReused(field="idempotency_key")
    return existing


# --- what the provider says -------------------------------------------------------------


def apply_payment_result(*, provider_code, result: PaymentResult, source="webhook") -> tuple[TopUp, bool]:
    """Apply the provider's word on one payment under the top-up's row lock: (the top-up, whether this
    call changed it). SUCCEEDED credits the wallet exactly once; FAILED / EXPIRED close it; PENDING
    changes nothing; an already settled top-up is returned unchanged. UnknownIntent or PaymentMismatch
    (logged) write nothing.

    If the wallet refuses the credit (its owner deactivated, a wallet limit), the top-up FAILS with
    the reason and the payment is given back to the payer at the provider after the commit."""
    with transaction.atomic():
        top_up = (
            TopUp.objects.select_for_update(of=("self",))
            .select_related("user")
            .filter(provider=provider_code, provider_reference=result.reference)
            .first()
        )
        if top_up is None:
            logger.warning("%s from %s for unknown reference %r: ignored", source, provider_code, result.reference)
            raise UnknownIntent(field="reference")
        _ensure_matches(top_up, result, source)
        if top_up.status not in OPEN or result.status == PaymentStatus.PENDING:
            return top_up, False
        now = timezone.now()
        if result.status == PaymentStatus.SUCCEEDED:
            try:
                top_up.credit = ledger.credit_top_up(
                    user=top_up.user, amount=top_up.amount, remarks=f"Top-up #{top_up.pk} ({top_up.provider_reference})"
                )
                top_up.status = Status.SUCCEEDED
            except DomainError as refusal:
                logger.warning("top-up %s paid but refused by the wallet (%s): returning it", top_up.pk, refusal.code)
                top_up.status = Status.FAILED
                top_up.failure_reason = f"{refusal.code}: {refusal.message} The payment is returned to the payer."[:255]
                from payments.tasks import return_refused_payment

                enqueue_after_commit(return_refused_payment, top_up_id=top_up.pk)
        elif result.status == PaymentStatus.FAILED:
            top_up.status = Status.FAILED
            top_up.failure_reason = (result.message or "The payment failed at the provider.")[:255]
        else:
            top_up.status = Status.EXPIRED
            top_up.failure_reason = "The payment was not completed in time."
        top_up.completed_at = now
        top_up.save(update_fields=["status", "credit", "failure_reason", "completed_at", "updated_at"])
        return top_up, True


def _ensure_matches(top_up, result, source):
    for what, theirs, ours in (
        ("merchant reference", result.merchant_reference, top_up.merchant_reference),
        ("amount", result.amount, top_up.amount),
        ("currency", result.currency, top_up.currency),
    ):
        if theirs not in (None, "") and theirs != ours:
            logger.warning(
                "%s for top-up %s: %s %r does not match the intent's %r; ignored", source, top_up.pk, what, theirs, ours
            )
            raise PaymentMismatch(field=what.replace(" ", "_"), what=what)


def return_refused_payment(*, top_up_id, provider=None) -> TopUp:
    """Give back at the provider a payment the wallet refused (FAILED after it was paid). Once."""
    top_up = TopUp.objects.get(pk=top_up_id)
    if top_up.status != Status.FAILED or top_up.provider_refund_reference or not top_up.provider_reference:
        return top_up
    refund = (provider or get_provider()).refund(
        reference=top_up.provider_reference, amount=top_up.amount, merchant_reference=top_up.merchant_reference
    )
    TopUp.objects.filter(pk=top_up.pk, provider_refund_reference="").update(
        provider_refund_reference=refund.reference[:100], updated_at=timezone.now()
    )
    top_up.refresh_from_db()
    return top_up


# --- top-ups whose webhook never came -------------------------------------------------------


@dataclass
class SettleReport:
    checked: int = 0
    settled: int = 0
    still_pending: int = 0
    expired_unsent: int = 0
    skipped: int = 0
    errors: int = 0
    settled_ids: list = field(default_factory=list)

    def __str__(self):
        return (
            f"checked {self.checked}: {self.settled} settled, {self.still_pending} still pending, "
            f"{self.expired_unsent} never reached the provider (expired), {self.skipped} skipped, {self.errors} errors"
        )


def settle_stale_top_ups(*, older_than=None, limit=None, provider=None) -> SettleReport:
    """Ask the provider about PENDING top-ups older than `older_than` (PAYMENT_STATUS_CHECK_AFTER_SECONDS)
    and apply each answer, as a webhook would be; expire CREATED ones (the provider never answered)
    past their expiry. Each top-up is claimed with SKIP LOCKED and applied by `apply_payment_result`,
    which re-checks under the lock: safe beside webhooks and beside another run."""
    provider = provider or get_provider()
    if older_than is None:
        older_than = timedelta(seconds=settings.PAYMENT_STATUS_CHECK_AFTER_SECONDS)
    now = timezone.now()
    report = SettleReport()
    for top_up_id in TopUp.objects.filter(status=Status.CREATED, expires_at__lte=now).values_list("pk", flat=True):
        closed = TopUp.objects.filter(pk=top_up_id, status=Status.CREATED).update(
            status=Status.EXPIRED, failure_reason="The provider never answered.", completed_at=now, updated_at=now
        )
        report.expired_unsent += closed
    pending = TopUp.objects.filter(status=Status.PENDING, provider=provider.code, created_at__lte=now - older_than)
    ids = list(pending.order_by("created_at", "pk").values_list("pk", flat=True)[: limit or None])
    for top_up_id in ids:
        top_up = _claim_pending(top_up_id)
        if top_up is None:
            report.skipped += 1
            continue
        report.checked += 1
        try:
            result = provider.check_status(reference=top_up.provider_reference)
            _, changed = apply_payment_result(provider_code=provider.code, result=result, source="status check")
        except Exception as exc:  # noqa: BLE001 - one unanswered check settles nothing; the next run asks again
            logger.warning("top-up %s: status check failed: %r", top_up_id, exc)
            report.errors += 1
            continue
        if result.status == PaymentStatus.PENDING:
            report.still_pending += 1
        elif changed:
            report.settled += 1
            report.settled_ids.append(top_up_id)
        else:
            report.skipped += 1
    return report


def _claim_pending(top_up_id):
    options = {"skip_locked": True} if connection.features.has_select_for_update_skip_locked else {}
    with transaction.atomic():
        return TopUp.objects.select_for_update(**options).filter(pk=top_up_id, status=Status.PENDING).first()


# --- refunds (admin) ------------------------------------------------------------------------


def refund_top_up(*, top_up, initiated_by, provider=None) -> TopUp:
    """Give a SUCCEEDED top-up back to the payer through the provider, debiting the wallet.

    A two-phase transfer (ledger.md): the amount is held in the wallet (TOPUP_REFUND, PENDING, to
    PAYMENT_SETTLEMENT; refused with insufficient_funds if it was spent), the provider is asked with no
    lock held, then the hold is posted (REFUNDED) or voided (the provider refused: nothing moves).
    Refused for a top-up that is not SUCCEEDED or whose refund is already under way."""
    with transaction.atomic():
        locked = TopUp.objects.select_for_update(of=("self",)).select_related("user").get(pk=top_up.pk)
        if locked.status != Status.SUCCEEDED or locked.refund_id is not None:
            raise TopUpNotRefundable(pk=locked.pk, status=locked.get_status_display().lower())
        locked.refund = ledger.hold_funds(
            user=locked.user,
            amount=locked.amount,
            destination=SystemWallet.PAYMENT_SETTLEMENT,
            kind=Transfer.Kind.TOPUP_REFUND,
            remarks=f"Refund of top-up #{locked.pk} to the payer ({locked.provider_reference})",
            initiated_by=initiated_by,
        )
        locked.save(update_fields=["refund", "updated_at"])
    try:
        refund = (provider or get_provider()).refund(
            reference=locked.provider_reference, amount=locked.amount, merchant_reference=locked.merchant_reference
        )
    except Exception as exc:  # noqa: BLE001 - the provider did not refund: release the hold
        with transaction.atomic():
            locked = TopUp.objects.select_for_update(of=("self",)).get(pk=top_up.pk)
            ledger.void_transfer(transfer=locked.refund)
            locked.refund = None
            locked.save(update_fields=["refund", "updated_at"])
        logger.warning("top-up %s: the provider refused the refund: %r", top_up.pk, exc)
        raise ProviderRefundFailed(reason=str(exc)[:120]) from None
    with transaction.atomic():
        locked = TopUp.objects.select_for_update(of=("self",)).get(pk=top_up.pk)
        locked.refund, _ = ledger.post_transfer(transfer=locked.refund)
        locked.status = Status.REFUNDED
        locked.provider_refund_reference = refund.reference[:100]
        locked.save(update_fields=["status", "provider_refund_reference", "updated_at"])
    return locked


def _close(top_up_id, status, *, reason) -> TopUp:
    with transaction.atomic():
        top_up = TopUp.objects.select_for_update().get(pk=top_up_id)
        if top_up.status in OPEN:
            top_up.status = status
            top_up.failure_reason = reason[:255]
            top_up.completed_at = timezone.now()
            top_up.save(update_fields=["status", "failure_reason", "completed_at", "updated_at"])
        return top_up
