import django_filters
from django.db.models import Q

from core.filters import WholeNumberFilter
from plans.models import RechargePlan


class RechargePlanFilter(django_filters.FilterSet):
    provider = django_filters.CharFilter(method="filter_provider", help_text="Operator id or code (e.g. `jio`).")
    plan_type = django_filters.ChoiceFilter(choices=RechargePlan.PlanType.choices)
    circle = django_filters.ChoiceFilter(
        choices=RechargePlan.Circle.choices,
        method="filter_circle",
        help_text="Plans sold in this telecom circle: the circle's own plans and the all-circle ones.",
    )
    min_amount = django_filters.NumberFilter(field_name="amount", lookup_expr="gte")
    max_amount = django_filters.NumberFilter(field_name="amount", lookup_expr="lte")
    min_validity = WholeNumberFilter(field_name="validity_days", lookup_expr="gte")
    max_validity = WholeNumberFilter(field_name="validity_days", lookup_expr="lte")
    include_retired = django_filters.BooleanFilter(
        method="filter_include_retired", help_text="Admins only: also list retired plans."
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
