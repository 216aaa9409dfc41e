"""Malformed input is a 400 with a reason, never a 500."""

import pytest

from accounts.models import User

pytestmark = pytest.mark.django_db

NUL = "ab\x00cd"
LONG = "x" * 5000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/api/auth/signup/",
            {
                "username": NUL,
                "email": "a@example.com",
                "password": "Tr1cky-Horse-42",
                "password_confirm": "Tr1cky-Horse-42",
            },
        ),
        (
            "/api/auth/signup/",
            {
                "username": LONG,
                "email": "a@example.com",
                "password": "Tr1cky-Horse-42",
                "password_confirm": "Tr1cky-Horse-42",
            },
        ),
        (
            "/api/auth/signup/",
            {
                "username": "ok",
                "email": "a@example.com",
                "first_name": NUL,
                "password": "Tr1cky-Horse-42",
                "password_confirm": "Tr1cky-Horse-42",
            },
        ),
        ("/api/auth/signup/", {"username": "ok", "email": "a@example.com", "password": LONG, "password_confirm": LONG}),
        ("/api/auth/signup/", {"username": ["list"], "email": 5, "password": None, "password_confirm": {}}),
        ("/api/auth/login/email/", {"email": NUL, "password": "x"}),
        ("/api/auth/login/email/", {"email": "a@example.com", "password": NUL}),
        ("/api/auth/otp/generate/", {"phone_number": NUL}),
        ("/api/auth/otp/generate/", {"phone_number": LONG}),
        ("/api/auth/otp/generate/", {"phone_number": ["9999999999"]}),
        ("/api/auth/otp/generate/", {}),
        ("/api/auth/otp/verify/", {"phone_number": "9999999999", "otp": NUL}),
        ("/api/auth/otp/verify/", {"phone_number": "9999999999", "otp": LONG}),
        ("/api/auth/token/refresh/", {"refresh": NUL}),
        ("/api/auth/token/refresh/", {"refresh": LONG}),
    ],
)
def test_public_endpoints_answer_400_or_401_to_malformed_input(api_client, path, body):
    response = api_client.post(path, body, format="json")
    assert response.status_code in (400, 401), response.content
    assert response.data["code"]


def test_a_non_json_body_is_a_400(api_client):
    response = api_client.post("/api/auth/signup/", "{not json", content_type="application/json")
    assert response.status_code == 400


@pytest.mark.parametrize("field", ["first_name", "last_name", "username", "email"])
@pytest.mark.parametrize("value", [NUL, LONG])
def test_me_patch_refuses_nul_bytes_and_over_long_strings(auth_client, client_user, field, value):
    response = auth_client(client_user).patch("/api/auth/me/", {field: value})
    assert response.status_code == 400
    assert field in response.data["errors"]


def test_admin_create_refuses_nul_bytes_and_unknown_roles(auth_client, admin_user):
    api = auth_client(admin_user)
    base = {
        "username": "n1",
        "email": "n1@example.com",
        "password": "Tr1cky-Horse-42",
        "password_confirm": "Tr1cky-Horse-42",
    }
    assert api.post("/api/auth/admin/users/create/", {**base, "user_type": 9}).status_code == 400
    assert api.post("/api/auth/admin/users/create/", {**base, "user_type": 2, "last_name": NUL}).status_code == 400
    assert api.post("/api/auth/admin/users/create/", {**base, "user_type": 2, "parent": "x"}).status_code == 400
    assert not User.objects.filter(username="n1").exists()


def test_an_admin_id_that_is_not_a_number_is_404(auth_client, admin_user):
    assert auth_client(admin_user).get("/api/auth/admin/users/abc/").status_code == 404
