from django.contrib import admin, messages
from django.utils import timezone
from django.utils.timesince import timesince

from core.errors import DomainError
from payments import services
from payments.models import SandboxPayment, TopUp


class _ReadOnly(admin.ModelAdmin):
    """A top-up changes only through payments.services (its money is in the ledger)."""

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(TopUp)
class TopUpAdmin(_ReadOnly):
    list_display = ["id", "created_at", "age", "user", "amount", "currency", "status", "provider", "provider_reference"]
    list_filter = ["status", "provider", "created_at"]
    search_fields = [
        "provider_reference",
        "provider_refund_reference",
        "user__username",
        "user__email",
        "user__phone_number",
    ]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]
    actions = ["refund_to_payer"]

    @admin.display(description="age", ordering="created_at")
    def age(self, obj):
        return timesince(obj.created_at, timezone.now())

    @admin.action(description="Refund the selected succeeded top-ups to the payer (debits the wallets)")
    def refund_to_payer(self, request, queryset):
        for top_up in queryset.order_by("pk"):
            try:
                services.refund_top_up(top_up=top_up, initiated_by=request.user)
            except DomainError as refusal:
                self.message_user(request, f"Top-up #{top_up.pk}: {refusal.message}", messages.ERROR)
            else:
                self.message_user(request, f"Top-up #{top_up.pk} refunded to the payer.", messages.SUCCESS)


@admin.register(SandboxPayment)
class SandboxPaymentAdmin(_ReadOnly):
    """The sandbox provider's memory: what it received and sent, per payment."""

    list_display = ["reference", "created_at", "merchant_reference", "amount", "status", "refunded_amount"]
    list_filter = ["status"]
    search_fields = ["reference", "merchant_reference"]
    ordering = ["-created_at"]
