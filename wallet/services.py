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
from functools import partial

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, connection, connections, transaction
from django.db.models import Q
from django.utils import timezone

from core import precompiled
from core.errors import DomainError, NotFound, PermissionRefused
from core.money import AmountNotAString, InvalidAmount, parse_amount
from core.precompiled import PrecompiledInsert, PrecompiledQuery
from core.roles import UserType
from core.transactions import innermost_is_all_or_nothing
from wallet.models import Payout as PayoutRecord
from wallet.models import PayoutLine, SystemWallet, Transfer, Wallet

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
    message = "This would take {wallet} above its balance limit of {limit}; it can take {headroom} more."


class MonthlyLoadLimitExceeded(DomainError):
    code = "monthly_load_limit_exceeded"
    message = "This would take what {wallet} loaded this month above its limit of {limit}; it can take {headroom} more."


class TransactionLimitExceeded(DomainError):
    code = "transaction_limit_exceeded"
    message = "At most {limit} can go into {wallet} in one transaction."


class InvalidPayoutSize(DomainError):
    code = "invalid_payout_size"
    message = "A payout has 1 to {maximum} lines."


class PayoutNotAllowed(PermissionRefused):
    message = "Only administrators, and distributors for their own retailers, may make payouts."


class PayoutLinesRefused(DomainError):
    """Some lines of a payout are bad: nothing is paid, and `lines` says which and why."""

    code = "invalid_payout_lines"
    message = "{bad} of {total} payout lines are invalid; nothing was paid."
    body_fields = ("lines",)

    def __init__(self, *, lines, total):
        super().__init__(bad=len(lines), total=total, lines=lines)


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


# System wallets by code, per process: a data migration creates them, nothing deletes them, and no
# write locks or changes their rows, so a money request need not look one up each time. Only a row
# read back is kept, never one this call creates (it may yet roll back). A test's flush deletes them:
# flush sends post_migrate, which empties this (WalletConfig.ready), and the suite empties it per test.
_system_wallets: dict[str, Wallet] = {}


def forget_system_wallets(**_signal_arguments):
    _system_wallets.clear()


def system_wallet(*, code: str) -> Wallet:
    """A system wallet, unlocked. Created by a data migration; recreated if a test flushed it."""
    wallet = _system_wallets.get(code)
    if wallet is not None:
        return wallet
    wallet = Wallet.objects.filter(system_code=code).first()
    if wallet is not None:
        _system_wallets[code] = wallet
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
    user_ids, wallet_ids = list(user_ids), list(wallet_ids)
    if not user_ids and not wallet_ids:
        return []
    shape = (len(user_ids), len(wallet_ids))
    if max(shape) > _PRECOMPILED_LOCK_SIZE:
        return list(_lock_query(*user_ids, *wallet_ids, users=shape[0]))
    query = _precompiled_locks.get(shape)
    if query is None:
        markers = [-1_000_001 - index for index in range(sum(shape))]
        query = _precompiled_locks[shape] = PrecompiledQuery(partial(_lock_query, users=shape[0]), *markers)
    return query.fetch(*user_ids, *wallet_ids)


# Every money request locks one to a few wallets: the lock query of each such shape (how many user
# ids, how many wallet ids) is compiled once (core.precompiled), larger ones (bulk paths) each time.
_PRECOMPILED_LOCK_SIZE = 4
_precompiled_locks = {}


def _lock_query(*ids, users):
    """The wallets for update: the first `users` of `ids` are user ids, the rest wallet ids."""
    user_ids, wallet_ids = ids[:users], ids[users:]
    # Only the parts that name something: an empty `IN ()` costs Django a failed compile.
    condition = Q()
    if user_ids:
        condition |= Q(user_id__in=list(user_ids))
    if wallet_ids:
        condition |= Q(pk__in=list(wallet_ids))
    return (
        Wallet.objects.select_for_update(of=("self",))
        .select_related("user")
        .filter(condition, system_code__isnull=True)
        .order_by("pk")
    )


