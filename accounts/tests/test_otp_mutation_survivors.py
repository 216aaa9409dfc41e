"""Behaviours of accounts.otp that no test held until mutation testing showed it (issue 17).

Each test here kills one or more surviving mutants of `make mutate MUTATE=accounts.otp`
(docs/mutation.md lists them by name); each asserts what a client, an admin or an auditor relies
on, not how the code is written."""

import time
from datetime import timedelta

import pytest
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts import otp
from accounts.models import OneTimePassword, OtpPhoneGuard, User
from accounts.tests.factories import ClientFactory
from core.errors import Conflict

pytestmark = pytest.mark.django_db

PHONE = "+919812300002"


def guarded_phone(settings, *, started_at):
    """A phone whose budget of wrong tries was spent in the window that began at `started_at`."""
    return OtpPhoneGuard.objects.create(
        phone_number=PHONE,
        failed_count=settings.OTP_DAILY_GUESS_BUDGET,
        window_started_at=started_at,
        guarded_since=started_at,
    )


def test_a_wait_of_under_a_second_is_answered_as_one_second(settings):
    """Retry-After is whole seconds, rounded up: a client told 0 (or 2) would retry too early (or late)."""
    settings.OTP_RESEND_COOLDOWN_SECONDS = 30
    otp.request_otp(phone_number=PHONE)
    OneTimePassword.objects.update(created_at=timezone.now() - timedelta(seconds=29.5))
    with pytest.raises(otp.OtpCooldown) as refusal:
        otp.request_otp(phone_number=PHONE)
    assert refusal.value.retry_after == 1
    assert "wait 1 s" in str(refusal.value)


def test_codes_have_otp_length_digits_and_change_with_every_microsecond_of_the_expiry(settings):
    """The random microsecond of a code's expiry is what makes it unguessable from the time of the
    request: two expiries a microsecond apart give two codes, spread over every OTP_LENGTH-digit value."""
    start = timezone.now()
    codes = [otp._code_for(phone_number=PHONE, expires_at=start + timedelta(microseconds=n)) for n in range(200)]
    assert all(len(code) == settings.OTP_LENGTH and code.isdigit() for code in codes)
    assert len(set(codes)) >= 195  # 200 draws among 10**6 values: a collision or two at most


def test_a_guard_window_ends_exactly_one_day_after_it_started(settings):
    start = timezone.now() - timedelta(days=2)
    guarded_phone(settings, started_at=start)
    just_before = otp.phone_guard_state(phone_number=PHONE, now=start + timedelta(days=1, microseconds=-1))
    at_the_end = otp.phone_guard_state(phone_number=PHONE, now=start + timedelta(days=1))
    assert just_before == {
        "failed_count": settings.OTP_DAILY_GUESS_BUDGET,
        "guarded": True,
        "window_ends_at": start + timedelta(days=1),
    }
    assert at_the_end == {"failed_count": 0, "guarded": False, "window_ends_at": None}


def test_an_admin_lift_gives_the_phone_a_fresh_budget_and_window(settings):
    started = timezone.now() - timedelta(hours=3)
    guarded_phone(settings, started_at=started)
    before = timezone.now()
    assert otp.lift_phone_guard(phone_number=PHONE) is True
    guard = OtpPhoneGuard.objects.get(phone_number=PHONE)
    assert (guard.failed_count, guard.guarded_since) == (0, None)
    assert guard.window_started_at >= before
    state = otp.phone_guard_state(phone_number=PHONE)
    assert (state["failed_count"], state["guarded"]) == (0, False)
    assert state["window_ends_at"] >= before + timedelta(days=1)


def test_lifting_a_phone_that_is_not_guarded_says_so(settings):
    OtpPhoneGuard.objects.create(phone_number=PHONE, failed_count=1, window_started_at=timezone.now())
    assert otp.lift_phone_guard(phone_number=PHONE) is False
    assert otp.lift_phone_guard(phone_number="+919812300003") is False  # no guard at all


def test_a_second_request_racing_the_first_is_refused_even_with_a_one_second_cooldown(settings):
    """The database check cannot see a code whose transaction has not committed yet; the shared
    cache's claim refuses the second request meanwhile, whatever the cooldown's length."""
    settings.OTP_RESEND_COOLDOWN_SECONDS = 1
    otp.request_otp(phone_number=PHONE)
    OneTimePassword.objects.all().delete()  # as if the first request's code were not committed yet
    with pytest.raises(otp.OtpCooldown):
        otp.request_otp(phone_number=PHONE)


