from django.contrib import admin

from plans.models import Provider, RechargePlan


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "country", "is_active", "plan_count"]
    list_filter = ["is_active", "country"]
    search_fields = ["name", "code"]
    list_editable = ["is_active"]

    @admin.display(description="plans")
    def plan_count(self, obj):
        return obj.plans.count()


@admin.register(RechargePlan)
class RechargePlanAdmin(admin.ModelAdmin):
    list_display = ["code", "provider", "plan_type", "circle", "amount", "validity_days", "data", "is_active"]
    list_filter = ["provider", "plan_type", "circle", "is_active"]
    search_fields = ["code", "description", "data", "talktime"]
    list_select_related = ["provider"]
    list_editable = ["is_active"]
    readonly_fields = ["created_at", "updated_at"]
    ordering = ["provider__name", "amount"]
    actions = ["retire"]

    @admin.action(description="Retire the selected plans (hide them from the catalogue)")
    def retire(self, request, queryset):
        count = queryset.update(is_active=False)
        self.message_user(request, f"{count} plan(s) retired.")

    def has_delete_permission(self, request, obj=None):
        # Sold plans are retired, never deleted (the purchase's foreign key protects them anyway).
        if obj is not None and obj.purchases.exists():
            return False
        return super().has_delete_permission(request, obj)
