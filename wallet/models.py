"""The ledger's tables (ledger.md). Only `wallet.services` writes to them."""

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q

MONEY = {"max_digits": 14, "decimal_places": 2}


class SystemWallet(models.TextChoices):
    TREASURY = "TREASURY", "Treasury"
    RECHARGE_SETTLEMENT = "RECHARGE_SETTLEMENT", "Recharge settlement"
    COMMISSION = "COMMISSION", "Commission"
    # The payment provider's settlement account: money users paid in through the provider (TOPUP)
    # comes from here, refunds back to the provider (TOPUP_REFUND) go to it. Its derived balance is
    # minus what the provider owes us, and verify_ledger holds it equal to the top-ups' own record.
    PAYMENT_SETTLEMENT = "PAYMENT_SETTLEMENT", "Payment provider settlement"


class Wallet(models.Model):
    """A user's account in the ledger, or one of the system accounts (no user, a system_code).

    A system wallet's stored balance stays 0: its real balance is derived from the journal, so the
    hot path never locks or rewrites it.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="wallet"
    )
    system_code = models.CharField(max_length=32, choices=SystemWallet.choices, null=True, blank=True, unique=True)
    balance = models.DecimalField(**MONEY, default=Decimal("0.00"))
    held = models.DecimalField(**MONEY, default=Decimal("0.00"))
    currency = models.CharField(max_length=3, default="INR")
    last_entry = models.BigIntegerField(
        default=0, help_text="Number of the last journal entry that changed this balance (0: none yet)."
    )
    # The posted loads (wallet.limits.LOAD_KINDS) of the calendar month that starts at month_loads_since,
    # the month of the wallet's latest load: kept by the ledger under the wallet's lock, so that a limit
    # check reads it with the wallet instead of summing the month's journal on every load and every
    # client's balance read. verify_ledger holds it to the journal.
    month_loads = models.DecimalField(
        **MONEY,
        default=Decimal("0.00"),
        # Also the column's default: a server still running the code from before this field (a rolling
        # deployment) opens wallets without naming it.
        db_default=Decimal("0.00"),
        help_text="Loads received in the month starting at month_loads_since.",
    )
    month_loads_since = models.DateTimeField(
        null=True, blank=True, help_text="Start of the month month_loads counts (null: no load counted yet)."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="wallet_balance_non_negative"),
            models.CheckConstraint(condition=Q(held__gte=0), name="wallet_held_non_negative"),
            models.CheckConstraint(condition=Q(balance__gte=F("held")), name="wallet_available_non_negative"),
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(system_code__isnull=True))
                | (Q(user__isnull=True) & Q(system_code__isnull=False)),
                name="wallet_owned_by_user_xor_system",
            ),
        ]

    def __str__(self):
        return f"{self.system_code or self.user} wallet"

    @property
    def is_system(self):
        return self.system_code is not None

    @property
    def available(self):
        return self.balance - self.held


class Transfer(models.Model):
    """One movement of money from one wallet to another: the journal (both products' Transaction)."""

    class Kind(models.TextChoices):
        CREDIT = "CREDIT", "Self top-up"
        DEBIT = "DEBIT", "Self debit"
        FUND = "FUND", "Admin funding"
        DEFUND = "DEFUND", "Admin debit"
        TRANSFER = "TRANSFER", "Transfer"
        PURCHASE = "PURCHASE", "Recharge purchase"
        COMMISSION = "COMMISSION", "Commission"
        REFUND = "REFUND", "Refund"
        TOPUP = "TOPUP", "Top-up through a payment provider"
        TOPUP_REFUND = "TOPUP_REFUND", "Top-up refunded to the payment provider"

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        POSTED = "POSTED", "Posted"
        VOIDED = "VOIDED", "Voided"

    from_wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="transfers_out")
    to_wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="transfers_in")
    amount = models.DecimalField(**MONEY)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=8, choices=Status.choices)
    remarks = models.CharField(max_length=255, blank=True, default="")
    initiated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    # The business record this transfer is a leg of, in its owner's terms (a recharge purchase's
    # "P<id>": its hold, commissions and refund). The ledger names no other app's tables; the owner
    # finds its transfers by its reference (wallet.selectors.purchase_transfer).
    # Null when there is none (most transfers); nullable also so that adding it never rebuilds a
    # SQLite journal table (which would drop the column purchases 0003 migrates from).
    reference = models.CharField(max_length=64, null=True, blank=True)
    refund_of = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="refund",
        help_text="The transfer refunded.",
    )
    from_balance_after = models.DecimalField(**MONEY, null=True, blank=True)
    to_balance_after = models.DecimalField(**MONEY, null=True, blank=True)
    # Where this transfer sits in each user wallet's chain of balance changes: 1, 2, 3... per
    # wallet, numbered under the wallet's row lock when the transfer moves the balance (created
    # POSTED, or posted later). Null for a system wallet and while PENDING or VOIDED. It orders a
    # wallet's balances for verify_ledger: ids follow creation, not posting, and timestamps come
    # from app servers' clocks (wallet.reconciliation explains the choice).
    from_entry = models.BigIntegerField(null=True, blank=True)
    to_entry = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    finalized_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_amount_positive"),
            models.CheckConstraint(condition=~Q(from_wallet=F("to_wallet")), name="transfer_distinct_wallets"),
            models.CheckConstraint(
                condition=(Q(status="PENDING") & Q(finalized_at__isnull=True))
                | (Q(status__in=["POSTED", "VOIDED"]) & Q(finalized_at__isnull=False)),
                name="transfer_finalized_iff_final_status",
            ),
        ]
        indexes = [
            # A wallet's keyset history pages (wallet.selectors.history_window).
            models.Index(fields=["from_wallet", "-id"], name="transfer_from_keyset"),
            models.Index(fields=["to_wallet", "-id"], name="transfer_to_keyset"),
            models.Index(fields=["from_wallet", "-created_at"], name="transfer_from_history"),
            models.Index(fields=["to_wallet", "-created_at"], name="transfer_to_history"),
            models.Index(fields=["status", "created_at"], name="transfer_status_created"),
            models.Index(fields=["kind", "-created_at"], name="transfer_kind_created"),
            # Only rows that carry one: most transfers (payments, fundings) have none.
            models.Index(fields=["reference"], condition=Q(reference__isnull=False), name="transfer_reference"),
        ]

    def __str__(self):
        return f"#{self.pk} {self.kind} {self.amount} {self.status}"


