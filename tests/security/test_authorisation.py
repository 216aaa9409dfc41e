"""Authorisation attacks: who may call what (OWASP API1: every endpoint of the contract, for every role
and for anonymous callers) and which fields a caller may set (API3: mass assignment).

`ALLOWED` means the caller got past authentication, role and scope checks: any status except
401, 403 and 404 (a POST without a valid body is allowed and answers 400). A route that the
URLconf serves and this table does not list fails `test_every_routed_endpoint_is_in_the_matrix`,
so no endpoint is ever added without deciding who may call it.
"""

from decimal import Decimal

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.factories import ClientFactory, DistributorFactory, RetailerFactory
from core.roles import UserType
from wallet import services as ledger

ALLOWED = "allowed"
ROLES = ("anonymous", "admin", "distributor", "retailer", "client")


def everyone(signed_in=ALLOWED, anonymous=401):
    return {
        "anonymous": anonymous,
        "admin": signed_in,
        "distributor": signed_in,
        "retailer": signed_in,
        "client": signed_in,
    }


PUBLIC = everyone(ALLOWED, ALLOWED)
SIGNED_IN = everyone()
ADMIN_ONLY = {"anonymous": 401, "admin": ALLOWED, "distributor": 403, "retailer": 403, "client": 403}
DISTRIBUTOR_ONLY = {"anonymous": 401, "admin": 403, "distributor": ALLOWED, "retailer": 403, "client": 403}
ADMIN_OR_DISTRIBUTOR = {"anonymous": 401, "admin": ALLOWED, "distributor": ALLOWED, "retailer": 403, "client": 403}
# A record of the retailer's (wallet, transfer, purchase): its distributor and admins see it, a
# client does not even learn that it exists.
RETAILER_RECORD = {"anonymous": 401, "admin": ALLOWED, "distributor": ALLOWED, "retailer": ALLOWED, "client": 404}
# A record only its owner reads through the API (the retailer's top-up; admins have the Django admin).
OWN_RECORD = {"anonymous": 401, "admin": 404, "distributor": 404, "retailer": ALLOWED, "client": 404}

