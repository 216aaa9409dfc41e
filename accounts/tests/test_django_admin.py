import pytest
from django.utils import timezone

from accounts import otp
from accounts.models import OneTimePassword, OtpPhoneGuard
from accounts.tests.factories import DEFAULT_PASSWORD, AdminFactory

pytestmark = pytest.mark.django_db


def test_user_changelist_shows_role_parent_and_wallet_balance(client, admin_user, retailer):
    client.force_login(admin_user)
    response = client.get("/admin/accounts/user/", {"q": retailer.username})
    assert response.status_code == 200
    html = response.content.decode()
    assert retailer.username in html and "0.00" in html and "Retailer" in html


def test_user_change_form_has_no_editable_balance(client, admin_user, retailer):
    client.force_login(admin_user)
    response = client.get(f"/admin/accounts/user/{retailer.pk}/change/")
    assert response.status_code == 200
    assert 'name="wallet_balance"' not in response.content.decode()


def test_user_changelist_filters_by_role(client, admin_user, retailer):
    client.force_login(admin_user)
    assert client.get("/admin/accounts/user/", {"user_type__exact": 3}).status_code == 200


def test_otp_admin_never_shows_a_code_or_its_hash(client, admin_user, settings):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    issued = otp.request_otp(phone_number="+919999999999")
    stored = OneTimePassword.objects.get()
    client.force_login(admin_user)
    listing = client.get("/admin/accounts/onetimepassword/").content.decode()
    page = client.get(f"/admin/accounts/onetimepassword/{stored.pk}/change/").content.decode()
    for html in (listing, page):
        assert stored.code_hash not in html
        assert f">{issued.code}<" not in html
    assert client.get("/admin/accounts/onetimepassword/add/").status_code == 403


def test_a_login_code_cannot_be_deleted_in_the_admin_to_reset_its_failed_attempts(client, admin_user, settings):
    # Its wrong attempts bound guessing (accounts.otp): a deleted code would give a phone a fresh budget.
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    otp.request_otp(phone_number="+919999999999")
    stored = OneTimePassword.objects.get()
    client.force_login(admin_user)
    assert client.post(f"/admin/accounts/onetimepassword/{stored.pk}/delete/", {"post": "yes"}).status_code == 403
    assert OneTimePassword.objects.filter(pk=stored.pk).exists()


def test_lift_guard_action_puts_the_phone_back_in_normal_mode(client, admin_user):
    guard = OtpPhoneGuard.objects.create(
        phone_number="+919999999999", failed_count=1000, window_started_at=timezone.now(), guarded_since=timezone.now()
    )
    client.force_login(admin_user)
    response = client.post(
        "/admin/accounts/otpphoneguard/", {"action": "lift_guard", "_selected_action": [guard.pk]}, follow=True
    )
    assert response.status_code == 200
    guard.refresh_from_db()
    assert (guard.failed_count, guard.guarded_since) == (0, None)


def test_the_admin_login_takes_the_email_in_any_case_as_the_readme_writes_it(client):
    boss = AdminFactory(email="boss@example.com")
    page = client.get("/admin/login/").content.decode()
    assert "Username or email" in page
    response = client.post("/admin/login/?next=/admin/", {"username": "Boss@Example.com", "password": DEFAULT_PASSWORD})
    assert response.status_code == 302 and response.url == "/admin/"
    assert client.get("/admin/").context["user"] == boss


@pytest.mark.parametrize("login", ["boss@example.com", "boss"])
def test_the_admin_login_refuses_a_wrong_password_and_a_deactivated_account(client, login):
    AdminFactory(username="boss", email="boss@example.com")
    wrong = client.post("/admin/login/", {"username": login, "password": "wrong-password"})
    assert wrong.status_code == 200 and "_auth_user_id" not in client.session
    AdminFactory(username="gone", email="gone@example.com", is_active=False)
    gone = client.post("/admin/login/", {"username": "gone@example.com", "password": DEFAULT_PASSWORD})
    assert gone.status_code == 200 and "_auth_user_id" not in client.session
