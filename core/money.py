"""Money: Decimal with two places, travelling as strings. Never a float."""

from decimal import ROUND_DOWN, Decimal, InvalidOperation

from django.conf import settings
from rest_framework import serializers

PAISA = Decimal("0.01")
ZERO = Decimal("0.00")


def to_money(value) -> Decimal:
    """Quantise an already-valid Decimal to two places (no rounding of real input happens here)."""
    return Decimal(value).quantize(PAISA)


def percentage_of(amount: Decimal, percentage: Decimal) -> Decimal:
    """`percentage`% of `amount`, rounded down to the paisa so the platform never pays more."""
    return (amount * percentage / Decimal(100)).quantize(PAISA, rounding=ROUND_DOWN)


class MoneyField(serializers.Field):
    """A positive amount with at most two decimal places, within the per-transfer maximum.

    Only strings ("150.50") are accepted, as the schema documents: a JSON float has already lost the
    exact value the client meant, and accepting bare numbers would make the schema a lie.
    """

    default_error_messages = {
        "invalid": 'Enter the amount as a decimal string, e.g. "150.50".',
        "not_a_string": 'Send the amount as a string ("150.50"), not a JSON number.',
        "positive": "The amount must be greater than 0.",
        "places": "The amount can have at most two decimal places.",
        "max": "The amount can be at most {maximum}.",
    }

    class Meta:
        swagger_schema_fields = {"type": "string", "format": "decimal", "example": "150.50"}

    def __init__(self, *, max_amount=None, **kwargs):
        self.max_amount = max_amount
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            self.fail("not_a_string")
        if not isinstance(data, str):
            self.fail("invalid")
        text = data.strip()
        if not text or len(text) > 32:
            self.fail("invalid")
        try:
            value = Decimal(text)
        except InvalidOperation:
            self.fail("invalid")
        if not value.is_finite():
            self.fail("invalid")
        if value <= 0:
            self.fail("positive")
        if value.as_tuple().exponent < -2:
            self.fail("places")
        maximum = self.max_amount if self.max_amount is not None else settings.WALLET_MAX_TRANSFER_AMOUNT
        if value > maximum:
            self.fail("max", maximum=f"{maximum:.2f}")
        return value.quantize(PAISA)

    def to_representation(self, value):
        return f"{Decimal(value).quantize(PAISA):.2f}"


def money_str(value) -> str:
    return f"{Decimal(value).quantize(PAISA):.2f}"
