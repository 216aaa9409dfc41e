"""Request and response bodies of the wallet API. Money travels as two-place strings."""

from rest_framework import serializers

from accounts.models import UserMargin
from accounts.selectors import can_see_user, find_user
from core.fields import ChoiceDisplayField
from core.money import MoneyField, money_str
from core.phone import PhoneNumberField
from core.serializers import FieldsOnceModelSerializer, FieldsOnceSerializer
from wallet.models import Transfer, Wallet

REMARKS = {"required": False, "allow_blank": True, "max_length": 255, "default": ""}

# The bodies every money request answers are rendered by hand (`to_representation` below), not
# field by field: DRF deep-copies a serializer's declared fields for each instance, which was a
# tenth of a transfer's CPU. The declared fields still describe the body to Swagger, and
# wallet/tests/test_fast_rendering.py holds each hand-rendered body equal to DRF's own rendering.
_MONEY = serializers.DecimalField(max_digits=14, decimal_places=2)
_DATETIME = serializers.DateTimeField()


# --- responses ------------------------------------------------------------------------------


class BalanceSerializer(FieldsOnceSerializer):
    """The OTP wallet app's `{"user", "balance"}` plus what is reserved by pending recharges."""

    user = serializers.CharField(source="user.username")
    balance = serializers.DecimalField(max_digits=14, decimal_places=2)
    held = serializers.DecimalField(max_digits=14, decimal_places=2)
    available = serializers.DecimalField(max_digits=14, decimal_places=2)

    def to_representation(self, wallet):
        return {
            "user": wallet.user.username,
            "balance": _MONEY.to_representation(wallet.balance),
            "held": _MONEY.to_representation(wallet.held),
            "available": _MONEY.to_representation(wallet.available),
        }


class WalletLimitsSerializer(FieldsOnceSerializer):
    """A wallet's limits and what it may still receive (null: no limit applies)."""

    tier = serializers.ChoiceField(
        choices=["MIN_KYC", "FULL_KYC", "BUSINESS"],
        help_text="Which limits apply: a client's by KYC level, or a business wallet's.",
    )
    kyc_level = serializers.IntegerField(help_text="1 minimum KYC, 2 full KYC.")
    max_balance = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    monthly_load = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    per_transaction = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    loaded_this_month = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    balance_headroom = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    monthly_load_headroom = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    can_load_now = serializers.DecimalField(
        max_digits=14, decimal_places=2, allow_null=True, help_text="The most one top-up or transfer in may bring now."
    )

    def to_representation(self, room):
        def money(value):
            return None if value is None else _MONEY.to_representation(value)

        return {
            "tier": room.tier,
            "kyc_level": room.kyc_level,
            "max_balance": money(room.limits.max_balance),
            "monthly_load": money(room.limits.monthly_load),
            "per_transaction": money(room.limits.per_transaction),
            "loaded_this_month": money(room.loaded_this_month),
            "balance_headroom": money(room.balance_headroom),
            "monthly_load_headroom": money(room.monthly_load_headroom),
            "can_load_now": money(room.can_load_now),
        }


class BalanceWithLimitsSerializer(BalanceSerializer):
    """GET /api/wallet/balance/: the balance and the wallet's limits with their headroom."""

    limits = WalletLimitsSerializer()

    def to_representation(self, wallet):
        body = super().to_representation(wallet)
        body["limits"] = WalletLimitsSerializer().to_representation(self.context["headroom"])
        return body


