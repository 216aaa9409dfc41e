from decimal import Decimal

import pytest

from accounts.models import UserMargin
from accounts.tests.factories import ClientFactory, DistributorFactory
from core.roles import UserType

pytestmark = pytest.mark.django_db

ME = "/api/auth/me/"


@pytest.mark.parametrize("role", ["admin_user", "distributor", "retailer", "client_user"])
def test_every_role_reads_its_own_profile_with_wallet_and_margin(request, auth_client, role):
    user = request.getfixturevalue(role)
    response = auth_client(user).get(ME)
    assert response.status_code == 200
    assert response.data["id"] == user.pk
    assert response.data["wallet_id"] == user.wallet.pk
    assert response.data["wallet_balance"] == "0.00"
    assert response.data["margin_percentage"] == "0.00"
    assert response.data["user_type"] == user.user_type


def test_me_shows_the_margin_set_for_the_user(auth_client, retailer):
    UserMargin.objects.create(user=retailer, margin_percentage=Decimal("2.50"))
    assert auth_client(retailer).get(ME).data["margin_percentage"] == "2.50"


def test_me_needs_a_signed_in_caller(api_client):
    assert api_client.get(ME).status_code == 401


def test_me_patch_changes_harmless_profile_fields(auth_client, client_user):
    response = auth_client(client_user).patch(ME, {"first_name": "Meera", "email": "Meera@Example.com"})
    assert response.status_code == 200
    client_user.refresh_from_db()
    assert (client_user.first_name, client_user.email) == ("Meera", "meera@example.com")


def test_me_patch_cannot_change_role_parent_activity_phone_or_balance(auth_client, retailer):
    other_distributor = DistributorFactory()
    phone = retailer.phone_number
    response = auth_client(retailer).patch(
        ME,
        {
            "user_type": UserType.ADMIN,
            "parent": other_distributor.pk,
            "is_active": False,
            "is_staff": True,
            "phone_number": "+917777777777",
            "wallet_balance": "1000000.00",
        },
    )
    assert response.status_code == 200
    retailer.refresh_from_db()
    assert retailer.user_type == UserType.RETAILER
    assert retailer.parent_id != other_distributor.pk
    assert retailer.is_active and not retailer.is_staff
    assert retailer.phone_number == phone
    assert retailer.wallet.balance == 0


def test_me_patch_refuses_an_email_taken_by_someone_else(auth_client, client_user):
    ClientFactory(email="taken@example.com")
    response = auth_client(client_user).patch(ME, {"email": "TAKEN@example.com"})
    assert response.status_code == 400
    assert "email" in response.data["errors"]
