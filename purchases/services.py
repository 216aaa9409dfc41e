"""Recharge purchases (ledger.md, "Margins and recharges").

A purchase is a two-phase transfer around a call to the operator gateway:

1. one transaction: create the Purchase (PENDING) and hold the price in the buyer's wallet
   (`wallet.services.hold_funds`); refused for insufficient funds, it writes nothing at all;
2. the gateway is called with no transaction open and no row locked;
3. one transaction: lock the Purchase row, re-check it is still PENDING, then either post the
   hold and pay the commissions (`post_transfer`) and mark it SUCCESS, or void the hold
   (`void_transfer`) and mark it FAILED. An answer of "pending", a timeout or an unexpected
   error leaves the hold in place; `settle_pending_purchases` finishes it later.

Money only moves through `wallet.services`. A purchase is idempotent on (buyer, idempotency_key):
a retry, even after a crash between the steps, finds the first purchase and never recharges twice.
"""

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from core.errors import DomainError
from core.money import ZERO, percentage_of
from core.phone import mobile_number_text, normalize_mobile_number, same_number
from core.roles import UserType
from plans.models import RechargePlan
from purchases.gateways import GatewayResult, GatewayUnavailable, RechargeRequest, get_gateway
from purchases.models import Purchase
from wallet import selectors as wallet_selectors
from wallet import services as ledger
from wallet.selectors import margin_for

logger = logging.getLogger(__name__)

Status = Purchase.Status


class PlanNotFound(DomainError):
    code = "plan_not_found"
    message = "No recharge plan with id {pk}."


class PlanInactive(DomainError):
    code = "plan_inactive"
    message = "This plan is no longer sold."


class PurchaseKeyReused(DomainError):
    code = "idempotency_key_reused"
    message = "This Idempotency-Key was already used for another purchase."
    status_code = 422


@dataclass
class PurchaseOutcome:
    purchase: Purchase
    balance: Decimal
    available: Decimal
    replayed: bool = False


# --- buying ------------------------------------------------------------------------


def purchase_recharge(*, buyer, plan_id, mobile_number, idempotency_key=None, gateway=None) -> PurchaseOutcome:
    """Sell `buyer` the plan `plan_id` for `mobile_number`, paid from its wallet.

    Refuses (writing nothing) an unknown or retired plan, a number that is not a valid mobile number
    of the plan's operator's country (core.phone.normalize_mobile_number), and a price above the
    buyer's available balance. Returns the purchase in its state after the gateway's answer and the
    buyer's balance. With `idempotency_key`, a repeat returns the first purchase unchanged."""
    mobile_number_text(mobile_number)
    if idempotency_key is not None:
        existing = _purchase_for_key(buyer=buyer, key=idempotency_key, plan_id=plan_id, number=mobile_number)
        if existing is not None:
            return _outcome(existing, replayed=True)
    plan = _sellable_plan(plan_id)
    number = normalize_mobile_number(mobile_number, region=plan.provider.country)
    buyer_commission, distributor, distributor_commission = commissions_for(buyer=buyer, price=plan.amount)
    try:
        with transaction.atomic():
            purchase = Purchase.objects.create(
                buyer=buyer,
                plan=plan,
                mobile_number=number,
                amount=plan.amount,
                buyer_commission=buyer_commission,
                distributor=distributor,
                distributor_commission=distributor_commission,
                idempotency_key=idempotency_key,
            )
            ledger.hold_funds(
                user=buyer,
                amount=plan.amount,
                purchase=purchase,
                remarks=f"Recharge {number} {plan.provider.name} Rs {plan.amount} (purchase #{purchase.pk})",
                idempotency_key=idempotency_key,
            )
    except IntegrityError:
        # The same key raced us and won: answer with its purchase.
        if idempotency_key is None:
            raise
        existing = _purchase_for_key(buyer=buyer, key=idempotency_key, plan_id=plan_id, number=mobile_number)
        if existing is None:
            raise
        return _outcome(existing, replayed=True)
    purchase = send_to_operator(purchase=purchase, gateway=gateway)
    return _outcome(purchase)


