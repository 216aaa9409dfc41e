from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from core.admin import ReadOnlyAdminMixin
from core.errors import DomainError
from purchases import services
from purchases.models import Purchase, SandboxRecharge


class StuckFilter(admin.SimpleListFilter):
    """PENDING for longer than PURCHASE_STUCK_MINUTES: the operator has not answered, a worker may be
    down, or the purchase waits on a status check."""

    title = "stuck"
    parameter_name = "stuck"

    def lookups(self, request, model_admin):
        return [("yes", f"PENDING over {settings.PURCHASE_STUCK_MINUTES} min")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            cutoff = timezone.now() - timedelta(minutes=settings.PURCHASE_STUCK_MINUTES)
            return queryset.filter(status=Purchase.Status.PENDING, created_at__lte=cutoff)
        return queryset


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only: a purchase changes only through purchases.services (its money is in the ledger).
    Two actions call those services: re-check with the operator, and refund."""

    list_display = [
        "id",
        "created_at",
        "age",
        "buyer",
        "operator",
        "mobile_number",
        "amount",
        "buyer_commission",
        "distributor_commission",
        "status",
        "sent_at",
        "operator_reference",
        "ledger",
    ]
    list_filter = [StuckFilter, "status", ("plan__provider", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["mobile_number", "operator_reference", "buyer__username", "buyer__email", "idempotency_key"]
    list_select_related = ["buyer", "plan__provider"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    actions = ["recheck_status", "refund"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    @admin.display(description="ledger")
    def ledger(self, obj):
        """Its transfers in the journal: the hold and every leg carrying the purchase's reference."""
        url = reverse("admin:wallet_transfer_changelist")
        return format_html('<a href="{}?q=P{}">P{}</a>', url, obj.pk, obj.pk)

    @admin.display(description="operator", ordering="plan__provider__name")
    def operator(self, obj):
        return obj.plan.provider.name

    @admin.display(description="age", ordering="created_at")
    def age(self, obj):
        """How long ago it was accepted; for a final purchase, how long it took."""
        end = obj.completed_at if obj.status != Purchase.Status.PENDING and obj.completed_at else timezone.now()
        return timesince(obj.created_at, end)

    @admin.action(description="Re-check the status with the operator (PENDING ones)")
    def recheck_status(self, request, queryset):
        """Ask the gateway now, in this request, about each selected PENDING purchase (any age; one
        never sent is sent), and settle it by the answer."""
        counts = {}
        for purchase_id in queryset.filter(status=Purchase.Status.PENDING).values_list("pk", flat=True)[:50]:
            purchase = services.recheck_purchase(purchase_id=purchase_id)
            status = purchase.status if purchase is not None else "settled meanwhile"
            counts[status] = counts.get(status, 0) + 1
        summary = ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "nothing PENDING"
        self.message_user(request, f"Re-checked: {summary}.", messages.INFO)

    @admin.action(description="Refund (SUCCESS ones): price back to the buyer, margins taken back")
    def refund(self, request, queryset):
        refunded = 0
        for purchase_id in queryset.values_list("pk", flat=True):
            try:
                _, done = services.refund_purchase(
                    purchase_id=purchase_id, reason=f"Refunded by {request.user.username}.", initiated_by=request.user
                )
            except DomainError as refusal:
                self.message_user(request, f"#{purchase_id}: {refusal.message}", messages.WARNING)
                continue
            refunded += done
        self.message_user(request, f"{refunded} purchase(s) refunded.", messages.SUCCESS if refunded else messages.INFO)


@admin.register(SandboxRecharge)
class SandboxRechargeAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What the sandbox operator received (development and benchmarks only); read-only."""

    list_display = [
        "reference",
        "received_at",
        "mobile_number",
        "amount",
        "status",
        "times_received",
        "callback_due_at",
        "callback_attempts",
        "callback_delivered_at",
    ]
    list_filter = ["status"]
    search_fields = ["reference", "mobile_number"]
    ordering = ["-received_at"]

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]