def check_load_limits(*, wallet, amount, largest=None, side="receiving") -> None:
    """Refuse a load (top-up, self top-up, admin funding, transfer in) of `amount` into `wallet` that
    would break its owner's limits (wallet/limits.py): the balance limit, the calendar month's load
    limit, and the per-transaction limit (checked against `largest`, the biggest single credit, when
    `amount` totals several). `wallet` must be a user wallet locked by the caller in this
    transaction, so that concurrent loads are checked one after the other against the stored balance
    and the month's loads the wallet row keeps (wallet.limits.loaded_this_month): no query. Refunds
    and commissions are not loads: their paths never call this."""
    from wallet import limits as rules

    if wallet.is_system:
        return
    limits = rules.limits_for(wallet.user)
    if limits.unlimited:
        return
    single = amount if largest is None else largest
    # "your wallet" for the owner's own load, "the receiving wallet" when it is someone else's doing.
    named = "your wallet" if side == "your" else f"the {side} wallet"
    if limits.per_transaction is not None and single > limits.per_transaction:
        raise TransactionLimitExceeded(field="amount", wallet=named, limit=f"{limits.per_transaction:.2f}")
    if limits.max_balance is not None and wallet.balance + amount > limits.max_balance:
        room = max(limits.max_balance - wallet.balance, Decimal("0.00"))
        raise BalanceLimitExceeded(
            field="amount", wallet=named, limit=f"{limits.max_balance:.2f}", headroom=f"{room:.2f}"
        )
    if limits.monthly_load is not None:
        loaded = rules.loaded_this_month(wallet=wallet)
        if loaded + amount > limits.monthly_load:
            room = max(limits.monthly_load - loaded, Decimal("0.00"))
            raise MonthlyLoadLimitExceeded(
                field="amount", wallet=named, limit=f"{limits.monthly_load:.2f}", headroom=f"{room:.2f}"
            )


# --- operations -----------------------------------------------------------------


def transfer_funds(*, sender, receiver, amount, remarks="", initiated_by=None, idempotency_key=None) -> Transfer:
    """Move `amount` from `sender`'s wallet to `receiver`'s (TRANSFER). Refuses self-transfers,
    deactivated accounts and insufficient available funds."""
    amount = validate_amount(amount=amount)
    if sender.pk == receiver.pk:
        raise SameWallet(field="to")
    with _operation():
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
    with _operation():
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
    with _operation():
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
    with _operation():
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
    with _operation():
        pending, wallets = _lock_pending(transfer, extra_user_ids=[payout.user_id for payout in payouts])
        now = timezone.now()
        source, destination = wallets.get(pending.from_wallet_id), wallets.get(pending.to_wallet_id)
        changed = []
        # The money moves now, so this is where the row joins each wallet's chain of balances
        # (its number and balance after are those at posting, not at the hold).
        if source is not None:
            source.held -= pending.amount
            pending.from_entry = _change_balance(source, -pending.amount)
            changed.append(source)
        if destination is not None:
            pending.to_entry = _change_balance(destination, pending.amount)
            _count_load(destination, pending.amount, kind=pending.kind, created_at=pending.created_at)
            changed.append(destination)
        pending.status = Status.POSTED
        pending.from_balance_after = source.balance if source is not None else None
        pending.to_balance_after = destination.balance if destination is not None else None
        pending.updated_at = pending.finalized_at = now
        by_user = {wallet.user_id: wallet for wallet in wallets.values()}
        new_rows = []
        for payout in payouts:
            row, paid_wallets = _checked_move(
                source=system_wallet(code=payout.source),
                destination=_user_wallet(by_user, payout.user_id),
                amount=payout.amount,
                kind=payout.kind,
                remarks=payout.remarks,
                initiated_by_id=pending.initiated_by_id,  # the id is all the row needs: no query for the user
                reference=pending.reference,
                now=now,
            )
            new_rows.append(row)
            changed += paid_wallets
        paid = _write(wallets=changed, now=now, changed_row=pending, changed_fields=_POSTED_FIELDS, new_rows=new_rows)
        return pending, paid


_POSTED_FIELDS = (
    "status",
    "from_balance_after",
    "to_balance_after",
    "from_entry",
    "to_entry",
    "updated_at",
    "finalized_at",
)


def void_transfer(*, transfer) -> Transfer:
    """Cancel a PENDING transfer: release the hold, move nothing. Refuses a final transfer."""
    with _operation():
        pending, wallets = _lock_pending(transfer)
        now = timezone.now()
        source = wallets.get(pending.from_wallet_id)
        if source is not None:
            source.held -= pending.amount
        pending.status = Status.VOIDED
        pending.updated_at = pending.finalized_at = now
        _write(
            wallets=[source] if source is not None else [],
            now=now,
            changed_row=pending,
            changed_fields=("status", "updated_at", "finalized_at"),
        )
        return pending


def refund_transfer(*, transfer, remarks="", initiated_by=None) -> Transfer:
    """Give back a POSTED recharge purchase (REFUND, RECHARGE_SETTLEMENT -> the buyer); any other
    kind is NotRefundable (a DEBIT or DEFUND is not a sale to reverse).

    At most once per transfer: the buyer's wallet is locked first (as everywhere), then the original
    row, and the refund row points at it through a unique `refund_of`, so a second refund (even a
    concurrent one) is refused with TransferAlreadyRefunded instead of paying twice."""
    with _operation():
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