def test_the_cooldown_claim_lapses_with_the_cooldown(settings):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 1
    otp.request_otp(phone_number=PHONE)
    time.sleep(1.1)
    assert otp.request_otp(phone_number=PHONE).phone_number == PHONE


def test_a_refused_request_does_not_start_a_cooldown(settings):
    """A guarded phone refuses a code to a caller without an address; the owner asking right after,
    from its address, gets one (the refused request's cooldown claim is given back)."""
    settings.OTP_RESEND_COOLDOWN_SECONDS = 30
    guarded_phone(settings, started_at=timezone.now() - timedelta(hours=1))
    with pytest.raises(otp.OtpLocked):
        otp.request_otp(phone_number=PHONE, requested_from=None)
    issued = otp.request_otp(phone_number=PHONE, requested_from="192.0.2.7")
    assert OneTimePassword.objects.get().bound_to_address is True and issued.code


def test_a_number_outside_the_default_region_gets_a_username_of_its_digits(settings):
    phone = "+12025550143"
    issued = otp.request_otp(phone_number=phone)
    user, created = otp.verify_otp(phone_number=phone, code=issued.code)
    assert created and user.username == "user_12025550143"


def test_an_existing_holder_logs_in_without_any_attempt_to_create_an_account():
    """Its login neither releases claims nor tries an INSERT that the unique verified number would refuse."""
    holder = ClientFactory(phone_number=PHONE, phone_verified=True)
    issued = otp.request_otp(phone_number=PHONE)
    with CaptureQueriesContext(connection) as captured:
        user, created = otp.verify_otp(phone_number=PHONE, code=issued.code)
    assert (user, created) == (holder, False)
    writes = [q["sql"] for q in captured if '"accounts_user"' in q["sql"] and not q["sql"].startswith("SELECT")]
    assert writes == []


def test_wrong_codes_while_proving_a_phone_count_against_the_client_address(settings):
    settings.OTP_ADDRESS_FREE_FAILURES = 1
    user = ClientFactory()
    otp.request_otp(phone_number=PHONE)
    for _ in range(2):
        with pytest.raises(otp.OtpInvalid):
            otp.verify_phone_for(user=user, phone_number=PHONE, code="000000", client_address="192.0.2.8")
    with pytest.raises(otp.OtpBackoff):
        otp.verify_phone_for(user=user, phone_number=PHONE, code="000000", client_address="192.0.2.8")


def guarded_code(phone, *, address, created_at):
    row = OneTimePassword.objects.create(
        phone_number=phone,
        code_hash="0" * 64,
        expires_at=created_at + timedelta(minutes=1),
        requested_from=address,
        bound_to_address=True,
    )
    OneTimePassword.objects.filter(pk=row.pk).update(created_at=created_at)


def test_a_phone_out_of_guarded_codes_is_refused_until_its_window_ends(settings):
    settings.OTP_GUARDED_CODES_PER_DAY = 1
    start = timezone.now() - timedelta(hours=20)
    guarded_phone(settings, started_at=start)
    guarded_code(PHONE, address="192.0.2.7", created_at=start + timedelta(hours=1))
    with pytest.raises(otp.OtpLocked) as refusal:
        otp.request_otp(phone_number=PHONE, requested_from="192.0.2.8")
    assert abs(refusal.value.retry_after - 4 * 3600) <= 5


def test_only_this_phones_guarded_codes_of_this_window_count_against_its_allowance(settings):
    settings.OTP_GUARDED_CODES_PER_DAY = 1
    start = timezone.now() - timedelta(hours=20)
    guarded_phone(settings, started_at=start)
    guarded_code("+919812300003", address="192.0.2.7", created_at=start + timedelta(hours=1))  # another phone's
    guarded_code(PHONE, address="192.0.2.7", created_at=start - timedelta(hours=1))  # the last window's
    issued = otp.request_otp(phone_number=PHONE, requested_from="192.0.2.7")
    assert OneTimePassword.objects.filter(phone_number=PHONE, bound_to_address=True).count() == 2 and issued.code


class RecordingCache:
    """The cache accounts.otp uses, recording how long each entry it writes is kept."""

    def __init__(self, cache, *, lose_next_add=False):
        self.cache, self.kept_for, self.lose_next_add = cache, {}, lose_next_add

    def __getattr__(self, name):
        return getattr(self.cache, name)

    def add(self, key, value, timeout=DEFAULT_TIMEOUT):
        self.kept_for[key] = timeout
        added = self.cache.add(key, value, timeout=timeout)
        if self.lose_next_add:  # the entry expires at once, before the caller increments it
            self.lose_next_add = False
            self.cache.delete(key)
        return added

    def set(self, key, value, timeout=DEFAULT_TIMEOUT):
        self.kept_for[key] = timeout
        return self.cache.set(key, value, timeout=timeout)


