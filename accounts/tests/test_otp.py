import hashlib
import hmac
from datetime import timedelta

import pytest
from django.utils import timezone

from accounts import otp
from accounts.models import OneTimePassword, OtpPhoneGuard, User
from accounts.tests.factories import ClientFactory
from accounts.tests.helpers import code_from
from core.roles import UserType

pytestmark = pytest.mark.django_db

GENERATE = "/api/auth/otp/generate/"
VERIFY = "/api/auth/otp/verify/"
PHONE = "+919999999999"


def send(api_client, phone="9999999999", path=GENERATE, field="phone_number"):
    return api_client.post(path, {field: phone})


def sent_code(outbox):
    return code_from(outbox[-1])


def wrong(code):
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def test_generate_sends_a_code_by_sms_and_hides_it_by_default(api_client, sms_outbox, settings):
    settings.OTP_EXPOSE_IN_RESPONSE = False
    response = send(api_client)
    assert response.status_code == 200
    assert response.data == {"phone_number": PHONE, "expires_in": settings.OTP_EXPIRY_MINUTES * 60}
    assert len(sms_outbox) == 1 and sms_outbox[0].to == PHONE
    assert len(sent_code(sms_outbox)) == settings.OTP_LENGTH


def test_generate_exposes_the_code_when_configured(api_client, sms_outbox, settings):
    settings.OTP_EXPOSE_IN_RESPONSE = True
    response = send(api_client)
    assert response.data["otp"] == sent_code(sms_outbox)


def test_generate_accepts_phone_as_an_alias(api_client, sms_outbox):
    response = send(api_client, field="phone")
    assert response.status_code == 200
    assert response.data["phone_number"] == PHONE


def test_generate_answers_the_same_for_a_registered_and_an_unknown_phone(api_client, settings):
    settings.OTP_EXPOSE_IN_RESPONSE = False
    ClientFactory(phone_number="+918888888888")
    registered = send(api_client, "8888888888")
    unknown = send(api_client, "7777777777")
    assert registered.status_code == unknown.status_code == 200
    assert set(registered.data) == set(unknown.data)
    assert registered.data["expires_in"] == unknown.data["expires_in"]


def test_the_stored_value_is_not_the_code(api_client, sms_outbox):
    send(api_client)
    code = sent_code(sms_outbox)
    stored = OneTimePassword.objects.get()
    assert code not in stored.code_hash
    assert stored.code_hash == otp.hash_otp(phone_number=PHONE, code=code)
    assert len(stored.code_hash) == 64


def test_the_same_code_for_two_phones_is_stored_as_two_hmacs_bound_to_each_phone(
    api_client, sms_outbox, settings, monkeypatch
):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    monkeypatch.setattr(otp, "_code_for", lambda *, phone_number, expires_at: "123456")
    send(api_client, "9999999999")
    send(api_client, "8888888888")
    stored = dict(OneTimePassword.objects.values_list("phone_number", "code_hash"))

    def independent_hmac(phone):  # written out here, not by calling the code under test
        return hmac.new(settings.SECRET_KEY.encode(), f"{phone}:123456".encode(), hashlib.sha256).hexdigest()

    assert stored == {
        "+919999999999": independent_hmac("+919999999999"),
        "+918888888888": independent_hmac("+918888888888"),
    }
    assert stored["+919999999999"] != stored["+918888888888"]


def test_a_code_hash_copied_to_another_phone_does_not_log_that_phone_in(api_client, sms_outbox, settings):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    send(api_client, "9999999999")
    code = sent_code(sms_outbox)
    send(api_client, "8888888888")
    mine = OneTimePassword.objects.get(phone_number=PHONE)
    OneTimePassword.objects.filter(phone_number="+918888888888").update(code_hash=mine.code_hash)
    response = api_client.post(VERIFY, {"phone_number": "8888888888", "otp": code})
    assert response.status_code == 400 and response.data["code"] == "otp_invalid"
    assert not User.objects.filter(phone_number="+918888888888").exists()


def test_verify_creates_a_client_with_a_wallet_for_an_unknown_phone(api_client, sms_outbox):
    send(api_client)
    response = api_client.post(VERIFY, {"phone_number": "9999999999", "otp": sent_code(sms_outbox)})
    assert response.status_code == 200, response.data
    assert response.data["created"] is True
    user = User.objects.get(phone_number=PHONE)
    assert user.username == "user_9999999999"
    assert user.user_type == UserType.CLIENT
    assert user.wallet.balance == 0
    assert response.data["user"]["username"] == "user_9999999999"
    assert response.data["user"]["user_type_display"] == "Client"
    assert response.data["access"] and response.data["refresh"]


def test_verify_logs_in_the_existing_user_with_that_phone(api_client, sms_outbox):
    user = ClientFactory(phone_number=PHONE)
    send(api_client)
    response = api_client.post(VERIFY, {"phone_number": "+91 99999-99999", "otp": sent_code(sms_outbox)})
    assert response.status_code == 200
    assert response.data["created"] is False
    assert response.data["user"]["id"] == user.pk
    assert User.objects.count() == 1


