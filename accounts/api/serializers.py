"""Input and output shapes of the accounts API. Inputs validate form only; rules live in services."""

from django.contrib.auth.validators import UnicodeUsernameValidator
from rest_framework import serializers

from accounts.models import User
from core.fields import ChoiceDisplayField
from core.phone import PhoneNumberField
from core.roles import KycLevel, UserType
from core.serializers import FieldsOnceModelSerializer, FieldsOnceSerializer

# --- outputs --------------------------------------------------------------------------------------


class UserSerializer(FieldsOnceModelSerializer):
    """A user as every endpoint shows it, with its wallet (select_related("wallet") upstream)."""

    user_type_display = ChoiceDisplayField("user_type")
    wallet_id = serializers.IntegerField(source="wallet.id", read_only=True)
    wallet_balance = serializers.DecimalField(source="wallet.balance", max_digits=14, decimal_places=2, read_only=True)

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "phone_number",
            "phone_verified",
            "user_type",
            "user_type_display",
            "kyc_level",
            "parent",
            "is_active",
            "date_joined",
            "wallet_id",
            "wallet_balance",
        ]
        read_only_fields = fields


class ProfileSerializer(UserSerializer):
    margin_percentage = serializers.SerializerMethodField()

    class Meta(UserSerializer.Meta):
        fields = [*UserSerializer.Meta.fields, "margin_percentage", "last_login"]
        read_only_fields = fields

    def get_margin_percentage(self, user) -> str:
        return f"{self.context['margin_percentage']:.2f}"


class TokenPairSerializer(FieldsOnceSerializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class LoginResponseSerializer(TokenPairSerializer):
    user = UserSerializer()


class OtpLoginResponseSerializer(LoginResponseSerializer):
    created = serializers.BooleanField(help_text="True when this verification created the account.")


class SignupResponseSerializer(LoginResponseSerializer):
    message = serializers.CharField()


class UserCreatedSerializer(FieldsOnceSerializer):
    message = serializers.CharField()
    user = UserSerializer()


class OtpSentSerializer(FieldsOnceSerializer):
    phone_number = serializers.CharField(help_text="E.164")
    expires_in = serializers.IntegerField(help_text="Seconds the code stays valid.")
    otp = serializers.CharField(required=False, help_text="Only when OTP_EXPOSE_IN_RESPONSE is on.")


class MessageSerializer(FieldsOnceSerializer):
    detail = serializers.CharField()


class PasswordChangedSerializer(TokenPairSerializer):
    detail = serializers.CharField()


# --- inputs ---------------------------------------------------------------------------------------

NAME = {"max_length": 150, "required": False, "allow_blank": True}


class PhoneInputMixin(FieldsOnceSerializer):
    """`phone_number`, with `phone` (the recharge business's older field name) accepted as an alias."""

    phone_number = PhoneNumberField(required=False, allow_null=True, allow_blank=True)
    phone = PhoneNumberField(required=False, allow_null=True, allow_blank=True, write_only=True)

    phone_required = False

    def validate(self, attrs):
        attrs = super().validate(attrs)
        alias = attrs.pop("phone", None)
        if alias and not attrs.get("phone_number"):
            attrs["phone_number"] = alias
        if "phone_number" in attrs and not attrs["phone_number"]:
            attrs["phone_number"] = None
        if self.phone_required and not attrs.get("phone_number"):
            raise serializers.ValidationError({"phone_number": ["This field is required."]}, code="required")
        return attrs


class PasswordPairMixin(FieldsOnceSerializer):
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)
    password_confirm = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if attrs["password"] != attrs.pop("password_confirm"):
            raise serializers.ValidationError({"password_confirm": ["The passwords do not match."]}, code="mismatch")
        return attrs


class ProfileFieldsMixin(FieldsOnceSerializer):
    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()])
    email = serializers.EmailField(max_length=254)
    first_name = serializers.CharField(**NAME)
    last_name = serializers.CharField(**NAME)


class SignupSerializer(PasswordPairMixin, PhoneInputMixin, ProfileFieldsMixin):
    """Registration. There is no role field: a signup is always a CLIENT."""


class AdminUserCreateSerializer(PasswordPairMixin, PhoneInputMixin, ProfileFieldsMixin):
    user_type = serializers.ChoiceField(choices=UserType.choices)
    parent = serializers.PrimaryKeyRelatedField(queryset=User.objects.all(), required=False, allow_null=True)
    is_active = serializers.BooleanField(required=False, default=True)


class AdminUserUpdateSerializer(PhoneInputMixin, ProfileFieldsMixin):
    """PUT needs username, email and user_type; PATCH any subset."""

    user_type = serializers.ChoiceField(choices=UserType.choices)
    parent = serializers.PrimaryKeyRelatedField(queryset=User.objects.all(), required=False, allow_null=True)
    is_active = serializers.BooleanField(required=False)
    kyc_level = serializers.ChoiceField(
        choices=KycLevel.choices, required=False, help_text="1 minimum KYC, 2 full KYC: a client wallet's limits."
    )


class RetailerCreateSerializer(PasswordPairMixin, PhoneInputMixin, ProfileFieldsMixin):
    pass


class RetailerUpdateSerializer(PhoneInputMixin):
    email = serializers.EmailField(max_length=254, required=False)
    first_name = serializers.CharField(**NAME)
    last_name = serializers.CharField(**NAME)
    is_active = serializers.BooleanField(required=False)


class ProfileUpdateSerializer(FieldsOnceSerializer):
    """What a user may change about itself. Anything else sent (user_type, parent, is_active,
    balance, phone_number...) is ignored."""

    username = serializers.CharField(max_length=150, validators=[UnicodeUsernameValidator()], required=False)
    email = serializers.EmailField(max_length=254, required=False)
    first_name = serializers.CharField(**NAME)
    last_name = serializers.CharField(**NAME)


class EmailLoginSerializer(FieldsOnceSerializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)


class OtpRequestSerializer(PhoneInputMixin):
    phone_required = True


class OtpVerifySerializer(PhoneInputMixin):
    phone_required = True
    otp = serializers.CharField(max_length=12)


class PhoneVerifySerializer(PhoneInputMixin):
    """`otp`, and the number it was sent to (the account's own number when left out)."""

    otp = serializers.CharField(max_length=12)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        if not attrs.get("phone_number"):
            attrs["phone_number"] = self.context["user"].phone_number
        if not attrs["phone_number"]:
            raise serializers.ValidationError({"phone_number": ["This field is required."]}, code="required")
        return attrs


class RefreshTokenSerializer(FieldsOnceSerializer):
    refresh = serializers.CharField(max_length=4096)


class PasswordResetSerializer(FieldsOnceSerializer):
    new_password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)
    new_password_confirm = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)

    def validate(self, attrs):
        if attrs["new_password"] != attrs["new_password_confirm"]:
            raise serializers.ValidationError(
                {"new_password_confirm": ["The passwords do not match."]}, code="mismatch"
            )
        return attrs


class PasswordChangeSerializer(PasswordResetSerializer):
    old_password = serializers.CharField(max_length=128, write_only=True, trim_whitespace=False)
