import django_filters
from django.db.models import Q

from core.filters import AnyCaseChoiceFilter, WholeNumberFilter
from plans.models import RechargePlan


class RechargePlanFilter(django_filters.FilterSet):
    provider = django_filters.CharFilter(method="filter_provider", label="Operator id or code (e.g. `jio`).")
    plan_type = AnyCaseChoiceFilter(
        choices=RechargePlan.PlanType.choices, label="Plan type, any case (e.g. `data`, `PREPAID`)."
    )
    circle = AnyCaseChoiceFilter(
        choices=RechargePlan.Circle.choices,
        method="filter_circle",
        label="Plans sold in this telecom circle: the circle's own plans and the all-circle ones.",
    )
    min_amount = django_filters.NumberFilter(field_name="amount", lookup_expr="gte", label="Price at least this.")
    max_amount = django_filters.NumberFilter(field_name="amount", lookup_expr="lte", label="Price at most this.")
    min_validity = WholeNumberFilter(
        field_name="validity_days", lookup_expr="gte", label="Valid for at least this many days."
    )
    max_validity = WholeNumberFilter(
        field_name="validity_days", lookup_expr="lte", label="Valid for at most this many days."
    )
    include_retired = django_filters.BooleanFilter(
        method="filter_include_retired", label="Admins only: also list retired plans."
    )

    class Meta:
        model = RechargePlan
        fields = ["provider", "plan_type", "circle", "min_amount", "max_amount", "min_validity", "max_validity"]

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        if not self.form.cleaned_data.get("include_retired"):
            queryset = queryset.filter(is_active=True)
        return queryset

    def filter_provider(self, queryset, name, value):
        value = value.strip()
        condition = Q(provider__code__iexact=value)
        if value.isdigit() and len(value) < 19:
            condition |= Q(provider_id=int(value))
        return queryset.filter(condition)

    def filter_circle(self, queryset, name, value):
        if value == RechargePlan.Circle.ALL:
            return queryset.filter(circle=value)
        return queryset.filter(circle__in=[value, RechargePlan.Circle.ALL])

    def filter_include_retired(self, queryset, name, value):
        return queryset  # applied in filter_queryset, which sees every parameter