@pytest.mark.parametrize("expires_before_its_increment", [False, True], ids=["counted", "expired meanwhile"])
def test_an_addresss_refused_tries_are_counted_for_a_day(settings, monkeypatch, expires_before_its_increment):
    """The daily allowance of refused tries per address (OTP_ADDRESS_FREE_FAILURES) is a day's: the
    count lives a day from the first refusal; one that expired just before its increment starts at 1."""
    recording = RecordingCache(otp.cache)
    monkeypatch.setattr(otp, "cache", recording)
    otp.request_otp(phone_number=PHONE)
    recording.lose_next_add = expires_before_its_increment
    for expected in (1, 2):
        with pytest.raises(otp.OtpInvalid):
            otp.verify_otp(phone_number=PHONE, code="000000", client_address="192.0.2.9")
        (key,) = [key for key in recording.kept_for if "failures" in key and "192.0.2.9" in key]
        assert (recording.cache.get(key), recording.kept_for[key]) == (expected, 24 * 3600)


def test_a_login_that_loses_the_race_to_create_the_account_logs_in_the_winners(monkeypatch):
    """Someone verified the number between our look-up and our INSERT: the unique verified number
    refuses ours, and the caller, who has just proved the number, gets that account."""
    issued = otp.request_otp(phone_number=PHONE)
    winner = []

    def someone_verifies_it_meanwhile(*, phone_number):
        winner.append(ClientFactory(phone_number=phone_number, phone_verified=True))

    monkeypatch.setattr(otp, "release_phone_claims", someone_verifies_it_meanwhile)
    user, created = otp.verify_otp(phone_number=PHONE, code=issued.code)
    assert (user, created) == (winner[0], False)


def test_a_login_whose_new_account_collides_with_another_is_refused_with_a_retry(monkeypatch):
    """The username was taken between our choice and our INSERT, and nobody holds the number: 409,
    nothing created (a retry picks another username)."""
    issued = otp.request_otp(phone_number=PHONE)
    set_unusable_password = User.set_unusable_password

    def someone_takes_the_username_meanwhile(user):
        ClientFactory(username=user.username)
        set_unusable_password(user)

    monkeypatch.setattr(User, "set_unusable_password", someone_takes_the_username_meanwhile)
    with pytest.raises(Conflict) as refusal:
        otp.verify_otp(phone_number=PHONE, code=issued.code)
    assert str(refusal.value) == "The account could not be created because of a concurrent change; retry."
    assert not User.objects.filter(phone_number=PHONE).exists()


def test_an_addresss_wait_is_kept_as_long_as_the_wait_and_no_longer(settings, monkeypatch):
    settings.OTP_ADDRESS_FREE_FAILURES = 0
    recording = RecordingCache(otp.cache)
    monkeypatch.setattr(otp, "cache", recording)
    otp.request_otp(phone_number=PHONE)
    with pytest.raises(otp.OtpInvalid):
        otp.verify_otp(phone_number=PHONE, code="000000", client_address="192.0.2.9")
    (key,) = [key for key in recording.kept_for if "wait" in key and "192.0.2.9" in key]
    assert recording.kept_for[key] == 2  # the first wait past the free failures: 2 s


def test_a_strangers_newer_code_for_a_guarded_phone_does_not_hide_the_owners(settings):
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    guarded_phone(settings, started_at=timezone.now() - timedelta(hours=1))
    owners = otp.request_otp(phone_number=PHONE, requested_from="192.0.2.7")
    otp.request_otp(phone_number=PHONE, requested_from="198.51.100.1")
    user, _ = otp.verify_otp(phone_number=PHONE, code=owners.code, client_address="192.0.2.7")
    assert user.phone_number == PHONE


@pytest.mark.parametrize("written", ["in the other order", "at the same moment"])
def test_the_code_that_counts_is_the_one_created_last(settings, written):
    """Newest by creation time, then by row: two requests may write their codes in the other order
    than they read the clock."""
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    first = otp.request_otp(phone_number=PHONE)
    second = otp.request_otp(phone_number=PHONE)
    older, newer = OneTimePassword.objects.order_by("pk")
    if written == "in the other order":
        OneTimePassword.objects.filter(pk=newer.pk).update(created_at=older.created_at - timedelta(seconds=1))
        last = first
    else:
        OneTimePassword.objects.filter(pk=newer.pk).update(created_at=older.created_at)
        last = second
    assert otp.verify_otp(phone_number=PHONE, code=last.code)[0].phone_number == PHONE


