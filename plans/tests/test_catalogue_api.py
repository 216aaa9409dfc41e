from decimal import Decimal

import pytest

from plans.models import RechargePlan
from plans.tests.factories import ProviderFactory, RechargePlanFactory

PLANS = "/api/plans/plans/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue():
    airtel = ProviderFactory(code="airtel", name="Airtel")
    jio = ProviderFactory(code="jio", name="Jio")
    return {
        "airtel_299": RechargePlanFactory(provider=airtel, amount=Decimal("299.00"), validity_days=28),
        "airtel_data": RechargePlanFactory(
            provider=airtel, amount=Decimal("49.00"), validity_days=1, plan_type="DATA", description="20 GB 1 day pack"
        ),
        "jio_ka": RechargePlanFactory(provider=jio, amount=Decimal("279.00"), validity_days=28, circle="KA"),
        "jio_dl": RechargePlanFactory(provider=jio, amount=Decimal("289.00"), validity_days=30, circle="DL"),
        "jio_annual": RechargePlanFactory(provider=jio, amount=Decimal("3599.00"), validity_days=365),
        "retired": RechargePlanFactory(provider=jio, amount=Decimal("149.00"), is_active=False),
    }


def ids(response):
    assert response.status_code == 200, response.data
    return {row["id"] for row in response.data["results"]}


def test_plan_list_shows_only_active_plans(auth_client, client_user, catalogue):
    listed = ids(auth_client(client_user).get(PLANS))
    assert catalogue["retired"].pk not in listed
    assert len(listed) == 5


def test_plan_list_needs_a_signed_in_user(api_client, catalogue):
    assert api_client.get(PLANS).status_code == 401


def test_plan_list_filters_by_provider_code_or_id(auth_client, client_user, catalogue):
    client = auth_client(client_user)
    jio = catalogue["jio_ka"].provider
    expected = {catalogue[name].pk for name in ("jio_ka", "jio_dl", "jio_annual")}
    assert ids(client.get(PLANS, {"provider": "jio"})) == expected
    assert ids(client.get(PLANS, {"provider": str(jio.pk)})) == expected


def test_plan_list_filters_by_plan_type(auth_client, client_user, catalogue):
    assert ids(auth_client(client_user).get(PLANS, {"plan_type": "DATA"})) == {catalogue["airtel_data"].pk}


def test_circle_filter_lists_the_circles_plans_and_the_all_circle_ones(auth_client, client_user, catalogue):
    listed = ids(auth_client(client_user).get(PLANS, {"circle": "KA"}))
    assert catalogue["jio_ka"].pk in listed and catalogue["airtel_299"].pk in listed
    assert catalogue["jio_dl"].pk not in listed


def test_plan_list_filters_by_amount_range(auth_client, client_user, catalogue):
    listed = ids(auth_client(client_user).get(PLANS, {"min_amount": "250", "max_amount": "290"}))
    assert listed == {catalogue["jio_ka"].pk, catalogue["jio_dl"].pk}


def test_plan_list_filters_by_validity_range(auth_client, client_user, catalogue):
    listed = ids(auth_client(client_user).get(PLANS, {"min_validity": "29", "max_validity": "400"}))
    assert listed == {catalogue["jio_dl"].pk, catalogue["jio_annual"].pk}


def test_plan_list_searches_the_description(auth_client, client_user, catalogue):
    assert ids(auth_client(client_user).get(PLANS, {"search": "1 day pack"})) == {catalogue["airtel_data"].pk}


def test_plan_list_orders_by_amount_both_ways(auth_client, client_user, catalogue):
    client = auth_client(client_user)
    ascending = [Decimal(row["amount"]) for row in client.get(PLANS, {"ordering": "amount"}).data["results"]]
    descending = [Decimal(row["amount"]) for row in client.get(PLANS, {"ordering": "-amount"}).data["results"]]
    assert ascending == sorted(ascending) and ascending[0] == Decimal("49.00")
    assert descending == sorted(descending, reverse=True)


def test_plan_list_orders_by_validity(auth_client, client_user, catalogue):
    rows = auth_client(client_user).get(PLANS, {"ordering": "-validity_days"}).data["results"]
    assert rows[0]["id"] == catalogue["jio_annual"].pk


def test_plan_list_refuses_a_bad_filter_value(auth_client, client_user, catalogue):
    response = auth_client(client_user).get(PLANS, {"plan_type": "NOPE", "min_amount": "abc"})
    assert response.status_code == 400


def test_admin_may_list_retired_plans_on_request(auth_client, admin_user, catalogue):
    assert catalogue["retired"].pk in ids(auth_client(admin_user).get(PLANS, {"include_retired": "true"}))


