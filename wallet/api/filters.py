"""Filters, search and ordering of wallet lists (django-filter + DRF)."""

import django_filters
from django.db.models import Q
from rest_framework.filters import OrderingFilter

from core.filters import WholeNumberFilter
from wallet.models import Transfer, Wallet

MONEY_FILTER = {"max_digits": 14, "decimal_places": 2}


class TransferFilter(django_filters.FilterSet):
    """`kind` (`transaction_type` too, the OTP wallet app's name), `status`, a date range on created_at
    (`created_after` / `created_before`, ISO dates or datetimes) and an amount range."""

    kind = django_filters.MultipleChoiceFilter(choices=Transfer.Kind.choices)
    transaction_type = django_filters.MultipleChoiceFilter(field_name="kind", choices=Transfer.Kind.choices)
    status = django_filters.MultipleChoiceFilter(choices=Transfer.Status.choices)
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lte")
    date_from = django_filters.DateFilter(field_name="created_at", lookup_expr="date__gte")
    date_to = django_filters.DateFilter(field_name="created_at", lookup_expr="date__lte")
    amount_min = django_filters.NumberFilter(field_name="amount", lookup_expr="gte", **MONEY_FILTER)
    amount_max = django_filters.NumberFilter(field_name="amount", lookup_expr="lte", **MONEY_FILTER)
    sender = django_filters.CharFilter(method="filter_party", max_length=150, label="sender username or phone")
    receiver = django_filters.CharFilter(method="filter_party", max_length=150, label="receiver username or phone")

    class Meta:
        model = Transfer
        fields = []

    def filter_party(self, queryset, name, value):
        side = "from_wallet" if name == "sender" else "to_wallet"
        return queryset.filter(
            Q(**{f"{side}__user__username__iexact": value})
            | Q(**{f"{side}__user__phone_number": value})
            | Q(**{f"{side}__system_code__iexact": value})
        )


class WalletFilter(django_filters.FilterSet):
    user_type = WholeNumberFilter(field_name="user__user_type")
    is_active = django_filters.BooleanFilter(field_name="user__is_active")
    parent = WholeNumberFilter(field_name="user__parent_id")
    balance_min = django_filters.NumberFilter(field_name="balance", lookup_expr="gte", **MONEY_FILTER)
    balance_max = django_filters.NumberFilter(field_name="balance", lookup_expr="lte", **MONEY_FILTER)

    class Meta:
        model = Wallet
        fields = []


class AliasOrderingFilter(OrderingFilter):
    """DRF ordering that also understands a view's `ordering_aliases` (the OTP wallet app orders by
    `timestamp`, which is our `created_at`), so both names reach the same view and the same index."""

    def get_ordering(self, request, queryset, view):
        aliases = getattr(view, "ordering_aliases", {})
        params = request.query_params.get(self.ordering_param)
        if params and aliases:
            terms = []
            for term in params.split(","):
                term = term.strip()
                bare = term.lstrip("-")
                terms.append(term.replace(bare, aliases.get(bare, bare), 1))
            ordering = self.remove_invalid_fields(queryset, terms, view, request)
            if ordering:
                return [*ordering, "-id"] if not any(t.lstrip("-") == "id" for t in ordering) else ordering
        ordering = super().get_ordering(request, queryset, view)
        if ordering and not any(t.lstrip("-") == "id" for t in ordering):
            ordering = [*ordering, "-id"]  # a stable order across pages
        return ordering
