"""Hostile input (security issue 12.6): a recharge is sold only to a valid mobile number of the
operator's country, written with digits, spaces, + and - only.

The attack run bought a recharge for each of these on an Indian operator's plan: letters that
libphonenumber turns into keypad digits, an extension it drops, all zeros, a fixed-line-shaped
number, and a US number. Each test below failed on that code (the purchase was 201 and charged)."""

from decimal import Decimal

import pytest

from accounts.tests.factories import RetailerFactory
from core.phone import InvalidMobileNumber
from plans.tests.factories import ProviderFactory, RechargePlanFactory
from purchases import services
from purchases.models import Purchase
from purchases.tests.helpers import balances, fund

pytestmark = pytest.mark.django_db
PURCHASE = "/api/purchases/purchase/"

ATTACKS = {
    "letters read as keypad digits": "98765ABCDE",
    "an extension libphonenumber drops": "9876500002 ext. 55",
    "all zeros": "0000000000",
    "a number no operator gave out (fixed-line range)": "1234567890",
    "another country's number (US)": "+1 415 555 2671",
    "another country's mobile (UK)": "+44 7400 123456",
    "full-width digits": "９８７６５４３２１０",
    "Arabic-Indic digits": "٩٨٧٦٥٤٣٢١٠",
    "Devanagari digits": "९८७६५४३२१०",
    "brackets and dots": "(98765) 432.10",
    "a plus sign in the middle": "98765+43210",
    "a line break inside": "98765\n43210",
    "a landline with its area code (Delhi)": "011 2345 6789",
    "too short to be anyone's": "98765",
}


@pytest.fixture
def indian_plan():
    provider = ProviderFactory(code="airtel", name="Airtel")  # country defaults to IN
    return RechargePlanFactory(provider=provider, amount=Decimal("199.00"))


@pytest.fixture
def buyer(settings):
    settings.RECHARGE_GATEWAY_LATENCY_MS = 0
    retailer = RetailerFactory()
    fund(retailer, "1000.00")
    return retailer


@pytest.mark.parametrize("number", ATTACKS.values(), ids=ATTACKS.keys())
def test_a_recharge_for_a_number_that_is_not_a_mobile_of_the_operators_country_is_refused(
    auth_client, buyer, indian_plan, number
):
    response = auth_client(buyer).post(PURCHASE, {"plan_id": indian_plan.pk, "mobile_number": number}, format="json")

    assert (response.status_code, response.data["code"]) == (400, "invalid_mobile_number"), response.data
    assert "mobile_number" in response.data["errors"]
    assert not Purchase.objects.exists()
    assert balances(buyer) == [(Decimal("1000.00"), Decimal("0.00"))]


@pytest.mark.parametrize("number", ATTACKS.values(), ids=ATTACKS.keys())
def test_the_service_refuses_them_too_for_callers_that_skip_the_api(buyer, indian_plan, number):
    with pytest.raises(InvalidMobileNumber):
        services.purchase_recharge(buyer=buyer, plan_id=indian_plan.pk, mobile_number=number)

    assert not Purchase.objects.exists()


@pytest.mark.parametrize(
    "number", ["9876543210", "98765 43210", "98765-43210", "+91 98765 43210", "+91-98765-43210", "09876543210"]
)
def test_an_indian_mobile_number_written_the_usual_ways_is_sold(auth_client, buyer, indian_plan, number):
    response = auth_client(buyer).post(PURCHASE, {"plan_id": indian_plan.pk, "mobile_number": number}, format="json")

    assert response.status_code == 202, response.data
    assert response.data["purchase"]["mobile_number"] == "+919876543210"


def test_the_number_must_belong_to_the_operators_own_country(auth_client, buyer):
    """An operator of another country (its `country` field) sells to its own mobiles only: a national
    number is read in its country, and an Indian number is refused on its plan."""
    nepal = RechargePlanFactory(provider=ProviderFactory(code="ntc", name="Nepal Telecom", country="NP"))
    client = auth_client(buyer)

    indian = client.post(PURCHASE, {"plan_id": nepal.pk, "mobile_number": "+91 98765 43210"}, format="json")
    nepali = client.post(PURCHASE, {"plan_id": nepal.pk, "mobile_number": "984-1234567"}, format="json")

    assert (indian.status_code, indian.data["code"]) == (400, "invalid_mobile_number")
    assert "(NP)" in indian.data["detail"]
    assert nepali.status_code == 202, nepali.data
    assert nepali.data["purchase"]["mobile_number"] == "+9779841234567"
