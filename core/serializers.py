"""A ModelSerializer that works out its fields once per class.

DRF's ModelSerializer builds its fields from the model (field info, kwargs, validators) each time one
is instantiated: on every request, and for every nested serializer. On a purchase's answer and a
wallet list that was the largest cost after the queries (bench/profile_request.py). What it builds
depends only on the class (its Meta and declared fields), so `FieldsOnceModelSerializer` builds them
once and gives each instance a deep copy of its own, as DRF itself does with declared fields: no
instance ever shares a field with another (they are bound to their serializer, and threads share
the class).
"""

import copy

from rest_framework import serializers


class FieldsOnceModelSerializer(serializers.ModelSerializer):
    def get_fields(self):
        cls = type(self)
        template = cls.__dict__.get("_fields_template")
        if template is None:
            # Two threads racing here both build it, and the second one's is kept: equal, harmless.
            template = super().get_fields()
            cls._fields_template = template
        return copy.deepcopy(template)