def recount_month_loads(*, batch_size=1000) -> int:
    """Set every user wallet's kept month loads (Wallet.month_loads since month_loads_since) to what its
    journal says for the current month, and return how many changed. For after a rolling deployment of
    the migration that added them (servers still on the old code posted loads without counting them)
    or a change of TIME_ZONE (the month's first instant moved). In batches, each batch's wallets locked
    in id order, as every ledger operation locks them, and summed in one grouped query. Safe to repeat."""
    from django.db.models import Sum

    from wallet import limits as rules

    since = rules.month_start()
    ids = list(Wallet.objects.filter(system_code__isnull=True).order_by("pk").values_list("pk", flat=True))
    changed = 0
    for start in range(0, len(ids), batch_size):
        with transaction.atomic():
            wallets = wallets_for_update(wallet_ids=ids[start : start + batch_size])
            totals = dict(
                rules.posted_loads(to_wallet_id__in=[wallet.pk for wallet in wallets], created_at__gte=since)
                .values_list("to_wallet_id")
                .annotate(total=Sum("amount"))
            )
            stale = []
            for wallet in wallets:
                total = Decimal(totals.get(wallet.pk) or 0).quantize(Decimal("0.01"))
                counted = (total, since) if total else (Decimal("0.00"), None)
                if (wallet.month_loads, wallet.month_loads_since) != counted:
                    wallet.month_loads, wallet.month_loads_since = counted
                    stale.append(wallet)
            if stale:
                _store_balances(stale, timezone.now())
            changed += len(stale)
    return changed


def pay_out_in_bulk(*, payer=None, payments, kind=Kind.TRANSFER, remarks="", initiated_by=None, batch_size=5000) -> int:
    """Many posted transfers from one payer in one transaction: a distributor paying its retailers,
    or (payer=None, kind=FUND) the treasury funding many wallets. `payments` is a list of
    (receiver user id, amount); a receiver may appear several times. Returns the rows written.

    The same rules as a single transfer: every user wallet involved is locked in one query in id
    order, every check (amounts, active owners, no self-payment, the payer's funds for the whole
    batch) runs before the first write, each row carries the balances after it, and the balances
    are stored once per wallet. All or nothing."""
    payments = [(user_id, validate_amount(amount=amount), remarks) for user_id, amount in payments]
    if not payments:
        return 0
    with _operation():
        _, rows = _post_many(
            payer=payer, payments=payments, kind=kind, initiated_by=initiated_by or payer, batch_size=batch_size
        )
        return len(rows)


def pay_out(*, payer, lines, remarks="", idempotency_key=None) -> PayoutRecord:
    """A bulk payout (POST /api/wallet/payouts/): a distributor pays its own retailers from its wallet
    (TRANSFER rows), an administrator pays any account from the treasury (FUND rows); anyone else is
    PayoutNotAllowed. `lines` are the request's objects, each naming its recipient by exactly one of
    `to_user_id`, `to_phone_number` (verified), `to_email`, with an `amount` string and optional
    `remarks`.

    All or nothing. Every line is checked before anything is locked or written; if any is bad
    (malformed, bad amount, unknown recipient, not the payer's to pay, deactivated, a recipient
    named twice) PayoutLinesRefused lists each bad line with its code and nothing is paid. Then the
    payer's wallet and every recipient's are locked in one query in ascending id order (as every
    operation does, so a payout and single transfers over the same wallets cannot deadlock), the
    payer's available funds are checked against the total, and one journal row per line is written
    with the balances after it, each wallet's balance stored once."""
    if payer.user_type not in (UserType.ADMIN, UserType.DISTRIBUTOR):
        raise PayoutNotAllowed()
    maximum = settings.WALLET_PAYOUT_MAX_LINES
    if not isinstance(lines, (list, tuple)) or not 1 <= len(lines) <= maximum:
        raise InvalidPayoutSize(field="lines", maximum=maximum)
    parsed, errors = _parse_payout_lines(lines)
    recipients = _resolve_recipients(parsed, errors, payer=payer)
    if errors:
        raise PayoutLinesRefused(lines=sorted(errors.values(), key=lambda error: error["line"]), total=len(lines))
    by_admin = payer.user_type == UserType.ADMIN
    payments = [(recipients[index].pk, amount, (line_remarks or remarks)) for index, _, amount, line_remarks in parsed]
    with _operation():
        source, rows = _post_many(
            payer=None if by_admin else payer,
            payments=payments,
            kind=Kind.FUND if by_admin else Kind.TRANSFER,
            initiated_by=payer,
            idempotency_key=idempotency_key,
        )
        record = PayoutRecord.objects.create(
            payer=payer,
            source_wallet=source,
            kind=Kind.FUND if by_admin else Kind.TRANSFER,
            total=sum((amount for _, amount, _ in payments), Decimal("0.00")),
            line_count=len(rows),
            remarks=remarks[:255],
            idempotency_key=idempotency_key,
            created_at=rows[0].created_at,
        )
        _insert_payout_lines.insert_many(
            (record.pk, index, row.to_wallet.user_id, row.amount, row.pk)
            for (index, *_), row in zip(parsed, rows, strict=True)
        )
        # For the answer: the source wallet after the payout (its owner's balance), each line's row.
        record.source_wallet = source
        record.posted = [(index, row) for (index, *_), row in zip(parsed, rows, strict=True)]
        return record


