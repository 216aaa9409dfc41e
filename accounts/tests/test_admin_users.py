import pytest
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from accounts.tests.factories import (
    DEFAULT_PASSWORD,
    AdminFactory,
    ClientFactory,
    DistributorFactory,
    RetailerFactory,
)
from core.roles import UserType

pytestmark = pytest.mark.django_db

USERS = "/api/auth/admin/users/"
CREATE = "/api/auth/admin/users/create/"
NON_ADMINS = ["distributor", "retailer", "client_user"]


def detail(pk, action=""):
    return f"{USERS}{pk}/{action + '/' if action else ''}"


def create_body(**overrides):
    body = {
        "email": "distributor@example.com",
        "username": "distributor",
        "first_name": "John",
        "last_name": "Distributor",
        "phone": "+1234567890",
        "user_type": 2,
        "password": "SecurePass123!",
        "password_confirm": "SecurePass123!",
    }
    body.update(overrides)
    return body


# --- list ---


def test_admin_lists_distributors_and_retailers_with_wallets_by_default(auth_client, admin_user, retailer):
    ClientFactory()
    response = auth_client(admin_user).get(USERS)
    assert response.status_code == 200
    rows = response.data["results"]
    assert {row["user_type"] for row in rows} == {UserType.DISTRIBUTOR, UserType.RETAILER}
    assert all(row["wallet_balance"] == "0.00" and row["wallet_id"] for row in rows)


def test_admin_lists_any_role_with_user_type(auth_client, admin_user):
    client = ClientFactory()
    response = auth_client(admin_user).get(USERS, {"user_type": UserType.CLIENT})
    assert [row["id"] for row in response.data["results"]] == [client.pk]


def test_admin_list_filters_by_parent_and_activity_and_searches(auth_client, admin_user, distributor):
    mine = RetailerFactory(parent=distributor, email="shop@example.com")
    RetailerFactory(is_active=False)
    api = auth_client(admin_user)
    by_parent = api.get(USERS, {"parent": distributor.pk}).data["results"]
    assert [row["id"] for row in by_parent] == [mine.pk]
    inactive = api.get(USERS, {"is_active": "false"}).data["results"]
    assert all(row["is_active"] is False for row in inactive) and len(inactive) == 1
    assert [row["id"] for row in api.get(USERS, {"search": "shop@"}).data["results"]] == [mine.pk]


def test_admin_list_orders_by_username_descending(auth_client, admin_user):
    DistributorFactory(username="a-dist")
    DistributorFactory(username="z-dist")
    names = [row["username"] for row in auth_client(admin_user).get(USERS, {"ordering": "-username"}).data["results"]]
    assert names == sorted(names, reverse=True)


def test_admin_list_refuses_an_invalid_filter(auth_client, admin_user):
    assert auth_client(admin_user).get(USERS, {"user_type": "9"}).status_code == 400


def test_admin_list_costs_the_same_queries_for_many_users(auth_client, admin_user, django_assert_max_num_queries):
    for _ in range(15):
        RetailerFactory()
    api = auth_client(admin_user)
    with django_assert_max_num_queries(4):
        response = api.get(USERS)
    assert response.data["count"] == 30


@pytest.mark.parametrize("role", NON_ADMINS)
def test_non_admins_cannot_list_users(request, auth_client, role):
    assert auth_client(request.getfixturevalue(role)).get(USERS).status_code == 403


def test_anonymous_cannot_list_users(api_client):
    assert api_client.get(USERS).status_code == 401


# --- create ---


def test_admin_creates_a_distributor_like_the_seed_sample(auth_client, admin_user):
    response = auth_client(admin_user).post(CREATE, create_body())
    assert response.status_code == 201, response.data
    assert response.data["message"] == "User created successfully"
    user = User.objects.get(username="distributor")
    body = response.data["user"]
    assert body["id"] == user.pk and body["email"] == "distributor@example.com"
    assert (body["wallet_balance"], body["wallet_id"]) == ("0.00", user.wallet.pk)
    assert (body["user_type"], body["user_type_display"]) == (2, "Distributor")
    assert user.phone_number == "+1234567890"
    assert user.check_password("SecurePass123!")


def test_admin_created_admins_may_use_the_django_admin(auth_client, admin_user):
    auth_client(admin_user).post(CREATE, create_body(user_type=UserType.ADMIN))
    user = User.objects.get(username="distributor")
    assert user.is_staff and user.is_superuser


def test_admin_creates_a_retailer_under_a_distributor(auth_client, admin_user, distributor):
    response = auth_client(admin_user).post(
        CREATE, create_body(user_type=UserType.RETAILER, parent=distributor.pk, phone_number="8888888888", phone=None)
    )
    assert response.status_code == 201, response.data
    assert User.objects.get(username="distributor").parent == distributor


