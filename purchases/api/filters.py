import django_filters
from django.db.models import Q

from core.filters import AnyCaseChoiceFilter
from core.phone import InvalidPhoneNumber, normalize_phone
from purchases.models import Purchase


class PurchaseFilter(django_filters.FilterSet):
    status = AnyCaseChoiceFilter(
        choices=Purchase.Status.choices, label="PENDING, SUCCESS, FAILED or REFUNDED, any case."
    )
    provider = django_filters.CharFilter(method="filter_provider", label="Operator id or code (e.g. `airtel`).")
    mobile_number = django_filters.CharFilter(
        method="filter_mobile_number", max_length=32, label="The number recharged, in any usual form."
    )
    created_after = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", label="Bought at or after this ISO 8601 date or datetime."
    )
    created_before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lte", label="Bought at or before this ISO 8601 date or datetime."
    )
    date_from = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__gte", label="Bought on or after this day (YYYY-MM-DD)."
    )
    date_to = django_filters.DateFilter(
        field_name="created_at", lookup_expr="date__lte", label="Bought on or before this day (YYYY-MM-DD)."
    )

    class Meta:
        model = Purchase
        fields = ["status", "provider", "mobile_number"]

    def filter_provider(self, queryset, name, value):
        value = value.strip()
        condition = Q(plan__provider__code__iexact=value)
        if value.isdigit() and len(value) < 19:
            condition |= Q(plan__provider_id=int(value))
        return queryset.filter(condition)

    def filter_mobile_number(self, queryset, name, value):
        try:
            return queryset.filter(mobile_number=normalize_phone(value))
        except InvalidPhoneNumber:
            return queryset.none()