class OwnerSerializer(FieldsOnceSerializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.EmailField(allow_null=True)
    phone_number = serializers.CharField(allow_null=True)
    user_type = serializers.IntegerField()
    user_type_display = ChoiceDisplayField("user_type")
    parent_id = serializers.IntegerField(allow_null=True)
    is_active = serializers.BooleanField()


class WalletSerializer(FieldsOnceModelSerializer):
    user = OwnerSerializer()
    available = serializers.DecimalField(max_digits=14, decimal_places=2)

    class Meta:
        model = Wallet
        fields = ["id", "user", "balance", "held", "available", "currency", "created_at", "updated_at"]


class PartySerializer(FieldsOnceSerializer):
    """One side of a transfer: a user's wallet or a system wallet (`system`: TREASURY ...)."""

    wallet_id = serializers.IntegerField(source="pk")
    user_id = serializers.IntegerField(allow_null=True)
    username = serializers.CharField(source="user.username", allow_null=True, default=None)
    phone_number = serializers.CharField(source="user.phone_number", allow_null=True, default=None)
    system = serializers.CharField(source="system_code", allow_null=True)

    def to_representation(self, wallet):
        user = wallet.user if wallet.user_id is not None else None
        return {
            "wallet_id": wallet.pk,
            "user_id": wallet.user_id,
            "username": None if user is None else user.username,
            "phone_number": None if user is None else user.phone_number,
            "system": wallet.system_code,
        }


_PARTY = PartySerializer()


class TransferSerializer(FieldsOnceSerializer):
    """A journal row. A party's balance after the transfer is shown only to whom may see that wallet
    (a sender does not learn the receiver's balance). `transaction_type`, `timestamp`, `sender` and
    `receiver` are the OTP wallet app's names for kind, created_at and the parties.

    Declared field by field rather than as a ModelSerializer: this body is rendered on every money
    request and every history row, and ModelSerializer rebuilds its fields from the model each time."""

    id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(choices=Transfer.Kind.choices)
    status = serializers.ChoiceField(choices=Transfer.Status.choices)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    from_ = PartySerializer(source="from_wallet")
    to = PartySerializer(source="to_wallet")
    from_balance_after = serializers.SerializerMethodField()
    to_balance_after = serializers.SerializerMethodField()
    remarks = serializers.CharField(max_length=255, allow_blank=True)
    created_at = serializers.DateTimeField()
    finalized_at = serializers.DateTimeField(allow_null=True)
    sender = serializers.SerializerMethodField()
    receiver = serializers.SerializerMethodField()
    transaction_type = serializers.CharField(source="kind", read_only=True)
    timestamp = serializers.DateTimeField(source="created_at", read_only=True)

    def get_fields(self):
        fields = super().get_fields()
        # `from` is a Python keyword: declared as from_, answered as "from".
        return {("from" if name == "from_" else name): field for name, field in fields.items()}

    def _visible_balance(self, wallet, value):
        viewer = self.context.get("viewer")
        if value is None or wallet.user_id is None or viewer is None:
            return None
        if can_see_user(viewer=viewer, user_id=wallet.user_id, parent_id=wallet.user.parent_id):
            return money_str(value)
        return None

    def get_from_balance_after(self, transfer) -> str | None:
        return self._visible_balance(transfer.from_wallet, transfer.from_balance_after)

    def get_to_balance_after(self, transfer) -> str | None:
        return self._visible_balance(transfer.to_wallet, transfer.to_balance_after)

    @staticmethod
    def _party_name(wallet):
        return wallet.user.username if wallet.user_id else wallet.system_code

    def get_sender(self, transfer) -> str:
        return self._party_name(transfer.from_wallet)

    def get_receiver(self, transfer) -> str:
        return self._party_name(transfer.to_wallet)

    def to_representation(self, transfer):
        source, destination = transfer.from_wallet, transfer.to_wallet
        created_at = _DATETIME.to_representation(transfer.created_at)
        return {
            "id": transfer.pk,
            "kind": str(transfer.kind),
            "status": str(transfer.status),
            "amount": _MONEY.to_representation(transfer.amount),
            "from": _PARTY.to_representation(source),
            "to": _PARTY.to_representation(destination),
            "from_balance_after": self._visible_balance(source, transfer.from_balance_after),
            "to_balance_after": self._visible_balance(destination, transfer.to_balance_after),
            "remarks": transfer.remarks,
            "created_at": created_at,
            "finalized_at": _DATETIME.to_representation(transfer.finalized_at),
            "sender": self._party_name(source),
            "receiver": self._party_name(destination),
            "transaction_type": str(transfer.kind),
            "timestamp": created_at,
        }


class MoneyMovedSerializer(FieldsOnceSerializer):
    """What every money-moving POST answers: the transfer and the caller's balance after it."""

    transfer = TransferSerializer()
    user = serializers.CharField()
    balance = serializers.DecimalField(max_digits=14, decimal_places=2)
    held = serializers.DecimalField(max_digits=14, decimal_places=2)
    available = serializers.DecimalField(max_digits=14, decimal_places=2)

    def to_representation(self, moved):
        return {
            "transfer": TransferSerializer(context=self.context).to_representation(moved["transfer"]),
            "user": moved["user"],
            "balance": _MONEY.to_representation(moved["balance"]),
            "held": _MONEY.to_representation(moved["held"]),
            "available": _MONEY.to_representation(moved["available"]),
        }


class AdminMoneyMovedSerializer(MoneyMovedSerializer):
    """An admin's funding or debit: also the target account's wallet after it."""

    message = serializers.CharField()
    wallet = BalanceSerializer(help_text="The target account's wallet after the operation.")

    def to_representation(self, moved):
        return {
            **super().to_representation(moved),
            "message": moved["message"],
            "wallet": BalanceSerializer().to_representation(moved["wallet"]),
        }


class MarginSerializer(FieldsOnceModelSerializer):
    user = OwnerSerializer()
    set_by = serializers.CharField(source="set_by.username", allow_null=True, default=None)

    class Meta:
        model = UserMargin
        fields = ["id", "user", "margin_percentage", "set_by", "created_at", "updated_at"]


# --- requests -------------------------------------------------------------------------------


class AmountSerializer(FieldsOnceSerializer):
    """Self top-up and self debit: `{"amount": "150.50", "remarks": "Initial top-up"}`."""

    amount = MoneyField()
    remarks = serializers.CharField(**REMARKS)


def _one_of(attrs, names, field_for_error):
    given = [name for name in names if attrs.get(name) not in (None, "")]
    if len(given) != 1:
        raise serializers.ValidationError(
            {field_for_error: [f"Give exactly one of {', '.join(names)}."]}, code="recipient_required"
        )
    return given[0]


class TransferInputSerializer(FieldsOnceSerializer):
    """Exactly one of `to_phone_number`, `to_user_id`, `to_email`; the receiver is resolved here."""

    to_phone_number = PhoneNumberField(required=False, allow_null=True)
    to_user_id = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2**63 - 1)
    to_email = serializers.EmailField(required=False, allow_null=True, max_length=254)
    amount = MoneyField()
    remarks = serializers.CharField(**REMARKS)

    def validate(self, attrs):
        given = _one_of(attrs, ["to_phone_number", "to_user_id", "to_email"], "to_phone_number")
        attrs["receiver"] = find_user(
            user_id=attrs.get("to_user_id"),
            email=attrs.get("to_email"),
            phone_number=attrs.get("to_phone_number"),
            field=given,
        )
        return attrs


