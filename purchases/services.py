"""Recharge purchases (ledger.md, "Margins and recharges"), off the request path.

A purchase is a two-phase transfer around a call to the operator gateway:

1. acceptance, in the request, one transaction: create the Purchase (PENDING) and hold the price in
   the buyer's wallet (`wallet.services.hold_funds`), then enqueue its fulfilment once that commits
   (core/queue.py). Refused (insufficient funds, a retired plan, an unkeyed duplicate) it writes
   nothing at all. The request answers at once; the client polls the purchase.
2. fulfilment, in a worker (`purchases.tasks.fulfil_purchase`): mark the purchase sent (committed
   before the call: from then on a send may have happened), call the gateway with the purchase's
   stable reference, with no transaction open and no row locked;
3. one transaction: lock the Purchase row, re-check it is still PENDING, then either mark it
   SUCCESS and post the hold and pay the commissions (`post_transfer`), or mark it FAILED and void
   the hold (`void_transfer`): the purchase is written first, so that the wallets, locked by the
   ledger, are held for its statements only; a refusal from the ledger rolls back both. An answer
   of "pending", a timeout or an unexpected error leaves the hold in place; a status check settles
   it later.

Delivery is at least once, so fulfilment runs safely any number of times: a purchase is sent at
most once (the conditional update of `sent_at`); a run that finds it already sent asks the gateway's
status instead, once that send must have ended. Periodic sweeps enqueue again what a dead broker
or worker left behind. Money only moves through `wallet.services`. A purchase is idempotent on
(buyer, idempotency_key); an unkeyed repeat within PURCHASE_DUPLICATE_WINDOW_MINUTES is refused.
"""

import logging
import operator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import Error, IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework import status

from accounts.margins import sale_margins
from core import db_threads
from core.errors import DomainError, NotFound
from core.idempotency import IdempotencyKeyReused, TakenByCopy
from core.money import ZERO, percentage_of
from core.phone import mobile_number_text, normalize_mobile_number, same_number
from core.precompiled import PrecompiledInsert, PrecompiledQuery, PrecompiledUpdate
from core.queue import enqueue_after_commit, enqueue_now, queue_depth
from core.roles import UserType
from core.transactions import all_or_nothing, innermost_is_all_or_nothing
from plans.models import RechargePlan
from purchases.gateways import GatewayResult, GatewayUnavailable, RechargeRequest, get_gateway
from purchases.models import Purchase
from wallet import selectors as wallet_selectors
from wallet import services as ledger

logger = logging.getLogger(__name__)

Status = Purchase.Status


class PlanNotFound(DomainError):
    code = "plan_not_found"
    message = "No recharge plan with id {pk}."


class PlanInactive(DomainError):
    code = "plan_inactive"
    message = "This plan is no longer sold."


class PurchaseKeyReused(IdempotencyKeyReused):
    message = "This Idempotency-Key was already used for another purchase."


class DuplicatePurchase(DomainError):
    code = "duplicate_purchase"
    message = (
        "Purchase #{purchase_id} recharged {mobile_number} with Rs {amount} {minutes} min ago and has not failed "
        "(status {status}): this looks like a retry, so nothing was bought. Check that purchase; to buy again "
        "on purpose, send an Idempotency-Key."
    )
    status_code = status.HTTP_409_CONFLICT
    body_fields = ("purchase_id", "status")


@dataclass
class PurchaseOutcome:
    purchase: Purchase
    balance: Decimal
    available: Decimal
    replayed: bool = False


# --- buying ------------------------------------------------------------------------