def test_a_retailers_parent_must_be_a_distributor(auth_client, admin_user):
    client = ClientFactory()
    response = auth_client(admin_user).post(CREATE, create_body(user_type=UserType.RETAILER, parent=client.pk))
    assert response.status_code == 400
    assert "parent" in response.data["errors"]


def test_admin_create_refuses_a_weak_password(auth_client, admin_user):
    response = auth_client(admin_user).post(CREATE, create_body(password="12345678", password_confirm="12345678"))
    assert response.status_code == 400
    assert "password" in response.data["errors"]


def test_admin_create_refuses_a_duplicate_phone(auth_client, admin_user):
    ClientFactory(phone_number="+1234567890")
    response = auth_client(admin_user).post(CREATE, create_body())
    assert response.status_code == 400
    assert "phone_number" in response.data["errors"]


@pytest.mark.parametrize("role", NON_ADMINS)
def test_non_admins_cannot_create_users(request, auth_client, role):
    response = auth_client(request.getfixturevalue(role)).post(CREATE, create_body())
    assert response.status_code == 403
    assert not User.objects.filter(username="distributor").exists()


# --- detail, update, delete, reset password ---


def test_admin_reads_one_user_with_wallet(auth_client, admin_user, retailer):
    response = auth_client(admin_user).get(detail(retailer.pk))
    assert response.status_code == 200
    assert (response.data["wallet_id"], response.data["parent"]) == (retailer.wallet.pk, retailer.parent_id)


def test_admin_reading_an_unknown_user_is_404(auth_client, admin_user):
    assert auth_client(admin_user).get(detail(999999)).status_code == 404


@pytest.mark.parametrize("role", NON_ADMINS)
def test_non_admins_cannot_read_users(request, auth_client, role, retailer):
    assert auth_client(request.getfixturevalue(role)).get(detail(retailer.pk)).status_code == 403


def test_admin_patches_role_parent_and_profile(auth_client, admin_user, distributor):
    client = ClientFactory()
    response = auth_client(admin_user).patch(
        detail(client.pk, "update"), {"user_type": UserType.RETAILER, "parent": distributor.pk, "first_name": "Ria"}
    )
    assert response.status_code == 200, response.data
    client.refresh_from_db()
    assert (client.user_type, client.parent, client.first_name) == (UserType.RETAILER, distributor, "Ria")


def test_admin_put_needs_the_full_profile(auth_client, admin_user, distributor):
    api = auth_client(admin_user)
    assert api.put(detail(distributor.pk, "update"), {"first_name": "X"}).status_code == 400
    full = {"username": "dist-renamed", "email": "d@example.com", "user_type": UserType.DISTRIBUTOR, "is_active": True}
    assert api.put(detail(distributor.pk, "update"), full).status_code == 200
    distributor.refresh_from_db()
    assert distributor.username == "dist-renamed"


def test_leaving_the_retailer_role_drops_the_parent(auth_client, admin_user, retailer):
    response = auth_client(admin_user).patch(detail(retailer.pk, "update"), {"user_type": UserType.CLIENT})
    assert response.status_code == 200
    retailer.refresh_from_db()
    assert retailer.parent is None


def test_a_distributor_with_retailers_cannot_change_role(auth_client, admin_user, retailer):
    response = auth_client(admin_user).patch(detail(retailer.parent_id, "update"), {"user_type": UserType.CLIENT})
    assert response.status_code == 400
    assert response.data["code"] == "invalid_parent"


def test_admin_update_refuses_a_client_as_parent(auth_client, admin_user, retailer):
    response = auth_client(admin_user).patch(detail(retailer.pk, "update"), {"parent": ClientFactory().pk})
    assert response.status_code == 400
    assert "parent" in response.data["errors"]


def test_promoting_to_admin_grants_the_django_admin_and_demoting_removes_it(auth_client, admin_user, distributor):
    api = auth_client(admin_user)
    api.patch(detail(distributor.pk, "update"), {"user_type": UserType.ADMIN})
    distributor.refresh_from_db()
    assert distributor.is_staff and distributor.is_superuser
    api.patch(detail(distributor.pk, "update"), {"user_type": UserType.DISTRIBUTOR})
    distributor.refresh_from_db()
    assert not distributor.is_staff and not distributor.is_superuser


def test_an_admin_cannot_demote_or_deactivate_itself(auth_client, admin_user):
    api = auth_client(admin_user)
    assert api.patch(detail(admin_user.pk, "update"), {"user_type": UserType.CLIENT}).status_code == 403
    assert api.patch(detail(admin_user.pk, "update"), {"is_active": False}).status_code == 403
    assert api.delete(detail(admin_user.pk, "delete")).status_code == 403


