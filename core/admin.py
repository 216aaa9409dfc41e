from django.contrib import admin

from core.models import IdempotencyRecord


class ReadOnlyAdminMixin:
    """Shown in the Django admin, never added, changed or deleted there (superusers included): rows
    that only a service writes (the journal, balances, purchases, stored answers, login codes)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What each Idempotency-Key answered: for support ("did my retry pay twice?"), read-only."""

    list_display = ["key", "user", "endpoint", "state", "response_status", "created_at", "completed_at"]
    list_filter = ["state", "response_status", "endpoint"]
    search_fields = ["key", "user__username", "user__phone_number"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    # purge_idempotency_keys removes them once they are old enough.
