"""The ledger in the Django admin: everything readable, nothing editable by hand.

Balances and journal rows change only through wallet.services: the "Fund or debit" page calls
the service, never saves a model.
"""

import hashlib
import uuid
from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from core import idempotency
from core.admin import ReadOnlyAdminMixin
from core.errors import DomainError
from core.money import money_str
from core.roles import UserType
from wallet import selectors, services
from wallet.models import Payout, PayoutLine, Transfer, Wallet


def _may_move_money(user):
    return user.is_active and (user.is_superuser or getattr(user, "user_type", None) == UserType.ADMIN)


class MoveMoneyForm(forms.Form):
    operation = forms.ChoiceField(choices=[("FUND", "Add money (FUND)"), ("DEFUND", "Debit (DEFUND)")])
    amount = forms.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"), help_text="e.g. 1000.00")
    description = forms.CharField(max_length=255, required=False)
    # One token per rendered form: a double-clicked submit is recognised and moves money once.
    token = forms.CharField(widget=forms.HiddenInput, max_length=64)


@admin.register(Wallet)
class WalletAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Read-only; money moves through the "Fund or debit" page."""

    list_display = ["id", "owner", "role", "balance_display", "held", "available_display", "currency", "move_money"]
    list_filter = ["user__user_type", "user__is_active", "currency"]
    search_fields = ["user__username", "user__email", "user__phone_number", "system_code"]
    list_select_related = ["user"]
    readonly_fields = [
        "user",
        "system_code",
        "balance",
        "held",
        "currency",
        "last_entry",
        "month_loads",
        "month_loads_since",
        "created_at",
        "updated_at",
        "move_money",
    ]
    fields = readonly_fields
    actions = ["fund_or_debit"]

    @admin.display(description="owner", ordering="user__username")
    def owner(self, wallet):
        return wallet.user.username if wallet.user_id else f"[system] {wallet.system_code}"

    @admin.display(description="role", ordering="user__user_type")
    def role(self, wallet):
        return wallet.user.get_user_type_display() if wallet.user_id else "System"

    @admin.display(description="balance", ordering="balance")
    def balance_display(self, wallet):
        if wallet.is_system:  # derived from the journal (two aggregates, for the three system rows only)
            return f"{money_str(selectors.derived_balance(wallet=wallet))} (journal)"
        return money_str(wallet.balance)

    @admin.display(description="available")
    def available_display(self, wallet):
        return "" if wallet.is_system else money_str(wallet.available)

    @admin.display(description="fund / debit")
    def move_money(self, wallet):
        if wallet.is_system:
            return ""
        return format_html(
            '<a href="{}">Fund or debit</a>', reverse("admin:wallet_wallet_move_money", args=[wallet.pk])
        )

    @admin.action(description="Fund or debit the selected wallet")
    def fund_or_debit(self, request, queryset):
        wallets = list(queryset.filter(user__isnull=False)[:2])
        if len(wallets) != 1:
            self.message_user(request, "Select exactly one user wallet.", messages.WARNING)
            return None
        return redirect("admin:wallet_wallet_move_money", wallets[0].pk)

    def get_urls(self):
        extra = [
            path(
                "<int:pk>/move-money/",
                self.admin_site.admin_view(self.move_money_view),
                name="wallet_wallet_move_money",
            )
        ]
        return extra + super().get_urls()

    def move_money_view(self, request, pk):
        if not _may_move_money(request.user):
            raise PermissionDenied
        wallet = get_object_or_404(Wallet.objects.select_related("user"), pk=pk, user__isnull=False)
        form = MoveMoneyForm(request.POST or None, initial={"token": uuid.uuid4().hex})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            operation = services.fund_wallet if data["operation"] == "FUND" else services.defund_wallet
            # The form's token is claimed like an API Idempotency-Key (one row per user and key,
            # in the database): a double click, even landing on two app servers at once, moves
            # money once.
            fingerprint = hashlib.sha256(f"{wallet.pk}:{data['operation']}:{data['amount']}".encode()).hexdigest()
            try:
                with idempotency.run_once(
                    user=request.user,
                    key=f"admin-move-money-{data['token']}",
                    endpoint="admin:move_money",
                    fingerprint=fingerprint,
                ) as run:
                    if run.replayed is None:
                        transfer = operation(
                            user=wallet.user,
                            amount=data["amount"],
                            remarks=data["description"],
                            initiated_by=request.user,
                            idempotency_key=f"admin-{data['token']}",
                        )
                        run.answer(status_code=201, data={"transfer_id": transfer.pk})
            except (idempotency.IdempotencyKeyReused, idempotency.IdempotencyRequestInProgress) as exc:
                self.message_user(request, exc.message, messages.WARNING)
                return redirect("admin:wallet_wallet_change", wallet.pk)
            except DomainError as exc:
                form.add_error(
                    "amount" if exc.field == "amount" or exc.code == "insufficient_funds" else None, exc.message
                )
            else:
                if run.replayed is not None:
                    self.message_user(
                        request, "This form was already submitted; nothing more was moved.", messages.INFO
                    )
                else:
                    self.message_user(
                        request,
                        f"{transfer.get_kind_display()} of {money_str(transfer.amount)} recorded (#{transfer.pk}).",
                    )
                return redirect("admin:wallet_wallet_change", wallet.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "wallet": wallet,
            "form": form,
            "title": f"Fund or debit {wallet.user.username}",
        }
        return TemplateResponse(request, "admin/wallet/wallet/move_money.html", context)


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The journal: readable by staff, never added, changed or deleted by anyone (superusers included)."""

    list_display = ["id", "created_at", "kind", "status", "amount", "sender", "receiver", "remarks", "initiated_by"]
    list_filter = ["kind", "status", ("created_at", admin.DateFieldListFilter)]
    search_fields = [
        "from_wallet__user__username",
        "to_wallet__user__username",
        "from_wallet__user__phone_number",
        "to_wallet__user__phone_number",
        "remarks",
        "idempotency_key",
        "=reference",  # a purchase's legs: "P42"
    ]
    list_select_related = ["from_wallet__user", "to_wallet__user", "initiated_by"]
    date_hierarchy = "created_at"
    ordering = ["-created_at", "-id"]

    @staticmethod
    def _party(wallet):
        return wallet.user.username if wallet.user_id else wallet.system_code

    @admin.display(description="from", ordering="from_wallet__user__username")
    def sender(self, transfer):
        return self._party(transfer.from_wallet)

    @admin.display(description="to", ordering="to_wallet__user__username")
    def receiver(self, transfer):
        return self._party(transfer.to_wallet)


