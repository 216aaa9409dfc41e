from rest_framework import serializers

from core.fields import ChoiceDisplayField
from core.money import MoneyField
from core.phone import MobileNumberField
from core.serializers import FieldsOnceModelSerializer, FieldsOnceSerializer
from purchases.models import Purchase


class PurchaseInputSerializer(FieldsOnceSerializer):
    plan_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1, help_text="Id of an active recharge plan.")
    mobile_number = MobileNumberField(
        help_text="The mobile number to recharge, written with digits, spaces, + and - only: a valid mobile "
        "number of the plan's operator's country (e.g. 9876543210 or +91 98765-43210 for an Indian operator), "
        "else 400 `invalid_mobile_number`."
    )


class PurchaseSerializer(FieldsOnceModelSerializer):
    buyer = serializers.CharField(source="buyer.username", read_only=True)
    buyer_id = serializers.IntegerField(read_only=True)
    plan_id = serializers.IntegerField(read_only=True)
    plan_code = serializers.CharField(source="plan.code", read_only=True)
    plan_description = serializers.CharField(source="plan.description", read_only=True)
    provider = serializers.CharField(source="plan.provider.code", read_only=True)
    provider_name = serializers.CharField(source="plan.provider.name", read_only=True)
    amount = MoneyField(read_only=True)
    buyer_commission = MoneyField(read_only=True)
    distributor = serializers.CharField(source="distributor.username", read_only=True, allow_null=True, default=None)
    distributor_commission = MoneyField(read_only=True)
    status_display = ChoiceDisplayField("status")

    class Meta:
        model = Purchase
        fields = [
            "id",
            "buyer",
            "buyer_id",
            "plan_id",
            "plan_code",
            "plan_description",
            "provider",
            "provider_name",
            "mobile_number",
            "amount",
            "buyer_commission",
            "distributor",
            "distributor_commission",
            "status",
            "status_display",
            "operator_reference",
            "failure_reason",
            "created_at",
            "updated_at",
            "completed_at",
        ]
        read_only_fields = fields


class PurchaseResultSerializer(FieldsOnceSerializer):
    purchase = PurchaseSerializer()
    balance = MoneyField(help_text="The buyer's balance after the purchase (posted money).")
    available = MoneyField(help_text="Balance minus what pending purchases still hold.")


class DuplicatePurchaseErrorSerializer(FieldsOnceSerializer):
    detail = serializers.CharField()
    code = serializers.CharField(help_text="`duplicate_purchase`")
    purchase_id = serializers.IntegerField(help_text="The earlier purchase this request repeats.")
    status = serializers.CharField(help_text="That purchase's status (PENDING, SUCCESS or REFUNDED).")


class OperatorCallbackSerializer(FieldsOnceSerializer):
    """The body an aggregator POSTs (signed: X-Signature, core/signatures.py)."""

    reference = serializers.CharField(max_length=64, help_text="Our reference for the recharge: `P<purchase id>`.")
    status = serializers.ChoiceField(
        choices=["SUCCESS", "FAILED", "REVERSED"],
        help_text="The final status; REVERSED: the operator refunded a recharge it had made.",
    )
    operator_reference = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    message = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")


class OperatorCallbackResultSerializer(FieldsOnceSerializer):
    purchase_id = serializers.IntegerField()
    status = serializers.CharField(
        help_text="The purchase's status after the callback; with 202 (queued), its status before it."
    )
    applied = serializers.BooleanField(help_text="False: a replay or known news, or queued: nothing changed yet.")
    queued = serializers.BooleanField(
        help_text="True (with 202): news to apply, handed to a worker; `status` is the purchase's before it."
    )