class Payout(models.Model):
    """One bulk payout request (POST /api/wallet/payouts/): a distributor paying its own retailers
    from its wallet (TRANSFER rows), or an admin paying anyone from the treasury (FUND rows). All or
    nothing: the payout exists only if every one of its lines was posted, one journal row each."""

    payer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    source_wallet = models.ForeignKey(Wallet, on_delete=models.PROTECT, related_name="payouts")
    kind = models.CharField(max_length=16, choices=Transfer.Kind.choices)
    total = models.DecimalField(**MONEY)
    line_count = models.PositiveIntegerField()
    remarks = models.CharField(max_length=255, blank=True, default="")
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(total__gt=0), name="payout_total_positive"),
            models.CheckConstraint(condition=Q(line_count__gt=0), name="payout_has_lines"),
        ]

    def __str__(self):
        return f"Payout #{self.pk}: {self.line_count} lines, {self.total}"


class PayoutLine(models.Model):
    """One recipient of a payout and the journal row that paid it."""

    payout = models.ForeignKey(Payout, on_delete=models.PROTECT, related_name="lines")
    line = models.PositiveIntegerField(help_text="Position of the line in the request, from 0.")
    recipient = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    amount = models.DecimalField(**MONEY)
    transfer = models.OneToOneField(Transfer, on_delete=models.PROTECT, related_name="payout_line")

    class Meta:
        ordering = ["payout_id", "line"]
        constraints = [
            models.UniqueConstraint(fields=["payout", "line"], name="payout_line_position_unique"),
            models.UniqueConstraint(fields=["payout", "recipient"], name="payout_line_recipient_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="payout_line_amount_positive"),
        ]

    def __str__(self):
        return f"Payout #{self.payout_id} line {self.line}: {self.amount}"
