from rest_framework import serializers

from core.fields import ChoiceDisplayField
from core.money import MoneyField
from core.serializers import FieldsOnceModelSerializer
from plans.models import Provider, RechargePlan


class ProviderSerializer(FieldsOnceModelSerializer):
    class Meta:
        model = Provider
        fields = ["id", "code", "name", "country", "is_active"]


class RechargePlanSerializer(FieldsOnceModelSerializer):
    """A plan as every caller sees it."""

    amount = MoneyField()
    provider_code = serializers.CharField(source="provider.code", read_only=True)
    provider_name = serializers.CharField(source="provider.name", read_only=True)
    circle_display = ChoiceDisplayField("circle")
    plan_type_display = ChoiceDisplayField("plan_type")

    class Meta:
        model = RechargePlan
        fields = [
            "id",
            "code",
            "provider",
            "provider_code",
            "provider_name",
            "circle",
            "circle_display",
            "plan_type",
            "plan_type_display",
            "amount",
            "validity_days",
            "data",
            "talktime",
            "sms",
            "description",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class RechargePlanInputSerializer(FieldsOnceModelSerializer):
    """What an admin sends to create (POST) or change (PUT/PATCH) a plan."""

    amount = MoneyField()
    provider = serializers.PrimaryKeyRelatedField(queryset=Provider.objects.all(), help_text="Operator id.")
    validity_days = serializers.IntegerField(min_value=0, max_value=3650, allow_null=True, required=False)

    class Meta:
        model = RechargePlan
        fields = [
            "code",
            "provider",
            "circle",
            "plan_type",
            "amount",
            "validity_days",
            "data",
            "talktime",
            "sms",
            "description",
            "is_active",
        ]