@pytest.mark.parametrize("role", NON_ADMINS)
def test_non_admins_cannot_update_users(request, auth_client, role, client_user):
    caller = request.getfixturevalue(role)
    response = auth_client(caller).patch(detail(client_user.pk, "update"), {"user_type": UserType.ADMIN})
    assert response.status_code == 403
    client_user.refresh_from_db()
    assert client_user.user_type == UserType.CLIENT


def test_delete_deactivates_keeps_the_wallet_and_revokes_tokens(api_client, auth_client, admin_user, retailer):
    refresh = str(RefreshToken.for_user(retailer))
    access_client = auth_client(retailer)
    response = auth_client(admin_user).delete(detail(retailer.pk, "delete"))
    assert response.status_code == 204
    retailer.refresh_from_db()
    assert retailer.is_active is False
    assert User.objects.filter(pk=retailer.pk).exists() and retailer.wallet.pk
    assert api_client.post("/api/auth/token/refresh/", {"refresh": refresh}).status_code == 401
    assert access_client.get("/api/auth/me/").status_code == 401


@pytest.mark.parametrize("role", NON_ADMINS)
def test_non_admins_cannot_delete_users(request, auth_client, role, client_user):
    assert auth_client(request.getfixturevalue(role)).delete(detail(client_user.pk, "delete")).status_code == 403
    client_user.refresh_from_db()
    assert client_user.is_active


def test_admin_resets_a_password(api_client, auth_client, admin_user, client_user):
    response = auth_client(admin_user).post(
        detail(client_user.pk, "reset-password"),
        {"new_password": "N3w-Sturdy-Pass", "new_password_confirm": "N3w-Sturdy-Pass"},
    )
    assert response.status_code == 200
    client_user.refresh_from_db()
    assert client_user.check_password("N3w-Sturdy-Pass")
    assert not client_user.check_password(DEFAULT_PASSWORD)


def test_reset_password_refuses_weak_or_mismatched_passwords(auth_client, admin_user, client_user):
    api = auth_client(admin_user)
    url = detail(client_user.pk, "reset-password")
    weak = api.post(url, {"new_password": "password", "new_password_confirm": "password"})
    assert weak.status_code == 400 and "new_password" in weak.data["errors"]
    mismatch = api.post(url, {"new_password": "N3w-Sturdy-Pass", "new_password_confirm": "other-Pass-1"})
    assert mismatch.status_code == 400 and "new_password_confirm" in mismatch.data["errors"]


@pytest.mark.parametrize("role", NON_ADMINS)
def test_non_admins_cannot_reset_passwords(request, auth_client, role):
    target = AdminFactory()
    body = {"new_password": "N3w-Sturdy-Pass", "new_password_confirm": "N3w-Sturdy-Pass"}
    response = auth_client(request.getfixturevalue(role)).post(detail(target.pk, "reset-password"), body)
    assert response.status_code == 403
    target.refresh_from_db()
    assert target.check_password(DEFAULT_PASSWORD)


DEACTIVATIONS = {
    "admin delete": lambda auth_client, admin, user: auth_client(admin).delete(detail(user.pk, "delete")),
    "admin update": lambda auth_client, admin, user: auth_client(admin).patch(
        detail(user.pk, "update"), {"is_active": False}, format="json"
    ),
    "distributor update": lambda auth_client, admin, user: auth_client(user.parent).patch(
        f"/api/auth/retailers/{user.pk}/", {"is_active": False}, format="json"
    ),
}


@pytest.mark.parametrize("deactivate", DEACTIVATIONS.values(), ids=DEACTIVATIONS.keys())
def test_a_refresh_token_from_before_a_deactivation_stays_refused_after_reactivation(
    api_client, auth_client, admin_user, retailer, deactivate
):
    login = api_client.post("/api/auth/login/email/", {"email": retailer.email, "password": DEFAULT_PASSWORD})
    assert login.status_code == 200, login.data
    refresh = login.data["refresh"]
    assert deactivate(auth_client, admin_user, retailer).status_code in {200, 204}
    reactivated = auth_client(admin_user).patch(detail(retailer.pk, "update"), {"is_active": True}, format="json")
    assert reactivated.status_code == 200
    retailer.refresh_from_db()
    assert retailer.is_active
    response = api_client.post("/api/auth/token/refresh/", {"refresh": refresh})
    assert response.status_code == 401 and response.json()["code"] == "token_not_valid"
    # A new login after the reactivation works: only the old token is dead.
    again = api_client.post("/api/auth/login/email/", {"email": retailer.email, "password": DEFAULT_PASSWORD})
    assert api_client.post("/api/auth/token/refresh/", {"refresh": again.data["refresh"]}).status_code == 200
