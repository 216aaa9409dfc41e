"""The ledger service: the only code that writes wallet balances and journal rows (ledger.md).

Every public function here is one business operation and guarantees:
- one `transaction.atomic()` block: balances and journal rows commit together or not at all;
- the user wallets involved are locked with `select_for_update()` in one query ordered by primary
  key, so two operations over the same wallets always lock them in the same order and cannot
  deadlock; balances are read only after the lock;
- every check (amount, active owners, distinct wallets, available funds) runs before any write,
  so a refusal writes nothing;
- system wallets are never locked or rewritten: their balance is derived from the journal.
"""

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from core.errors import DomainError, NotFound
from core.money import parse_amount
from wallet.models import SystemWallet, Transfer, Wallet

Kind = Transfer.Kind
Status = Transfer.Status


class InsufficientFunds(DomainError):
    code = "insufficient_funds"
    message = "Insufficient funds: available {available}, needed {amount}."


class WalletInactive(DomainError):
    # Says which side, never whose: a refusal must not name someone else's account.
    code = "wallet_inactive"
    message = "The {side} account is deactivated."


class SameWallet(DomainError):
    code = "same_wallet"
    message = "The sender and the receiver must be different accounts."


class TransferNotPending(DomainError):
    code = "transfer_not_pending"
    message = "Transfer #{pk} is {status}, not pending."
    status_code = 409


class NotRefundable(DomainError):
    code = "not_refundable"
    message = "Transfer #{pk} ({kind}, {status}) is not a posted purchase; only those are refunded."
    status_code = 409


class WalletNotFound(NotFound):
    message = "Wallet not found."


class TransferAlreadyRefunded(DomainError):
    code = "transfer_already_refunded"
    message = "Transfer #{pk} has already been refunded."
    status_code = 409


class BalanceLimitExceeded(DomainError):
    # Names the side, never the account: a refusal must not tell a sender about the receiver's wallet.
    code = "balance_limit_exceeded"
    message = "This would take the {side} wallet above its balance limit of {limit}; it can take {headroom} more."


class MonthlyLoadLimitExceeded(DomainError):
    code = "monthly_load_limit_exceeded"
    message = (
        "This would take what the {side} wallet loaded this month above its limit of {limit}; "
        "it can take {headroom} more."
    )


class TransactionLimitExceeded(DomainError):
    code = "transaction_limit_exceeded"
    message = "The {side} wallet takes at most {limit} in one transaction."


@dataclass(frozen=True)
class Payout:
    """Money a system wallet pays a user as part of posting a transfer (a commission)."""

    user_id: int
    amount: Decimal
    kind: str = Kind.COMMISSION
    source: str = SystemWallet.COMMISSION
    remarks: str = ""


# --- accounts -------------------------------------------------------------------


def open_wallet(*, user) -> Wallet:
    """Create `user`'s wallet. Called by User.save() in the transaction that creates the user."""
    return Wallet.objects.create(user=user, currency=settings.WALLET_CURRENCY)


def open_wallets(*, users) -> list[Wallet]:
    """Create the wallets of many new users at once (accounts.services.create_users_in_bulk)."""
    return Wallet.objects.bulk_create(Wallet(user=user, currency=settings.WALLET_CURRENCY) for user in users)


def system_wallet(*, code: str) -> Wallet:
    """A system wallet, unlocked. Created by a data migration; recreated if a test flushed it."""
    wallet = Wallet.objects.filter(system_code=code).first()
    if wallet is not None:
        return wallet
    try:
        with transaction.atomic():
            return Wallet.objects.create(system_code=code, currency=settings.WALLET_CURRENCY)
    except IntegrityError:
        return Wallet.objects.get(system_code=code)


def validate_amount(*, amount) -> Decimal:
    """The amount as a two-place Decimal, or an InvalidAmount (core.money.parse_amount, the same
    reading the API's MoneyField gives)."""
    return parse_amount(amount)