def purchase_recharge(*, buyer, plan_id, mobile_number, idempotency_key=None, gateway=None) -> PurchaseOutcome:
    """Accept a sale of the plan `plan_id` for `mobile_number` to `buyer`, paid from its wallet.

    Refuses (writing nothing) an unknown or retired plan, a number that is not a valid mobile number
    of the plan's operator's country (core.phone.normalize_mobile_number), a price above the buyer's
    available balance and, without `idempotency_key`, a duplicate (DuplicatePurchase: the same buyer,
    number and amount within PURCHASE_DUPLICATE_WINDOW_MINUTES of a purchase that has not failed).
    Otherwise the purchase is PENDING with its price held and its fulfilment enqueued after the
    commit. Returns it with the buyer's balance; where the fulfilment already ran in this process
    (tasks run eagerly with no broker), in its final state. With `idempotency_key`, a repeat returns
    the first purchase as it is now (inside a keyed request's own transaction, a copy that lost the
    race for the key raises core.idempotency.TakenByCopy instead, and the request replays the first's
    answer). `gateway` (tools and tests) fulfils at once with that gateway
    instead of enqueueing.

    Nothing after the commit raises a database error: the purchase exists, and an answer saying
    otherwise would send the client to buy again."""
    mobile_number_text(mobile_number)
    if idempotency_key is not None:
        existing = _purchase_for_key(buyer=buyer, key=idempotency_key, plan_id=plan_id, number=mobile_number)
        if existing is not None:
            return _outcome(existing, replayed=True)
    plan = _sellable_plan(plan_id)
    number = normalize_mobile_number(mobile_number, region=plan.provider.country)
    buyer_commission, distributor, distributor_commission = commissions_for(buyer=buyer, price=plan.amount)
    # Inside a keyed request's own transaction (core.idempotency, with a broker) this block has no
    # savepoint, and nothing can be read after a refusal: a copy's race on the key is settled there.
    in_keyed_transaction = innermost_is_all_or_nothing()
    try:
        # Every exception leaves this block (the IntegrityError is caught outside it): the hold needs
        # no savepoint of its own.
        with all_or_nothing():
            purchase = _new_purchase(
                buyer=buyer,
                plan=plan,
                mobile_number=number,
                amount=plan.amount,
                buyer_commission=buyer_commission,
                distributor=distributor,
                distributor_commission=distributor_commission,
                idempotency_key=idempotency_key,
            )
            hold = ledger.hold_funds(
                user=buyer,
                amount=plan.amount,
                reference=purchase.reference,
                remarks=f"Recharge {number} {plan.provider.name} Rs {plan.amount} (purchase #{purchase.pk})",
                idempotency_key=idempotency_key,
            )
            if idempotency_key is None:
                # After hold_funds locked the buyer's wallet: two identical requests racing queue on that
                # lock, and the second one sees the first one's committed purchase here.
                _refuse_duplicate(purchase)
            if gateway is None:
                _enqueue_fulfilment(purchase)
    except IntegrityError as refused:
        # The same key raced us and won: answer with its purchase.
        if idempotency_key is None:
            raise
        if in_keyed_transaction:
            raise TakenByCopy() from refused
        existing = _purchase_for_key(buyer=buyer, key=idempotency_key, plan_id=plan_id, number=mobile_number)
        if existing is None:
            raise
        return _outcome(existing, replayed=True)
    wallet = hold.from_wallet  # locked and updated by hold_funds: the balance after the hold, no query
    outcome = PurchaseOutcome(purchase=purchase, balance=wallet.balance, available=wallet.available)
    if gateway is not None:
        fulfil_purchase(purchase_id=purchase.pk, gateway=gateway)
        return _fresh_outcome(outcome)
    if fulfilled_in_process():
        return _fresh_outcome(outcome)
    return outcome


def fulfilled_in_process() -> bool:
    """Whether an enqueued task has already run by the time the enqueuing transaction committed (no
    broker: Celery runs tasks eagerly, in the process that enqueues them)."""
    return bool(settings.CELERY_TASK_ALWAYS_EAGER)


def _enqueue_fulfilment(purchase):
    from purchases import tasks  # tasks import this module

    enqueue_after_commit(tasks.fulfil_purchase, purchase_id=purchase.pk)


def _fresh_outcome(outcome) -> PurchaseOutcome:
    """The committed purchase as it is now, or `outcome` (the acceptance) if the database cannot say."""
    try:
        purchase = Purchase.objects.select_related("plan__provider", "buyer", "distributor").get(pk=outcome.purchase.pk)
        return _outcome(purchase)
    except Error:
        logger.warning("purchase %s: accepted; its state could not be read back", outcome.purchase.pk, exc_info=True)
        return outcome


def duplicate_window() -> timedelta:
    return timedelta(minutes=settings.PURCHASE_DUPLICATE_WINDOW_MINUTES)


