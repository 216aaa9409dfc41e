"""The Django admin for accounts. Balances are shown, never edited (only the ledger service writes them);
one-time passwords are read-only and show no code (only an HMAC is stored, and it is not shown either)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import UserChangeForm, UserCreationForm

from accounts import margins, otp, services
from accounts.models import OneTimePassword, OtpPhoneGuard, User, UserMargin
from core.admin import ReadOnlyAdminMixin
from core.errors import DomainError
from core.money import money_str
from core.phone import InvalidPhoneNumber, normalize_phone


class _PhoneCleaning:
    def clean_phone_number(self):
        raw = self.cleaned_data.get("phone_number")
        if not raw:
            return None
        try:
            return normalize_phone(raw)
        except InvalidPhoneNumber as exc:
            raise forms.ValidationError(exc.message) from None

    def clean(self):
        cleaned = super().clean()
        user_type, parent = cleaned.get("user_type"), cleaned.get("parent")
        try:
            services.check_parent(user_type=user_type, parent=parent)
        except services.InvalidParent as exc:
            self.add_error("parent", exc.message)
        if cleaned.get("phone_number") and "phone_number" in self.changed_data:
            # A number an admin sets is vouched for. Set before the model's constraints are checked,
            # so that a number another account has verified is a form error, not a failed save.
            cleaned["phone_verified"] = self.instance.phone_verified = True
        return cleaned


class AdminUserCreationForm(_PhoneCleaning, UserCreationForm):
    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email", "phone_number", "user_type", "parent")


class AdminUserChangeForm(_PhoneCleaning, UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = AdminUserChangeForm
    add_form = AdminUserCreationForm
    list_display = (
        "username",
        "email",
        "phone_number",
        "phone_verified",
        "user_type",
        "kyc_level",
        "parent",
        "wallet_balance",
        "is_active",
    )
    list_filter = ("user_type", "kyc_level", "is_active", "phone_verified", "is_staff", "date_joined")
    search_fields = ("username", "email", "phone_number", "first_name", "last_name")
    list_select_related = ("wallet", "parent")
    raw_id_fields = ("parent",)
    ordering = ("id",)
    readonly_fields = (
        "wallet_balance",
        "last_login",
        "date_joined",
        "is_staff",
        "is_superuser",
        "deactivated_by",
        "deactivated_by_role",
    )
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Profile", {"fields": ("first_name", "last_name", "email", "phone_number", "phone_verified")}),
        (
            "Role",
            {
                "fields": (
                    "user_type",
                    "kyc_level",
                    "parent",
                    "is_active",
                    "deactivated_by",
                    "deactivated_by_role",
                    "is_staff",
                    "is_superuser",
                )
            },
        ),
        ("Wallet", {"fields": ("wallet_balance",)}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "email", "phone_number", "user_type", "parent", "password1", "password2"),
            },
        ),
    )

    @admin.display(description="Wallet balance", ordering="wallet__balance")
    def wallet_balance(self, user):
        wallet = getattr(user, "wallet", None)
        return money_str(wallet.balance) if wallet else "-"

    def save_model(self, request, obj, form, change):
        # The form has set the fields; the service applies what any admin edit implies (role flags,
        # who deactivated, tokens cut off). form.initial holds the values before this edit.
        services.save_from_admin_site(
            actor=request.user,
            user=obj,
            was_active=form.initial.get("is_active", True) if change else True,
            old_type=form.initial.get("user_type") if change else None,
        )


@admin.register(OtpPhoneGuard)
class OtpPhoneGuardAdmin(admin.ModelAdmin):
    list_display = ("phone_number", "failed_count", "window_started_at", "guarded_since")
    search_fields = ("phone_number",)
    list_filter = ("guarded_since",)
    readonly_fields = ("phone_number", "failed_count", "window_started_at", "guarded_since")
    actions = ["lift_guard"]

    @admin.action(description="Lift the guard: normal OTP login with a fresh budget for the selected phones")
    def lift_guard(self, request, queryset):
        lifted = sum(otp.lift_phone_guard(phone_number=guard.phone_number) for guard in queryset)
        self.message_user(request, f"{lifted} phone(s) back in normal mode.", messages.SUCCESS)

    def has_add_permission(self, request):
        return False


@admin.register(OneTimePassword)
class OneTimePasswordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "phone_number",
        "created_at",
        "expires_at",
        "attempts",
        "consumed_at",
        "requested_from",
        "bound_to_address",
    )
    search_fields = ("phone_number",)
    list_filter = ("created_at", "bound_to_address")
    fields = (
        "phone_number",
        "created_at",
        "expires_at",
        "attempts",
        "consumed_at",
        "requested_from",
        "bound_to_address",
    )
    readonly_fields = fields


class UserMarginForm(forms.ModelForm):
    class Meta:
        model = UserMargin
        fields = ["user", "margin_percentage"]

    def clean(self):
        cleaned = super().clean()
        user = cleaned.get("user") or (self.instance.user if self.instance.pk else None)
        if user is not None and cleaned.get("margin_percentage") is not None:
            try:
                margins.check_margin_change(
                    user=user, margin_percentage=cleaned["margin_percentage"], set_by=self.set_by
                )
            except DomainError as exc:
                raise forms.ValidationError(exc.message) from None
        return cleaned


@admin.register(UserMargin)
class UserMarginAdmin(admin.ModelAdmin):
    """Margins are editable; saving goes through accounts.margins.set_margin (its rules apply here too)."""

    form = UserMarginForm
    list_display = ["user", "role", "margin_percentage", "set_by", "updated_at"]
    list_filter = ["user__user_type"]
    search_fields = ["user__username", "user__email", "user__phone_number"]
    list_select_related = ["user", "set_by"]
    autocomplete_fields = ["user"]
    readonly_fields = ["set_by", "created_at", "updated_at"]

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        form.set_by = request.user
        return form

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "user"] if obj is not None else self.readonly_fields

    @admin.display(description="role", ordering="user__user_type")
    def role(self, margin):
        return margin.user.get_user_type_display()

    def has_delete_permission(self, request, obj=None):
        return False  # a margin goes to 0.00 through set_margin, which records who set it

    def save_model(self, request, obj, form, change):
        saved = margins.set_margin(user=obj.user, margin_percentage=obj.margin_percentage, set_by=request.user)
        obj.pk, obj.set_by = saved.pk, saved.set_by


class UsernameOrEmailLoginForm(AdminAuthenticationForm):
    """The admin's login form, saying what it takes (accounts.backends.UsernameOrEmailBackend)."""

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["username"].label = "Username or email"


admin.site.login_form = UsernameOrEmailLoginForm
