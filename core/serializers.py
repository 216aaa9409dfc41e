"""A ModelSerializer that works out its fields once per class.

DRF's ModelSerializer builds its fields from the model (field info, kwargs, validators) each time one
is instantiated: on every request, and for every nested serializer. On a purchase's answer and a
wallet list that was the largest cost after the queries (bench/profile_request.py). What it builds
depends only on the class (its Meta and declared fields), so `FieldsOnceModelSerializer` builds them
once and gives each instance a copy of its own, as DRF itself does with declared fields: no
instance ever shares a field with another (they are bound to their serializer, and threads share
the class). Fields that only hold settings are copied shallow (below); the rest deep.
"""

import copy

from rest_framework import fields, relations, serializers

# Fields whose state, once built, is only read: binding one to its serializer sets attributes of its
# own (name, parent, source), so a shallow copy is a field of its own. DRF's deep copy calls the
# field's __init__ again with its arguments: on a purchase's answer that was a tenth of the request's
# CPU (bench/profile_request.py purchases). Anything else (a nested serializer, a list or dict field,
# a many-related field: fields holding fields) is deep-copied as DRF does. A field class of ours that
# only holds settings says so with `copied_shallow = True`.
_READ_ONLY_STATE = (
    fields.BooleanField,
    fields.CharField,
    fields.ChoiceField,
    fields.DateField,
    fields.DateTimeField,
    fields.DecimalField,
    fields.FloatField,
    fields.IntegerField,
    fields.ReadOnlyField,
    fields.SerializerMethodField,
    fields.UUIDField,
    relations.PrimaryKeyRelatedField,
)


def _copy(field):
    if isinstance(field, _READ_ONLY_STATE) or getattr(field, "copied_shallow", False):
        return copy.copy(field)
    return copy.deepcopy(field)


class FieldsOnceModelSerializer(serializers.ModelSerializer):
    def get_fields(self):
        cls = type(self)
        template = cls.__dict__.get("_fields_template")
        if template is None:
            # Two threads racing here both build it, and the second one's is kept: equal, harmless.
            template = super().get_fields()
            cls._fields_template = template
        return {name: _copy(field) for name, field in template.items()}
