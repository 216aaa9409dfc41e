import pytest
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.factories import DEFAULT_PASSWORD, ClientFactory

pytestmark = pytest.mark.django_db

REFRESH = "/api/auth/token/refresh/"
LOGOUT = "/api/auth/logout/"


def test_refresh_returns_a_new_access_and_a_rotated_refresh(api_client, client_user):
    refresh = str(RefreshToken.for_user(client_user))
    response = api_client.post(REFRESH, {"refresh": refresh})
    assert response.status_code == 200
    assert response.data["access"]
    assert response.data["refresh"] != refresh


def test_a_rotated_refresh_token_cannot_be_used_again(api_client, client_user):
    refresh = str(RefreshToken.for_user(client_user))
    assert api_client.post(REFRESH, {"refresh": refresh}).status_code == 200
    response = api_client.post(REFRESH, {"refresh": refresh})
    assert response.status_code == 401
    assert response.data["code"] == "token_not_valid"


def test_logout_blacklists_the_refresh_token(api_client, auth_client, client_user):
    refresh = str(RefreshToken.for_user(client_user))
    response = auth_client(client_user).post(LOGOUT, {"refresh": refresh})
    assert response.status_code == 200
    assert response.data == {"detail": "Logged out."}
    blacklisted = api_client.post(REFRESH, {"refresh": refresh})
    assert blacklisted.status_code == 401
    assert blacklisted.data["code"] == "token_not_valid"


def test_logout_needs_a_signed_in_caller(api_client, client_user):
    response = api_client.post(LOGOUT, {"refresh": str(RefreshToken.for_user(client_user))})
    assert response.status_code == 401


def test_logout_refuses_another_users_refresh_token(api_client, auth_client, client_user):
    other = ClientFactory()
    refresh = str(RefreshToken.for_user(other))
    response = auth_client(client_user).post(LOGOUT, {"refresh": refresh})
    assert response.status_code == 401
    assert api_client.post(REFRESH, {"refresh": refresh}).status_code == 200


def test_logout_refuses_a_malformed_token(auth_client, client_user):
    response = auth_client(client_user).post(LOGOUT, {"refresh": "garbage"})
    assert response.status_code == 401
    assert response.data["code"] == "token_not_valid"


def test_refresh_ignores_a_bad_authorization_header(api_client, client_user):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer garbage")
    response = api_client.post(REFRESH, {"refresh": str(RefreshToken.for_user(client_user))})
    assert response.status_code == 200


def test_a_login_refresh_token_works_with_the_refresh_endpoint(api_client):
    ClientFactory(email="mira@example.com")
    login = api_client.post("/api/auth/login/email/", {"email": "mira@example.com", "password": DEFAULT_PASSWORD})
    assert api_client.post(REFRESH, {"refresh": login.data["refresh"]}).status_code == 200