def wallets_for_update(*, user_ids=(), wallet_ids=()) -> list[Wallet]:
    """Lock the user wallets of `user_ids` / `wallet_ids` in ascending id order, in one query."""
    # Only the parts that name something: an empty `IN ()` costs Django a failed compile per call,
    # and this runs on every money request.
    condition = Q()
    if user_ids:
        condition |= Q(user_id__in=list(user_ids))
    if wallet_ids:
        condition |= Q(pk__in=list(wallet_ids))
    if not condition:
        return []
    return list(
        Wallet.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(condition, system_code__isnull=True)
        .order_by("pk")
    )


def check_load_limits(*, wallet, amount, largest=None, side="receiving", month_loaded=None) -> None:
    """Refuse a load (top-up, self top-up, admin funding, transfer in) of `amount` into `wallet` that
    would break its owner's limits (wallet/limits.py): the balance limit, the calendar month's load
    limit, and the per-transaction limit (checked against `largest`, the biggest single credit, when
    `amount` totals several). `wallet` must be a user wallet locked by the caller in this
    transaction, so that concurrent loads are checked one after the other against the stored balance
    and the journal. Costs no query for an unlimited wallet, one aggregate with a monthly limit
    (none if the caller passes `month_loaded`, as the bulk path does for all its receivers at once).
    Refunds and commissions are not loads: their paths never call this."""
    from wallet import limits as rules

    if wallet.is_system:
        return
    limits = rules.limits_for(wallet.user)
    if limits.unlimited:
        return
    single = amount if largest is None else largest
    if limits.per_transaction is not None and single > limits.per_transaction:
        raise TransactionLimitExceeded(field="amount", side=side, limit=f"{limits.per_transaction:.2f}")
    if limits.max_balance is not None and wallet.balance + amount > limits.max_balance:
        room = max(limits.max_balance - wallet.balance, Decimal("0.00"))
        raise BalanceLimitExceeded(field="amount", side=side, limit=f"{limits.max_balance:.2f}", headroom=f"{room:.2f}")
    if limits.monthly_load is not None:
        loaded = rules.loaded_this_month(wallet_id=wallet.pk) if month_loaded is None else month_loaded
        if loaded + amount > limits.monthly_load:
            room = max(limits.monthly_load - loaded, Decimal("0.00"))
            raise MonthlyLoadLimitExceeded(
                field="amount", side=side, limit=f"{limits.monthly_load:.2f}", headroom=f"{room:.2f}"
            )


# --- operations -----------------------------------------------------------------


def transfer_funds(*, sender, receiver, amount, remarks="", initiated_by=None, idempotency_key=None) -> Transfer:
    """Move `amount` from `sender`'s wallet to `receiver`'s (TRANSFER). Refuses self-transfers,
    deactivated accounts and insufficient available funds."""
    amount = validate_amount(amount=amount)
    if sender.pk == receiver.pk:
        raise SameWallet(field="to")
    with transaction.atomic():
        by_user = {wallet.user_id: wallet for wallet in wallets_for_update(user_ids=[sender.pk, receiver.pk])}
        source, destination = _user_wallet(by_user, sender.pk), _user_wallet(by_user, receiver.pk)
        _ensure_active(paying=[source], receiving=[destination])
        if source.available >= amount:  # a refusal for the sender's funds comes first, and costs no query
            check_load_limits(wallet=destination, amount=amount)
        return _move(
            source=source,
            destination=destination,
            amount=amount,
            kind=Kind.TRANSFER,
            remarks=remarks,
            initiated_by=initiated_by or sender,
            idempotency_key=idempotency_key,
        )


def credit_wallet(*, user, amount, remarks="", initiated_by=None, kind=Kind.CREDIT, idempotency_key=None) -> Transfer:
    """TREASURY -> user: a self top-up (CREDIT) or, with kind=FUND, an admin's funding."""
    amount = validate_amount(amount=amount)
    with transaction.atomic():
        destination = _locked_user_wallet(user)
        _ensure_active(receiving=[destination])
        check_load_limits(
            wallet=destination, amount=amount, side="your" if initiated_by in (None, user) else "receiving"
        )
        return _move(
            source=system_wallet(code=SystemWallet.TREASURY),
            destination=destination,
            amount=amount,
            kind=kind,
            remarks=remarks,
            initiated_by=initiated_by or user,
            idempotency_key=idempotency_key,
        )


