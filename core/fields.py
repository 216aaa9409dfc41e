"""Serializer fields the apps share (money and phone numbers have their own modules)."""

from rest_framework import serializers


class ChoiceDisplayField(serializers.CharField):
    """The human label of a choices field: `ChoiceDisplayField("circle")` answers
    `plan.get_circle_display()`.

    `CharField(source="get_circle_display")` gives the same value, but DRF inspects the signature of
    a callable source on every row it serializes, which was a sixth of a plan list's time."""

    copied_shallow = True  # it only holds settings (core/serializers.py)

    def __init__(self, choice_field, **kwargs):
        self.choice_field = choice_field
        super().__init__(read_only=True, **kwargs)

    def get_attribute(self, instance):
        return getattr(instance, f"get_{self.choice_field}_display")()