def commissions_for(*, buyer, price) -> tuple[Decimal, object, Decimal]:
    """(buyer's commission, its distributor or None, the distributor's commission) on a sale.

    The buyer earns its own margin; a retailer's distributor earns its margin on the same sale.
    Each is rounded down to the paisa (core.money.percentage_of)."""
    buyer_commission = percentage_of(price, margin_for(user=buyer))
    distributor = None
    distributor_commission = ZERO
    parent = buyer.parent if buyer.user_type == UserType.RETAILER and buyer.parent_id else None
    if parent is not None and parent.user_type == UserType.DISTRIBUTOR:
        distributor = parent
        distributor_commission = percentage_of(price, margin_for(user=parent))
    return buyer_commission, distributor, distributor_commission


def send_to_operator(*, purchase, gateway=None) -> Purchase:
    """Call the gateway for a purchase whose price is held, then settle it by the answer.

    Never called inside a transaction by the purchase flow: the network call must not hold locks."""
    gateway = gateway or get_gateway()
    try:
        result = gateway.recharge(recharge_request(purchase=purchase))
    except GatewayUnavailable as exc:
        logger.warning("purchase %s: gateway unavailable, voiding: %s", purchase.pk, exc)
        result = GatewayResult(GatewayResult.FAILED, message=f"Operator gateway unavailable: {exc}")
    except Exception as exc:  # noqa: BLE001 - timeouts and surprises: the outcome is unknown
        logger.warning("purchase %s: outcome unknown, kept pending: %r", purchase.pk, exc)
        message = f"Outcome unknown ({type(exc).__name__}); it will be checked with the operator."
        result = GatewayResult(GatewayResult.PENDING, message=message)
    return apply_gateway_result(purchase_id=purchase.pk, result=result)


def recharge_request(*, purchase) -> RechargeRequest:
    plan = purchase.plan
    return RechargeRequest(
        reference=f"P{purchase.pk}",
        mobile_number=purchase.mobile_number,
        amount=purchase.amount,
        operator=plan.provider.code,
        plan_code=plan.code,
        circle=plan.circle,
    )


def apply_gateway_result(*, purchase_id, result: GatewayResult) -> Purchase:
    """Settle a PENDING purchase by the gateway's answer, under the purchase's row lock.

    SUCCESS posts the hold and pays the commissions recorded at the sale; FAILED voids the hold;
    PENDING changes nothing. A purchase that is no longer PENDING (someone settled it first) is
    returned unchanged, so a purchase is settled exactly once however many workers try."""
    return _apply_gateway_result(purchase_id=purchase_id, result=result)[0]


def _apply_gateway_result(*, purchase_id, result) -> tuple[Purchase, bool]:
    """(the purchase, whether this call settled it)."""
    with transaction.atomic():
        purchase = Purchase.objects.select_for_update(of=("self",)).select_related("plan__provider").get(pk=purchase_id)
        if purchase.status != Status.PENDING:
            return purchase, False
        now = timezone.now()
        settled = result.status in (GatewayResult.SUCCESS, GatewayResult.FAILED)
        if result.status == GatewayResult.SUCCESS:
            ledger.post_transfer(transfer=_hold_of(purchase), payouts=_payouts(purchase))
            purchase.status = Status.SUCCESS
            purchase.operator_reference = result.operator_reference[:100]
            purchase.failure_reason = ""
            purchase.completed_at = now
        elif result.status == GatewayResult.FAILED:
            ledger.void_transfer(transfer=_hold_of(purchase))
            purchase.status = Status.FAILED
            purchase.failure_reason = (result.message or "The operator refused the recharge.")[:255]
            purchase.completed_at = now
        else:
            purchase.operator_reference = (result.operator_reference or purchase.operator_reference)[:100]
            purchase.failure_reason = ""
        purchase.save(update_fields=["status", "operator_reference", "failure_reason", "completed_at", "updated_at"])
        return purchase, settled


# --- settling purchases left pending ----------------------------------------------------


@dataclass
class SettleReport:
    checked: int = 0
    succeeded: int = 0
    failed: int = 0
    still_pending: int = 0
    skipped: int = 0
    errors: int = 0
    settled_ids: list = field(default_factory=list)

    def __str__(self):
        return (
            f"checked {self.checked}: {self.succeeded} succeeded, {self.failed} failed, "
            f"{self.still_pending} still pending, {self.skipped} skipped (busy or already settled), "
            f"{self.errors} gateway errors"
        )