_insert_payout_lines = PrecompiledInsert(PayoutLine, "payout", "line", "recipient", "amount", "transfer")


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


def _operation():
    """One operation's transaction. Directly inside a block rolled back whole on any exception (a keyed
    money request's, a purchase's acceptance: core.transactions), no savepoint of its own: two round
    trips fewer. Anywhere else (another caller's block, a test's, none) as usual."""
    return transaction.atomic(savepoint=not innermost_is_all_or_nothing())


_RECIPIENT_FIELDS = ("to_user_id", "to_phone_number", "to_email")


def _line_error(index, code, detail, field=None):
    return {"line": index, "code": code, "field": field, "detail": detail}


def _parse_payout_lines(lines):
    """Each well-formed line as (index, recipient field, normalised value, amount, remarks), and
    {index: error} for the others. No query."""
    from core.phone import InvalidPhoneNumber, normalize_phone

    parsed, errors = [], {}
    for index, line in enumerate(lines):
        if not isinstance(line, dict):
            errors[index] = _line_error(index, "invalid", "A line is an object.")
            continue
        given = [name for name in _RECIPIENT_FIELDS if line.get(name) not in (None, "")]
        if len(given) != 1:
            errors[index] = _line_error(
                index, "recipient_required", f"Give exactly one of {', '.join(_RECIPIENT_FIELDS)}.", "to_user_id"
            )
            continue
        field, value = given[0], line[given[0]]
        try:
            value = _recipient_value(field, value, normalize_phone)
        except InvalidPhoneNumber as exc:
            errors[index] = _line_error(index, exc.code, exc.message, field)
            continue
        if value is None:
            errors[index] = _line_error(index, "invalid", f"{field} is malformed.", field)
            continue
        remarks = line.get("remarks", "")
        if not isinstance(remarks, str) or len(remarks) > 255:
            errors[index] = _line_error(index, "invalid", "remarks is a string of at most 255 characters.", "remarks")
            continue
        amount = line.get("amount")
        try:
            if not isinstance(amount, str):  # as everywhere on the wire: a string, never a JSON number
                raise AmountNotAString(field="amount")
            amount = validate_amount(amount=amount)
        except InvalidAmount as exc:
            errors[index] = _line_error(index, exc.code, exc.message, "amount")
            continue
        parsed.append((index, (field, value), amount, remarks))
    return parsed, errors


def _recipient_value(field, value, normalize_phone):
    """The normalised identifier, or None when malformed (InvalidPhoneNumber for a bad phone)."""
    if field == "to_user_id":
        ok = isinstance(value, int) and not isinstance(value, bool) and 1 <= value < 2**63
        return value if ok else None
    if field == "to_phone_number":
        return normalize_phone(value)
    if not isinstance(value, str) or len(value) > 254 or "@" not in value:
        return None
    return value.strip().lower()


def _resolve_recipients(parsed, errors, *, payer):
    """The recipient account of each parsed line ({index: user}), in one query; an unknown account,
    one the payer may not pay, a deactivated one or one named twice is recorded in `errors` and its
    line dropped from `parsed`."""
    from accounts.selectors import find_users

    found = find_users(
        user_ids=[value for _, (field, value), _, _ in parsed if field == "to_user_id"],
        emails=[value for _, (field, value), _, _ in parsed if field == "to_email"],
        phone_numbers=[value for _, (field, value), _, _ in parsed if field == "to_phone_number"],
    )
    recipients, first_line = {}, {}
    for index, (field, value), _, _ in parsed:
        user = found.get((field, value))
        if user is None:
            errors[index] = _line_error(index, "user_not_found", "No account matches this recipient.", field)
        elif payer.user_type != UserType.ADMIN and (user.user_type != UserType.RETAILER or user.parent_id != payer.pk):
            errors[index] = _line_error(index, "not_in_scope", "A distributor pays only its own retailers.", field)
        elif not user.is_active:
            errors[index] = _line_error(index, WalletInactive.code, "The receiving account is deactivated.", field)
        elif user.pk in first_line:
            errors[index] = _line_error(
                index, "duplicate_recipient", f"The same account as line {first_line[user.pk]}.", field
            )
        else:
            first_line[user.pk] = index
            recipients[index] = user
    parsed[:] = [line for line in parsed if line[0] in recipients]
    return recipients