# (method, route as the URLconf spells it) -> expectations. `{id}` routes are filled in by OBJECTS.
MATRIX = {
    ("GET", "api/health/"): PUBLIC,
    ("POST", "api/auth/signup/"): PUBLIC,
    ("POST", "api/auth/login/email/"): PUBLIC,
    ("POST", "api/auth/otp/generate/"): PUBLIC,
    ("POST", "api/auth/otp/verify/"): PUBLIC,
    ("POST", "api/auth/token/refresh/"): PUBLIC,
    ("POST", "api/auth/logout/"): SIGNED_IN,
    ("GET", "api/auth/me/"): SIGNED_IN,
    ("PATCH", "api/auth/me/"): SIGNED_IN,
    ("POST", "api/auth/me/password/"): SIGNED_IN,
    ("POST", "api/auth/me/phone/verify/"): SIGNED_IN,
    ("GET", "api/auth/admin/users/"): ADMIN_ONLY,
    ("POST", "api/auth/admin/users/create/"): ADMIN_ONLY,
    ("GET", "api/auth/admin/users/{id}/"): ADMIN_ONLY,
    ("PUT", "api/auth/admin/users/{id}/update/"): ADMIN_ONLY,
    ("PATCH", "api/auth/admin/users/{id}/update/"): ADMIN_ONLY,
    ("DELETE", "api/auth/admin/users/{id}/delete/"): ADMIN_ONLY,
    ("POST", "api/auth/admin/users/{id}/reset-password/"): ADMIN_ONLY,
    ("GET", "api/auth/retailers/"): DISTRIBUTOR_ONLY,
    ("POST", "api/auth/retailers/"): DISTRIBUTOR_ONLY,
    ("GET", "api/auth/retailers/{id}/"): DISTRIBUTOR_ONLY,
    ("PATCH", "api/auth/retailers/{id}/"): DISTRIBUTOR_ONLY,
    ("GET", "api/wallet/balance/"): SIGNED_IN,
    ("GET", "api/wallet/wallets/"): SIGNED_IN,
    ("GET", "api/wallet/wallets/{id}/"): RETAILER_RECORD,
    ("GET", "api/wallet/transactions/"): SIGNED_IN,
    ("GET", "api/wallet/transactions/{id}/"): RETAILER_RECORD,
    ("POST", "api/wallet/credit/"): SIGNED_IN,
    ("POST", "api/wallet/debit/"): SIGNED_IN,
    ("POST", "api/wallet/transfer/"): SIGNED_IN,
    ("POST", "api/wallet/add-to-wallet/"): ADMIN_ONLY,
    ("POST", "api/wallet/debit-from-wallet/"): ADMIN_ONLY,
    ("POST", "api/wallet/set-margin/"): ADMIN_OR_DISTRIBUTOR,
    ("POST", "api/wallet/payouts/"): ADMIN_OR_DISTRIBUTOR,
    ("GET", "api/wallet/margins/"): SIGNED_IN,
    ("GET", "api/wallet/admin/transactions/"): ADMIN_ONLY,
    ("GET", "api/wallet/topups/"): SIGNED_IN,
    ("POST", "api/wallet/topups/"): SIGNED_IN,
    ("GET", "api/wallet/topups/{id}/"): OWN_RECORD,
    # The sandbox provider's payment page: whoever holds its unguessable URL, as on a real provider's.
    ("GET", "api/wallet/topups/sandbox/{id}/"): PUBLIC,
    ("POST", "api/wallet/topups/sandbox/{id}/"): PUBLIC,
    ("GET", "api/plans/providers/"): SIGNED_IN,
    ("GET", "api/plans/plans/"): SIGNED_IN,
    ("POST", "api/plans/plans/"): ADMIN_ONLY,
    ("GET", "api/plans/plans/{id}/"): SIGNED_IN,
    ("PUT", "api/plans/plans/{id}/"): ADMIN_ONLY,
    ("PATCH", "api/plans/plans/{id}/"): ADMIN_ONLY,
    ("DELETE", "api/plans/plans/{id}/"): ADMIN_ONLY,
    ("POST", "api/purchases/purchase/"): SIGNED_IN,
    ("GET", "api/purchases/history/"): SIGNED_IN,
    ("GET", "api/purchases/{id}/"): RETAILER_RECORD,
    # The second seed's paths: the same views, the same rules.
    ("POST", "auth/send-otp/"): PUBLIC,
    ("POST", "auth/verify-otp/"): PUBLIC,
    ("GET", "wallet/balance/"): SIGNED_IN,
    ("POST", "wallet/credit/"): SIGNED_IN,
    ("POST", "wallet/debit/"): SIGNED_IN,
    ("POST", "wallet/transfer/"): SIGNED_IN,
    ("GET", "transactions/admin-list/"): ADMIN_ONLY,
}

# Routes that are not API endpoints of the contract: the Django admin and the schema views.
NOT_API = ("admin/", "swagger", "redoc")
# Endpoints no role may call: only the sender's signature gets in (X-Signature), a user's token counts
# for nothing. Held by test_a_signed_endpoint_refuses_every_role_without_a_signature below.
SIGNED_ONLY = {
    ("POST", "api/purchases/callbacks/{id}/"): "api/purchases/callbacks/sandbox/",
    ("POST", "api/wallet/topups/webhooks/{id}/"): "api/wallet/topups/webhooks/sandbox/",
}


def _routes(resolver=None, prefix=""):
    """Every (route, view callback) the URLconf serves, with `{id}` for path converters."""
    import re

    for entry in (resolver or get_resolver()).url_patterns:
        route = prefix + re.sub(r"<(?:\w+:)?\w+>", "{id}", str(entry.pattern)).replace("^", "").replace("$", "")
        if isinstance(entry, URLResolver):
            yield from _routes(entry, route)
        elif isinstance(entry, URLPattern):
            yield route, entry.callback


