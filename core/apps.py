from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self):
        _accept_only_json_strings_for_string_fields()


def _accept_only_json_strings_for_string_fields():
    """Text and decimal inputs accept JSON strings only, as the schema documents them.

    DRF would turn `{"last_name": 123}` into "123" and `{"margin_percentage": 2.5}` into a Decimal
    through a float: a client sending the wrong type has a bug, and it deserves a 400 that names the
    field rather than a silently converted value. One policy for every serializer, set here once.
    """
    from rest_framework import serializers  # here: called from ready(), when models can be imported

    def strict(field_class):
        parse = field_class.to_internal_value

        def to_internal_value(self, data):
            if not isinstance(data, str):
                self.fail("invalid")
            return parse(self, data)

        field_class.to_internal_value = to_internal_value

    strict(serializers.CharField)
    strict(serializers.DecimalField)