def _post_many(*, payer, payments, kind, initiated_by, idempotency_key=None, batch_size=5000):
    """Post `payments` [(receiver user id, amount, remarks)] from `payer`'s wallet (None: the
    treasury) in the caller's transaction. Locks, checks, then writes (see pay_out_in_bulk).
    Returns the source wallet (after) and the journal rows, in the order of `payments`."""
    receiver_ids = {user_id for user_id, _, _ in payments}
    if payer is not None and payer.pk in receiver_ids:
        raise SameWallet(field="payments")
    payer_ids = [payer.pk] if payer is not None else []
    by_user = {wallet.user_id: wallet for wallet in wallets_for_update(user_ids=[*payer_ids, *receiver_ids])}
    source = _user_wallet(by_user, payer.pk) if payer is not None else system_wallet(code=SystemWallet.TREASURY)
    receivers = {user_id: _user_wallet(by_user, user_id) for user_id in receiver_ids}
    _ensure_active(paying=[source], receiving=receivers.values())
    total = sum((amount for _, amount, _ in payments), Decimal("0.00"))
    if not source.is_system and source.available < total:
        raise InsufficientFunds(available=f"{source.available:.2f}", amount=f"{total:.2f}")
    _check_bulk_load_limits(receivers=receivers, payments=[(user_id, amount) for user_id, amount, _ in payments])
    now = timezone.now()
    new_rows = [
        _journal_fields(
            source=source,
            destination=receivers[user_id],
            amount=amount,
            kind=kind,
            remarks=remarks,
            initiated_by=initiated_by,
            idempotency_key=idempotency_key,
            now=now,
        )
        for user_id, amount, remarks in payments
    ]
    changed = list(receivers.values()) + ([] if source.is_system else [source])
    if ONE_STATEMENT_POSTING and connection.vendor == "postgresql":
        rows = []
        for start in range(0, max(len(new_rows), len(changed)), batch_size):
            rows += _post_many_in_one_statement(
                wallets=changed[start : start + batch_size], now=now, new_rows=new_rows[start : start + batch_size]
            )
        return source, rows
    rows = Transfer.objects.bulk_create([Transfer(**fields) for fields in new_rows], batch_size=batch_size)
    for start in range(0, len(changed), batch_size):
        _store_balances(changed[start : start + batch_size], now)
    return source, rows


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
    """check_load_limits for every receiver of a bulk payment, each with all its lines at once."""
    received = {}
    for user_id, amount in payments:
        received.setdefault(user_id, []).append(amount)
    for user_id, wallet in receivers.items():
        amounts = received[user_id]
        check_load_limits(wallet=wallet, amount=sum(amounts, Decimal("0.00")), largest=max(amounts))


# Every settlement of a purchase locks its hold: compiled once (core.precompiled).
_PENDING_FOR_UPDATE = PrecompiledQuery(lambda marker: Transfer.objects.select_for_update().filter(pk=marker), -1)


def _lock_pending(transfer, extra_user_ids=()):
    """Lock the user wallets of a pending transfer (and of its payouts), then the transfer row.

    Wallets first, in id order, like every other operation, so posting never deadlocks with a
    transfer between the same wallets."""
    # A transfer's wallets never change: the caller's copy names them, however stale its status.
    wallet_ids = (transfer.from_wallet_id, transfer.to_wallet_id)
    if None in wallet_ids:  # a bare Transfer(pk=...)
        wallet_ids = Transfer.objects.filter(pk=transfer.pk).values_list("from_wallet_id", "to_wallet_id").get()
    wallets = {wallet.pk: wallet for wallet in wallets_for_update(wallet_ids=wallet_ids, user_ids=extra_user_ids)}
    pending = _PENDING_FOR_UPDATE.first(transfer.pk)
    if pending is None:
        raise Transfer.DoesNotExist(f"No transfer {transfer.pk}.")
    if (pending.from_wallet_id, pending.to_wallet_id) != tuple(wallet_ids):
        # Only a caller's copy changed in memory can say otherwise; posting by it would leave a locked
        # wallet's balance unmoved (an unlocked wallet is taken for a system wallet).
        raise ValueError(f"Transfer {pending.pk}: the copy given names other wallets than the journal's row.")
    if pending.status != Status.PENDING:
        raise TransferNotPending(pk=pending.pk, status=pending.status)
    return pending, wallets


