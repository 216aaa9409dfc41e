from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from accounts.tests.factories import ClientFactory, DistributorFactory, RetailerFactory
from core.models import IdempotencyRecord
from plans.tests.factories import ProviderFactory, RechargePlanFactory
from purchases.gateways import SandboxGateway
from purchases.models import Purchase
from purchases.tests.gateways import recharges
from purchases.tests.helpers import balances, fund, give_margin
from wallet.models import Transfer

PURCHASE = "/api/purchases/purchase/"
HISTORY = "/api/purchases/history/"
pytestmark = pytest.mark.django_db


@pytest.fixture
def funded_retailer(retailer, distributor):
    fund(retailer, "1000.00")
    give_margin(distributor, "2.00")
    give_margin(retailer, "3.00")
    return retailer


def test_purchase_answers_202_with_the_purchase_its_location_and_the_new_balance(
    auth_client, funded_retailer, distributor, plan
):
    # No broker in the tests: the fulfilment ran before the answer, which carries the final status.
    response = auth_client(funded_retailer).post(PURCHASE, {"plan_id": plan.pk, "mobile_number": "98765 43210"})

    assert response.status_code == 202, response.data
    body = response.data
    assert response.headers["Location"] == f"/api/purchases/{body['purchase']['id']}/"
    assert body["purchase"]["status"] == "SUCCESS"
    assert body["purchase"]["mobile_number"] == "+919876543210"
    assert body["purchase"]["amount"] == "199.00"
    assert (body["purchase"]["buyer_commission"], body["purchase"]["distributor_commission"]) == ("5.97", "3.98")
    assert body["purchase"]["operator_reference"].startswith("SBX")
    assert body["balance"] == "806.97"  # 1000 - 199 + 5.97


def test_failed_recharge_answers_202_failed_with_the_balance_untouched(auth_client, funded_retailer, plan):
    response = auth_client(funded_retailer).post(PURCHASE, {"plan_id": plan.pk, "mobile_number": SandboxGateway.FAILS})

    assert response.status_code == 202
    assert response.data["purchase"]["status"] == "FAILED"
    assert response.data["balance"] == "1000.00"


def test_pending_recharge_answers_pending_with_the_price_held(auth_client, funded_retailer, plan):
    response = auth_client(funded_retailer).post(
        PURCHASE, {"plan_id": plan.pk, "mobile_number": SandboxGateway.PENDING_THEN_SUCCESS}
    )

    assert response.data["purchase"]["status"] == "PENDING"
    assert (response.data["balance"], response.data["available"]) == ("1000.00", "801.00")


# transaction=True: on a refusal core's exception handler rolls back the request's transaction,
# which in a plain django_db test would be the test's own; these tests read the database after.
@pytest.mark.django_db(transaction=True)
def test_insufficient_funds_is_400_and_writes_nothing(auth_client, retailer, plan):
    fund(retailer, "100.00")

    response = auth_client(retailer).post(PURCHASE, {"plan_id": plan.pk, "mobile_number": "9876543210"})

    assert (response.status_code, response.data["code"]) == (400, "insufficient_funds")
    assert not Purchase.objects.exists()
    assert not Transfer.objects.filter(kind=Transfer.Kind.PURCHASE).exists()
    assert balances(retailer) == [(Decimal("100.00"), Decimal("0.00"))]
    assert recharges() == []


@pytest.mark.django_db(transaction=True)
def test_inactive_plan_is_400_plan_inactive_and_writes_nothing(auth_client, funded_retailer):
    retired = RechargePlanFactory(is_active=False)

    response = auth_client(funded_retailer).post(PURCHASE, {"plan_id": retired.pk, "mobile_number": "9876543210"})

    assert (response.status_code, response.data["code"]) == (400, "plan_inactive")
    assert not Purchase.objects.exists()
    assert balances(funded_retailer) == [(Decimal("1000.00"), Decimal("0.00"))]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"plan_id": 999999, "mobile_number": "9876543210"}, "plan_id"),
        ({"plan_id": "abc", "mobile_number": "9876543210"}, "plan_id"),
        ({"plan_id": 10**30, "mobile_number": "9876543210"}, "plan_id"),
        ({"mobile_number": "9876543210"}, "plan_id"),
        ({"plan_id": 1, "mobile_number": "12"}, "mobile_number"),
        ({"plan_id": 1, "mobile_number": "98765\x0043210"}, "mobile_number"),
        ({"plan_id": 1, "mobile_number": "9" * 200}, "mobile_number"),
        ({"plan_id": 1, "mobile_number": ["9876543210"]}, "mobile_number"),
    ],
)
def test_bad_purchase_input_is_400_naming_the_field(auth_client, funded_retailer, body, field):
    response = auth_client(funded_retailer).post(PURCHASE, body)

    assert response.status_code == 400
    assert field in response.data["errors"]


def test_purchase_needs_a_signed_in_user(api_client, plan):
    assert api_client.post(PURCHASE, {"plan_id": plan.pk, "mobile_number": "9876543210"}).status_code == 401


def test_a_retried_request_with_its_key_recharges_once(auth_client, funded_retailer, plan):
    client = auth_client(funded_retailer)
    body = {"plan_id": plan.pk, "mobile_number": "9876543210"}

    first = client.post(PURCHASE, body, HTTP_IDEMPOTENCY_KEY="buy-1")
    second = client.post(PURCHASE, body, HTTP_IDEMPOTENCY_KEY="buy-1")

    assert (first.status_code, second.status_code) == (202, 202)
    assert second.headers.get("Idempotent-Replayed") == "true"
    assert second.headers["Location"] == first.headers["Location"]
    assert second.json() == first.json()
    assert len(recharges()) == 1 and Purchase.objects.count() == 1
    assert balances(funded_retailer) == [(Decimal("806.97"), Decimal("0.00"))]


