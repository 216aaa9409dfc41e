"""The OWASP API Security Top 10 items that apply to this API, checked.

Object-level authorisation (API1) is tests/test_role_matrix.py; this file covers broken
authentication (API2), property-level authorisation and mass assignment (API3), resource
consumption (API4) and hostile strings in every text field."""

import base64
import json
import re
import time
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework_simplejwt.tokens import AccessToken

from accounts.tests.factories import ClientFactory, RetailerFactory
from core.roles import UserType

pytestmark = pytest.mark.django_db


def _b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user, **overrides):
    now = int(time.time())
    return {"token_type": "access", "exp": now + 600, "iat": now, "jti": "x" * 32, "user_id": str(user.pk), **overrides}


# --- API2: broken authentication -----------------------------------------------------------


def test_unsigned_token_with_alg_none_is_refused(api_client, admin_user):
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(admin_user))}."
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api_client.get("/api/auth/me/")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_token_signed_with_another_key_is_refused(api_client, admin_user):
    token = jwt.encode(_claims(admin_user), "not-our-secret-key-at-all-0123456789abcdef", algorithm="HS256")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert api_client.get("/api/auth/me/").status_code == 401


def test_expired_access_token_is_refused(api_client, client_user):
    token = AccessToken.for_user(client_user)
    token.set_exp(lifetime=-timedelta(seconds=1))
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api_client.get("/api/wallet/balance/")
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_refresh_token_is_not_accepted_as_an_access_token(api_client, client_user):
    from rest_framework_simplejwt.tokens import RefreshToken

    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(client_user)}")
    assert api_client.get("/api/wallet/balance/").status_code == 401


def test_token_of_a_deactivated_user_is_refused(auth_client, client_user):
    client = auth_client(client_user)
    client_user.is_active = False
    client_user.save(update_fields=["is_active"])
    assert client.get("/api/wallet/balance/").status_code == 401


def test_otp_guessing_stops_after_five_wrong_codes(api_client, settings):
    settings.SMS_BACKEND = "accounts.sms.LocmemSmsBackend"
    settings.OTP_EXPOSE_IN_RESPONSE = True
    generated = api_client.post("/api/auth/otp/generate/", {"phone_number": "9811122233"}, format="json")
    assert generated.status_code == 200, generated.json()
    code = generated.json()["otp"]
    wrong = "0" * len(code) if code != "0" * len(code) else "1" * len(code)
    for _ in range(5):
        assert api_client.post("/api/auth/otp/verify/", {"phone_number": "9811122233", "otp": wrong}).status_code == 400
    response = api_client.post("/api/auth/otp/verify/", {"phone_number": "9811122233", "otp": code}, format="json")
    assert response.status_code in (400, 429)
    assert "access" not in response.json()


# --- API3: property-level authorisation and mass assignment ----------------------------------

PRIVILEGED = {
    "user_type": UserType.ADMIN,
    "parent": None,
    "is_active": False,
    "is_staff": True,
    "is_superuser": True,
    "balance": "99999.00",
    "wallet_balance": "99999.00",
    "held": "0.00",
}


def _assert_unprivileged(user, parent=None, user_type=UserType.CLIENT):
    user.refresh_from_db()
    user.wallet.refresh_from_db()
    assert (user.user_type, user.parent_id, user.is_active, user.is_staff, user.is_superuser) == (
        user_type,
        parent,
        True,
        False,
        False,
    )
    assert user.wallet.balance == 0


def test_signup_ignores_role_balance_and_flags(api_client):
    response = api_client.post(
        "/api/auth/signup/",
        {
            "email": "mass@example.com",
            "username": "mass",
            "password": "Sturdy-Pass-42!",
            "password_confirm": "Sturdy-Pass-42!",
            **PRIVILEGED,
        },
        format="json",
    )
    assert response.status_code in (201, 400), response.json()
    from accounts.models import User

    user = User.objects.filter(username="mass").first()
    if response.status_code == 201:
        _assert_unprivileged(user)
    else:
        assert user is None


def test_me_patch_cannot_change_role_parent_flags_or_balance(auth_client):
    user = ClientFactory()
    response = auth_client(user).patch("/api/auth/me/", {**PRIVILEGED, "first_name": "Asha"}, format="json")
    assert response.status_code in (200, 400)
    _assert_unprivileged(user)


def test_distributor_cannot_move_its_retailer_to_another_role_or_parent(auth_client, distributor):
    # Suspending its own retailer (is_active) is a distributor's right; role, parent, staff flags
    # and balance are not.
    retailer = RetailerFactory(parent=distributor)
    body = {key: value for key, value in PRIVILEGED.items() if key != "is_active"}
    response = auth_client(distributor).patch(f"/api/auth/retailers/{retailer.pk}/", body, format="json")
    assert response.status_code in (200, 400)
    _assert_unprivileged(retailer, parent=distributor.pk, user_type=UserType.RETAILER)


def test_money_endpoints_ignore_balance_fields_in_the_body(auth_client, client_user):
    response = auth_client(client_user).post(
        "/api/wallet/credit/", {"amount": "10.00", "balance": "5000.00", "held": "-5.00"}, format="json"
    )
    assert response.status_code == 201, response.json()
    client_user.wallet.refresh_from_db()
    assert (client_user.wallet.balance, client_user.wallet.held) == (10, 0)


# --- API4: resource consumption --------------------------------------------------------------


def test_page_size_is_capped(auth_client, admin_user):
    ClientFactory.create_batch(settings.MAX_PAGE_SIZE + 5)
    response = auth_client(admin_user).get("/api/auth/admin/users/", {"user_type": 4, "page_size": 100000})
    assert response.status_code == 200
    assert response.json()["count"] > settings.MAX_PAGE_SIZE
    assert len(response.json()["results"]) == settings.MAX_PAGE_SIZE


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/auth/login/email/", {"email": "nobody@example.com", "password": "wrong"}),
        ("/api/auth/otp/generate/", {"phone_number": "not a phone"}),
    ],
)
def test_auth_endpoints_are_throttled_with_retry_after(api_client, path, body):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "login": "3/min", "otp": "3/min"}
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}):
        from rest_framework.settings import api_settings
        from rest_framework.throttling import SimpleRateThrottle

        api_settings.reload()
        SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
        try:
            statuses = [api_client.post(path, body, format="json") for _ in range(4)]
        finally:
            api_settings.reload()
            SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    assert statuses[-1].status_code == 429
    assert statuses[-1].json()["code"] == "throttled"
    assert int(statuses[-1]["Retry-After"]) >= 1


# --- hostile strings in every text field ---------------------------------------------------


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
