"""Query parameters every list shares: whole numbers, choices typed in any case, strict ordering."""

import django_filters
from django import forms
from django_filters import fields
from rest_framework.exceptions import ValidationError
from rest_framework.filters import OrderingFilter

BIGINT_MAX = 2**63 - 1


class FiltersOnlyWhenAsked:
    """A list view mixin: a request whose query holds only page parameters skips the filter backends
    and gets the view's default `ordering`, which is all they would have applied. django-filter builds
    and validates a form for every request, deep-copying each filter: a tenth of a history page's CPU
    and more of a one-wallet list's. A backend that does something with no parameter at all would
    need this to know it."""

    page_parameters = frozenset({"cursor", "page", "page_size"})

    def asks_only_for_a_page(self) -> bool:
        return set(self.request.query_params) <= self.page_parameters

    def filter_queryset(self, queryset):
        if self.asks_only_for_a_page():
            ordering = getattr(self, "ordering", None)
            return queryset.order_by(*ordering) if ordering else queryset
        return super().filter_queryset(queryset)


class WholeNumberFilter(django_filters.NumberFilter):
    """A whole-number query parameter (an id, a count of days) within the database's integer range:
    `?parent=abc` or `?parent=10**30` is a 400 naming the parameter, on every database."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", BIGINT_MAX)
        super().__init__(*args, **kwargs)


def _as_choice(choices, value):
    """The choice `value` names, whatever its case (`data`, `Data` -> `DATA`); unchanged if none."""
    for key, _label in choices:
        if isinstance(key, str) and isinstance(value, str) and key.lower() == value.strip().lower():
            return key
    return value


class _AnyCaseChoiceField(fields.ChoiceField):
    def to_python(self, value):
        return _as_choice(self.choices, super().to_python(value))


class _AnyCaseMultipleChoiceField(fields.MultipleChoiceField):
    def to_python(self, value):
        return [_as_choice(self.choices, item) for item in super().to_python(value)]


class AnyCaseChoiceFilter(django_filters.ChoiceFilter):
    """A choice typed in any case: `?plan_type=data` is `DATA`, as `?provider=jio` already was."""

    field_class = _AnyCaseChoiceField


class AnyCaseMultipleChoiceFilter(django_filters.MultipleChoiceFilter):
    field_class = _AnyCaseMultipleChoiceField


class StrictOrderingFilter(OrderingFilter):
    """DRF's ordering, except that an unknown field is a 400 naming it (`invalid_ordering`) like every
    other bad parameter, instead of being dropped silently."""

    def remove_invalid_fields(self, queryset, fields, view, request):
        valid = super().remove_invalid_fields(queryset, fields, view, request)
        unknown = [term for term in fields if term and term not in valid]
        if unknown:
            allowed = sorted(name for name, _label in self.get_valid_fields(queryset, view, {"request": request}))
            raise ValidationError(
                {
                    self.ordering_param: [
                        f"Unknown ordering {', '.join(unknown)}; use {', '.join(allowed)} (- for descending)."
                    ]
                },
                code="invalid_ordering",
            )
        return valid
