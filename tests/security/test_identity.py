"""Attacks on identity that the project withstands: forged, expired or misused tokens (OWASP API2),
and security issue 12's items 1, 7, 10 and 11.

Each test names the attack; each of issue 12's failed on the code before the fix."""

import base64
import json
import time
from datetime import timedelta

import jwt
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework_simplejwt.tokens import AccessToken

from accounts.models import User
from accounts.tests.factories import DEFAULT_PASSWORD, AdminFactory, ClientFactory, DistributorFactory, RetailerFactory
from accounts.tokens import VersionedJWTAuthentication
from core.roles import UserType
from tests.helpers import client_for
from wallet import services as ledger

pytestmark = pytest.mark.django_db

LOGIN = "/api/auth/login/email/"
REFRESH = "/api/auth/token/refresh/"
LOGOUT = "/api/auth/logout/"
BALANCE = "/api/wallet/balance/"
PASSWORD = "/api/auth/me/password/"
NEW_PASSWORD = "An0ther-Sturdy-Pass!"


def log_in(user, password=DEFAULT_PASSWORD):
    """A session as a client gets it: the login answer's token pair."""
    response = APIClient().post(LOGIN, {"email": user.email, "password": password}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def bearer(access):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client


def assert_cut_off(session):
    """Neither token of a session works any more: the access token is refused on the next request,
    the refresh token cannot mint a new one."""
    response = bearer(session["access"]).get(BALANCE)
    assert response.status_code == 401, response.json()
    assert response.json()["code"] in {"token_not_valid", "user_inactive"}
    refreshed = APIClient().post(REFRESH, {"refresh": session["refresh"]}, format="json")
    assert refreshed.status_code == 401, refreshed.json()


def assert_alive(session):
    assert bearer(session["access"]).get(BALANCE).status_code == 200


# --- forged, expired or misused tokens (OWASP API2) ----------------------------------------------


def _b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(user, **overrides):
    now = int(time.time())
    return {"token_type": "access", "exp": now + 600, "iat": now, "jti": "x" * 32, "user_id": str(user.pk), **overrides}


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


# --- 7. a stolen token outlives nothing -----------------------------------------------------------


def test_an_access_token_dies_at_logout():
    user = ClientFactory()
    session = log_in(user)
    assert_alive(session)
    response = bearer(session["access"]).post(LOGOUT, {"refresh": session["refresh"]}, format="json")
    assert response.status_code == 200
    assert_cut_off(session)


def test_logout_ends_every_other_session_of_the_account_too():
    user = ClientFactory()
    phone, laptop = log_in(user), log_in(user)
    bearer(laptop["access"]).post(LOGOUT, {"refresh": laptop["refresh"]}, format="json")
    assert_cut_off(phone)


def test_a_password_change_cuts_off_every_earlier_token_and_answers_a_fresh_pair():
    user = ClientFactory()
    stolen, mine = log_in(user), log_in(user)
    response = bearer(mine["access"]).post(
        PASSWORD,
        {"old_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert_cut_off(stolen)
    assert_cut_off(mine)
    assert_alive(response.json())
    assert APIClient().post(REFRESH, {"refresh": response.json()["refresh"]}, format="json").status_code == 200
    log_in(user, NEW_PASSWORD)


def test_a_password_change_needs_the_current_password():
    user = ClientFactory()
    session = log_in(user)
    response = bearer(session["access"]).post(
        PASSWORD,
        {"old_password": "not-my-password", "new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "wrong_password"
    assert "old_password" in response.json()["errors"]
    assert_alive(session)
    log_in(user)


def test_an_admin_password_reset_cuts_off_every_earlier_token():
    admin, user = AdminFactory(), ClientFactory()
    session = log_in(user)
    response = client_for(admin).post(
        f"/api/auth/admin/users/{user.pk}/reset-password/",
        {"new_password": NEW_PASSWORD, "new_password_confirm": NEW_PASSWORD},
        format="json",
    )
    assert response.status_code == 200
    assert_cut_off(session)


def test_a_password_set_in_the_django_admin_cuts_off_every_earlier_token(client):
    admin, user = AdminFactory(), ClientFactory()
    session = log_in(user)
    client.force_login(admin)
    response = client.post(
        f"/admin/accounts/user/{user.pk}/password/", {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert response.status_code == 302
    assert_cut_off(session)


def test_tokens_from_before_a_deactivation_stay_dead_after_reactivation():
    admin, user = AdminFactory(), ClientFactory()
    session = log_in(user)
    as_admin = client_for(admin)
    assert as_admin.delete(f"/api/auth/admin/users/{user.pk}/delete/").status_code == 204
    assert (
        as_admin.patch(f"/api/auth/admin/users/{user.pk}/update/", {"is_active": True}, format="json").status_code
        == 200
    )
    assert_cut_off(session)
    assert_alive(log_in(user))


def test_a_role_change_cuts_off_the_tokens_that_carried_the_old_role():
    admin, distributor = AdminFactory(), DistributorFactory()
    session = log_in(distributor)
    response = client_for(admin).patch(
        f"/api/auth/admin/users/{distributor.pk}/update/", {"user_type": UserType.CLIENT}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert_cut_off(session)


def save_in_django_admin(client, user, **changes):
    """Post the Django admin's change form of `user` as shown, with `changes` (None unticks a box)."""
    data = {
        "username": user.username,
        "email": user.email,
        "phone_number": user.phone_number or "",
        "user_type": user.user_type,
        "kyc_level": user.kyc_level,
        "parent": user.parent_id or "",
        "is_active": "on" if user.is_active else None,
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        **changes,
    }
    response = client.post(
        f"/admin/accounts/user/{user.pk}/change/", {name: value for name, value in data.items() if value is not None}
    )
    assert response.status_code == 302, response.context["adminform"].form.errors
    user.refresh_from_db()
    return user


def test_a_role_change_in_the_django_admin_cuts_off_tokens(client):
    admin, distributor = AdminFactory(), DistributorFactory()
    session = log_in(distributor)
    client.force_login(admin)
    assert save_in_django_admin(client, distributor, user_type=UserType.CLIENT).user_type == UserType.CLIENT
    assert_cut_off(session)


def test_a_session_that_was_not_revoked_keeps_working_through_refresh():
    # The other side of the tests above: the version check refuses only what was revoked.
    user = ClientFactory()
    session = log_in(user)
    refreshed = APIClient().post(REFRESH, {"refresh": session["refresh"]}, format="json")
    assert refreshed.status_code == 200
    assert_alive(refreshed.json())
    second = APIClient().post(REFRESH, {"refresh": refreshed.json()["refresh"]}, format="json")
    assert second.status_code == 200


def test_checking_a_tokens_version_costs_no_query_beyond_loading_its_user():
    """Revocation rides on the user row JWT authentication loads anyway: no blacklist lookup, no
    second query, on any authenticated request."""
    user = ClientFactory()
    request = APIRequestFactory().get(BALANCE, HTTP_AUTHORIZATION=f"Bearer {log_in(user)['access']}")
    with CaptureQueriesContext(connection) as queries:
        authenticated, _ = VersionedJWTAuthentication().authenticate(request)
    assert authenticated.pk == user.pk
    assert len(queries) == 1, [query["sql"] for query in queries]


# --- 10. refusals do not name other people's accounts ---------------------------------------------


def test_paying_a_deactivated_account_is_refused_without_naming_it():
    admin = AdminFactory()
    payer, payee = ClientFactory(), ClientFactory(username="deact1")
    ledger.fund_wallet(user=payer, amount="50.00", initiated_by=admin)
    User.objects.filter(pk=payee.pk).update(is_active=False)
    response = client_for(payer).post(
        "/api/wallet/transfer/", {"to_phone_number": payee.phone_number, "amount": "5.00"}, format="json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "wallet_inactive"
    assert body["detail"] == "The receiving account is deactivated."
    assert "deact1" not in response.content.decode()


def test_a_bulk_payout_to_a_deactivated_account_is_refused_without_naming_it():
    admin, distributor = AdminFactory(), DistributorFactory()
    retailer = RetailerFactory(parent=distributor, username="deact2")
    ledger.fund_wallet(user=distributor, amount="50.00", initiated_by=admin)
    User.objects.filter(pk=retailer.pk).update(is_active=False)
    with pytest.raises(ledger.WalletInactive) as refusal:
        ledger.pay_out_in_bulk(payer=distributor, payments=[(retailer.pk, "5.00")])
    assert refusal.value.message == "The receiving account is deactivated."


# --- 11. an admin's deactivation stands until an admin lifts it -----------------------------------


def reactivate_as(distributor, retailer):
    return client_for(distributor).patch(f"/api/auth/retailers/{retailer.pk}/", {"is_active": True}, format="json")


def test_a_distributor_cannot_reactivate_a_retailer_an_admin_deactivated():
    admin, distributor = AdminFactory(), DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    assert client_for(admin).delete(f"/api/auth/admin/users/{retailer.pk}/delete/").status_code == 204
    response = reactivate_as(distributor, retailer)
    assert response.status_code == 403
    assert response.json()["code"] == "deactivated_by_admin"
    retailer.refresh_from_db()
    assert retailer.is_active is False


def test_a_distributor_cannot_take_over_an_admins_deactivation_by_deactivating_again():
    admin, distributor = AdminFactory(), DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    update = f"/api/auth/admin/users/{retailer.pk}/update/"
    assert client_for(admin).patch(update, {"is_active": False}, format="json").status_code == 200
    own = f"/api/auth/retailers/{retailer.pk}/"
    assert client_for(distributor).patch(own, {"is_active": False}, format="json").status_code == 200
    assert reactivate_as(distributor, retailer).status_code == 403
    retailer.refresh_from_db()
    assert (retailer.is_active, retailer.deactivated_by_id, retailer.deactivated_by_role) == (
        False,
        admin.pk,
        UserType.ADMIN,
    )


def test_a_deactivation_in_the_django_admin_is_an_admins_too(client):
    admin, distributor = AdminFactory(), DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    client.force_login(admin)
    assert save_in_django_admin(client, retailer, is_active=None).is_active is False
    assert retailer.deactivated_by_role == UserType.ADMIN
    assert reactivate_as(distributor, retailer).status_code == 403


def test_an_admin_lifts_its_own_deactivation_and_the_distributor_manages_its_retailer_again():
    admin, distributor = AdminFactory(), DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    update = f"/api/auth/admin/users/{retailer.pk}/update/"
    client_for(admin).delete(f"/api/auth/admin/users/{retailer.pk}/delete/")
    assert client_for(admin).patch(update, {"is_active": True}, format="json").status_code == 200
    own = f"/api/auth/retailers/{retailer.pk}/"
    assert client_for(distributor).patch(own, {"is_active": False}, format="json").status_code == 200
    assert reactivate_as(distributor, retailer).status_code == 200
    retailer.refresh_from_db()
    assert retailer.is_active is True
    assert (retailer.deactivated_by_id, retailer.deactivated_by_role) == (None, None)


# --- 1. a phone number identifies an account only once proved ---------------------------------------

VICTIM_PHONE = "+919812377777"
SIGNUP = "/api/auth/signup/"


def sign_up(username, phone):
    body = {
        "username": username,
        "email": f"{username}@example.com",
        "password": DEFAULT_PASSWORD,
        "password_confirm": DEFAULT_PASSWORD,
        "phone_number": phone,
    }
    return APIClient().post(SIGNUP, body, format="json")


def otp_code(phone):
    response = APIClient().post("/api/auth/otp/generate/", {"phone_number": phone}, format="json")
    assert response.status_code == 200, response.json()
    return response.json()["otp"]


def otp_login(phone):
    return APIClient().post("/api/auth/otp/verify/", {"phone_number": phone, "otp": otp_code(phone)}, format="json")


def pay_by_phone(payer, phone, amount="10.00"):
    return client_for(payer).post("/api/wallet/transfer/", {"to_phone_number": phone, "amount": amount}, format="json")


@pytest.fixture
def payer(db):
    admin, payer = AdminFactory(), ClientFactory()
    ledger.fund_wallet(user=payer, amount="100.00", initiated_by=admin)
    return payer


@pytest.fixture
def codes_in_answers(settings):
    settings.OTP_EXPOSE_IN_RESPONSE = True
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0


def test_a_number_claimed_at_signup_does_not_receive_the_owners_payments(payer):
    assert sign_up("claimer", VICTIM_PHONE).status_code == 201
    response = pay_by_phone(payer, VICTIM_PHONE)
    assert response.status_code == 404, response.json()
    assert response.json()["code"] == "user_not_found"
    assert User.objects.get(username="claimer").wallet.balance == 0


def test_the_owners_otp_login_gets_its_own_account_not_the_claimers(codes_in_answers):
    claim = sign_up("claimer", VICTIM_PHONE)
    assert claim.status_code == 201
    login = otp_login(VICTIM_PHONE)
    assert login.status_code == 200, login.json()
    assert login.json()["created"] is True
    assert login.json()["user"]["id"] != claim.json()["user"]["id"]
    assert (login.json()["user"]["phone_number"], login.json()["user"]["phone_verified"]) == (VICTIM_PHONE, True)
    claimer = User.objects.get(username="claimer")
    assert claimer.phone_number is None  # the claim is released
    # The owner's next login, and payments to the number, reach the owner's account.
    again = otp_login(VICTIM_PHONE)
    assert (again.json()["user"]["id"], again.json()["created"]) == (login.json()["user"]["id"], False)


def test_signup_with_a_registered_number_is_neither_refused_nor_revealing(codes_in_answers, payer):
    owner = otp_login(VICTIM_PHONE).json()["user"]
    claim = sign_up("claimer", VICTIM_PHONE)
    unknown = sign_up("somebody", "+919812366666")
    # The same answer as for a number nobody has: nothing tells the caller the number is registered.
    assert claim.status_code == unknown.status_code == 201, claim.json()
    assert claim.json()["user"]["phone_verified"] is False
    assert pay_by_phone(payer, VICTIM_PHONE).status_code == 201
    assert User.objects.get(pk=owner["id"]).wallet.balance == 10
    assert otp_login(VICTIM_PHONE).json()["user"]["id"] == owner["id"]


def test_a_signed_in_account_proves_its_number_and_then_receives_payments_by_it(codes_in_answers, payer):
    signed_up = sign_up("asha", VICTIM_PHONE).json()
    assert pay_by_phone(payer, VICTIM_PHONE).status_code == 404
    response = bearer(signed_up["access"]).post(
        "/api/auth/me/phone/verify/", {"otp": otp_code(VICTIM_PHONE)}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert (response.json()["phone_number"], response.json()["phone_verified"]) == (VICTIM_PHONE, True)
    assert pay_by_phone(payer, VICTIM_PHONE).status_code == 201
    assert User.objects.get(username="asha").wallet.balance == 10
    assert otp_login(VICTIM_PHONE).json()["user"]["username"] == "asha"


def test_proving_a_number_another_account_has_verified_is_a_conflict(codes_in_answers):
    owner = otp_login(VICTIM_PHONE).json()["user"]
    other = ClientFactory(phone_number=None)
    response = client_for(other).post(
        "/api/auth/me/phone/verify/", {"phone_number": VICTIM_PHONE, "otp": otp_code(VICTIM_PHONE)}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "phone_taken"
    other.refresh_from_db()
    assert other.phone_number is None
    assert User.objects.get(pk=owner["id"]).phone_verified is True


def test_a_wrong_code_proves_nothing(codes_in_answers):
    claimer = ClientFactory(phone_number=VICTIM_PHONE, phone_verified=False)
    code = otp_code(VICTIM_PHONE)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    response = client_for(claimer).post("/api/auth/me/phone/verify/", {"otp": wrong}, format="json")
    assert response.status_code == 400
    claimer.refresh_from_db()
    assert claimer.phone_verified is False


def test_a_number_a_distributor_sets_on_its_retailer_is_not_vouched_for(codes_in_answers, payer):
    distributor = DistributorFactory()
    created = client_for(distributor).post(
        "/api/auth/retailers/",
        {
            "username": "shop",
            "email": "shop@example.com",
            "password": DEFAULT_PASSWORD,
            "password_confirm": DEFAULT_PASSWORD,
            "phone_number": VICTIM_PHONE,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["phone_verified"] is False
    assert pay_by_phone(payer, VICTIM_PHONE).status_code == 404
    assert otp_login(VICTIM_PHONE).json()["created"] is True


def test_a_number_an_admin_sets_is_vouched_for_and_takes_it_from_an_unproved_claim(payer):
    claim = sign_up("claimer", VICTIM_PHONE)
    created = client_for(AdminFactory()).post(
        "/api/auth/admin/users/create/",
        {
            "username": "dist",
            "email": "dist@example.com",
            "password": DEFAULT_PASSWORD,
            "password_confirm": DEFAULT_PASSWORD,
            "phone_number": VICTIM_PHONE,
            "user_type": UserType.DISTRIBUTOR,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    assert created.json()["user"]["phone_verified"] is True
    assert User.objects.get(pk=claim.json()["user"]["id"]).phone_number is None
    assert pay_by_phone(payer, VICTIM_PHONE).status_code == 201
    assert User.objects.get(username="dist").wallet.balance == 10


def test_an_admin_cannot_give_away_a_number_another_account_has_verified():
    owner = ClientFactory(phone_number=VICTIM_PHONE)
    other = ClientFactory(phone_number=None)
    response = client_for(AdminFactory()).patch(
        f"/api/auth/admin/users/{other.pk}/update/", {"phone_number": VICTIM_PHONE}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "already_taken"
    owner.refresh_from_db()
    assert (owner.phone_number, owner.phone_verified) == (VICTIM_PHONE, True)


def test_numbers_assigned_by_the_admins_command_are_vouched_for(monkeypatch):
    import io
    import sys

    from django.core.management import call_command

    claimer = ClientFactory(username="claimer", phone_number=VICTIM_PHONE, phone_verified=False)
    shop = RetailerFactory(username="shop", phone_number=None)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"shop,{VICTIM_PHONE}\n"))
    call_command("assign_phone_numbers", stdout=io.StringIO(), stderr=io.StringIO())
    shop.refresh_from_db(), claimer.refresh_from_db()
    assert (shop.phone_number, shop.phone_verified) == (VICTIM_PHONE, True)
    assert claimer.phone_number is None


def test_a_number_set_in_the_django_admin_is_vouched_for(client):
    claimer = ClientFactory(phone_number=VICTIM_PHONE, phone_verified=False)
    shop = RetailerFactory(phone_number=None)
    client.force_login(AdminFactory())
    assert save_in_django_admin(client, shop, phone_number=VICTIM_PHONE).phone_verified is True
    claimer.refresh_from_db()
    assert claimer.phone_number is None


def test_the_demo_numbers_are_set_by_the_demo_admin_and_so_verified():
    from io import StringIO

    from django.core.management import call_command

    call_command("setup_demo_data", "--force", stdout=StringIO())
    assert not User.objects.filter(phone_number__isnull=False, phone_verified=False).exists()


@pytest.mark.django_db(transaction=True)
def test_the_migration_verifies_only_numbers_proved_by_otp_or_set_by_an_admin():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from django.utils import timezone

    before, after = [("accounts", "0001_initial")], [("accounts", "0002_phone_verified_token_version_deactivated_by")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    OldUser, OldOtp = old.get_model("accounts", "User"), old.get_model("accounts", "OneTimePassword")
    now = timezone.now()

    def person(username, user_type, phone):
        return OldUser.objects.create(username=username, user_type=user_type, phone_number=phone, password="!")

    ids = {
        "proved_client": person("proved", UserType.CLIENT, "+919800000001").pk,
        "claiming_client": person("claimer", UserType.CLIENT, "+919800000002").pk,
        "retailer": person("shop", UserType.RETAILER, "+919800000003").pk,
        "distributor": person("dist", UserType.DISTRIBUTOR, "+919800000004").pk,
        "admin": person("boss", UserType.ADMIN, "+919800000005").pk,
        "no_phone": person("nophone", UserType.ADMIN, None).pk,
    }
    for phone, consumed in (("+919800000001", now), ("+919800000002", None)):
        OldOtp.objects.create(phone_number=phone, code_hash="x", expires_at=now, consumed_at=consumed)
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    verified = dict(User.objects.filter(pk__in=ids.values()).values_list("pk", "phone_verified"))
    assert {name: verified[pk] for name, pk in ids.items()} == {
        "proved_client": True,
        "claiming_client": False,
        "retailer": False,
        "distributor": True,
        "admin": True,
        "no_phone": False,
    }