def _move(*, now=None, **move) -> Transfer:
    """Check and apply one transfer between wallets the caller has locked (system wallets are not
    locked and never rewritten): `_checked_move`, then its one write."""
    now = now or timezone.now()
    row, changed = _checked_move(now=now, **move)
    return _write(wallets=changed, now=now, new_rows=[row])[0]


def _checked_move(
    *,
    source,
    destination,
    amount,
    kind,
    now,
    status=Status.POSTED,
    remarks="",
    initiated_by=None,
    initiated_by_id=None,
    reference=None,
    idempotency_key=None,
    refund_of=None,
) -> tuple[dict, list[Wallet]]:
    """Check one transfer and apply it to the locked wallets in memory: (the journal row's fields,
    the user wallets it changed). Nothing is written, so a caller checks all its moves before its
    first write. The initiator is `initiated_by` (a user) or, where the caller has only its id,
    `initiated_by_id`."""
    if initiated_by is not None and initiated_by_id is not None:
        raise TypeError("Give the initiator as initiated_by or initiated_by_id, not both.")
    if source.pk == destination.pk:
        raise SameWallet()
    if not source.is_system and source.available < amount:
        raise InsufficientFunds(available=f"{source.available:.2f}", amount=f"{amount:.2f}")
    row = _journal_fields(
        source=source,
        destination=destination,
        amount=amount,
        kind=kind,
        status=status,
        remarks=remarks,
        **({"initiated_by_id": initiated_by_id} if initiated_by is None else {"initiated_by": initiated_by}),
        reference=reference,
        idempotency_key=idempotency_key,
        refund_of=refund_of,
        now=now,
    )
    changed = [source] if not source.is_system else []
    if not destination.is_system and status == Status.POSTED:
        changed.append(destination)
    return row, changed


def _journal_fields(*, source, destination, amount, kind, status=Status.POSTED, remarks="", now, **links) -> dict:
    """Apply `amount` to the locked wallets in memory and return the journal row's fields, with the
    balances after it: a posted transfer moves the balance, a pending one raises the sender's hold.
    The one place both `_checked_move` and `_post_many` do the arithmetic; the callers check and store."""
    from_entry = to_entry = None
    if not source.is_system:
        if status == Status.POSTED:
            from_entry = _change_balance(source, -amount)
        else:
            source.held += amount
    if not destination.is_system and status == Status.POSTED:
        to_entry = _change_balance(destination, amount)
        _count_load(destination, amount, kind=kind, created_at=now)
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


def _count_load(wallet, amount, *, kind, created_at):
    """Add a posted load of `amount` (created at `created_at`) to the month's loads a locked user wallet
    keeps (wallet.limits.loaded_this_month), as summing the journal would count it: by the month of
    its row's created_at. The first load of a new month starts the count again; a load dated before
    the month counted (a hold posted after its month ended) belongs to no month still counted."""
    from wallet import limits as rules

    if kind not in rules.LOAD_KINDS:
        return
    month = rules.month_start(created_at)
    if wallet.month_loads_since is None or wallet.month_loads_since < month:
        wallet.month_loads, wallet.month_loads_since = amount, month
    elif wallet.month_loads_since == month:
        wallet.month_loads += amount


def _change_balance(wallet, amount) -> int:
    """Move a locked user wallet's balance by `amount` and number the change in the wallet's chain
    of balances (Transfer.from_entry / to_entry): the number this transfer gets for this wallet."""
    wallet.balance += amount
    wallet.last_entry += 1
    return wallet.last_entry


# On PostgreSQL a ledger operation's writes (the balances of its locked wallets, the journal row it
# finalises, the rows it inserts) are one statement instead of one UPDATE per wallet, an UPDATE and an
# INSERT per row: every write of a settlement in one round trip while its wallets are locked (a busy
# distributor's wallet is locked by every sale of its retailers). The ORM path stays for SQLite; both
# are held to the same journal and balances by wallet/tests/test_posting_paths.py. Every check runs
# before either path writes.
ONE_STATEMENT_POSTING = True


def _write(*, wallets, now, changed_row=None, changed_fields=(), new_rows=()) -> list[Transfer]:
    """Store the locked `wallets`' balances (already changed in memory), then `changed_fields` of the
    journal row `changed_row`, then insert `new_rows` (each a row's fields). Returns the new rows."""
    # A wallet changed twice (a buyer paid its own margin) is stored once, with its final values.
    wallets = list({wallet.pk: wallet for wallet in wallets}.values())
    if ONE_STATEMENT_POSTING and connection.vendor == "postgresql":
        return _write_in_one_statement(
            wallets=wallets, now=now, changed_row=changed_row, changed_fields=changed_fields, new_rows=new_rows
        )
    for wallet in wallets:
        _store_balance(wallet, now)
    if changed_row is not None:
        changed_row.save(update_fields=changed_fields)
    return [Transfer.objects.create(**row) for row in new_rows]