class TargetUserSerializer(FieldsOnceSerializer):
    """An account named by exactly one of `user_email`, `user_id` or `phone_number`."""

    user_email = serializers.EmailField(required=False, allow_null=True, max_length=254)
    user_id = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=2**63 - 1)
    phone_number = PhoneNumberField(required=False, allow_null=True)
    target_fields = ["user_email", "user_id", "phone_number"]

    def validate(self, attrs):
        given = _one_of(attrs, self.target_fields, self.target_fields[0])
        attrs["target"] = find_user(
            user_id=attrs.get("user_id"),
            email=attrs.get("user_email"),
            phone_number=attrs.get("phone_number"),
            field=given,
        )
        return attrs


class AdminFundingSerializer(TargetUserSerializer):
    """`{"user_email": "distributor@example.com", "amount": "1000.00", "description": "..."}`."""

    amount = MoneyField()
    description = serializers.CharField(**REMARKS)


class SetMarginSerializer(TargetUserSerializer):
    """`{"user_email": "retailer@example.com", "margin_percentage": "2.50"}`."""

    target_fields = ["user_email", "user_id"]
    phone_number = None
    margin_percentage = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=0, max_value=100, coerce_to_string=True
    )


# --- bulk payouts ---------------------------------------------------------------------------


class PayoutLineInputSerializer(FieldsOnceSerializer):
    """One recipient: exactly one of `to_user_id`, `to_phone_number` (verified), `to_email`."""

    to_user_id = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    to_phone_number = serializers.CharField(required=False, allow_null=True)
    to_email = serializers.EmailField(required=False, allow_null=True)
    amount = MoneyField()
    remarks = serializers.CharField(**REMARKS)


