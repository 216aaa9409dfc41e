from django.conf import settings
from django.db import models
from django.db.models import Q

MONEY = {"max_digits": 14, "decimal_places": 2}


class Purchase(models.Model):
    """A recharge sold to `mobile_number`, paid from the buyer's wallet (ledger.md, recharges)."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        SUCCESS = "SUCCESS", "Success"
        FAILED = "FAILED", "Failed"
        REFUNDED = "REFUNDED", "Refunded"

    buyer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="purchases")
    plan = models.ForeignKey("plans.RechargePlan", on_delete=models.PROTECT, related_name="purchases")
    mobile_number = models.CharField(max_length=16, db_index=True)
    amount = models.DecimalField(**MONEY)
    buyer_commission = models.DecimalField(**MONEY, default=0)
    distributor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    distributor_commission = models.DecimalField(**MONEY, default=0)
    # A reversal takes the margins back only as far as each wallet's available balance goes (never
    # negative): what could not be taken back is recorded here, for operators.
    commission_unrecovered = models.DecimalField(**MONEY, default=0)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    operator_reference = models.CharField(max_length=100, blank=True, default="")
    failure_reason = models.CharField(max_length=255, blank=True, default="")
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    # When fulfilment first sent the recharge to the gateway (null: never sent). Once set, a send may
    # have happened, so nothing sends it again: later runs ask the gateway's status instead.
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="purchase_amount_positive"),
            models.UniqueConstraint(
                fields=["buyer", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="purchase_unique_buyer_idempotency_key",
            ),
        ]
        indexes = [
            models.Index(fields=["buyer", "-created_at"], name="purchase_buyer_history"),
            models.Index(fields=["status", "created_at"], name="purchase_status_created"),
        ]

    def __str__(self):
        return f"#{self.pk} {self.mobile_number} {self.amount} {self.status}"

    @property
    def reference(self) -> str:
        """The purchase's name outside this app: on every ledger transfer of it (Transfer.reference:
        its hold, commissions and refund) and to the operator. The purchase owns the link; the
        ledger's schema names no purchase."""
        return f"P{self.pk}"


class SandboxRecharge(models.Model):
    """What the sandbox operator received (purchases.gateways.SandboxGateway's memory): one row per
    reference, so that a status check about a recharge it never got answers truthfully, and a
    recharge received twice shows (`times_received`). Not used by a real gateway."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        SUCCESS = "SUCCESS", "Success"
        FAILED = "FAILED", "Failed"
        REVERSED = "REVERSED", "Reversed"

    reference = models.CharField(max_length=64, unique=True)
    mobile_number = models.CharField(max_length=16)
    amount = models.DecimalField(**MONEY)
    operator = models.CharField(max_length=50, blank=True, default="")
    status = models.CharField(max_length=8, choices=Status.choices)
    operator_reference = models.CharField(max_length=100, blank=True, default="")
    times_received = models.PositiveIntegerField(default=1)
    received_at = models.DateTimeField(auto_now_add=True)
    # Callback mode: the sandbox's outbox. A final status to call back with is due at `callback_due_at`
    # (set by the INSERT that records the recharge, or by a reversal); the sandbox's operator loop
    # (gateways.deliver_due_sandbox_callbacks) claims due rows, POSTs them and clears it.
    callback_due_at = models.DateTimeField(null=True, blank=True)
    callback_attempts = models.PositiveSmallIntegerField(default=0)
    callback_delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            # Only the callbacks still to send: the operator loop's poll reads a handful of entries.
            models.Index(
                fields=["callback_due_at"], name="sandbox_callback_due", condition=Q(callback_due_at__isnull=False)
            )
        ]

    def __str__(self):
        return f"{self.reference} {self.mobile_number} {self.status} x{self.times_received}"
