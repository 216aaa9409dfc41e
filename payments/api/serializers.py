from django.conf import settings
from rest_framework import serializers

from core.money import MoneyField
from core.serializers import FieldsOnceModelSerializer, FieldsOnceSerializer
from payments.models import TopUp
from payments.sandbox import OUTCOMES


class TopUpInputSerializer(FieldsOnceSerializer):
    amount = MoneyField(help_text='What to add, e.g. "500.00" (PAYMENT_MIN_TOPUP_AMOUNT to PAYMENT_MAX_TOPUP_AMOUNT).')

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["amount"].max_amount = settings.PAYMENT_MAX_TOPUP_AMOUNT


class TopUpSerializer(FieldsOnceModelSerializer):
    """A top-up intent. `payment_url` (or `upi_intent`) is where the payer pays while PENDING."""

    amount = serializers.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        model = TopUp
        fields = [
            "id",
            "amount",
            "currency",
            "status",
            "provider",
            "provider_reference",
            "payment_url",
            "upi_intent",
            "failure_reason",
            "expires_at",
            "created_at",
            "updated_at",
            "completed_at",
        ]
        read_only_fields = fields


class WebhookAnswerSerializer(FieldsOnceSerializer):
    received = serializers.BooleanField()
    applied = serializers.BooleanField(help_text="False for a replay or duplicate: nothing changed.")
    status = serializers.ChoiceField(choices=TopUp.Status.choices, help_text="The top-up's status now.")


class WebhookBodySerializer(FieldsOnceSerializer):
    """The sandbox provider's event (a real provider's body is read by its own parse_webhook)."""

    class DataSerializer(FieldsOnceSerializer):
        reference = serializers.CharField()
        merchant_reference = serializers.CharField(required=False)
        status = serializers.ChoiceField(choices=["SUCCEEDED", "FAILED", "EXPIRED", "PENDING"])
        amount = serializers.CharField()
        currency = serializers.CharField()

    id = serializers.CharField()
    type = serializers.CharField()
    created = serializers.IntegerField()
    data = DataSerializer()


class SandboxPaySerializer(FieldsOnceSerializer):
    outcome = serializers.ChoiceField(
        choices=sorted(OUTCOMES),
        default="succeeded",
        help_text=(
            "succeeded / failed / expired send the webhook; succeeded_silently loses it (the status check finds it)."
        ),
    )


class SandboxPaymentSerializer(FieldsOnceSerializer):
    reference = serializers.CharField()
    merchant_reference = serializers.CharField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    currency = serializers.CharField()
    status = serializers.CharField()
    expires_at = serializers.DateTimeField()
    refunded_amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    log = serializers.ListField(child=serializers.DictField(), help_text="What the sandbox received and sent.")