class PayoutInputSerializer(FieldsOnceSerializer):
    """Only the shape is checked here: an object whose `lines` is a list of objects. Each line is
    checked by wallet.services.pay_out, which reports every bad line with its own code (a serializer
    would stop at DRF's generic messages). Swagger shows PayoutRequestSerializer instead."""

    lines = serializers.ListField()
    remarks = serializers.CharField(**REMARKS)


class PayoutRequestSerializer(FieldsOnceSerializer):
    """`{"remarks": "March margins", "lines": [{"to_user_id": 12, "amount": "150.00"}, ...]}`:
    1 to WALLET_PAYOUT_MAX_LINES (1,000) lines, each recipient at most once. `remarks` of a line
    defaults to the payout's."""

    lines = PayoutLineInputSerializer(many=True)
    remarks = serializers.CharField(**REMARKS)


class PayoutLineSerializer(FieldsOnceSerializer):
    line = serializers.IntegerField(help_text="Position of the line in the request, from 0.")
    transfer_id = serializers.IntegerField()
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=2)
    balance_after = serializers.DecimalField(max_digits=14, decimal_places=2)


class PayoutSerializer(FieldsOnceSerializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=Transfer.Kind.choices, help_text="TRANSFER (distributor) or FUND (admin).")
    source = serializers.CharField(help_text="Who paid: the distributor's username, or TREASURY.")
    total = serializers.DecimalField(max_digits=14, decimal_places=2)
    line_count = serializers.IntegerField()
    remarks = serializers.CharField()
    created_at = serializers.DateTimeField()
    lines = PayoutLineSerializer(many=True)

    def to_representation(self, payout):
        source = payout.source_wallet
        return {
            "id": payout.pk,
            "kind": str(payout.kind),
            "source": source.user.username if source.user_id else source.system_code,
            "total": _MONEY.to_representation(payout.total),
            "line_count": payout.line_count,
            "remarks": payout.remarks,
            "created_at": _DATETIME.to_representation(payout.created_at),
            "lines": [
                {
                    "line": line,
                    "transfer_id": row.pk,
                    "user_id": row.to_wallet.user_id,
                    "username": row.to_wallet.user.username,
                    "amount": _MONEY.to_representation(row.amount),
                    "balance_after": _MONEY.to_representation(row.to_balance_after),
                }
                for line, row in payout.posted
            ],
        }


class PayoutMadeSerializer(FieldsOnceSerializer):
    """What a payout answers: the payout with its lines, and the caller's balance after it."""

    payout = PayoutSerializer()
    user = serializers.CharField()
    balance = serializers.DecimalField(max_digits=14, decimal_places=2)
    held = serializers.DecimalField(max_digits=14, decimal_places=2)
    available = serializers.DecimalField(max_digits=14, decimal_places=2)

    def to_representation(self, made):
        wallet = made["wallet"]
        return {
            "payout": PayoutSerializer().to_representation(made["payout"]),
            "user": wallet.user.username,
            "balance": _MONEY.to_representation(wallet.balance),
            "held": _MONEY.to_representation(wallet.held),
            "available": _MONEY.to_representation(wallet.available),
        }


class PayoutLineErrorSerializer(FieldsOnceSerializer):
    line = serializers.IntegerField()
    code = serializers.CharField(
        help_text="invalid, recipient_required, invalid_amount, invalid_phone_number, user_not_found, "
        "not_in_scope, wallet_inactive, duplicate_recipient"
    )
    field = serializers.CharField(allow_null=True)
    detail = serializers.CharField()


class PayoutRefusedSerializer(FieldsOnceSerializer):
    """400: nothing was paid. With `invalid_payout_lines`, `lines` lists every bad line; other codes
    (`invalid_payout_size`, `insufficient_funds`, `idempotency_key_required`, ...) have the usual body."""

    detail = serializers.CharField()
    code = serializers.CharField()
    lines = PayoutLineErrorSerializer(many=True, required=False)
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)