def test_a_retry_whose_stored_answer_was_lost_still_recharges_once(auth_client, funded_retailer, plan):
    # A crash after the purchase but before the answer was stored loses the key's record; the
    # purchase's own unique (buyer, key) still finds the first purchase.
    client = auth_client(funded_retailer)
    body = {"plan_id": plan.pk, "mobile_number": "9876543210"}
    first = client.post(PURCHASE, body, HTTP_IDEMPOTENCY_KEY="buy-2")
    IdempotencyRecord.objects.all().delete()

    second = client.post(PURCHASE, body, HTTP_IDEMPOTENCY_KEY="buy-2")

    assert second.data["purchase"]["id"] == first.data["purchase"]["id"]
    assert len(recharges()) == 1
    assert balances(funded_retailer) == [(Decimal("806.97"), Decimal("0.00"))]


def test_a_key_reused_with_another_body_is_422(auth_client, funded_retailer, plan):
    client = auth_client(funded_retailer)
    client.post(PURCHASE, {"plan_id": plan.pk, "mobile_number": "9876543210"}, HTTP_IDEMPOTENCY_KEY="buy-3")

    response = client.post(PURCHASE, {"plan_id": plan.pk, "mobile_number": "9876500000"}, HTTP_IDEMPOTENCY_KEY="buy-3")

    assert (response.status_code, response.data["code"]) == (422, "idempotency_key_reused")
    assert len(recharges()) == 1


# --- history and detail ---------------------------------------------------------------


@pytest.fixture
def sales(plan):
    """Purchases by: a retailer of distributor A, distributor A itself, a retailer of B, a client."""
    dist_a, dist_b = DistributorFactory(), DistributorFactory()
    people = {
        "dist_a": dist_a,
        "retailer_a": RetailerFactory(parent=dist_a),
        "retailer_b": RetailerFactory(parent=dist_b),
        "client": ClientFactory(),
    }
    jio_plan = RechargePlanFactory(provider=ProviderFactory(code="jio", name="Jio"), amount=Decimal("299.00"))
    made = {}
    for name, user in people.items():
        made[name] = Purchase.objects.create(
            buyer=user, plan=plan, mobile_number=f"+91987650000{len(made)}", amount=plan.amount
        )
    made["retailer_a_jio"] = Purchase.objects.create(
        buyer=people["retailer_a"],
        plan=jio_plan,
        mobile_number="+919000000009",
        amount=jio_plan.amount,
        status=Purchase.Status.SUCCESS,
    )
    return people, made


def history_ids(client, **params):
    response = client.get(HISTORY, params)
    assert response.status_code == 200, response.data
    return {row["id"] for row in response.data["results"]}


def test_admin_history_shows_every_purchase(auth_client, admin_user, sales):
    _, made = sales
    assert history_ids(auth_client(admin_user)) == {p.pk for p in made.values()}


def test_distributor_history_shows_its_own_and_its_retailers_purchases(auth_client, sales):
    people, made = sales
    expected = {made["dist_a"].pk, made["retailer_a"].pk, made["retailer_a_jio"].pk}
    assert history_ids(auth_client(people["dist_a"])) == expected


def test_retailer_history_shows_only_its_own(auth_client, sales):
    people, made = sales
    assert history_ids(auth_client(people["retailer_b"])) == {made["retailer_b"].pk}


def test_client_history_shows_only_its_own(auth_client, sales):
    people, made = sales
    assert history_ids(auth_client(people["client"])) == {made["client"].pk}


def test_history_filters_by_status_provider_and_number(auth_client, admin_user, sales):
    _, made = sales
    client = auth_client(admin_user)
    assert history_ids(client, status="SUCCESS") == {made["retailer_a_jio"].pk}
    assert history_ids(client, provider="jio") == {made["retailer_a_jio"].pk}
    assert history_ids(client, mobile_number="9000000009") == {made["retailer_a_jio"].pk}


def test_history_filters_by_date_range(auth_client, admin_user, sales):
    _, made = sales
    old = made["client"]
    Purchase.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    client = auth_client(admin_user)
    week_ago = (timezone.now() - timedelta(days=7)).date().isoformat()

    assert old.pk not in history_ids(client, date_from=week_ago)
    assert history_ids(client, date_to=week_ago) == {old.pk}


def test_history_refuses_a_bad_filter(auth_client, admin_user, sales):
    assert auth_client(admin_user).get(HISTORY, {"status": "LOST", "date_from": "yesterday"}).status_code == 400


def test_purchase_detail_inside_the_scope(auth_client, sales):
    people, made = sales
    response = auth_client(people["dist_a"]).get(f"/api/purchases/{made['retailer_a'].pk}/")
    assert response.status_code == 200 and response.data["buyer"] == people["retailer_a"].username


@pytest.mark.parametrize(
    "viewer, purchase", [("dist_a", "retailer_b"), ("retailer_a", "dist_a"), ("retailer_b", "retailer_a")]
)
def test_purchase_detail_outside_the_scope_is_404(auth_client, sales, viewer, purchase):
    people, made = sales
    response = auth_client(people[viewer]).get(f"/api/purchases/{made[purchase].pk}/")
    assert (response.status_code, response.data["code"]) == (404, "not_found")


def test_history_costs_a_fixed_number_of_queries(auth_client, admin_user, sales, django_assert_max_num_queries):
    client = auth_client(admin_user)
    with django_assert_max_num_queries(4):  # the user, the count, one page with its plans and buyers
        response = client.get(HISTORY)
    assert response.data["count"] == 5
