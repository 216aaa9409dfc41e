import pytest
from django.utils import timezone

from accounts import otp
from accounts.models import OneTimePassword, OtpPhoneGuard

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