def default_settle_age() -> timedelta:
    """Leave a purchase alone until its own gateway call must have ended (the gateway timeout)."""
    return timedelta(seconds=settings.RECHARGE_GATEWAY_TIMEOUT_SECONDS + 30)


def settle_pending_purchases(*, older_than=None, limit=None, gateway=None) -> SettleReport:
    """Ask the gateway about PENDING purchases older than `older_than` and post or void each.

    Each purchase is claimed under its row lock with SKIP LOCKED (so a purchase being finished
    by its own request, or by a concurrent run, is skipped, not waited for), re-checked PENDING,
    asked about with no lock held, and settled by `apply_gateway_result`, which re-checks under
    the lock again. Safe to run concurrently with new purchases and with itself."""
    gateway = gateway or get_gateway()
    older_than = default_settle_age() if older_than is None else older_than
    cutoff = timezone.now() - older_than
    ids = Purchase.objects.filter(status=Status.PENDING, created_at__lte=cutoff).order_by("created_at", "pk")
    ids = list(ids.values_list("pk", flat=True)[:limit] if limit else ids.values_list("pk", flat=True))
    report = SettleReport()
    for purchase_id in ids:
        purchase = _claim_pending(purchase_id)
        if purchase is None:
            report.skipped += 1
            continue
        report.checked += 1
        try:
            result = gateway.check_status(recharge_request(purchase=purchase))
        except Exception as exc:  # noqa: BLE001 - an unanswered status check settles nothing
            logger.warning("purchase %s: status check failed: %r", purchase_id, exc)
            report.errors += 1
            continue
        purchase, settled_now = _apply_gateway_result(purchase_id=purchase_id, result=result)
        if result.status == GatewayResult.PENDING:
            report.still_pending += 1
        elif not settled_now:
            report.skipped += 1  # its own request, or another run, settled it while we asked
        else:
            report.settled_ids.append(purchase_id)
            if purchase.status == Status.SUCCESS:
                report.succeeded += 1
            else:
                report.failed += 1
    return report


def _claim_pending(purchase_id):
    """The purchase if it is still PENDING and nobody holds its lock right now, else None."""
    options = {"skip_locked": True} if connection.features.has_select_for_update_skip_locked else {}
    with transaction.atomic():
        return (
            Purchase.objects.select_for_update(of=("self",), **options)
            .select_related("plan__provider")
            .filter(pk=purchase_id, status=Status.PENDING)
            .first()
        )


# --- internals --------------------------------------------------------------------------


def _sellable_plan(plan_id) -> RechargePlan:
    plan = RechargePlan.objects.select_related("provider").filter(pk=plan_id).first()
    if plan is None:
        raise PlanNotFound(field="plan_id", pk=plan_id)
    if not plan.is_active or not plan.provider.is_active:
        raise PlanInactive(field="plan_id")
    return plan


def _purchase_for_key(*, buyer, key, plan_id, number):
    """The buyer's purchase under `key`, if any; PurchaseKeyReused if it was for another plan or
    another number (`number` as the client wrote it, read in the operator's country)."""
    existing = Purchase.objects.select_related("plan__provider").filter(buyer=buyer, idempotency_key=key).first()
    if existing is not None and (
        str(existing.plan_id) != str(plan_id)
        or not same_number(number, existing.mobile_number, region=existing.plan.provider.country)
    ):
        raise PurchaseKeyReused(field="idempotency_key")
    return existing


def _hold_of(purchase):
    return wallet_selectors.purchase_hold(purchase=purchase)


def _payouts(purchase) -> list:
    payouts = []
    if purchase.buyer_commission > 0:
        payouts.append(
            ledger.Payout(
                user_id=purchase.buyer_id,
                amount=purchase.buyer_commission,
                remarks=f"Margin on recharge #{purchase.pk} ({purchase.mobile_number})",
            )
        )
    if purchase.distributor_id and purchase.distributor_commission > 0:
        payouts.append(
            ledger.Payout(
                user_id=purchase.distributor_id,
                amount=purchase.distributor_commission,
                remarks=f"Distributor margin on recharge #{purchase.pk} by {purchase.buyer.username}",
            )
        )
    return payouts


def _outcome(purchase, *, replayed=False) -> PurchaseOutcome:
    wallet = wallet_selectors.wallet_of(user=purchase.buyer)
    return PurchaseOutcome(purchase=purchase, balance=wallet.balance, available=wallet.available, replayed=replayed)
