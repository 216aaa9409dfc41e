from django.contrib import admin

from core.models import IdempotencyRecord


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    """What each Idempotency-Key answered: for support ("did my retry pay twice?"), read-only."""

    list_display = ["key", "user", "endpoint", "state", "response_status", "created_at", "completed_at"]
    list_filter = ["state", "response_status", "endpoint"]
    search_fields = ["key", "user__username", "user__phone_number"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # purge_idempotency_keys removes them once they are old enough