def debit_wallet(*, user, amount, remarks="", initiated_by=None, kind=Kind.DEBIT, idempotency_key=None) -> Transfer:
    """user -> TREASURY: a self debit (DEBIT) or, with kind=DEFUND, an admin's debit."""
    amount = validate_amount(amount=amount)
    with transaction.atomic():
        source = _locked_user_wallet(user)
        _ensure_active(paying=[source])
        return _move(
            source=source,
            destination=system_wallet(code=SystemWallet.TREASURY),
            amount=amount,
            kind=kind,
            remarks=remarks,
            initiated_by=initiated_by or user,
            idempotency_key=idempotency_key,
        )


def fund_wallet(*, user, amount, remarks="", initiated_by, idempotency_key=None) -> Transfer:
    """An admin adds money to `user`'s wallet (FUND, from TREASURY)."""
    return credit_wallet(
        user=user,
        amount=amount,
        remarks=remarks,
        initiated_by=initiated_by,
        kind=Kind.FUND,
        idempotency_key=idempotency_key,
    )


def defund_wallet(*, user, amount, remarks="", initiated_by, idempotency_key=None) -> Transfer:
    """An admin removes money from `user`'s wallet (DEFUND, to TREASURY)."""
    return debit_wallet(
        user=user,
        amount=amount,
        remarks=remarks,
        initiated_by=initiated_by,
        kind=Kind.DEFUND,
        idempotency_key=idempotency_key,
    )


def hold_funds(
    *,
    user,
    amount,
    destination=SystemWallet.RECHARGE_SETTLEMENT,
    kind=Kind.PURCHASE,
    remarks="",
    initiated_by=None,
    reference=None,
    idempotency_key=None,
) -> Transfer:
    """Phase one of a two-phase transfer: a PENDING transfer user -> `destination` (a system
    wallet) that reserves `amount` in the user's `held` without moving it. `reference` names the
    business record it belongs to; the payouts of its posting and its refund carry it too."""
    amount = validate_amount(amount=amount)
    with transaction.atomic():
        source = _locked_user_wallet(user)
        _ensure_active(paying=[source])
        return _move(
            source=source,
            destination=system_wallet(code=destination),
            amount=amount,
            kind=kind,
            status=Status.PENDING,
            remarks=remarks,
            initiated_by=initiated_by or user,
            reference=reference,
            idempotency_key=idempotency_key,
        )


def post_transfer(*, transfer, payouts=()) -> tuple[Transfer, list[Transfer]]:
    """Phase two: move the held money of a PENDING transfer and release the hold; in the same
    transaction pay `payouts` (commissions) from system wallets. Every user wallet involved is
    locked up front, in id order. Refuses a transfer that is no longer pending."""
    # A margin rounded down to the paisa can be 0.00: nothing to pay, not an invalid amount.
    payouts = [payout for payout in payouts if not _is_zero(payout.amount)]
    for payout in payouts:
        validate_amount(amount=payout.amount)
    with transaction.atomic():
        pending, wallets = _lock_pending(transfer, extra_user_ids=[payout.user_id for payout in payouts])
        now = timezone.now()
        source, destination = wallets.get(pending.from_wallet_id), wallets.get(pending.to_wallet_id)
        # The money moves now, so this is where the row joins each wallet's chain of balances
        # (its number and balance after are those at posting, not at the hold).
        if source is not None:
            source.held -= pending.amount
            pending.from_entry = _change_balance(source, -pending.amount)
            _store_balance(source, now)
        if destination is not None:
            pending.to_entry = _change_balance(destination, pending.amount)
            _store_balance(destination, now)
        pending.status = Status.POSTED
        pending.from_balance_after = source.balance if source is not None else None
        pending.to_balance_after = destination.balance if destination is not None else None
        pending.updated_at = pending.finalized_at = now
        pending.save(
            update_fields=[
                "status",
                "from_balance_after",
                "to_balance_after",
                "from_entry",
                "to_entry",
                "updated_at",
                "finalized_at",
            ]
        )
        by_user = {wallet.user_id: wallet for wallet in wallets.values()}
        paid = [
            _move(
                source=system_wallet(code=payout.source),
                destination=_user_wallet(by_user, payout.user_id),
                amount=payout.amount,
                kind=payout.kind,
                remarks=payout.remarks,
                initiated_by=pending.initiated_by,
                reference=pending.reference,
                now=now,
            )
            for payout in payouts
        ]
        return pending, paid


