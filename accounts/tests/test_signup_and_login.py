import pytest

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, ClientFactory, UserFactory
from core.roles import UserType

pytestmark = pytest.mark.django_db

SIGNUP = "/api/auth/signup/"
LOGIN = "/api/auth/login/email/"


def signup_body(**overrides):
    body = {
        "email": "Asha@Example.com",
        "username": "asha",
        "password": "Tr1cky-Horse-42",
        "password_confirm": "Tr1cky-Horse-42",
        "first_name": "Asha",
        "phone": "9999999999",
    }
    body.update(overrides)
    return body


def test_signup_creates_a_client_with_wallet_and_returns_tokens(api_client):
    response = api_client.post(SIGNUP, signup_body())
    assert response.status_code == 201, response.data
    user = User.objects.get(username="asha")
    assert user.user_type == UserType.CLIENT
    assert user.email == "asha@example.com"
    assert user.phone_number == "+919999999999"
    assert user.wallet.balance == 0
    assert response.data["user"]["wallet_id"] == user.wallet.pk
    assert response.data["user"]["wallet_balance"] == "0.00"
    assert response.data["access"] and response.data["refresh"]


def test_signup_cannot_choose_a_role(api_client):
    response = api_client.post(SIGNUP, signup_body(user_type=UserType.ADMIN, is_staff=True, is_superuser=True))
    assert response.status_code == 201
    user = User.objects.get(username="asha")
    assert (user.user_type, user.is_staff, user.is_superuser) == (UserType.CLIENT, False, False)


@pytest.mark.parametrize("password", ["short1!", "password123", "12345678901", "asha@example.com"])
def test_signup_refuses_weak_passwords(api_client, password):
    response = api_client.post(SIGNUP, signup_body(password=password, password_confirm=password))
    assert response.status_code == 400
    assert "password" in response.data["errors"]
    assert not User.objects.filter(username="asha").exists()


def test_signup_refuses_mismatched_password_confirmation(api_client):
    response = api_client.post(SIGNUP, signup_body(password_confirm="Other-Pass-99"))
    assert response.status_code == 400
    assert "password_confirm" in response.data["errors"]


def test_signup_refuses_an_email_taken_in_another_case(api_client):
    UserFactory(email="asha@example.com")
    response = api_client.post(SIGNUP, signup_body(email="ASHA@example.COM"))
    assert response.status_code == 400
    assert response.data["code"] == "already_taken"
    assert "email" in response.data["errors"]


def test_signup_stores_the_phone_normalised_and_unverified(api_client):
    response = api_client.post(SIGNUP, signup_body(phone="+91 99999 99999"))
    assert response.status_code == 201
    assert (response.data["user"]["phone_number"], response.data["user"]["phone_verified"]) == ("+919999999999", False)


def test_signup_refuses_an_invalid_phone(api_client):
    response = api_client.post(SIGNUP, signup_body(phone="12"))
    assert response.status_code == 400
    assert "phone" in response.data["errors"]


def test_signup_with_an_invalid_token_is_not_a_401(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert api_client.post(SIGNUP, signup_body()).status_code == 201


def test_email_login_is_case_insensitive_and_returns_tokens_and_user(api_client):
    user = ClientFactory(email="ravi@example.com")
    response = api_client.post(LOGIN, {"email": "RAVI@Example.com", "password": DEFAULT_PASSWORD})
    assert response.status_code == 200
    assert response.data["user"]["id"] == user.pk
    assert response.data["user"]["user_type_display"] == "Client"
    assert {"access", "refresh"} <= set(response.data)


def test_email_login_refuses_a_wrong_password(api_client):
    ClientFactory(email="ravi@example.com")
    response = api_client.post(LOGIN, {"email": "ravi@example.com", "password": "wrong-password"})
    assert response.status_code == 401
    assert response.data["code"] == "invalid_credentials"


def test_email_login_refuses_an_unknown_email_the_same_way(api_client):
    response = api_client.post(LOGIN, {"email": "nobody@example.com", "password": DEFAULT_PASSWORD})
    assert response.status_code == 401
    assert response.data["code"] == "invalid_credentials"


def test_email_login_refuses_a_deactivated_account(api_client):
    ClientFactory(email="ravi@example.com", is_active=False)
    response = api_client.post(LOGIN, {"email": "ravi@example.com", "password": DEFAULT_PASSWORD})
    assert response.status_code == 401


def test_email_login_is_throttled_per_client_address(api_client, monkeypatch):
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {**ScopedRateThrottle.THROTTLE_RATES, "login": "2/min"})
    body = {"email": "nobody@example.com", "password": "x"}
    assert api_client.post(LOGIN, body).status_code == 401
    assert api_client.post(LOGIN, body).status_code == 401
    response = api_client.post(LOGIN, body)
    assert response.status_code == 429
    assert response.data["code"] == "throttled"
    assert int(response["Retry-After"]) >= 1
