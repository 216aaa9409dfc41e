import pytest

from accounts.models import User
from accounts.tests.factories import RetailerFactory
from core.roles import UserType

pytestmark = pytest.mark.django_db

RETAILERS = "/api/auth/retailers/"


def retailer_body(**overrides):
    body = {
        "username": "corner-shop",
        "email": "shop@example.com",
        "phone_number": "8888888888",
        "password": "Sh0p-Keeper-77",
        "password_confirm": "Sh0p-Keeper-77",
    }
    body.update(overrides)
    return body


def test_a_distributor_lists_only_its_own_retailers_with_balances(auth_client, distributor, retailer):
    RetailerFactory()
    response = auth_client(distributor).get(RETAILERS)
    assert response.status_code == 200
    assert [row["id"] for row in response.data["results"]] == [retailer.pk]
    assert response.data["results"][0]["wallet_balance"] == "0.00"


def test_a_distributor_creates_a_retailer_under_itself(auth_client, distributor):
    response = auth_client(distributor).post(RETAILERS, retailer_body(user_type=UserType.ADMIN, parent=None))
    assert response.status_code == 201, response.data
    created = User.objects.get(username="corner-shop")
    assert (created.user_type, created.parent) == (UserType.RETAILER, distributor)
    assert created.phone_number == "+918888888888"
    assert response.data["wallet_id"] == created.wallet.pk


def test_creating_a_retailer_refuses_a_weak_password(auth_client, distributor):
    response = auth_client(distributor).post(RETAILERS, retailer_body(password="abc", password_confirm="abc"))
    assert response.status_code == 400
    assert not User.objects.filter(username="corner-shop").exists()


def test_a_distributor_reads_and_patches_its_own_retailer(auth_client, distributor, retailer):
    api = auth_client(distributor)
    assert api.get(f"{RETAILERS}{retailer.pk}/").data["id"] == retailer.pk
    response = api.patch(f"{RETAILERS}{retailer.pk}/", {"first_name": "Kiran", "user_type": UserType.ADMIN})
    assert response.status_code == 200
    retailer.refresh_from_db()
    assert (retailer.first_name, retailer.user_type) == ("Kiran", UserType.RETAILER)


def test_a_distributor_may_deactivate_its_retailer(auth_client, distributor, retailer):
    response = auth_client(distributor).patch(f"{RETAILERS}{retailer.pk}/", {"is_active": False})
    assert response.status_code == 200
    retailer.refresh_from_db()
    assert retailer.is_active is False


def test_another_distributors_retailer_is_404(auth_client, distributor):
    foreign = RetailerFactory()
    api = auth_client(distributor)
    assert api.get(f"{RETAILERS}{foreign.pk}/").status_code == 404
    assert api.patch(f"{RETAILERS}{foreign.pk}/", {"first_name": "Hacked"}).status_code == 404
    foreign.refresh_from_db()
    assert foreign.first_name != "Hacked"


@pytest.mark.parametrize("role", ["admin_user", "retailer", "client_user"])
def test_other_roles_cannot_use_the_retailer_endpoints(request, auth_client, role, retailer):
    api = auth_client(request.getfixturevalue(role))
    assert api.get(RETAILERS).status_code == 403
    assert api.post(RETAILERS, retailer_body()).status_code == 403
    assert api.get(f"{RETAILERS}{retailer.pk}/").status_code == 403
    assert api.patch(f"{RETAILERS}{retailer.pk}/", {"first_name": "X"}).status_code == 403