def test_second_seed_paths_route_to_the_same_views(api_client, settings, sms_outbox):
    settings.OTP_EXPOSE_IN_RESPONSE = True
    sent = api_client.post("/auth/send-otp/", {"phone_number": "9999999999"})
    assert sent.status_code == 200
    assert sent.data["otp"] == sent_code(sms_outbox)
    verified = api_client.post("/auth/verify-otp/", {"phone_number": "9999999999", "otp": sent.data["otp"]})
    assert verified.status_code == 200
    assert {"access", "refresh", "user"} <= set(verified.data)
    assert verified.data["user"]["username"] == "user_9999999999"


def test_the_seeds_phone_numbers_are_accepted(api_client):
    for phone in ("9999999999", "8888888888", "+1234567890"):
        assert send(api_client, phone).status_code == 200, phone


def test_an_expired_code_is_refused(api_client, sms_outbox):
    send(api_client)
    OneTimePassword.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = api_client.post(VERIFY, {"phone_number": PHONE, "otp": sent_code(sms_outbox)})
    assert response.status_code == 400
    assert response.data["code"] == "otp_expired"
    assert not User.objects.exists()


def test_five_wrong_codes_kill_the_code_even_for_the_right_one(api_client, sms_outbox, settings):
    assert settings.OTP_MAX_ATTEMPTS == 5
    send(api_client)
    code = sent_code(sms_outbox)
    for _ in range(5):
        response = api_client.post(VERIFY, {"phone_number": PHONE, "otp": wrong(code)})
        assert response.status_code == 400
        assert response.data["code"] in {"otp_invalid", "otp_attempts_exceeded"}
    response = api_client.post(VERIFY, {"phone_number": PHONE, "otp": code})
    assert response.status_code == 400
    assert response.data["code"] == "otp_attempts_exceeded"
    assert not User.objects.exists()


def test_a_wrong_code_under_the_limit_leaves_the_right_one_usable(api_client, sms_outbox):
    send(api_client)
    code = sent_code(sms_outbox)
    assert api_client.post(VERIFY, {"phone_number": PHONE, "otp": wrong(code)}).data["code"] == "otp_invalid"
    assert api_client.post(VERIFY, {"phone_number": PHONE, "otp": code}).status_code == 200


def test_a_code_cannot_be_used_twice(api_client, sms_outbox):
    send(api_client)
    code = sent_code(sms_outbox)
    assert api_client.post(VERIFY, {"phone_number": PHONE, "otp": code}).status_code == 200
    response = api_client.post(VERIFY, {"phone_number": PHONE, "otp": code})
    assert response.status_code == 400
    assert response.data["code"] == "otp_invalid"


def test_a_code_for_one_phone_does_not_work_for_another(api_client, settings, monkeypatch):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    codes = {"+919999999999": "111111", "+918888888888": "222222"}
    monkeypatch.setattr(otp, "_code_for", lambda *, phone_number, expires_at: codes[phone_number])
    send(api_client, "9999999999")
    send(api_client, "8888888888")
    response = api_client.post(VERIFY, {"phone_number": "8888888888", "otp": "111111"})
    assert response.status_code == 400
    assert api_client.post(VERIFY, {"phone_number": "8888888888", "otp": "222222"}).status_code == 200


def test_only_the_newest_code_of_a_phone_works(api_client, settings, monkeypatch):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    codes = {}  # one code per expiry: the first code sent is 111111, the second 222222
    monkeypatch.setattr(
        otp, "_code_for", lambda *, phone_number, expires_at: codes.setdefault(expires_at, f"{len(codes) + 1}" * 6)
    )
    send(api_client)
    send(api_client)
    assert api_client.post(VERIFY, {"phone_number": PHONE, "otp": "111111"}).status_code == 400
    assert api_client.post(VERIFY, {"phone_number": PHONE, "otp": "222222"}).status_code == 200


def test_verify_without_any_code_sent_is_refused(api_client):
    response = api_client.post(VERIFY, {"phone_number": PHONE, "otp": "123456"})
    assert response.status_code == 400
    assert response.data["code"] == "otp_invalid"


def test_a_resend_inside_the_cooldown_is_refused_with_retry_after(api_client, sms_outbox, settings):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 30
    assert send(api_client).status_code == 200
    response = send(api_client)
    assert response.status_code == 429
    assert response.data["code"] == "otp_cooldown"
    assert 1 <= int(response["Retry-After"]) <= 30
    assert len(sms_outbox) == 1


def test_a_resend_after_the_cooldown_is_sent(api_client, sms_outbox, settings):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 30
    send(api_client)
    OneTimePassword.objects.update(created_at=timezone.now() - timedelta(seconds=31))
    from django.core.cache import cache

    cache.clear()
    assert send(api_client).status_code == 200
    assert len(sms_outbox) == 2