def void_transfer(*, transfer) -> Transfer:
    """Cancel a PENDING transfer: release the hold, move nothing. Refuses a final transfer."""
    with transaction.atomic():
        pending, wallets = _lock_pending(transfer)
        now = timezone.now()
        source = wallets.get(pending.from_wallet_id)
        if source is not None:
            source.held -= pending.amount
            _store_balance(source, now)
        pending.status = Status.VOIDED
        pending.updated_at = pending.finalized_at = now
        pending.save(update_fields=["status", "updated_at", "finalized_at"])
        return pending


def refund_transfer(*, transfer, remarks="", initiated_by=None) -> Transfer:
    """Give back a POSTED recharge purchase (REFUND, RECHARGE_SETTLEMENT -> the buyer); any other
    kind is NotRefundable (a DEBIT or DEFUND is not a sale to reverse).

    At most once per transfer: the buyer's wallet is locked first (as everywhere), then the original
    row, and the refund row points at it through a unique `refund_of`, so a second refund (even a
    concurrent one) is refused with TransferAlreadyRefunded instead of paying twice."""
    with transaction.atomic():
        from_wallet_id = Transfer.objects.filter(pk=transfer.pk).values_list("from_wallet_id", flat=True).get()
        locked = wallets_for_update(wallet_ids=[from_wallet_id])
        original = Transfer.objects.select_for_update().select_related("to_wallet").get(pk=transfer.pk)
        if original.kind != Kind.PURCHASE or original.status != Status.POSTED or not locked:
            raise NotRefundable(pk=original.pk, kind=original.kind, status=original.status)
        if Transfer.objects.filter(refund_of=original).exists():
            raise TransferAlreadyRefunded(pk=original.pk)
        return _move(
            source=original.to_wallet,
            destination=locked[0],
            amount=original.amount,
            kind=Kind.REFUND,
            remarks=remarks or f"Refund of transfer #{original.pk}",
            initiated_by=initiated_by,
            reference=original.reference,
            refund_of=original,
        )


def take_back_payouts(*, payouts, transfer, initiated_by=None) -> list[tuple[Payout, Decimal]]:
    """Take back what `payouts` paid on posting `transfer` (the margins of a recharge that was then
    refunded): each user -> its payout's source system wallet, as far as that user's available
    balance goes, so that no balance ever goes negative. Returns (payout, amount taken back) for
    each; the caller records any shortfall. The user wallets are locked in one query, in id order
    (the caller may hold them already)."""
    payouts = [payout for payout in payouts if not _is_zero(payout.amount)]
    if not payouts:
        return []
    with transaction.atomic():
        by_user = {wallet.user_id: wallet for wallet in wallets_for_update(user_ids=[p.user_id for p in payouts])}
        now = timezone.now()
        taken = []
        for payout in payouts:
            wallet = _user_wallet(by_user, payout.user_id)
            amount = min(validate_amount(amount=payout.amount), max(wallet.available, Decimal("0.00")))
            if amount > 0:
                _move(
                    source=wallet,
                    destination=system_wallet(code=payout.source),
                    amount=amount,
                    kind=payout.kind,
                    remarks=payout.remarks,
                    initiated_by=initiated_by,
                    reference=transfer.reference,
                    now=now,
                )
            taken.append((payout, amount))
        return taken


