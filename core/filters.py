import django_filters
from django import forms

BIGINT_MAX = 2**63 - 1


class WholeNumberFilter(django_filters.NumberFilter):
    """A whole-number query parameter (an id, a count of days) within the database's integer range:
    `?parent=abc` or `?parent=10**30` is a 400 naming the parameter, on every database."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 0)
        kwargs.setdefault("max_value", BIGINT_MAX)
        super().__init__(*args, **kwargs)