def test_a_code_tried_at_the_very_moment_it_expires_is_expired(monkeypatch):
    issued = otp.request_otp(phone_number=PHONE)
    at_expiry = type("Clock", (), {"now": staticmethod(lambda: issued.expires_at)})
    monkeypatch.setattr(otp, "timezone", at_expiry)
    with pytest.raises(otp.OtpExpired):
        otp.verify_otp(phone_number=PHONE, code=issued.code)


def test_four_wrong_codes_leave_the_right_one_usable(settings):
    assert settings.OTP_MAX_ATTEMPTS == 5
    issued = otp.request_otp(phone_number=PHONE)
    for _ in range(4):
        with pytest.raises(otp.OtpInvalid):
            otp.verify_otp(phone_number=PHONE, code=f"{(int(issued.code) + 1) % 10**6:06d}")
    assert otp.verify_otp(phone_number=PHONE, code=issued.code)[1] is True


def test_trying_one_phones_code_touches_no_other_code(settings):
    other = otp.request_otp(phone_number="+919812300003")
    mine = otp.request_otp(phone_number=PHONE)
    with pytest.raises(otp.OtpInvalid):
        otp.verify_otp(phone_number=PHONE, code=f"{(int(mine.code) + 1) % 10**6:06d}")
    otp.verify_otp(phone_number=PHONE, code=mine.code)
    untouched = OneTimePassword.objects.get(phone_number="+919812300003")
    assert (untouched.attempts, untouched.consumed_at) == (0, None)
    assert otp.verify_otp(phone_number="+919812300003", code=other.code)[1] is True


# --- request_otp and send_otp_sms (their run of `mutmut run "accounts.otp.x_request_otp*" ...`) ---


class Clock:
    """accounts.otp's view of the time, moved by hand (the rows' `created_at` is set to match)."""

    def __init__(self):
        self.current = timezone.now()

    def now(self):
        return self.current


@pytest.fixture
def clock(monkeypatch):
    frozen = Clock()
    monkeypatch.setattr(otp, "timezone", frozen)
    return frozen


def test_a_client_that_waits_the_cooldowns_retry_after_is_served(settings, clock):
    """The cooldown is a minimum gap: a request exactly OTP_RESEND_COOLDOWN_SECONDS after the last
    code, as Retry-After told the client, is served, not refused with another second to wait."""
    settings.OTP_RESEND_COOLDOWN_SECONDS = 30
    otp.request_otp(phone_number=PHONE)
    OneTimePassword.objects.update(created_at=clock.current)
    clock.current += timedelta(seconds=10)
    with pytest.raises(otp.OtpCooldown) as refusal:
        otp.request_otp(phone_number=PHONE)
    assert refusal.value.retry_after == 20
    clock.current += timedelta(seconds=20)
    # The shared cache's claim lapses with the cooldown in real time (held by
    # test_the_cooldown_claim_lapses_with_the_cooldown), which this clock does not move.
    otp.cache.clear()
    assert otp.request_otp(phone_number=PHONE).phone_number == PHONE


def test_a_phone_at_its_hourly_cap_is_told_to_retry_when_its_oldest_code_leaves_the_hour(settings, clock):
    """Retry-After is when the oldest of the hour's codes is an hour old; a request then is served
    (codes older than an hour do not count)."""
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    settings.OTP_MAX_PER_HOUR = 3
    for minutes_ago in (50, 30, 10):
        otp.request_otp(phone_number=PHONE)
        OneTimePassword.objects.filter(pk=OneTimePassword.objects.latest("pk").pk).update(
            created_at=clock.current - timedelta(minutes=minutes_ago)
        )
    with pytest.raises(otp.OtpHourlyLimit) as refusal:
        otp.request_otp(phone_number=PHONE)
    assert refusal.value.retry_after == 10 * 60
    assert "retry in 600 s" in str(refusal.value)
    clock.current += timedelta(minutes=10)
    assert otp.request_otp(phone_number=PHONE).phone_number == PHONE


def test_with_the_cooldown_off_no_request_is_refused_for_one_even_while_an_earlier_claim_is_live(settings):
    """OTP_RESEND_COOLDOWN_SECONDS = 0 is no cooldown at all: no claim is asked of the shared cache,
    so one still live (taken under the cooldown before, or by a simultaneous request) refuses nobody."""
    settings.OTP_RESEND_COOLDOWN_SECONDS = 30
    otp.request_otp(phone_number=PHONE)
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    assert otp.request_otp(phone_number=PHONE).phone_number == PHONE
    assert OneTimePassword.objects.filter(phone_number=PHONE).count() == 2


