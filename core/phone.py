"""Phone numbers, stored in E.164, parsed with libphonenumber."""

import re

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from rest_framework import serializers

from core.errors import DomainError


class InvalidPhoneNumber(DomainError):
    code = "invalid_phone_number"
    message = "Enter a valid phone number."


def normalize_phone(raw) -> str:
    """Return the E.164 form of `raw`, or raise InvalidPhoneNumber.

    National numbers use PHONE_DEFAULT_REGION and must have a possible length for it. A number
    written in international form is also accepted when it has 10 to 15 digits (E.164's range)
    even if libphonenumber's table for that country disagrees: the recharge business's
    own examples register `+1234567890`, and operators add ranges faster than libphonenumber releases.
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

    copied_shallow = True  # it only holds settings (core/serializers.py)

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 32)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        text = super().to_internal_value(data)
        try:
            return normalize_phone(text)
        except InvalidPhoneNumber as exc:
            raise serializers.ValidationError(exc.message, code=exc.code) from None


# --- recharge numbers -----------------------------------------------------------------------
#
# A recharge is sold to a mobile number of the operator's country. The loose rules above (which
# let the recharge business's own example register `+1234567890`) are not enough there: libphonenumber reads letters as
# keypad digits (`98765ABCDE`), drops an extension (`9876500002 ext. 55`) and accepts numbers of
# any country or of a fixed line. A recharge number is written with ASCII digits, spaces, `-` and
# one leading `+` only, and must be a valid MOBILE (or FIXED_LINE_OR_MOBILE, where the country's
# plan cannot tell them apart) number of the operator's country.

MOBILE_TYPES = frozenset({phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE})
_MOBILE_TEXT = re.compile(r"\+?[0-9][0-9 -]*", re.ASCII)
MIN_MOBILE_DIGITS = 7  # shorter is no country's mobile number, with or without its country code
MAX_MOBILE_DIGITS = 17  # E.164's 15 digits, after an international prefix such as 00


class InvalidMobileNumber(DomainError):
    code = "invalid_mobile_number"
    message = "Enter a mobile number written with digits, spaces, + and - only."


class NotAMobileOfCountry(InvalidMobileNumber):
    message = "Enter a valid mobile number of this operator's country ({country})."


def validate_region(value):
    """A model validator: `value` is a region libphonenumber knows (ISO 3166-1 alpha-2, e.g. IN)."""
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValidationError(f"{value!r} is not a country code libphonenumber knows (e.g. IN, NP, AE).")


def mobile_number_text(raw) -> str:
    """`raw` stripped, if it is written like a phone number at all; else InvalidMobileNumber."""
    if not isinstance(raw, str):
        raise InvalidMobileNumber(field="mobile_number")
    text = raw.strip()
    digits = sum(char.isdigit() for char in text)
    if not _MOBILE_TEXT.fullmatch(text) or not MIN_MOBILE_DIGITS <= digits <= MAX_MOBILE_DIGITS:
        raise InvalidMobileNumber(field="mobile_number")
    return text


def normalize_mobile_number(raw, *, region) -> str:
    """The E.164 form of `raw` if it is a valid mobile number of `region`, else InvalidMobileNumber.

    A national number is read in `region`; one written in international form must belong to it."""
    text = mobile_number_text(raw)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise NotAMobileOfCountry(field="mobile_number", country=region) from None
    if not phonenumbers.is_valid_number_for_region(number, region) or (
        phonenumbers.number_type(number) not in MOBILE_TYPES
    ):
        raise NotAMobileOfCountry(field="mobile_number", country=region)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def same_number(raw, stored, *, region) -> bool:
    """Whether `raw` reads as the E.164 number `stored` (in `region`), however loosely written: how
    a retry is matched to a purchase made before the strict rules, or with another spelling."""
    try:
        number = phonenumbers.parse(str(raw), region)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == stored


class MobileNumberField(serializers.CharField):
    """A recharge number's shape (digits, spaces, + and -); the operator's country is checked by
    the service, which knows the plan. Refused with the code `invalid_mobile_number`."""

    copied_shallow = True  # it only holds settings (core/serializers.py)

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 32)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        try:
            if isinstance(data, bool) or not isinstance(data, (str, int)):
                raise InvalidMobileNumber()
            return mobile_number_text(super().to_internal_value(data))
        except InvalidMobileNumber as exc:
            raise serializers.ValidationError(exc.message, code=exc.code) from None
