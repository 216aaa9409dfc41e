from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from purchases.models import Purchase


@admin.register(Purchase)
class PurchaseAdmin(admin.ModelAdmin):
    """Read-only: a purchase changes only through purchases.services (its money is in the ledger)."""

    list_display = [
        "id",
        "created_at",
        "buyer",
        "operator",
        "mobile_number",
        "amount",
        "buyer_commission",
        "distributor_commission",
        "status",
        "operator_reference",
        "ledger",
    ]
    list_filter = ["status", ("plan__provider", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["mobile_number", "operator_reference", "buyer__username", "buyer__email", "idempotency_key"]
    list_select_related = ["buyer", "plan__provider"]
    date_hierarchy = "created_at"
    ordering = ["-created_at"]

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

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
