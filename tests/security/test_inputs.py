"""Hostile input: strings no field stores or chokes on, and (security issue 12.6) a recharge sold only
to a valid mobile number of the operator's country, written with digits, spaces, + and - only.

The attack run bought a recharge for each of these on an Indian operator's plan: letters that
libphonenumber turns into keypad digits, an extension it drops, all zeros, a fixed-line-shaped
number, and a US number. Each test of item 6 below failed on that code (the purchase was 201 and
charged)."""

import json
import re
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


# --- hostile strings in every text field ----------------------------------------------------------


def _writable_string_fields():
    """(method, path, field) for every string property of every request body in our schema."""
    from drf_yasg import openapi
    from drf_yasg.generators import OpenAPISchemaGenerator

    schema = OpenAPISchemaGenerator(openapi.Info(title="t", default_version="v1")).get_schema(public=True)
    schema = json.loads(json.dumps(schema, default=dict))
    definitions = schema.get("definitions", {})
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method not in ("post", "put", "patch"):
                continue
            for parameter in operation.get("parameters", []):
                if parameter.get("in") != "body":
                    continue
                body = parameter["schema"]
                if "$ref" in body:
                    body = definitions[body["$ref"].rsplit("/", 1)[-1]]
                for name, prop in body.get("properties", {}).items():
                    if prop.get("type") == "string" and not prop.get("readOnly"):
                        yield method.upper(), path, name


@pytest.fixture
def hostile_world(admin_user, distributor):
    from plans.models import Provider, RechargePlan

    retailer = RetailerFactory(parent=distributor)
    provider = Provider.objects.create(code="hostile", name="Hostile")
    plan = RechargePlan.objects.create(provider=provider, code="hostile-1", amount="10.00")
    return {"admin": admin_user, "retailer": retailer, "ids": {"plans": plan.pk, "default": retailer.pk}}


@pytest.mark.parametrize("value", ["bad\x00value", "x" * 5000], ids=["nul-byte", "over-long"])
def test_hostile_strings_in_every_text_field_are_refused_not_500(value, hostile_world, auth_client):
    fields = list(_writable_string_fields())
    assert len(fields) > 20, "the schema should describe the request bodies"
    client = auth_client(hostile_world["admin"])
    failures = []
    for method, path, field in fields:
        object_id = hostile_world["ids"]["plans" if "/plans/" in path else "default"]
        url = re.sub(r"\{[^}]+\}", str(object_id), path)
        response = getattr(client, method.lower())(url, {field: value}, format="json")
        # Refused, never stored and never a crash.
        if not 400 <= response.status_code < 500:
            failures.append((method, url, field, response.status_code))
    assert not failures, failures


# --- 6. a recharge is sold only to a mobile number of the operator's country ----------------------

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
