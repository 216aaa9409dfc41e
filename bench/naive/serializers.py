from decimal import Decimal

from rest_framework import serializers

from bench.naive.models import Transaction, User, Wallet


class BalanceSerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username")

    class Meta:
        model = Wallet
        fields = ["user", "balance"]


class WalletSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")
    email = serializers.EmailField(source="user.email")
    user_type = serializers.IntegerField(source="user.user_type")

    class Meta:
        model = Wallet
        fields = ["id", "username", "email", "user_type", "balance", "created_at", "updated_at"]


class TransactionSerializer(serializers.ModelSerializer):
    sender = serializers.CharField(source="sender.username", default=None)
    receiver = serializers.CharField(source="receiver.username", default=None)

    class Meta:
        model = Transaction
        fields = ["id", "transaction_type", "amount", "sender", "receiver", "remarks", "timestamp"]


class TransferSerializer(serializers.Serializer):
    to_phone_number = serializers.CharField(max_length=16)
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))
    remarks = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")

    def validate_to_phone_number(self, value):
        try:
            return User.objects.get(phone_number=value)
        except User.DoesNotExist:
            raise serializers.ValidationError("No user with this phone number.") from None


class AddToWalletSerializer(serializers.Serializer):
    user_email = serializers.EmailField()
    amount = serializers.DecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"))
    description = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