def _refuse_duplicate(purchase):
    window = duplicate_window()
    if window <= timedelta(0):
        return
    earlier = (
        Purchase.objects.filter(
            buyer_id=purchase.buyer_id,
            mobile_number=purchase.mobile_number,
            amount=purchase.amount,
            created_at__gte=purchase.created_at - window,
        )
        .exclude(status=Status.FAILED)
        .exclude(pk=purchase.pk)
        .order_by("-created_at", "-pk")
        .values_list("pk", "status", "created_at")
        .first()
    )
    if earlier is not None:
        minutes = max(0, int((purchase.created_at - earlier[2]).total_seconds() // 60))
        raise DuplicatePurchase(
            purchase_id=earlier[0],
            status=earlier[1],
            mobile_number=purchase.mobile_number,
            amount=f"{purchase.amount:.2f}",
            minutes=minutes,
        )


def commissions_for(*, buyer, price) -> tuple[Decimal, object, Decimal]:
    """(buyer's commission, its distributor or None, the distributor's commission) on a sale.

    The buyer earns its own margin; a retailer's distributor earns its margin on the same sale.
    Each is rounded down to the paisa (core.money.percentage_of)."""
    buyer_margin, parent, parent_margin = sale_margins(buyer=buyer)
    buyer_commission = percentage_of(price, buyer_margin)
    distributor = None
    distributor_commission = ZERO
    if parent is not None and parent.user_type == UserType.DISTRIBUTOR:
        distributor = parent
        distributor_commission = percentage_of(price, parent_margin)
    return buyer_commission, distributor, distributor_commission


# --- fulfilment (a worker's task) -----------------------------------------------------------


def fulfil_purchase(*, purchase_id, gateway=None, sent_before=None) -> Purchase | None:
    """Bring a PENDING purchase closer to final: send it to the gateway if it was never sent, else
    ask the gateway what became of it, then settle it by the answer (`apply_gateway_result`).

    Safe to run any number of times, concurrently too (delivery is at least once). A purchase is
    sent at most once: `sent_at` is set by one conditional update, committed before the call, so the
    run that sets it is the only one that sends. A run that finds it already sent asks the gateway's
    status, but only about a send that must have ended (sent before `sent_before`, by default
    PURCHASE_STATUS_CHECK_AFTER_SECONDS ago); a send still in flight elsewhere is left to its run.
    The gateway is called with no transaction open and no connection held (core.db_threads). Returns
    the purchase, or None if it is not PENDING (already final) or does not exist; when nothing was
    settled or noted (a send still running elsewhere, a "pending" answer with nothing new) it is the
    purchase as read before the call."""
    return _fulfil(purchase_id=purchase_id, gateway=gateway, sent_before=sent_before)[0]


def _fulfil(*, purchase_id, gateway=None, sent_before=None) -> tuple[Purchase | None, GatewayResult | None, bool]:
    """(the purchase, the gateway's answer or None if it was not asked, whether this call settled it)."""
    gateway = gateway or get_gateway()
    purchase, first_send = db_threads.run(_claim_for_sending, purchase_id=purchase_id)
    if purchase is None:
        return None, None, False
    request = recharge_request(purchase=purchase)
    if first_send:
        result = _send(gateway=gateway, request=request, purchase_id=purchase_id)
    else:
        sent_before = timezone.now() - default_settle_age() if sent_before is None else sent_before
        if purchase.sent_at > sent_before:
            return purchase, None, False  # its send may still be running: never ask (nor send) twice at once
        result = _ask(gateway=gateway, request=request, purchase_id=purchase_id)
        if result is None:
            return purchase, None, False
    reference_known = result.operator_reference[:100] in ("", purchase.operator_reference)
    if result.status == GatewayResult.PENDING and reference_known and not purchase.failure_reason:
        # Still pending and nothing to note (in callback mode, every send): the settling transaction
        # would lock the purchase only to write back what it holds. A callback or a status check settles it.
        return purchase, result, False
    purchase, settled_now = db_threads.run(_apply_gateway_result, purchase_id=purchase_id, result=result)
    return purchase, result, settled_now


# Every purchase is read by id twice by its fulfilment, and twice more per callback: compiled once
# (core.precompiled).
_PENDING_PURCHASE = PrecompiledQuery(
    lambda marker: Purchase.objects.select_related("plan__provider").filter(pk=marker, status=Status.PENDING)[:1], -1
)
_PURCHASE_WITH_PLAN = PrecompiledQuery(  # a callback's, read by the web tier (and by a reversal)
    lambda marker: Purchase.objects.select_related("plan__provider").filter(pk=marker).order_by()[:1], -1
)
_PURCHASE_FOR_SETTLING = PrecompiledQuery(
    # The buyer comes with the purchase (the distributor's margin names it), unlocked: `of` locks the purchase.
    lambda marker: (
        Purchase.objects.select_for_update(of=("self",)).select_related("plan__provider", "buyer").filter(pk=marker)
    ),
    -1,
)


def _claim_for_sending(*, purchase_id):
    """(the purchase if PENDING, whether this call claimed its one send)."""
    now = timezone.now()
    claimed = Purchase.objects.filter(pk=purchase_id, status=Status.PENDING, sent_at__isnull=True).update(
        sent_at=now, updated_at=now
    )
    purchase = _PENDING_PURCHASE.first(purchase_id)
    return purchase, bool(claimed) and purchase is not None


def _send(*, gateway, request, purchase_id) -> GatewayResult:
    try:
        return gateway.recharge(request)
    except GatewayUnavailable as exc:
        logger.warning("purchase %s: gateway unavailable, voiding: %s", purchase_id, exc)
        return GatewayResult(GatewayResult.FAILED, message=f"Operator gateway unavailable: {exc}")
    except Exception as exc:  # noqa: BLE001 - timeouts and surprises: the outcome is unknown
        logger.warning("purchase %s: outcome unknown, kept pending: %r", purchase_id, exc)
        message = f"Outcome unknown ({type(exc).__name__}); it will be checked with the operator."
        return GatewayResult(GatewayResult.PENDING, message=message)


def _ask(*, gateway, request, purchase_id) -> GatewayResult | None:
    try:
        return gateway.check_status(request)
    except Exception as exc:  # noqa: BLE001 - an unanswered status check settles nothing
        logger.warning("purchase %s: status check failed: %r", purchase_id, exc)
        return None


def recharge_request(*, purchase) -> RechargeRequest:
    plan = purchase.plan
    return RechargeRequest(
        reference=purchase.reference,
        mobile_number=purchase.mobile_number,
        amount=purchase.amount,
        operator=plan.provider.code,
        plan_code=plan.code,
        circle=plan.circle,
    )


def apply_gateway_result(*, purchase_id, result: GatewayResult) -> Purchase:
    """Settle a PENDING purchase by the gateway's answer, under the purchase's row lock.

    SUCCESS posts the hold and pays the commissions recorded at the sale; FAILED voids the hold and
    zeroes them;
    PENDING changes nothing. A purchase that is no longer PENDING (someone settled it first) is
    returned unchanged, so a purchase is settled exactly once however many workers try."""
    return _apply_gateway_result(purchase_id=purchase_id, result=result)[0]


def _apply_gateway_result(*, purchase_id, result) -> tuple[Purchase, bool]:
    """(the purchase, whether this call settled it)."""
    # Every exception leaves this block: the posting inside needs no savepoint of its own.
    with all_or_nothing():
        purchase = _PURCHASE_FOR_SETTLING.first(purchase_id)
        if purchase is None:
            raise Purchase.DoesNotExist(f"No purchase {purchase_id}.")
        if purchase.status != Status.PENDING:
            return purchase, False
        now = timezone.now()
        settled = result.status in (GatewayResult.SUCCESS, GatewayResult.FAILED)
        # Read before the margins of a failed sale are zeroed below.
        hold = _hold_of(purchase) if settled else None
        payouts = _payouts(purchase) if result.status == GatewayResult.SUCCESS else ()
        if result.status == GatewayResult.SUCCESS:
            purchase.status = Status.SUCCESS
            purchase.operator_reference = result.operator_reference[:100]
            purchase.failure_reason = ""
            purchase.completed_at = now
        elif result.status == GatewayResult.FAILED:
            purchase.status = Status.FAILED
            purchase.failure_reason = (result.message or "The operator refused the recharge.")[:255]
            purchase.completed_at = now
            # Nothing was sold, so nobody earned a margin: the purchase says what was paid.
            purchase.buyer_commission = purchase.distributor_commission = ZERO
        else:
            purchase.operator_reference = (result.operator_reference or purchase.operator_reference)[:100]
            purchase.failure_reason = ""
        # The purchase (locked above) is written before the wallets are locked, and the ledger's
        # statements come last: a sale's distributor wallet is locked by every sale of its retailers,
        # from its lock to the COMMIT, so nothing that does not need it runs in between (the busy
        # hour's settling waited on that lock). A refusal from the ledger rolls all of it back.
        _write_settlement(purchase)
        if result.status == GatewayResult.SUCCESS:
            ledger.post_transfer(transfer=hold, payouts=payouts)
        elif result.status == GatewayResult.FAILED:
            ledger.void_transfer(transfer=hold)
        return purchase, settled


def recheck_purchase(*, purchase_id, gateway=None) -> Purchase | None:
    """An operator's "re-check now" (the admin action): fulfil the purchase at once, whatever its age.
    Never sent, it is sent; sent, its status is asked as soon as that send must have ended (after
    RECHARGE_GATEWAY_TIMEOUT_SECONDS, not the sweep's extra 30 s): asked earlier, "never received"
    could void a recharge still on its way."""
    sent_before = timezone.now() - timedelta(seconds=settings.RECHARGE_GATEWAY_TIMEOUT_SECONDS)
    return fulfil_purchase(purchase_id=purchase_id, gateway=gateway, sent_before=sent_before)


# --- operator callbacks and reversals ----------------------------------------------------------


class PurchaseNotRefundable(DomainError):
    code = "purchase_not_refundable"
    message = "Purchase #{pk} is {status}: only a SUCCESS purchase can be refunded."
    status_code = status.HTTP_409_CONFLICT


class CallbackConflict(DomainError):
    code = "callback_conflict"
    message = "Purchase {reference} is already {current}; a callback saying {reported} changes nothing."
    status_code = status.HTTP_409_CONFLICT
    body_fields = ("current",)


CALLBACK_STATUSES = (GatewayResult.SUCCESS, GatewayResult.FAILED, "REVERSED")


@dataclass
class CallbackOutcome:
    purchase: Purchase
    applied: bool  # False: a replay, or news of what was already known: nothing changed (yet)
    queued: bool = False  # True: news to apply, handed to a worker (purchases.tasks.apply_operator_callback)


def purchase_by_reference(reference) -> Purchase:
    """The purchase an operator names by our reference ("P<id>", recharge_request), or NotFound."""
    purchase = _PURCHASE_WITH_PLAN.first(_purchase_id_of(reference))
    if purchase is None:
        raise _no_such_reference()
    return purchase


def _purchase_id_of(reference) -> int:
    """The id in our reference "P<id>" (NotFound if it is not one of ours)."""
    text = str(reference or "")
    number = text[1:] if text[:1] == "P" else ""
    if not (number.isascii() and number.isdigit() and len(number) < 19):
        raise _no_such_reference()
    return int(number)


def _no_such_reference():
    return NotFound("No purchase with this reference.", field="reference")


def receive_operator_callback(*, reference, status, operator_reference="", message="") -> CallbackOutcome:
    """A verified callback, answered at once: what it changes is applied by a worker (by default), or
    in the request (no broker, or RECHARGE_CALLBACK_APPLY=request).

    At the busy hour every purchase brings its callback, on the same web workers as the purchases;
    settling there (the posting, the margins, under the wallets' locks) made each callback as dear as a
    purchase. Here the request only reads the purchase: an unknown reference is NotFound, news the
    purchase already reflects is a replay (applied False) and news contradicting its final status is
    CallbackConflict, as `apply_operator_callback` would answer, with nothing written and nothing
    queued. News to apply is enqueued (`queued`); the worker applies it under the purchase's lock,
    where the same checks run again, so a callback and a status check racing settle it once; a
    contradiction found only there is logged at ERROR, not answered (the operator has its 202). The
    task retries while the database fails. With no broker (tasks run in-process), a broker that
    refuses the message, or RECHARGE_CALLBACK_APPLY=request, it is applied here and now."""
    purchase = purchase_by_reference(reference)
    news = _callback_news(current=purchase.status, reported=status)
    if news == _NOTHING_NEW:
        return CallbackOutcome(purchase=purchase, applied=False)
    if news == _CONFLICT:
        _log_callback_conflict(reference=reference, reported=status, current=purchase.status)
        raise CallbackConflict(reference=reference, current=purchase.status, reported=status)
    kwargs = {"reference": reference, "status": status, "operator_reference": operator_reference, "message": message}
    if not fulfilled_in_process() and settings.RECHARGE_CALLBACK_APPLY == "worker":
        from purchases import tasks  # tasks import this module

        if enqueue_now(tasks.apply_operator_callback, **kwargs):
            return CallbackOutcome(purchase=purchase, applied=False, queued=True)
    return apply_operator_callback(**kwargs)


_NOTHING_NEW, _CONFLICT, _TO_APPLY = "nothing new", "conflict", "to apply"


def _callback_news(*, current, reported) -> str:
    """What a callback reporting `reported` means to a purchase that is `current` (the rules of
    `apply_operator_callback`, read without a lock)."""
    if current == Status.PENDING:
        return _TO_APPLY
    if reported == "REVERSED":
        return _TO_APPLY if current == Status.SUCCESS else _NOTHING_NEW
    return _NOTHING_NEW if current == reported else _CONFLICT


def _log_callback_conflict(*, reference, reported, current):
    logger.error(
        "operator callback for %s says %s, but the purchase is already %s: nothing changed; check with the operator",
        reference,
        reported,
        current,
    )


def apply_operator_callback(*, reference, status, operator_reference="", message="") -> CallbackOutcome:
    """Apply an operator's final word on a recharge (a verified callback).

    SUCCESS or FAILED settles a PENDING purchase, exactly as a status check would; REVERSED refunds
    a SUCCESS purchase (`refund_purchase`) and fails a PENDING one. The same news again (a replay,
    or a status the purchase already has) changes nothing (`applied` False). News that contradicts
    a final status (FAILED for a SUCCESS purchase, SUCCESS for a FAILED or REFUNDED one) changes
    nothing either and raises CallbackConflict; it is logged as an error, for operators to look at
    (an operator that recharged a purchase we voided needs a person). NotFound for an unknown
    reference."""
    if status == "REVERSED":
        return _apply_reversal(purchase=purchase_by_reference(reference), message=message)
    result = GatewayResult(status, operator_reference=operator_reference or "", message=message or "")
    try:
        # Straight to the purchase under its lock: a read before it (one per callback, on the worker
        # that settles them all) would only have told what the lock's read tells.
        purchase, settled = _apply_gateway_result(purchase_id=_purchase_id_of(reference), result=result)
    except Purchase.DoesNotExist:
        raise _no_such_reference() from None
    if settled or purchase.status == status:
        return CallbackOutcome(purchase=purchase, applied=settled)
    _log_callback_conflict(reference=reference, reported=status, current=purchase.status)
    raise CallbackConflict(reference=reference, current=purchase.status, reported=status)


def _apply_reversal(*, purchase, message) -> CallbackOutcome:
    """REVERSED: a PENDING purchase fails, a SUCCESS one is refunded, anything else is left as it is.
    `purchase` was read without a lock: if another worker settled it in between (a SUCCESS callback
    and its reversal run side by side), the status under the lock decides, and a SUCCESS found there
    is refunded rather than reported as a conflict."""
    if purchase.status == Status.PENDING:
        reason = message or "The operator reversed the recharge."
        purchase, settled = _apply_gateway_result(
            purchase_id=purchase.pk, result=GatewayResult(GatewayResult.FAILED, message=reason)
        )
        if settled:
            return CallbackOutcome(purchase=purchase, applied=True)
    if purchase.status == Status.SUCCESS:
        refunded, done = refund_purchase(purchase_id=purchase.pk, reason=f"Reversed by the operator. {message}".strip())
        return CallbackOutcome(purchase=refunded, applied=done)
    return CallbackOutcome(purchase=purchase, applied=False)  # FAILED or REFUNDED: nothing to undo


def refund_purchase(*, purchase_id, reason="", initiated_by=None) -> tuple[Purchase, bool]:
    """Refund a SUCCESS purchase (an operator's reversal, or an admin): the buyer gets the whole price
    back (`wallet.services.refund_transfer`) and the margins paid on the sale are taken back
    (`take_back_payouts`) as far as each wallet's available balance goes. The buyer's own margin is
    always taken back in full (its refund is the whole price, more than its margin); a distributor
    that already spent its margin keeps the rest: no balance ever goes negative, and the shortfall is
    recorded in `commission_unrecovered` and logged. The purchase becomes REFUNDED.

    Once only: a REFUNDED purchase is returned unchanged (False); any other status is refused with
    PurchaseNotRefundable. Locks the purchase, then every wallet involved in one query, in id order."""
    with transaction.atomic():
        purchase = (
            Purchase.objects.select_for_update(of=("self",))
            .select_related("plan__provider", "buyer")
            .filter(pk=purchase_id)
            .first()
        )
        if purchase is None:
            raise NotFound("Purchase not found.")
        if purchase.status == Status.REFUNDED:
            return purchase, False
        if purchase.status != Status.SUCCESS:
            raise PurchaseNotRefundable(pk=purchase.pk, status=purchase.status)
        payouts = _payouts(purchase)
        ledger.wallets_for_update(user_ids=[purchase.buyer_id, *[payout.user_id for payout in payouts]])
        hold = _hold_of(purchase)
        remarks = f"Refund of recharge #{purchase.pk} ({purchase.mobile_number})"
        ledger.refund_transfer(transfer=hold, remarks=remarks, initiated_by=initiated_by)
        reclaimed = [
            ledger.Payout(
                user_id=payout.user_id,
                amount=payout.amount,
                remarks=f"Margin taken back: recharge #{purchase.pk} refunded",
            )
            for payout in payouts
        ]
        taken = ledger.take_back_payouts(payouts=reclaimed, transfer=hold, initiated_by=initiated_by)
        unrecovered = sum((payout.amount - amount for payout, amount in taken), ZERO)
        if unrecovered > 0:
            logger.warning("purchase %s refunded; %s of its margins could not be taken back", purchase.pk, unrecovered)
        purchase.status = Status.REFUNDED
        purchase.commission_unrecovered = unrecovered
        purchase.failure_reason = (reason or "Refunded.")[:255]
        purchase.save(update_fields=["status", "commission_unrecovered", "failure_reason", "updated_at"])
        return purchase, True


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
    """Leave a purchase alone until its own gateway call must have ended: PURCHASE_STATUS_CHECK_AFTER_SECONDS
    (the gateway timeout + 30 s by default)."""
    return timedelta(seconds=settings.PURCHASE_STATUS_CHECK_AFTER_SECONDS)


def settle_pending_purchases(*, older_than=None, limit=None, gateway=None) -> SettleReport:
    """Finish, in this process, the PENDING purchases left behind: send those never sent (created
    more than `older_than` ago: their task was lost), ask the gateway about those sent more than
    `older_than` ago, and post or void each by the answer (`fulfil_purchase`).

    Each purchase is first claimed under its row lock with SKIP LOCKED (so one being settled right
    now by a worker, or by a concurrent run, is skipped, not waited for); `fulfil_purchase` then
    sends at most once and settles under the lock again. Safe to run concurrently with workers, new
    purchases and itself. (The workers' periodic sweep, `enqueue_pending_purchases`, does the same
    through the queue.)"""
    older_than = default_settle_age() if older_than is None else older_than
    cutoff = timezone.now() - older_than
    ids = _left_behind(now=timezone.now(), unsent_after=older_than, sent_after=older_than)
    ids = list(ids[:limit] if limit else ids)
    report = SettleReport()
    for purchase_id in ids:
        if _claim_pending(purchase_id) is None:
            report.skipped += 1
            continue
        report.checked += 1
        purchase, result, settled_now = _fulfil(purchase_id=purchase_id, gateway=gateway, sent_before=cutoff)
        if result is None:
            if purchase is None:
                report.skipped += 1  # settled by someone else since the claim
            else:
                report.errors += 1
        elif result.status == GatewayResult.PENDING:
            report.still_pending += 1
        elif not settled_now:
            report.skipped += 1  # a worker, or another run, settled it while we asked
        else:
            report.settled_ids.append(purchase_id)
            if purchase.status == Status.SUCCESS:
                report.succeeded += 1
            else:
                report.failed += 1
    return report


# How many times PURCHASE_RESEND_AFTER_SECONDS a purchase may wait unsent while the queue has a backlog.
BACKLOG_PATIENCE = 10


def enqueue_pending_purchases(*, unsent_after=None, sent_after=None, limit=1000) -> int:
    """The periodic sweep (beat): enqueue fulfilment again for PENDING purchases whose task was lost
    (never sent, older than `unsent_after`, PURCHASE_RESEND_AFTER_SECONDS by default: the broker was
    down at acceptance, or a worker died before sending) and for those sent but unsettled (sent more
    than `sent_after` ago, PURCHASE_STATUS_CHECK_AFTER_SECONDS by default: their status is asked).
    Enqueueing twice is harmless (fulfilment sends at most once, settles once), so several machines
    may run it. Returns how many were enqueued.

    While messages are still waiting in the queue, a purchase never sent is enqueued again only once
    it is BACKLOG_PATIENCE times older than that: the workers are behind, it is most likely among
    those messages, and each copy would be one more task for them to get through (at the busy hour a
    sweep every few seconds queued a copy of thousands). One really lost is still sent, later. Sent
    purchases whose outcome is unknown are not in the queue, and are asked about as always."""
    from purchases import tasks  # tasks import this module

    unsent_after = timedelta(seconds=settings.PURCHASE_RESEND_AFTER_SECONDS) if unsent_after is None else unsent_after
    waiting = queue_depth()  # None: no broker (tasks run in process), or it cannot say
    if waiting:
        logger.info("sweep: %s messages still waiting in the queue; only long-unsent purchases are resent", waiting)
        unsent_after *= BACKLOG_PATIENCE
    sent_after = default_settle_age() if sent_after is None else sent_after
    ids = list(_left_behind(now=timezone.now(), unsent_after=unsent_after, sent_after=sent_after)[:limit])
    return sum(enqueue_now(tasks.fulfil_purchase, purchase_id=purchase_id) for purchase_id in ids)


def _left_behind(*, now, unsent_after, sent_after):
    """Ids of PENDING purchases never sent and created more than `unsent_after` ago, or sent more
    than `sent_after` ago; oldest first."""
    return (
        Purchase.objects.filter(status=Status.PENDING)
        .filter(Q(sent_at__isnull=True, created_at__lte=now - unsent_after) | Q(sent_at__lte=now - sent_after))
        .order_by("created_at", "pk")
        .values_list("pk", flat=True)
    )


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


# The acceptance's reads are compiled once (core.precompiled): turning them into SQL cost more CPU than
# the database spends answering them (bench/profile_request.py purchases).
_PLAN_WITH_PROVIDER = PrecompiledQuery(
    lambda marker: RechargePlan.objects.select_related("provider").filter(pk=marker).order_by()[:1], -1
)
_PURCHASE_FOR_KEY = PrecompiledQuery(
    # (buyer, idempotency_key) is unique: at most one row, whatever the order.
    lambda buyer_marker, key_marker: (
        Purchase.objects.select_related("plan__provider")
        .filter(buyer_id=buyer_marker, idempotency_key=key_marker)
        .order_by()[:1]
    ),
    -1,
    "\x00precompiled",
)


def _sellable_plan(plan_id) -> RechargePlan:
    try:
        plan_pk = int(plan_id)
    except (TypeError, ValueError, OverflowError):
        plan_pk = None
    plan = _PLAN_WITH_PROVIDER.first(plan_pk) if plan_pk is not None and 0 < plan_pk < 2**63 else None
    if plan is None:
        raise PlanNotFound(field="plan_id", pk=plan_id)
    if not plan.is_active or not plan.provider.is_active:
        raise PlanInactive(field="plan_id")
    return plan


def _purchase_for_key(*, buyer, key, plan_id, number):
    """The buyer's purchase under `key`, if any; PurchaseKeyReused if it was for another plan or
    another number (`number` as the client wrote it, read in the operator's country)."""
    existing = _PURCHASE_FOR_KEY.first(buyer.pk, key)
    if existing is not None and (
        str(existing.plan_id) != str(plan_id)
        or not same_number(number, existing.mobile_number, region=existing.plan.provider.country)
    ):
        raise PurchaseKeyReused(field="idempotency_key")
    return existing


# Every acceptance inserts its purchase and every settlement writes its outcome: compiled once
# (core.precompiled): the ORM built each statement anew (0.8 of an acceptance's 11 ms of CPU: bench/README.md).
_INSERTED_FIELDS = (
    "buyer",
    "plan",
    "mobile_number",
    "amount",
    "buyer_commission",
    "distributor",
    "distributor_commission",
    "commission_unrecovered",
    "status",
    "operator_reference",
    "failure_reason",
    "idempotency_key",
    "created_at",
    "updated_at",
)
_INSERT_PURCHASE = PrecompiledInsert(Purchase, *_INSERTED_FIELDS)
_INSERTED_VALUES = operator.attrgetter(*(Purchase._meta.get_field(name).attname for name in _INSERTED_FIELDS))
_SETTLED_FIELDS = (
    "status",
    "operator_reference",
    "failure_reason",
    "completed_at",
    "buyer_commission",
    "distributor_commission",
    "updated_at",
)
_WRITE_SETTLEMENT = PrecompiledUpdate(Purchase, set_names=_SETTLED_FIELDS, where_names=("id",))
_SETTLED_VALUES = operator.attrgetter(*_SETTLED_FIELDS)


def _new_purchase(**fields) -> Purchase:
    """A new PENDING purchase, inserted (as `Purchase.objects.create(**fields)`, which has no signals)."""
    now = timezone.now()
    purchase = Purchase(**fields, commission_unrecovered=ZERO, status=Status.PENDING, created_at=now, updated_at=now)
    purchase.pk = _INSERT_PURCHASE.insert(*_INSERTED_VALUES(purchase))
    purchase._state.adding, purchase._state.db = False, "default"
    return purchase


def _write_settlement(purchase):
    """Write the settled fields of `purchase` (locked by the caller), as `save(update_fields=...)`."""
    purchase.updated_at = timezone.now()
    if not _WRITE_SETTLEMENT.update(*_SETTLED_VALUES(purchase), purchase.pk):
        raise Purchase.DoesNotExist(f"No purchase {purchase.pk}.")  # as save(update_fields=...) would


def _hold_of(purchase):
    return wallet_selectors.purchase_transfer(reference=purchase.reference)


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
