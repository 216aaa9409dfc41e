"""Every way of creating a user opens its wallet in the same transaction."""

import pytest
from django.core.management import call_command
from django.db import IntegrityError

from accounts import services
from accounts.models import User
from accounts.tests.helpers import code_from
from core.roles import UserType
from wallet.models import Wallet

pytestmark = pytest.mark.django_db


def test_signup_opens_a_wallet(api_client):
    api_client.post(
        "/api/auth/signup/",
        {
            "email": "a@example.com",
            "username": "a1",
            "password": "Tr1cky-Horse-42",
            "password_confirm": "Tr1cky-Horse-42",
        },
    )
    assert Wallet.objects.get(user__username="a1").balance == 0


def test_otp_login_of_a_new_phone_opens_a_wallet(api_client, sms_outbox):
    api_client.post("/api/auth/otp/generate/", {"phone_number": "9999999999"})
    api_client.post("/api/auth/otp/verify/", {"phone_number": "9999999999", "otp": code_from(sms_outbox[-1])})
    assert Wallet.objects.filter(user__phone_number="+919999999999").exists()


def test_admin_api_creation_opens_a_wallet(auth_client, admin_user):
    auth_client(admin_user).post(
        "/api/auth/admin/users/create/",
        {
            "email": "d@example.com",
            "username": "d1",
            "user_type": UserType.DISTRIBUTOR,
            "password": "SecurePass123!",
            "password_confirm": "SecurePass123!",
        },
    )
    assert Wallet.objects.filter(user__username="d1").exists()


def test_createsuperuser_makes_an_admin_with_a_wallet(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "Sup3r-Secret-Pass")
    call_command("createsuperuser", interactive=False, username="root", email="root@example.com", verbosity=0)
    root = User.objects.get(username="root")
    assert (root.user_type, root.is_staff, root.is_superuser) == (UserType.ADMIN, True, True)
    assert root.wallet.balance == 0


def test_django_admin_add_form_creates_a_user_with_a_wallet(client, admin_user, distributor):
    client.force_login(admin_user)
    response = client.post(
        "/admin/accounts/user/add/",
        {
            "username": "shop7",
            "email": "shop7@example.com",
            "phone_number": "8888888888",
            "user_type": UserType.RETAILER,
            "parent": distributor.pk,
            "password1": "Sh0p-Keeper-77",
            "password2": "Sh0p-Keeper-77",
            "usable_password": "true",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    shop = User.objects.get(username="shop7")
    assert (shop.user_type, shop.parent, shop.phone_number) == (UserType.RETAILER, distributor, "+918888888888")
    assert shop.wallet.balance == 0


def test_django_admin_add_form_makes_admins_staff(client, admin_user):
    client.force_login(admin_user)
    client.post(
        "/admin/accounts/user/add/",
        {
            "username": "boss",
            "email": "boss@example.com",
            "user_type": UserType.ADMIN,
            "password1": "Sh0p-Keeper-77",
            "password2": "Sh0p-Keeper-77",
            "usable_password": "true",
        },
    )
    boss = User.objects.get(username="boss")
    assert boss.is_staff and boss.is_superuser


def test_a_user_whose_wallet_cannot_be_opened_is_not_created(monkeypatch):
    import wallet.services

    def broken_open_wallet(*, user):
        raise IntegrityError("simulated")

    monkeypatch.setattr(wallet.services, "open_wallet", broken_open_wallet)
    with pytest.raises(IntegrityError):
        User.objects.create_user(username="half", email="half@example.com", password="x")
    assert not User.objects.filter(username="half").exists()


def test_create_user_service_refuses_a_parent_for_a_non_retailer(distributor):
    with pytest.raises(services.InvalidParent):
        services.create_user(
            username="c9", email="c9@example.com", password=None, user_type=UserType.CLIENT, parent=distributor
        )