def pay_out_in_bulk(*, payer=None, payments, kind=Kind.TRANSFER, remarks="", initiated_by=None, batch_size=5000) -> int:
    """Many posted transfers from one payer in one transaction: a distributor paying its retailers,
    or (payer=None, kind=FUND) the treasury funding many wallets. `payments` is a list of
    (receiver user id, amount); a receiver may appear several times. Returns the rows written.

    The same rules as a single transfer: every user wallet involved is locked in one query in id
    order, every check (amounts, active owners, no self-payment, the payer's funds for the whole
    batch) runs before the first write, each row carries the balances after it, and the balances
    are stored once per wallet. All or nothing."""
    payments = [(user_id, validate_amount(amount=amount)) for user_id, amount in payments]
    if not payments:
        return 0
    receiver_ids = {user_id for user_id, _ in payments}
    if payer is not None and payer.pk in receiver_ids:
        raise SameWallet(field="payments")
    with transaction.atomic():
        payer_ids = [payer.pk] if payer is not None else []
        by_user = {wallet.user_id: wallet for wallet in wallets_for_update(user_ids=[*payer_ids, *receiver_ids])}
        source = _user_wallet(by_user, payer.pk) if payer is not None else system_wallet(code=SystemWallet.TREASURY)
        receivers = {user_id: _user_wallet(by_user, user_id) for user_id in receiver_ids}
        _ensure_active(paying=[source], receiving=receivers.values())
        total = sum((amount for _, amount in payments), Decimal("0.00"))
        if not source.is_system and source.available < total:
            raise InsufficientFunds(available=f"{source.available:.2f}", amount=f"{total:.2f}")
        _check_bulk_load_limits(receivers=receivers, payments=payments)
        now = timezone.now()
        rows = [
            Transfer(
                **_journal_fields(
                    source=source,
                    destination=receivers[user_id],
                    amount=amount,
                    kind=kind,
                    remarks=remarks,
                    initiated_by=initiated_by or payer,
                    now=now,
                )
            )
            for user_id, amount in payments
        ]
        Transfer.objects.bulk_create(rows, batch_size=batch_size)
        changed = list(receivers.values()) + ([] if source.is_system else [source])
        for wallet in changed:
            wallet.updated_at = now
        Wallet.objects.bulk_update(changed, ["balance", "last_entry", "updated_at"], batch_size=batch_size)
        return len(rows)


def credit_top_up(*, user, amount, remarks="", idempotency_key=None) -> Transfer:
    """Money a user paid in through the payment provider: PAYMENT_SETTLEMENT -> user (TOPUP).

    Called by payments.services under the top-up's row lock, once per succeeded top-up."""
    amount = validate_amount(amount=amount)
    with transaction.atomic():
        destination = _locked_user_wallet(user)
        _ensure_active(receiving=[destination])
        check_load_limits(wallet=destination, amount=amount, side="your")
        return _move(
            source=system_wallet(code=SystemWallet.PAYMENT_SETTLEMENT),
            destination=destination,
            amount=amount,
            kind=Kind.TOPUP,
            remarks=remarks,
            initiated_by=user,
            idempotency_key=idempotency_key,
        )


# --- internals ------------------------------------------------------------------


def _is_zero(amount) -> bool:
    return isinstance(amount, (Decimal, int)) and not isinstance(amount, bool) and amount == 0


def _locked_user_wallet(user) -> Wallet:
    wallets = wallets_for_update(user_ids=[user.pk])
    if not wallets:
        raise WalletNotFound()
    return wallets[0]


def _user_wallet(by_user, user_id) -> Wallet:
    try:
        return by_user[user_id]
    except KeyError:
        raise WalletNotFound() from None


def _ensure_active(*, paying=(), receiving=()):
    for side, wallets in (("paying", paying), ("receiving", receiving)):
        for wallet in wallets:
            if not wallet.is_system and not wallet.user.is_active:
                raise WalletInactive(side=side)


