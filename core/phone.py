"""Phone numbers, stored in E.164, parsed with libphonenumber."""

import phonenumbers
from django.conf import settings
from rest_framework import serializers

from core.errors import DomainError


class InvalidPhoneNumber(DomainError):
    code = "invalid_phone_number"
    message = "Enter a valid phone number."


def normalize_phone(raw) -> str:
    """Return the E.164 form of `raw`, or raise InvalidPhoneNumber.

    National numbers use PHONE_DEFAULT_REGION and must have a possible length for it. A number
    written in international form is also accepted when it has 10 to 15 digits (E.164's range)
    even if libphonenumber's table for that country disagrees: the first seed registers
    `+1234567890`, and operators add ranges faster than libphonenumber releases.
    """
    if not isinstance(raw, str):
        raise InvalidPhoneNumber()
    text = raw.strip()
    if not text or len(text) > 32 or "\x00" in text:
        raise InvalidPhoneNumber()
    try:
        number = phonenumbers.parse(text, settings.PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise InvalidPhoneNumber() from None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    international = text.startswith("+") or text.startswith("00")
    if not phonenumbers.is_possible_number(number) and not (international and 10 <= len(e164) - 1 <= 15):
        raise InvalidPhoneNumber()
    return e164


class PhoneNumberField(serializers.CharField):
    """A CharField that answers with the E.164 form, or a field error."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 32)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        try:
            return normalize_phone(text)
        except InvalidPhoneNumber as exc:
            raise serializers.ValidationError(exc.message, code=exc.code) from None
