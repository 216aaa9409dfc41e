"""Serializers that work out their fields once per class.

DRF's ModelSerializer builds its fields from the model (field info, kwargs, validators) each time one
is instantiated: on every request, and for every nested serializer. On a purchase's answer and a
wallet list that was the largest cost after the queries (bench/profile_request.py). A plain
Serializer deep-copies its declared fields instead, which calls each field's __init__ again with its
arguments (and its validators'): on a transfer, its input's five fields and its answer's fifteen
were 6 % of the request's CPU. What either builds depends only on the class (its Meta and declared
fields), so `FieldsOnceSerializer` and `FieldsOnceModelSerializer` build them once and give each
instance a copy of its own: no instance ever shares a field with another (they are bound to their
serializer, and threads share the class). Fields that only hold settings are copied shallow (below);
the rest deep.
"""

import copy

from rest_framework import fields, relations, serializers

# Fields whose state, once built, is only read (DRF 3.18): binding one to its serializer sets
# attributes of its own (name, parent, label, source), so a shallow copy is a field of its own. DRF's
# deep copy calls the field's __init__ again with its arguments, per serializer instance. Anything else
# (a nested serializer, a list or dict field, a many-related field: fields holding fields) is
# deep-copied as DRF does. The classes are named exactly, not with their subclasses (one could hold
# state of its own); a class of ours that only holds settings says so itself with
# `copied_shallow = True`. What a shallow copy shares with the template (its validators list, its
# error messages) must never be changed in place: a serializer that wants other validators for one
# instance assigns a new list, as DRF's own code does.
_READ_ONLY_STATE = frozenset(
    {
        fields.BigIntegerField,
        fields.BooleanField,
        fields.CharField,
        fields.ChoiceField,
        fields.DateField,
        fields.DateTimeField,
        fields.DecimalField,
        fields.EmailField,
        fields.FloatField,
        fields.IntegerField,
        fields.ReadOnlyField,
        fields.SerializerMethodField,
        fields.SlugField,
        fields.UUIDField,
        relations.PrimaryKeyRelatedField,
    }
)


def _copy(field):
    kind = type(field)
    if kind in _READ_ONLY_STATE or kind.__dict__.get("copied_shallow", False):
        return copy.copy(field)
    return copy.deepcopy(field)


class FieldsOnce:
    """Mixed into a DRF serializer class: `get_fields` builds the fields once per class."""

    def get_fields(self):
        cls = type(self)
        template = cls.__dict__.get("_fields_template")
        if template is None:
            # Two threads racing here both build it, and the second one's is kept: equal, harmless.
            template = super().get_fields()
            cls._fields_template = template
        return {name: _copy(field) for name, field in template.items()}


class FieldsOnceSerializer(FieldsOnce, serializers.Serializer):
    pass


class FieldsOnceModelSerializer(FieldsOnce, serializers.ModelSerializer):
    pass
