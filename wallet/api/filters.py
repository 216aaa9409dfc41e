"""Filters, search and ordering of wallet lists (django-filter + DRF)."""

import django_filters
from django.db.models import Q

from core.filters import AnyCaseMultipleChoiceFilter, StrictOrderingFilter, WholeNumberFilter
from wallet.models import Transfer, Wallet

MONEY_FILTER = {"max_digits": 14, "decimal_places": 2}


class TransferFilter(django_filters.FilterSet):
    """`kind` (`transaction_type` too, the OTP wallet app's name), `status`, a date range on created_at
    (`created_after` / `created_before`, ISO dates or datetimes) and an amount range."""

    kind = AnyCaseMultipleChoiceFilter(
        choices=Transfer.Kind.choices,
        label="Transfer kind, any case, repeatable: CREDIT, DEBIT, FUND, DEFUND, TRANSFER, PURCHASE, "
        "COMMISSION, REFUND.",
    )
    transaction_type = AnyCaseMultipleChoiceFilter(
        field_name="kind", choices=Transfer.Kind.choices, label="The same as `kind` (the OTP wallet app's name)."
    )
    status = AnyCaseMultipleChoiceFilter(
        choices=Transfer.Status.choices, label="PENDING, POSTED or VOIDED, any case, repeatable."
    )
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", label="Created at or after this ISO 8601 date or datetime."
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lte", label="Created at or before this ISO 8601 date or datetime."
    )
    date_from = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__gte", label="Created on or after this day (YYYY-MM-DD)."
    )
    date_to = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__lte", label="Created on or before this day (YYYY-MM-DD)."
    )
    amount_min = django_filters.NumberFilter(
        field_name="amount", lookup_expr="gte", label="Amount at least this (e.g. 100.00).", **MONEY_FILTER
    )
    amount_max = django_filters.NumberFilter(
        field_name="amount", lookup_expr="lte", label="Amount at most this.", **MONEY_FILTER
    )
    sender = django_filters.CharFilter(
        method="filter_party",
        max_length=150,
        label="The paying side: a username (any case), an E.164 phone number or a system wallet's code.",
    )
    receiver = django_filters.CharFilter(
        method="filter_party",
        max_length=150,
        label="The receiving side: a username (any case), an E.164 phone number or a system wallet's code.",
    )

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
    user_type = WholeNumberFilter(
        field_name="user__user_type", label="Owner's role: 1 admin, 2 distributor, 3 retailer, 4 client."
    )
    is_active = django_filters.BooleanFilter(field_name="user__is_active", label="Owner active (true/false).")
    parent = WholeNumberFilter(field_name="user__parent_id", label="Id of the owner's distributor.")
    balance_min = django_filters.NumberFilter(
        field_name="balance", lookup_expr="gte", label="Balance at least this.", **MONEY_FILTER
    )
    balance_max = django_filters.NumberFilter(
        field_name="balance", lookup_expr="lte", label="Balance at most this.", **MONEY_FILTER
    )

    class Meta:
        model = Wallet
        fields = []


class AliasOrderingFilter(StrictOrderingFilter):
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
