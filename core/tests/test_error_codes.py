"""One registry of error codes (core.errors.ERROR_CODES): a code names one refusal."""

import pytest

from core.errors import ERROR_CODES, DomainError, NotFound
from core.idempotency import IdempotencyKeyReused
from purchases.services import PurchaseKeyReused


def test_a_second_class_claiming_an_existing_code_fails_at_import():
    with pytest.raises(TypeError, match="'not_found'"):

        class WidgetMissing(DomainError):
            code = "not_found"


def test_a_variant_of_a_refusal_subclasses_it_and_keeps_its_code_and_status():
    class WidgetMissing(NotFound):
        message = "Widget not found."

    assert (WidgetMissing.code, WidgetMissing.status_code) == ("not_found", 404)
    assert ERROR_CODES["not_found"] is NotFound


def test_a_purchase_key_reused_is_the_idempotency_refusal_with_its_own_words():
    assert issubclass(PurchaseKeyReused, IdempotencyKeyReused)
    assert ERROR_CODES["idempotency_key_reused"] is IdempotencyKeyReused
    assert PurchaseKeyReused.status_code == 422