def _served_methods(callback):
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is None:
        return set()
    actions = getattr(callback, "actions", None)
    if actions:
        return {method.upper() for method in actions}
    return {m.upper() for m in view_class.http_method_names if hasattr(view_class, m) and m not in {"options", "head"}}


def test_every_routed_endpoint_is_in_the_matrix():
    served = {
        (method, route)
        for route, callback in _routes()
        if not route.startswith(NOT_API) and route
        for method in _served_methods(callback)
    }
    missing = sorted(served - set(MATRIX) - set(SIGNED_ONLY))
    assert not missing, f"endpoints with no row in the role matrix (decide who may call them): {missing}"
    unrouted = sorted((set(MATRIX) | set(SIGNED_ONLY)) - served)
    assert not unrouted, f"rows in the role matrix that the URLconf does not serve: {unrouted}"


@pytest.fixture
def world(db, admin_user):
    """Two distributors with a retailer each, a client, and one record of each kind for the
    first retailer."""
    from payments.services import create_top_up
    from plans.models import Provider, RechargePlan
    from purchases.models import Purchase

    distributor = DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    other_distributor = DistributorFactory()
    other_retailer = RetailerFactory(parent=other_distributor)
    client = ClientFactory()
    ledger.fund_wallet(user=distributor, amount="500.00", initiated_by=admin_user)
    transfer = ledger.transfer_funds(sender=distributor, receiver=retailer, amount="100.00")
    provider = Provider.objects.create(code="matrix-op", name="Matrix Operator")
    plan = RechargePlan.objects.create(provider=provider, code="matrix-plan", amount=Decimal("10.00"))
    purchase = Purchase.objects.create(
        buyer=retailer, plan=plan, mobile_number="+919876543210", amount=plan.amount, status=Purchase.Status.FAILED
    )
    top_up = create_top_up(user=retailer, amount=Decimal("10.00"))
    return {
        "users": {"admin": admin_user, "distributor": distributor, "retailer": retailer, "client": client},
        "other_retailer": other_retailer,
        "objects": {
            "api/auth/admin/users/{id}/": retailer.pk,
            "api/auth/admin/users/{id}/update/": retailer.pk,
            "api/auth/admin/users/{id}/delete/": retailer.pk,
            "api/auth/admin/users/{id}/reset-password/": retailer.pk,
            "api/auth/retailers/{id}/": retailer.pk,
            "api/wallet/wallets/{id}/": retailer.wallet.pk,
            "api/wallet/transactions/{id}/": transfer.pk,
            "api/plans/plans/{id}/": plan.pk,
            "api/purchases/{id}/": purchase.pk,
            "api/wallet/topups/{id}/": top_up.pk,
            "api/wallet/topups/sandbox/{id}/": top_up.provider_reference,
        },
    }


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "route"), sorted(SIGNED_ONLY), ids=lambda value: value)
def test_a_signed_endpoint_refuses_every_role_without_a_signature(method, route, role, world, api_client):
    if role != "anonymous":
        token = RefreshToken.for_user(world["users"][role]).access_token
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = _call(api_client, method, "/" + SIGNED_ONLY[(method, route)])
    assert response.status_code == 401 and response.json()["code"] == "invalid_signature"


def _call(client, method, url):
    return getattr(client, method.lower())(url, data={}, format="json")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "route"), sorted(MATRIX), ids=lambda value: value)
def test_role_gets_what_the_matrix_says(method, route, role, world, api_client):
    url = "/" + route.replace("{id}", str(world["objects"].get(route, 0)))
    if role != "anonymous":
        token = RefreshToken.for_user(world["users"][role]).access_token
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = _call(api_client, method, url)
    expected = MATRIX[(method, route)][role]
    if expected == ALLOWED:
        assert response.status_code not in (401, 403, 404), (method, url, role, response.status_code, response.data)
        assert response.status_code < 500
    else:
        assert response.status_code == expected, (method, url, role, response.status_code, response.data)
        assert response.json()["code"], "every refusal carries a machine-readable code"


