"""Top-ups: money a user pays into its wallet through the payment provider (README, "How a mobile
client adds money"), and the sandbox provider's own memory. Only payments.services writes them."""

from django.conf import settings
from django.db import models
from django.db.models import Q

MONEY = {"max_digits": 14, "decimal_places": 2}


class TopUp(models.Model):
    """A payment intent at the provider and what became of it.

    CREATED (ours, not yet at the provider) -> PENDING (the provider has it; the client pays) ->
    SUCCEEDED (the wallet was credited, `credit`) | FAILED | EXPIRED; a SUCCEEDED top-up given back to
    the provider by an admin becomes REFUNDED (`refund`)."""

    class Status(models.TextChoices):
        CREATED = "CREATED", "Created"
        PENDING = "PENDING", "Pending"
        SUCCEEDED = "SUCCEEDED", "Succeeded"
        FAILED = "FAILED", "Failed"
        EXPIRED = "EXPIRED", "Expired"
        REFUNDED = "REFUNDED", "Refunded"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="top_ups")
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CREATED)
    provider = models.CharField(max_length=32, help_text="Code of the payment provider that holds the intent.")
    provider_reference = models.CharField(max_length=100, blank=True, default="")
    payment_url = models.CharField(max_length=500, blank=True, default="")
    upi_intent = models.CharField(max_length=500, blank=True, default="")
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    credit = models.OneToOneField(
        "wallet.Transfer", null=True, blank=True, on_delete=models.PROTECT, related_name="top_up"
    )
    refund = models.OneToOneField(
        "wallet.Transfer", null=True, blank=True, on_delete=models.PROTECT, related_name="top_up_refunded"
    )
    provider_refund_reference = models.CharField(max_length=100, blank=True, default="")
    failure_reason = models.CharField(max_length=255, blank=True, default="")
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="topup_amount_positive"),
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="topup_unique_user_idempotency_key",
            ),
            models.UniqueConstraint(
                fields=["provider", "provider_reference"],
                condition=~Q(provider_reference=""),
                name="topup_unique_provider_reference",
            ),
            # Credited exactly when it succeeded (or succeeded and was refunded since).
            models.CheckConstraint(
                condition=Q(status__in=["SUCCEEDED", "REFUNDED"], credit__isnull=False)
                | (~Q(status__in=["SUCCEEDED", "REFUNDED"]) & Q(credit__isnull=True)),
                name="topup_credited_iff_succeeded",
            ),
        ]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="topup_user_history"),
            models.Index(fields=["status", "created_at"], name="topup_status_created"),
        ]

    def __str__(self):
        return f"top-up #{self.pk} {self.amount} {self.status}"

    @property
    def merchant_reference(self) -> str:
        """Our id for the intent, as the provider knows it."""
        return f"T{self.pk}"


class SandboxPayment(models.Model):
    """The sandbox provider's side of one payment: what it was asked, what it did, what it sent.

    A real provider keeps this on its own servers; the sandbox keeps it here so that it works across
    processes (the web server that created the intent, the one that completes it, the worker that
    delivers the webhook) and so that tests and admins can see what it received."""

    class Status(models.TextChoices):
        PENDING = "PENDING", "Pending"
        SUCCEEDED = "SUCCEEDED", "Succeeded"
        FAILED = "FAILED", "Failed"
        EXPIRED = "EXPIRED", "Expired"

    reference = models.CharField(max_length=100, unique=True)
    merchant_reference = models.CharField(max_length=100)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField()
    refunded_amount = models.DecimalField(**MONEY, default=0)
    # Everything the sandbox received (create, status checks, refunds, payer's actions) and every
    # webhook it sent with the answer it got: [{"at": iso time, "event": ..., ...}].
    log = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"sandbox payment {self.reference} {self.amount} {self.status}"