def test_retired_plans_stay_hidden_from_non_admins_even_on_request(auth_client, retailer, catalogue):
    assert catalogue["retired"].pk not in ids(auth_client(retailer).get(PLANS, {"include_retired": "true"}))


def test_plan_detail_shows_one_plan(auth_client, retailer, catalogue):
    plan = catalogue["airtel_299"]
    response = auth_client(retailer).get(f"{PLANS}{plan.pk}/")
    assert response.status_code == 200
    assert response.data["amount"] == "299.00" and response.data["provider_code"] == "airtel"


def test_providers_lists_active_operators(auth_client, retailer, catalogue):
    ProviderFactory(code="defunct", is_active=False)
    response = auth_client(retailer).get("/api/plans/providers/")
    assert {row["code"] for row in response.data["results"]} == {"airtel", "jio"}


def plan_body(provider, **overrides):
    body = {
        "code": "airtel-pre-999",
        "provider": provider.pk,
        "circle": "ALL",
        "plan_type": "PREPAID",
        "amount": "999.00",
        "validity_days": 84,
        "data": "2 GB/day",
        "talktime": "Unlimited",
        "sms": "100/day",
        "description": "Airtel 999",
    }
    return body | overrides


def test_admin_creates_a_plan(auth_client, admin_user, catalogue):
    provider = catalogue["airtel_299"].provider
    response = auth_client(admin_user).post(PLANS, plan_body(provider))
    assert response.status_code == 201, response.data
    assert RechargePlan.objects.get(code="airtel-pre-999").amount == Decimal("999.00")


# transaction=True: core's exception handler rolls back the caller's transaction on a refusal,
# which in a plain django_db test is the test's own; these tests read the database afterwards.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ["distributor", "retailer", "client_user"])
def test_only_admins_may_create_plans(request, auth_client, role, catalogue):
    user = request.getfixturevalue(role)
    response = auth_client(user).post(PLANS, plan_body(catalogue["airtel_299"].provider))
    assert response.status_code == 403
    assert not RechargePlan.objects.filter(code="airtel-pre-999").exists()


@pytest.mark.parametrize(
    "overrides",
    [
        {"amount": "0"},
        {"amount": 99.5},
        {"amount": "1.234"},
        {"plan_type": "X"},
        {"description": "a\x00b"},
        {"code": ""},
        {"validity_days": 10**12},
    ],
)
def test_plan_create_refuses_bad_input_with_400(auth_client, admin_user, catalogue, overrides):
    response = auth_client(admin_user).post(PLANS, plan_body(catalogue["airtel_299"].provider, **overrides))
    assert response.status_code == 400
    assert response.data["code"]


def test_admin_changes_a_plans_price(auth_client, admin_user, catalogue):
    plan = catalogue["airtel_299"]
    response = auth_client(admin_user).patch(f"{PLANS}{plan.pk}/", {"amount": "319.00"})
    assert response.status_code == 200, response.data
    plan.refresh_from_db()
    assert plan.amount == Decimal("319.00")


@pytest.mark.django_db(transaction=True)
def test_retailer_cannot_change_a_plan(auth_client, retailer, catalogue):
    plan = catalogue["airtel_299"]
    assert auth_client(retailer).patch(f"{PLANS}{plan.pk}/", {"amount": "1.00"}).status_code == 403
    plan.refresh_from_db()
    assert plan.amount == Decimal("299.00")


def test_deleting_a_never_sold_plan_removes_it(auth_client, admin_user, catalogue):
    plan = catalogue["airtel_299"]
    assert auth_client(admin_user).delete(f"{PLANS}{plan.pk}/").status_code == 204
    assert not RechargePlan.objects.filter(pk=plan.pk).exists()


def test_deleting_a_sold_plan_retires_it(auth_client, admin_user, retailer, catalogue):
    from purchases.models import Purchase

    plan = catalogue["airtel_299"]
    Purchase.objects.create(buyer=retailer, plan=plan, mobile_number="+919876543210", amount=plan.amount)
    assert auth_client(admin_user).delete(f"{PLANS}{plan.pk}/").status_code == 204
    plan.refresh_from_db()
    assert plan.is_active is False


def test_unknown_plan_is_404(auth_client, retailer, catalogue):
    assert auth_client(retailer).get(f"{PLANS}999999/").status_code == 404


def test_plan_list_costs_a_fixed_number_of_queries(auth_client, client_user, catalogue, django_assert_max_num_queries):
    client = auth_client(client_user)
    with django_assert_max_num_queries(3):  # the user, the count, one page with its operators
        response = client.get(PLANS)
    assert response.data["count"] == 5