# The PostgreSQL-only statements live in functions of their own (this one, _post_many_in_one_statement,
# _store_balances_in_one_statement and _balances_update): mutation testing on SQLite (docs/mutation.md)
# then finds no test reaching them and leaves their mutants to the run on PostgreSQL, instead of running
# the whole suite for each to no avail.
def _write_in_one_statement(*, wallets, now, changed_row, changed_fields, new_rows) -> list[Transfer]:
    # The connection itself, not django.db.connection (a proxy that looks the thread's connection up
    # again on each use): a payout prepares thousands of values with it.
    db = connections[DEFAULT_DB_ALIAS]
    quote = db.ops.quote_name
    table, pk = quote(Transfer._meta.db_table), quote(Transfer._meta.pk.column)
    statements = []  # (sql, params); the model's own table and column names, every value a parameter
    if wallets:
        statements.append(_balances_update(wallets, now))
    if changed_row is not None:
        fields = [Transfer._meta.get_field(name) for name in changed_fields]
        assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
        params = [field.get_db_prep_save(getattr(changed_row, field.attname), db) for field in fields]
        statements.append((f"UPDATE {table} SET {assignments} WHERE {pk} = %s", [*params, changed_row.pk]))  # noqa: S608
    rows = [Transfer(**fields) for fields in new_rows]
    if rows:
        fields = _journal_columns()
        columns = ", ".join(quote(field.column) for field in fields)
        values = ", ".join([f"({', '.join(['%s'] * len(fields))})"] * len(rows))
        params = [field.get_db_prep_save(getattr(row, field.attname), db) for row in rows for field in fields]
        statements.append((f"INSERT INTO {table} ({columns}) VALUES {values} RETURNING {pk}", params))  # noqa: S608
    if not statements:
        return rows
    with db.cursor() as cursor:
        precompiled.execute(cursor, *_one_statement(statements))  # planned once per connection and shape
        ids = [pk for (pk,) in cursor.fetchall()] if rows else []
    return _inserted(rows, ids, db)


def _post_many_in_one_statement(*, wallets, now, new_rows) -> list[Transfer]:
    """PostgreSQL: a bulk posting's balances (UPDATE) and journal rows (INSERT ... RETURNING, ids in
    the order of `new_rows`) in one statement of arrays (unnest), a column that every row shares (kind,
    status, the payer, the timestamps) as one value. Before, Django's bulk_create prepared each of the
    17,000 values of a 1,000-line payout's journal rows through its insert compiler, in a statement
    apart from the balances' UPDATE; as VALUES lists (`_write_in_one_statement`'s form) the driver
    quoted 23,000 values (50 ms) and the server parsed and planned 420 kB of SQL (60 ms):
    bench/README.md, "The bulk payout"."""
    db = connections[DEFAULT_DB_ALIAS]
    quote = db.ops.quote_name
    rows = [Transfer(**fields) for fields in new_rows]
    statements = []
    if wallets:
        statements.append(_balances_update(wallets, now, arrays=True))
    if rows:
        fields = _journal_columns()
        selected, params, arrays, array_types = [], [], [], []
        for field in fields:
            values = [field.get_db_prep_save(getattr(row, field.attname), db) for row in rows]
            # Without its length or precision: a cast to varchar(n) would cut a longer value where the
            # column refuses it (as Django's own unnest insert does). A foreign key's is its target's.
            db_type = field.db_type(db).split("(")[0]
            first = values[0]
            if all(value == first and type(value) is type(first) for value in values):
                selected.append(f"%s::{db_type}")
                params.append(first)
            else:
                selected.append(f"line.c{len(arrays)}")
                arrays.append(values)
                array_types.append(db_type)
        if not arrays:  # one row: every column is one value, and unnest still gives the row count
            arrays, array_types = [[None] * len(rows)], ["integer"]
        unnest = ", ".join(f"%s::{db_type}[]" for db_type in array_types)
        names = ", ".join(f"c{index}" for index in range(len(arrays)))
        table, pk = quote(Transfer._meta.db_table), quote(Transfer._meta.pk.column)
        insert = (
            f"INSERT INTO {table} ({', '.join(quote(field.column) for field in fields)}) "  # noqa: S608
            f"SELECT {', '.join(selected)} FROM unnest({unnest}) WITH ORDINALITY AS line ({names}, position) "
            f"ORDER BY line.position RETURNING {pk}"
        )
        statements.append((insert, [*params, *arrays]))
    with db.cursor() as cursor:
        cursor.execute(*_one_statement(statements))  # as text: its shape changes with the columns rows share
        ids = [pk for (pk,) in cursor.fetchall()] if rows else []
    return _inserted(rows, ids, db)