def _check_bulk_load_limits(*, receivers, payments):
    """check_load_limits for every receiver of a bulk payment, with one query for all their month's loads."""
    from wallet import limits as rules

    received = {}
    for user_id, amount in payments:
        received.setdefault(user_id, []).append(amount)
    limited = {user_id: wallet for user_id, wallet in receivers.items() if not rules.limits_for(wallet.user).unlimited}
    if not limited:
        return
    loaded = rules.loaded_this_month_by_wallet(wallet_ids=[wallet.pk for wallet in limited.values()])
    for user_id, wallet in limited.items():
        amounts = received[user_id]
        check_load_limits(
            wallet=wallet,
            amount=sum(amounts, Decimal("0.00")),
            largest=max(amounts),
            month_loaded=loaded.get(wallet.pk, Decimal("0.00")),
        )


def _lock_pending(transfer, extra_user_ids=()):
    """Lock the user wallets of a pending transfer (and of its payouts), then the transfer row.

    Wallets first, in id order, like every other operation, so posting never deadlocks with a
    transfer between the same wallets."""
    wallet_ids = Transfer.objects.filter(pk=transfer.pk).values_list("from_wallet_id", "to_wallet_id").get()
    wallets = {wallet.pk: wallet for wallet in wallets_for_update(wallet_ids=wallet_ids, user_ids=extra_user_ids)}
    pending = Transfer.objects.select_for_update().get(pk=transfer.pk)
    if pending.status != Status.PENDING:
        raise TransferNotPending(pk=pending.pk, status=pending.status)
    return pending, wallets


def _move(
    *,
    source,
    destination,
    amount,
    kind,
    status=Status.POSTED,
    remarks="",
    initiated_by=None,
    reference=None,
    idempotency_key=None,
    refund_of=None,
    now=None,
) -> Transfer:
    """Check and apply one transfer between wallets the caller has locked (system wallets are not
    locked and never rewritten). Everything is checked before the first write."""
    if source.pk == destination.pk:
        raise SameWallet()
    if not source.is_system and source.available < amount:
        raise InsufficientFunds(available=f"{source.available:.2f}", amount=f"{amount:.2f}")
    now = now or timezone.now()
    row = _journal_fields(
        source=source,
        destination=destination,
        amount=amount,
        kind=kind,
        status=status,
        remarks=remarks,
        initiated_by=initiated_by,
        reference=reference,
        idempotency_key=idempotency_key,
        refund_of=refund_of,
        now=now,
    )
    if not source.is_system:
        _store_balance(source, now)
    if not destination.is_system and status == Status.POSTED:
        _store_balance(destination, now)
    return Transfer.objects.create(**row)


def _journal_fields(*, source, destination, amount, kind, status=Status.POSTED, remarks="", now, **links) -> dict:
    """Apply `amount` to the locked wallets in memory and return the journal row's fields, with the
    balances after it: a posted transfer moves the balance, a pending one raises the sender's hold.
    The one place both `_move` and `pay_out_in_bulk` do the arithmetic; the callers check and store."""
    from_entry = to_entry = None
    if not source.is_system:
        if status == Status.POSTED:
            from_entry = _change_balance(source, -amount)
        else:
            source.held += amount
    if not destination.is_system and status == Status.POSTED:
        to_entry = _change_balance(destination, amount)
    return dict(
        from_wallet=source,
        to_wallet=destination,
        amount=amount,
        kind=kind,
        status=status,
        remarks=remarks[:255],
        from_balance_after=None if source.is_system else source.balance,
        to_balance_after=None if destination.is_system else destination.balance,
        from_entry=from_entry,
        to_entry=to_entry,
        created_at=now,
        updated_at=now,
        finalized_at=now if status != Status.PENDING else None,
        **links,
    )


def _change_balance(wallet, amount) -> int:
    """Move a locked user wallet's balance by `amount` and number the change in the wallet's chain
    of balances (Transfer.from_entry / to_entry): the number this transfer gets for this wallet."""
    wallet.balance += amount
    wallet.last_entry += 1
    return wallet.last_entry


def _store_balance(wallet, now):
    Wallet.objects.filter(pk=wallet.pk).update(
        balance=wallet.balance, held=wallet.held, last_entry=wallet.last_entry, updated_at=now
    )