class PayoutLineInline(admin.TabularInline):
    model = PayoutLine
    fields = readonly_fields = ["line", "recipient", "amount", "transfer_link", "balance_after"]
    ordering = ["line"]
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("recipient", "transfer")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="journal row")
    def transfer_link(self, line):
        url = reverse("admin:wallet_transfer_change", args=[line.transfer_id])
        return format_html('<a href="{}">#{}</a>', url, line.transfer_id)

    @admin.display(description="recipient's balance after")
    def balance_after(self, line):
        return money_str(line.transfer.to_balance_after)


@admin.register(Payout)
class PayoutAdmin(admin.ModelAdmin):
    """Bulk payouts with their lines: readable, never added, changed or deleted here (the API makes them)."""

    list_display = ["id", "created_at", "payer", "kind", "line_count", "total", "remarks"]
    list_filter = ["kind", ("created_at", admin.DateFieldListFilter)]
    search_fields = ["payer__username", "payer__email", "remarks", "idempotency_key"]
    list_select_related = ["payer"]
    date_hierarchy = "created_at"
    fields = readonly_fields = [
        "payer",
        "source_wallet",
        "kind",
        "total",
        "line_count",
        "remarks",
        "idempotency_key",
        "created_at",
    ]
    inlines = [PayoutLineInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