def test_codes_asked_at_the_same_moment_expire_at_different_fractions_of_a_second(settings, clock):
    """The code is derived from its expiry; a random fraction of a second in the expiry keeps it from
    being computed from the phone and the moment of the request."""
    phones = [f"+9198123000{n:02d}" for n in range(10, 15)]
    expiries = [otp.request_otp(phone_number=phone).expires_at for phone in phones]
    earliest = clock.current + timedelta(minutes=settings.OTP_EXPIRY_MINUTES)
    assert all(earliest <= expiry < earliest + timedelta(seconds=1) for expiry in expiries)
    assert len(set(expiries)) > 1  # five equal draws of a million values: 1 chance in 10**24
    assert sorted(OneTimePassword.objects.values_list("expires_at", flat=True)) == sorted(expiries)


def test_the_sms_of_a_code_that_expires_as_its_task_runs_is_not_sent(sms_outbox, monkeypatch):
    """A code is expired at its very expiry (as a try then is): a late task sends nothing."""
    issued = otp.request_otp(phone_number=PHONE)
    sms_outbox.clear()
    at_expiry = type("Clock", (), {"now": staticmethod(lambda: issued.expires_at)})
    monkeypatch.setattr(otp, "timezone", at_expiry)
    assert otp.send_otp_sms(otp_id=OneTimePassword.objects.get().pk) is False
    assert sms_outbox == []


def test_another_phones_newer_code_does_not_cancel_this_phones_sms(sms_outbox):
    otp.request_otp(phone_number=PHONE)
    mine = OneTimePassword.objects.get()
    otp.request_otp(phone_number="+919812300003")
    sms_outbox.clear()
    # This phone's SMS task runs late, after the other phone's code was made.
    assert otp.send_otp_sms(otp_id=mine.pk) is True
    assert [message.to for message in sms_outbox] == [PHONE]


def test_a_guarded_code_superseded_by_its_addresss_newer_one_is_not_sent(settings, sms_outbox):
    """On a guarded phone an address's newest code is the one it can use: the SMS of its older code,
    whose task runs late, is not sent; the newer one's is."""
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    guarded_phone(settings, started_at=timezone.now() - timedelta(hours=1))
    otp.request_otp(phone_number=PHONE, requested_from="192.0.2.7")
    newer = otp.request_otp(phone_number=PHONE, requested_from="192.0.2.7")
    older_row, newer_row = OneTimePassword.objects.order_by("created_at", "pk")
    assert older_row.bound_to_address and newer_row.bound_to_address
    sms_outbox.clear()
    assert otp.send_otp_sms(otp_id=older_row.pk) is False
    assert sms_outbox == []
    assert otp.send_otp_sms(otp_id=newer_row.pk) is True
    assert newer.code in sms_outbox[0].body


def test_a_code_asked_for_before_its_phone_was_guarded_is_not_sent_once_it_is(settings, sms_outbox):
    """The phone is guarded between the request and its SMS task (someone guessed wrong too often in
    between): a guarded phone accepts only codes bound to an address, so the unbound code would only
    put a useless code in the owner's hands. The task asks the guard as it stands when it runs."""
    otp.request_otp(phone_number=PHONE, requested_from="192.0.2.7")
    unbound = OneTimePassword.objects.get()
    assert not unbound.bound_to_address
    OtpPhoneGuard.objects.filter(phone_number=PHONE).update(failed_count=settings.OTP_DAILY_GUESS_BUDGET)
    assert otp.phone_guard_state(phone_number=PHONE)["guarded"]
    sms_outbox.clear()

    assert otp.send_otp_sms(otp_id=unbound.pk) is False
    assert sms_outbox == []
    with pytest.raises(otp.OtpInvalid):  # what the SMS would have carried: a code no try can use
        otp.verify_otp(phone_number=PHONE, code=otp._code_for(phone_number=PHONE, expires_at=unbound.expires_at),
                       client_address="192.0.2.7")  # fmt: skip


def test_a_bound_code_is_still_sent_once_its_phones_guard_is_lifted(settings, sms_outbox):
    """An admin lifts the guard before the SMS task runs: the address's bound code is still the one a
    try from that address is checked against, so it is sent."""
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0
    guarded_phone(settings, started_at=timezone.now() - timedelta(hours=1))
    issued = otp.request_otp(phone_number=PHONE, requested_from="192.0.2.7")
    assert OneTimePassword.objects.get().bound_to_address
    otp.lift_phone_guard(phone_number=PHONE)
    sms_outbox.clear()

    assert otp.send_otp_sms(otp_id=OneTimePassword.objects.get().pk) is True
    assert issued.code in sms_outbox[0].body