def test_codes_per_phone_per_hour_are_capped(api_client, sms_outbox, settings):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    settings.OTP_MAX_PER_HOUR = 3
    for _ in range(3):
        assert send(api_client).status_code == 200
    response = send(api_client)
    assert response.status_code == 429
    assert response.data["code"] == "otp_rate_limited"
    assert int(response["Retry-After"]) > 0
    assert len(sms_outbox) == 3


def spend_the_budget(api_client, settings, phone=PHONE):
    """Wrong codes from the test client's address until the phone is guarded (budgets under a code's
    OTP_MAX_ATTEMPTS, so that one code takes them all)."""
    assert settings.OTP_DAILY_GUESS_BUDGET < settings.OTP_MAX_ATTEMPTS
    send(api_client, phone)
    for _ in range(settings.OTP_DAILY_GUESS_BUDGET):
        assert api_client.post(VERIFY, {"phone_number": phone, "otp": "000000"}).status_code == 400


def test_the_daily_budget_of_wrong_codes_guards_the_phone(api_client, sms_outbox, settings):
    settings.OTP_DAILY_GUESS_BUDGET = 3
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    spend_the_budget(api_client, settings)
    assert otp.phone_guard_state(phone_number=PHONE)["guarded"] is True
    assert OtpPhoneGuard.objects.get().guarded_since is not None
    send(api_client)
    assert OneTimePassword.objects.order_by("-pk").first().bound_to_address is True


def test_an_admin_lift_puts_the_phone_back_in_normal_mode(api_client, sms_outbox, settings):
    settings.OTP_DAILY_GUESS_BUDGET = 2
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    spend_the_budget(api_client, settings)
    assert otp.lift_phone_guard(phone_number=PHONE) is True
    assert otp.phone_guard_state(phone_number=PHONE)["guarded"] is False
    send(api_client)
    assert OneTimePassword.objects.order_by("-pk").first().bound_to_address is False
    assert api_client.post(VERIFY, {"phone_number": PHONE, "otp": sent_code(sms_outbox)}).status_code == 200


def test_the_guard_window_starts_again_after_a_day(api_client, sms_outbox, settings):
    settings.OTP_DAILY_GUESS_BUDGET = 2
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    spend_the_budget(api_client, settings)
    OtpPhoneGuard.objects.update(window_started_at=timezone.now() - timedelta(days=1, minutes=1))
    assert otp.phone_guard_state(phone_number=PHONE)["guarded"] is False
    send(api_client)
    assert api_client.post(VERIFY, {"phone_number": PHONE, "otp": wrong(sent_code(sms_outbox))}).status_code == 400
    guard = OtpPhoneGuard.objects.get()
    assert (guard.failed_count, guard.guarded_since) == (1, None)


def test_a_deactivated_user_cannot_log_in_by_otp(api_client, sms_outbox):
    ClientFactory(phone_number=PHONE, is_active=False)
    send(api_client)
    response = api_client.post(VERIFY, {"phone_number": PHONE, "otp": sent_code(sms_outbox)})
    assert response.status_code == 403
    assert response.data["code"] == "account_inactive"


def test_the_otp_username_never_collides_with_an_existing_one(api_client, sms_outbox):
    ClientFactory(username="user_9999999999", phone_number="+918888888888")
    send(api_client)
    response = api_client.post(VERIFY, {"phone_number": PHONE, "otp": sent_code(sms_outbox)})
    assert response.status_code == 200
    assert response.data["user"]["username"] == "user_9999999999_2"


def test_a_verification_that_loses_the_race_for_the_code_is_refused(api_client, sms_outbox, monkeypatch):
    """Another request consumes the code between our check and our UPDATE: the conditional UPDATE
    matches no row, so this one logs nobody in."""
    send(api_client)
    code = sent_code(sms_outbox)
    real_matches = otp._code_matches

    def matches_then_someone_else_consumes(otp, candidate):
        result = real_matches(otp, candidate)
        OneTimePassword.objects.filter(pk=otp.pk).update(consumed_at=timezone.now())
        return result

    monkeypatch.setattr(otp, "_code_matches", matches_then_someone_else_consumes)
    response = api_client.post(VERIFY, {"phone_number": PHONE, "otp": code})
    assert response.status_code == 400
    assert response.data["code"] == "otp_invalid"
    assert not User.objects.exists()


def test_otp_endpoints_are_throttled_per_client_address(api_client, monkeypatch):
    from rest_framework.throttling import ScopedRateThrottle

    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {**ScopedRateThrottle.THROTTLE_RATES, "otp": "2/min"})
    api_client.post(VERIFY, {"phone_number": PHONE, "otp": "000000"})
    api_client.post(VERIFY, {"phone_number": "8888888888", "otp": "000000"})
    response = api_client.post(VERIFY, {"phone_number": "7777777777", "otp": "000000"})
    assert response.status_code == 429
    assert "Retry-After" in response