def _journal_columns():
    return [field for field in Transfer._meta.concrete_fields if not field.primary_key]


def _one_statement(statements):
    """[(sql, params)] as one statement: data-modifying WITH parts all run, once, whether the main
    statement reads them or not; the last (the INSERT, if any) is the main statement, so that it
    returns the new rows' ids, in their order."""
    *parts, (sql, params) = statements
    if not parts:
        return sql, params
    sql = "WITH " + ", ".join(f"write_{index} AS ({part})" for index, (part, _) in enumerate(parts)) + " " + sql
    return sql, [*(value for _, part_params in parts for value in part_params), *params]


def _inserted(rows, ids, db):
    """`rows` as saved instances, with the ids the INSERT returned in their order."""
    for row, row_pk in zip(rows, ids, strict=True):
        row.pk = row_pk
        row._state.adding, row._state.db = False, db.alias
    return rows


# What `_balances_update` stores of each locked user wallet (besides updated_at), with its type.
_STORED_BALANCE = (
    ("id", "bigint"),
    ("balance", "numeric"),
    ("held", "numeric"),
    ("last_entry", "bigint"),
    ("month_loads", "numeric"),
    ("month_loads_since", "timestamptz"),
)


def _balances_update(wallets, now, *, arrays=False):
    """PostgreSQL: one UPDATE of many locked user wallets' balances, held amounts and chain numbers:
    from a VALUES list (a posting's few wallets: one statement shape per count, prepared), or with
    `arrays` from one array per column (a bulk posting's thousand: one short statement)."""
    table = connection.ops.quote_name(Wallet._meta.db_table)
    for wallet in wallets:
        wallet.updated_at = now
    columns = [column for column, _ in _STORED_BALANCE]
    if arrays:
        source = "unnest(" + ", ".join(f"%s::{db_type}[]" for _, db_type in _STORED_BALANCE) + ")"
        params = [[getattr(wallet, column) for wallet in wallets] for column in columns]
    else:
        group = "(" + ", ".join(f"%s::{db_type}" for _, db_type in _STORED_BALANCE) + ")"
        source = f"(VALUES {', '.join([group] * len(wallets))})"
        params = [getattr(wallet, column) for wallet in wallets for column in columns]
    assignments = ", ".join(f"{column} = new.{column}" for column in columns[1:])
    # The table's own name and the columns above; every value is a parameter.
    sql = (
        f"UPDATE {table} AS wallet SET {assignments}, updated_at = %s "  # noqa: S608
        f"FROM {source} AS new ({', '.join(columns)}) WHERE wallet.id = new.id"
    )
    return sql, [now, *params]


def _store_balances(wallets, now):
    """Store the balances of many locked user wallets in one statement. Django's bulk_update builds
    a CASE of one branch per row and resolves an expression per branch: 2.5 s of CPU for 1,000
    wallets. On PostgreSQL one UPDATE ... FROM (VALUES ...) does the same (the table's CHECK
    constraints still hold every row); elsewhere (the SQLite demo) executemany, in process."""
    if connection.vendor == "postgresql":
        _store_balances_in_one_statement(wallets, now)
        return
    table = connection.ops.quote_name(Wallet._meta.db_table)
    for wallet in wallets:
        wallet.updated_at = now
    sql = (
        f"UPDATE {table} SET balance = %s, held = %s, last_entry = %s, month_loads = %s, "  # noqa: S608
        "month_loads_since = %s, updated_at = %s WHERE id = %s"
    )
    params = [
        (
            connection.ops.adapt_decimalfield_value(w.balance, 14, 2),
            connection.ops.adapt_decimalfield_value(w.held, 14, 2),
            w.last_entry,
            connection.ops.adapt_decimalfield_value(w.month_loads, 14, 2),
            connection.ops.adapt_datetimefield_value(w.month_loads_since),
            connection.ops.adapt_datetimefield_value(now),
            w.pk,
        )
        for w in wallets
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def _store_balances_in_one_statement(wallets, now):
    with connection.cursor() as cursor:
        cursor.execute(*_balances_update(wallets, now))


def _store_balance(wallet, now):
    Wallet.objects.filter(pk=wallet.pk).update(
        balance=wallet.balance,
        held=wallet.held,
        last_entry=wallet.last_entry,
        month_loads=wallet.month_loads,
        month_loads_since=wallet.month_loads_since,
        updated_at=now,
    )
