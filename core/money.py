"""Money: Decimal with two places, travelling as strings. Never a float."""

import re
from decimal import ROUND_DOWN, Decimal

from django.conf import settings
from rest_framework import serializers

from core.errors import DomainError

PAISA = Decimal("0.01")
ZERO = Decimal("0.00")

# What an amount looks like on the wire: ASCII digits, optionally a point and more ASCII digits.
# Python's Decimal() also reads exponents ("1e2"), digit separators ("1_0"), signs, and the digits
# of every script ("١٢", "४५", fullwidth "１０"); none of them is a price anyone typed on purpose,
# and each lets one amount be written many ways past filters, logs and reconciliations.
_PLAIN_AMOUNT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_ASCII_SPACE = " \t\r\n"


class InvalidAmount(DomainError):
    code = "invalid_amount"
    message = 'Enter the amount as a decimal string, e.g. "150.50".'


class AmountNotAString(InvalidAmount):
    code = "amount_not_a_string"
    message = 'Send the amount as a string ("150.50"), not a JSON number.'


class AmountNotPlainDecimal(InvalidAmount):
    code = "amount_not_plain_decimal"
    message = (
        'Write the amount with the digits 0-9 and at most one decimal point, e.g. "150.50": no exponent, '
        "digit separator or other script's digits."
    )


class AmountNotPositive(InvalidAmount):
    code = "amount_not_positive"
    message = "The amount must be greater than 0."


class AmountTooPrecise(InvalidAmount):
    code = "amount_too_precise"
    message = "The amount can have at most two decimal places."


class AmountAboveMaximum(InvalidAmount):
    code = "amount_above_maximum"
    message = "The amount can be at most {maximum}."


def parse_amount(value, *, maximum=None, field="amount") -> Decimal:
    """The one reading of an amount, for the API and the services alike: a two-place Decimal, or an
    InvalidAmount saying why not.

    Text must be plain ASCII digits with an optional point (surrounding ASCII blanks are ignored);
    a Decimal or an int (what code passes) is checked the same way from its value. Floats and
    booleans are refused: a float has already lost the exact amount. Positive, at most two
    places, at most `maximum` (WALLET_MAX_TRANSFER_AMOUNT by default)."""
    if isinstance(value, str):
        text = value.strip(_ASCII_SPACE)
        if len(text) > 32:
            raise InvalidAmount(field=field)
        if not text:
            raise InvalidAmount(field=field)
        if not _PLAIN_AMOUNT.fullmatch(text):
            raise AmountNotPlainDecimal(field=field)
        amount = Decimal(text)
    elif isinstance(value, (Decimal, int)) and not isinstance(value, bool):
        amount = Decimal(value)
        if not amount.is_finite():
            raise InvalidAmount(field=field)
    elif isinstance(value, float):
        raise AmountNotAString(field=field)
    else:
        raise InvalidAmount(field=field)
    if amount <= 0:
        raise AmountNotPositive(field=field)
    if amount.as_tuple().exponent < -2:
        raise AmountTooPrecise(field=field)
    maximum = settings.WALLET_MAX_TRANSFER_AMOUNT if maximum is None else maximum
    if amount > maximum:
        raise AmountAboveMaximum(field=field, maximum=f"{maximum:.2f}")
    return amount.quantize(PAISA)


def percentage_of(amount: Decimal, percentage: Decimal) -> Decimal:
    """`percentage`% of `amount`, rounded down to the paisa so the platform never pays more."""
    return (amount * percentage / Decimal(100)).quantize(PAISA, rounding=ROUND_DOWN)


class MoneyField(serializers.Field):
    """An amount read by `parse_amount`, from a JSON string only.

    Only strings ("150.50") are accepted, as the schema documents: a JSON float has already lost the
    exact value the client meant, and accepting bare numbers would make the schema a lie. A refusal
    is a field error whose code is the parser's (`amount_not_plain_decimal`, ...).
    """

    class Meta:
        swagger_schema_fields = {
            "type": "string",
            "format": "decimal",
            "pattern": r"^[0-9]+(\.[0-9]{1,2})?$",
            "example": "150.50",
        }

    copied_shallow = True  # it only holds settings (core/serializers.py)

    def __init__(self, *, max_amount=None, **kwargs):
        self.max_amount = max_amount
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        try:
            if isinstance(data, (int, float)) and not isinstance(data, bool):
                raise AmountNotAString()
            if not isinstance(data, str):
                raise InvalidAmount()
            return parse_amount(data, maximum=self.max_amount)
        except InvalidAmount as refusal:
            raise serializers.ValidationError(refusal.message, code=refusal.code) from None

    def to_representation(self, value):
        return f"{Decimal(value).quantize(PAISA):.2f}"


def money_str(value) -> str:
    return f"{Decimal(value).quantize(PAISA):.2f}"
