"""Amounts are written one way only (security issue 12, item 9).

Python's Decimal() reads the digits of every script, exponents and digit separators, so "١٢" (Arabic-
Indic), "४५" (Devanagari), "１０" (fullwidth), "1e2", "1E+1" and "1_0" all used to pass as amounts:
the same sum in many spellings slips past anything that matches amounts as text (filters, alerts,
logs, reconciliations with a bank) and a reviewer reading "1e2" does not see 100. Each test names the
attack; each failed on the code before the fix."""

from decimal import Decimal

import pytest

from accounts.tests.factories import AdminFactory, ClientFactory
from core.money import AmountNotPlainDecimal, parse_amount
from tests.helpers import client_for
from wallet import services
from wallet.models import Transfer

pytestmark = pytest.mark.django_db

SPELLINGS = {
    "arabic_indic_digits": "١٢",
    "devanagari_digits": "४५",
    "fullwidth_digits": "１０",
    "exponent": "1e2",
    "signed_exponent": "1E+1",
    "digit_separator": "1_0",
    "leading_plus": "+10",
    "unicode_space_padding": "\u200310.00",
}


@pytest.mark.parametrize("spelling", list(SPELLINGS.values()), ids=list(SPELLINGS))
def test_an_amount_spelled_another_way_is_refused_by_the_api_with_its_own_code(spelling):
    payer, payee = ClientFactory(), ClientFactory()
    services.fund_wallet(user=payer, amount="500.00", initiated_by=AdminFactory())
    before = Transfer.objects.count()

    response = client_for(payer).post(
        "/api/wallet/transfer/", {"to_user_id": payee.pk, "amount": spelling}, format="json"
    )

    assert response.status_code == 400, response.content
    assert response.json()["code"] == "amount_not_plain_decimal"
    assert list(response.json()["errors"]) == ["amount"]
    assert Transfer.objects.count() == before


@pytest.mark.parametrize("spelling", list(SPELLINGS.values()), ids=list(SPELLINGS))
def test_an_amount_spelled_another_way_is_refused_by_the_ledger_service_too(spelling):
    # Admin actions, commands and bulk payouts reach the ledger without the API's serializer.
    with pytest.raises(AmountNotPlainDecimal):
        services.credit_wallet(user=ClientFactory(), amount=spelling)


@pytest.mark.parametrize("plain", ["10", "10.5", "10.50", " 10.50 ", "0.01"])
def test_plain_amounts_still_read_as_before(plain):
    assert parse_amount(plain) == Decimal(plain.strip())