# --- object level: a record outside the caller's scope is 404, as if it did not exist ---------

OUT_OF_SCOPE = [
    ("retailer", "GET", "api/wallet/wallets/{id}/", "other_retailer_wallet"),
    ("retailer", "GET", "api/wallet/transactions/{id}/", "other_retailer_transfer"),
    ("retailer", "GET", "api/purchases/{id}/", "other_retailer_purchase"),
    ("distributor", "GET", "api/auth/retailers/{id}/", "other_retailer"),
    ("distributor", "PATCH", "api/auth/retailers/{id}/", "other_retailer"),
    ("distributor", "GET", "api/wallet/wallets/{id}/", "other_retailer_wallet"),
    ("distributor", "GET", "api/wallet/transactions/{id}/", "other_retailer_transfer"),
    ("distributor", "GET", "api/purchases/{id}/", "other_retailer_purchase"),
    ("client", "GET", "api/wallet/wallets/{id}/", "other_retailer_wallet"),
]


@pytest.mark.parametrize(("role", "method", "route", "target"), OUT_OF_SCOPE)
def test_record_outside_the_callers_scope_is_not_found(role, method, route, target, world, auth_client, admin_user):
    from plans.models import RechargePlan
    from purchases.models import Purchase

    other = world["other_retailer"]
    ledger.fund_wallet(user=other.parent, amount="50.00", initiated_by=admin_user)
    ids = {
        "other_retailer": other.pk,
        "other_retailer_wallet": other.wallet.pk,
        "other_retailer_transfer": ledger.transfer_funds(sender=other.parent, receiver=other, amount="5.00").pk,
        "other_retailer_purchase": Purchase.objects.create(
            buyer=other,
            plan=RechargePlan.objects.first(),
            mobile_number="+919876500000",
            amount=Decimal("10.00"),
            status=Purchase.Status.FAILED,
        ).pk,
    }
    response = _call(auth_client(world["users"][role]), method, "/" + route.replace("{id}", str(ids[target])))
    assert response.status_code == 404, (role, method, route, response.status_code, response.data)
    assert response.json()["code"] == "not_found"


# --- property-level authorisation: mass assignment (OWASP API3) -----------------------------------

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


@pytest.mark.django_db
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


@pytest.mark.django_db
def test_me_patch_cannot_change_role_parent_flags_or_balance(auth_client):
    user = ClientFactory()
    response = auth_client(user).patch("/api/auth/me/", {**PRIVILEGED, "first_name": "Asha"}, format="json")
    assert response.status_code in (200, 400)
    _assert_unprivileged(user)


@pytest.mark.django_db
def test_distributor_cannot_move_its_retailer_to_another_role_or_parent(auth_client, distributor):
    # Suspending its own retailer (is_active) is a distributor's right; role, parent, staff flags
    # and balance are not.
    retailer = RetailerFactory(parent=distributor)
    body = {key: value for key, value in PRIVILEGED.items() if key != "is_active"}
    response = auth_client(distributor).patch(f"/api/auth/retailers/{retailer.pk}/", body, format="json")
    assert response.status_code in (200, 400)
    _assert_unprivileged(retailer, parent=distributor.pk, user_type=UserType.RETAILER)


@pytest.mark.django_db
def test_money_endpoints_ignore_balance_fields_in_the_body(auth_client, client_user):
    response = auth_client(client_user).post(
        "/api/wallet/credit/", {"amount": "10.00", "balance": "5000.00", "held": "-5.00"}, format="json"
    )
    assert response.status_code == 201, response.json()
    client_user.wallet.refresh_from_db()
    assert (client_user.wallet.balance, client_user.wallet.held) == (10, 0)
