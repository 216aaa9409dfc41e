"""Abuse limits that cannot be bypassed nor turned against the owner: resource consumption (OWASP
API4) and security issue 12's item 3.

Each test names the attack; each of issue 12's failed on the code before the fix."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import otp
from accounts.models import OneTimePassword
from accounts.tests.factories import ClientFactory

pytestmark = pytest.mark.django_db

GENERATE = "/api/auth/otp/generate/"
VERIFY = "/api/auth/otp/verify/"
OWNER_PHONE = "+919812300001"
OWNER_ADDRESS = "192.0.2.7"


def stranger_addresses(count):
    return [f"198.51.{index // 250}.{index % 250 + 1}" for index in range(count)]


# One client for every address (REMOTE_ADDR is set per request): a new client per request would load
# the middleware again each time.
CLIENT = APIClient()


def ask_for_code(phone, address):
    return CLIENT.post(GENERATE, {"phone_number": phone}, format="json", REMOTE_ADDR=address)


def try_code(phone, code, address):
    return CLIENT.post(VERIFY, {"phone_number": phone, "otp": code}, format="json", REMOTE_ADDR=address)


@pytest.fixture
def codes_in_answers(settings):
    settings.OTP_EXPOSE_IN_RESPONSE = True
    # A second code for the phone within 30 s is not what these tests are about.
    settings.OTP_RESEND_COOLDOWN_SECONDS = 0


# --- flooding: pages, login and OTP endpoints (OWASP API4) ----------------------------------------


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
def test_auth_endpoints_are_throttled_with_retry_after(api_client, monkeypatch, path, body):
    # Tighter rates for this test only: monkeypatch puts the throttles' table back afterwards (an
    # override_settings block restored the settings but left the 3/min table to the next tests).
    from rest_framework.throttling import SimpleRateThrottle

    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "login": "3/min", "otp": "3/min"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    statuses = [api_client.post(path, body, format="json") for _ in range(4)]
    assert statuses[-1].status_code == 429
    assert statuses[-1].json()["code"] == "throttled"
    assert int(statuses[-1]["Retry-After"]) >= 1


# --- 3. OTP guessing: bounded per phone, and never a lock-out of the owner -------------------------


def test_a_strangers_flood_of_wrong_codes_does_not_stop_the_owner_logging_in_with_a_fresh_code(codes_in_answers):
    owner = ClientFactory(phone_number=OWNER_PHONE)
    assert ask_for_code(OWNER_PHONE, stranger_addresses(1)[0]).status_code == 200
    flood = 0
    # 150 wrong codes, more than the 100 that used to lock the phone for a day, from 30 addresses
    # (5 each: under every per-address limit, so that only the per-phone rules are at play).
    for address in stranger_addresses(30):
        for guess in range(5):
            response = try_code(OWNER_PHONE, f"{flood * 7 + guess:06d}", address)
            assert response.status_code == 400, response.json()
            flood += 1
    assert otp.phone_guard_state(phone_number=OWNER_PHONE)["guarded"] is True

    fresh = ask_for_code(OWNER_PHONE, OWNER_ADDRESS)
    assert fresh.status_code == 200, fresh.json()
    login = try_code(OWNER_PHONE, fresh.json()["otp"], OWNER_ADDRESS)
    assert login.status_code == 200, login.json()
    assert (login.json()["user"]["id"], login.json()["created"]) == (owner.pk, False)


def test_a_guarded_code_is_out_of_reach_from_any_other_address(codes_in_answers, settings):
    settings.OTP_DAILY_GUESS_BUDGET = 0  # guarded from the start
    fresh = ask_for_code(OWNER_PHONE, OWNER_ADDRESS)
    code = fresh.json()["otp"]
    # Even the right code, from elsewhere (an intercepted SMS, a lucky guess), reaches nothing...
    elsewhere = try_code(OWNER_PHONE, code, stranger_addresses(1)[0])
    assert elsewhere.status_code == 400
    assert "access" not in elsewhere.json()
    # ...and leaves the owner's code untouched.
    assert OneTimePassword.objects.get().attempts == 0
    assert try_code(OWNER_PHONE, code, OWNER_ADDRESS).status_code == 200


def test_a_guarded_code_allows_one_try(codes_in_answers, settings):
    settings.OTP_DAILY_GUESS_BUDGET = 0
    code = ask_for_code(OWNER_PHONE, OWNER_ADDRESS).json()["otp"]
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert try_code(OWNER_PHONE, wrong, OWNER_ADDRESS).json()["code"] == "otp_invalid"
    assert try_code(OWNER_PHONE, code, OWNER_ADDRESS).json()["code"] == "otp_attempts_exceeded"


def test_a_strangers_code_for_a_guarded_phone_does_not_cancel_the_owners_sms(codes_in_answers, settings):
    settings.OTP_DAILY_GUESS_BUDGET = 0
    ask_for_code(OWNER_PHONE, OWNER_ADDRESS)
    owners = OneTimePassword.objects.get()
    ask_for_code(OWNER_PHONE, stranger_addresses(1)[0])
    # The owner's SMS task runs late (a slow queue): its code is still the one to send.
    assert otp.send_otp_sms(otp_id=owners.pk) is True


def test_distributed_guessing_gets_no_more_tries_checked_per_phone_than_the_budgets(
    codes_in_answers, settings, monkeypatch
):
    """An attacker with 100 addresses asks for codes and guesses as fast as every limit lets it. The
    tries that reach a code are counted where the code is compared: never more than the daily
    budget plus one per guarded code, which keeps the chance of a success under 1 in 10,000."""
    settings.OTP_MAX_PER_HOUR = 10_000  # the SMS caps are another limit; this test is about guessing
    checked = []
    monkeypatch.setattr(otp, "_code_matches", lambda code, candidate: checked.append(candidate) and False)
    refusals = {}
    for address in stranger_addresses(100):
        ask_for_code(OWNER_PHONE, address)
        for guess in range(3):
            code = try_code(OWNER_PHONE, f"{len(checked) * 3 + guess:06d}", address).json()["code"]
            refusals[code] = refusals.get(code, 0) + 1
    bound = settings.OTP_DAILY_GUESS_BUDGET + settings.OTP_GUARDED_CODES_PER_DAY
    assert len(checked) == bound, refusals
    assert bound / 10**settings.OTP_LENGTH < 1e-4
    # Two windows at most overlap any 24-hour span: still under 1 in 10,000.
    assert 2 * bound / 10**settings.OTP_LENGTH < 1e-4
    assert ask_for_code(OWNER_PHONE, OWNER_ADDRESS).json()["code"] == "otp_locked"


def test_one_address_gets_only_a_few_of_a_guarded_phones_codes(codes_in_answers, settings):
    settings.OTP_DAILY_GUESS_BUDGET = 0
    address = stranger_addresses(1)[0]
    for _ in range(settings.OTP_GUARDED_CODES_PER_ADDRESS):
        assert ask_for_code(OWNER_PHONE, address).status_code == 200
    refused = ask_for_code(OWNER_PHONE, address)
    assert (refused.status_code, refused.json()["code"]) == (429, "otp_address_limit")
    assert ask_for_code(OWNER_PHONE, OWNER_ADDRESS).status_code == 200


class Clock:
    """accounts.otp's view of the time, moved by hand."""

    def __init__(self):
        self.current = timezone.now()

    def now(self):
        return self.current


def test_an_address_that_keeps_sending_wrong_codes_waits_twice_as_long_after_each(settings, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(otp, "timezone", clock)
    guesser, owner = stranger_addresses(1)[0], OWNER_ADDRESS

    def verify(address):
        try:
            otp.verify_otp(phone_number=OWNER_PHONE, code="123456", client_address=address)
        except otp.OtpBackoff as backoff:
            return backoff.retry_after
        except otp.OtpInvalid:
            return "refused"

    for _ in range(settings.OTP_ADDRESS_FREE_FAILURES):
        assert verify(guesser) == "refused"
    waits = []
    for _ in range(4):
        assert verify(guesser) == "refused"
        waits.append(verify(guesser))
        clock.current += timedelta(seconds=waits[-1])
    assert waits == [2, 4, 8, 16]
    # The wait is the guessing address's own: another address is looked at at once.
    assert verify(owner) == "refused"


def test_the_backoff_of_an_address_stops_at_its_cap(settings, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(otp, "timezone", clock)
    settings.OTP_ADDRESS_FREE_FAILURES = 0
    settings.OTP_ADDRESS_BACKOFF_MAX_SECONDS = 10
    address = stranger_addresses(1)[0]
    for _ in range(6):
        with pytest.raises(otp.OtpInvalid):
            otp.verify_otp(phone_number=OWNER_PHONE, code="123456", client_address=address)
        with pytest.raises(otp.OtpBackoff) as backoff:
            otp.verify_otp(phone_number=OWNER_PHONE, code="123456", client_address=address)
        clock.current += timedelta(seconds=backoff.value.retry_after)
    assert backoff.value.retry_after == 10
    # The tries refused by the wait were never looked at.
    assert otp.phone_guard_state(phone_number=OWNER_PHONE)["failed_count"] == 6


# --- 3. throttles trust no proxy header unless told to -------------------------------------------


@pytest.fixture
def tight_rates(monkeypatch):
    """Every scope at 2 requests a minute, so that the third is the one a limit must refuse."""
    from rest_framework.throttling import SimpleRateThrottle

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", dict.fromkeys(SimpleRateThrottle.THROTTLE_RATES, "2/min"))


PUBLIC_LIMITED = {
    "email login": ("/api/auth/login/email/", lambda n: {"email": f"nobody{n}@example.com", "password": "wrong"}),
    "OTP request": (GENERATE, lambda n: {"phone_number": f"+9198123{n:05d}"}),
    "OTP verify": (VERIFY, lambda n: {"phone_number": f"+9198123{n:05d}", "otp": "000000"}),
    "signup": ("/api/auth/signup/", lambda n: {"username": f"spoof{n}", "email": f"spoof{n}@example.com"}),
    "the second seed's send-otp": ("/auth/send-otp/", lambda n: {"phone_number": f"+9198123{n:05d}"}),
}


@pytest.mark.parametrize("endpoint", PUBLIC_LIMITED)
def test_a_new_x_forwarded_for_on_every_request_does_not_lift_the_limit(tight_rates, endpoint):
    path, body = PUBLIC_LIMITED[endpoint]
    client = APIClient()
    statuses = [
        client.post(path, body(n), format="json", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
        for n in range(3)
    ]
    assert statuses[-1].status_code == 429, [answer.status_code for answer in statuses]
    assert statuses[-1].json()["code"] == "throttled"


def test_behind_a_trusted_proxy_each_client_has_its_own_limit_and_spoofed_hops_are_ignored(tight_rates, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    client = APIClient()
    path, body = PUBLIC_LIMITED["email login"]

    def login(n, forwarded):
        # The proxy (REMOTE_ADDR) appends the address it saw to whatever the client sent.
        return client.post(path, body(n), format="json", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR=forwarded)

    assert [login(n, f"spoof-{n}, 198.51.100.1").status_code for n in range(3)] == [401, 401, 429]
    assert login(3, "198.51.100.2").status_code == 401


def test_the_otp_address_backoff_is_not_escaped_by_a_new_x_forwarded_for(settings):
    settings.OTP_ADDRESS_FREE_FAILURES = 0
    tries = [
        try_code_from(OWNER_PHONE, "123456", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}")
        for n in range(2)
    ]
    assert [answer.json()["code"] for answer in tries] == ["otp_invalid", "otp_backoff"]


def try_code_from(phone, code, **meta):
    return CLIENT.post(VERIFY, {"phone_number": phone, "otp": code}, format="json", **meta)


@pytest.mark.parametrize(
    ("meta", "proxies", "client"),
    [
        ({"REMOTE_ADDR": "192.0.2.1", "HTTP_X_FORWARDED_FOR": "10.0.0.1"}, 0, "192.0.2.1"),
        ({"REMOTE_ADDR": "192.0.2.1"}, 1, "192.0.2.1"),
        ({"REMOTE_ADDR": "10.1.1.1", "HTTP_X_FORWARDED_FOR": "spoof, 198.51.100.1"}, 1, "198.51.100.1"),
        ({"REMOTE_ADDR": "10.1.1.2", "HTTP_X_FORWARDED_FOR": "spoof, 198.51.100.1, 10.1.1.1"}, 2, "198.51.100.1"),
        ({"REMOTE_ADDR": "10.1.1.2", "HTTP_X_FORWARDED_FOR": "198.51.100.1"}, 2, "198.51.100.1"),
    ],
)
def test_the_client_address_is_read_one_way(settings, meta, proxies, client):
    from django.test import RequestFactory

    from core.net import client_ip

    settings.TRUSTED_PROXY_COUNT = proxies
    assert client_ip(RequestFactory().get("/", **meta)) == client


def test_the_docker_image_trusts_forwarded_headers_only_from_the_configured_proxies():
    from pathlib import Path

    dockerfile = (Path(__file__).resolve().parents[2] / "Dockerfile").read_text()
    assert "--forwarded-allow-ips" in dockerfile
    assert 'FORWARDED_ALLOW_IPS="127.0.0.1,::1"' in dockerfile
    assert "TRUSTED_PROXY_COUNT=0" in dockerfile


# --- 3. password guessing: a per-account lockout, at the API and the Django admin alike -----------

LOGIN = "/api/auth/login/email/"
ADMIN_LOGIN = "/admin/login/"


@pytest.fixture
def lockout_after_five(settings):
    settings.AXES_FAILURE_LIMIT = 5


def api_login(user, password, address):
    return APIClient().post(LOGIN, {"email": user.email, "password": password}, format="json", REMOTE_ADDR=address)


def admin_login(user, password, address):
    from django.test import Client

    session = Client(REMOTE_ADDR=address)
    answer = session.post(ADMIN_LOGIN, {"username": user.username, "password": password, "next": "/admin/"})
    return answer, "_auth_user_id" in session.session


def test_the_right_password_is_refused_after_the_limit_of_wrong_ones_from_many_addresses(lockout_after_five):
    from accounts.tests.factories import DEFAULT_PASSWORD

    victim = ClientFactory()
    guesses = [api_login(victim, f"guess-{n}", address) for n, address in enumerate(stranger_addresses(5))]
    assert [answer.status_code for answer in guesses] == [401, 401, 401, 401, 429]
    right = api_login(victim, DEFAULT_PASSWORD, stranger_addresses(6)[-1])
    assert (right.status_code, right.json()["code"]) == (429, "account_locked")
    assert "access" not in right.json()
    assert int(right["Retry-After"]) == 30 * 60


def test_the_django_admin_login_is_locked_too(lockout_after_five):
    from accounts.tests.factories import DEFAULT_PASSWORD, AdminFactory

    admin = AdminFactory()
    for address in stranger_addresses(5):
        answer, signed_in = admin_login(admin, "not-the-password", address)
        assert not signed_in
    answer, signed_in = admin_login(admin, DEFAULT_PASSWORD, OWNER_ADDRESS)
    assert (answer.status_code, answer.json()["code"], signed_in) == (429, "account_locked", False)


def test_wrong_passwords_at_the_admin_and_at_the_api_count_against_one_account(lockout_after_five):
    from accounts.tests.factories import DEFAULT_PASSWORD, AdminFactory

    admin = AdminFactory()
    for address in stranger_addresses(3):
        admin_login(admin, "not-the-password", address)
    assert api_login(admin, "still-not-it", OWNER_ADDRESS).status_code == 401
    assert api_login(admin, "nor-this", OWNER_ADDRESS).json()["code"] == "account_locked"
    assert api_login(admin, DEFAULT_PASSWORD, OWNER_ADDRESS).json()["code"] == "account_locked"


def test_guessing_at_an_unknown_email_or_another_account_locks_nobody_else(lockout_after_five):
    from accounts.tests.factories import DEFAULT_PASSWORD

    owner, other = ClientFactory(), ClientFactory()
    stranger = APIClient()
    for n in range(6):
        body = {"email": "nobody@example.com", "password": f"x{n}"}
        stranger.post(LOGIN, body, format="json", REMOTE_ADDR=f"10.9.0.{n}")
        api_login(other, f"x{n}", f"10.8.0.{n}")
    assert api_login(owner, DEFAULT_PASSWORD, OWNER_ADDRESS).status_code == 200


def test_the_lock_lifts_by_itself_after_the_cool_off(lockout_after_five, settings):
    from axes.models import AccessAttempt

    from accounts.tests.factories import DEFAULT_PASSWORD

    victim = ClientFactory()
    for n, address in enumerate(stranger_addresses(5)):
        api_login(victim, f"guess-{n}", address)
    assert api_login(victim, DEFAULT_PASSWORD, OWNER_ADDRESS).status_code == 429
    # The cool-off runs from the last failure: make that one cool-off and a second ago.
    AccessAttempt.objects.update(attempt_time=timezone.now() - settings.AXES_COOLOFF_TIME - timedelta(seconds=1))
    assert api_login(victim, DEFAULT_PASSWORD, OWNER_ADDRESS).status_code == 200


def test_an_admin_lifts_the_lock_in_the_django_admin(lockout_after_five):
    from axes.models import AccessAttempt
    from django.test import Client

    from accounts.tests.factories import DEFAULT_PASSWORD, AdminFactory

    victim = ClientFactory()
    for n, address in enumerate(stranger_addresses(5)):
        api_login(victim, f"guess-{n}", address)
    # One row per address the guesses came from; the admin selects the account's rows and deletes them.
    rows = list(AccessAttempt.objects.filter(username=victim.username).values_list("pk", flat=True))
    staff = Client()
    staff.force_login(AdminFactory())
    assert staff.get("/admin/axes/accessattempt/", {"q": victim.username}).status_code == 200
    deleted = staff.post(
        "/admin/axes/accessattempt/", {"action": "delete_selected", "_selected_action": rows, "post": "yes"}
    )
    assert deleted.status_code == 302, deleted.content[:300]
    assert not AccessAttempt.objects.exists()
    assert api_login(victim, DEFAULT_PASSWORD, OWNER_ADDRESS).status_code == 200


def test_a_locked_account_still_logs_in_by_otp(lockout_after_five, codes_in_answers):
    owner = ClientFactory(phone_number=OWNER_PHONE, phone_verified=True)
    for n, address in enumerate(stranger_addresses(5)):
        api_login(owner, f"guess-{n}", address)
    code = ask_for_code(OWNER_PHONE, OWNER_ADDRESS).json()["otp"]
    login = try_code(OWNER_PHONE, code, OWNER_ADDRESS)
    assert (login.status_code, login.json()["user"]["id"]) == (200, owner.pk)


def test_an_authenticate_call_without_a_request_is_no_network_login_and_is_not_refused(lockout_after_five):
    from django.contrib.auth import authenticate

    from accounts.tests.factories import DEFAULT_PASSWORD

    user = ClientFactory()
    assert authenticate(None, username=user.username, password=DEFAULT_PASSWORD) == user


# --- 3. money-moving endpoints: a per-user limit ---------------------------------------------------


def money_requests():
    """One request of each money-moving endpoint, as (path, body, who may call it)."""
    from plans.tests.factories import RechargePlanFactory

    plan = RechargePlanFactory(amount=10)
    return {
        "credit": ("/api/wallet/credit/", {"amount": "1.00"}, "client"),
        "debit": ("/api/wallet/debit/", {"amount": "1.00"}, "client"),
        "transfer": ("/api/wallet/transfer/", {"to_user_id": "receiver", "amount": "1.00"}, "client"),
        "seed transfer": ("/wallet/transfer/", {"to_user_id": "receiver", "amount": "1.00"}, "client"),
        "purchase": ("/api/purchases/purchase/", {"plan_id": plan.pk, "mobile_number": "9876543210"}, "client"),
        "admin funding": ("/api/wallet/add-to-wallet/", {"user_id": "receiver", "amount": "1.00"}, "admin"),
        "admin debit": ("/api/wallet/debit-from-wallet/", {"user_id": "receiver", "amount": "1.00"}, "admin"),
    }


@pytest.mark.parametrize(
    "endpoint", ["credit", "debit", "transfer", "seed transfer", "purchase", "admin funding", "admin debit"]
)
def test_a_signed_in_user_cannot_move_money_faster_than_the_money_limit(settings, monkeypatch, endpoint):
    from rest_framework.throttling import SimpleRateThrottle

    from accounts.tests.factories import AdminFactory
    from tests.helpers import client_for
    from wallet import services as ledger

    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "money": "3/min"})
    path, body, role = money_requests()[endpoint]
    caller, receiver = (AdminFactory() if role == "admin" else ClientFactory()), ClientFactory()
    for user in (caller, receiver):
        ledger.fund_wallet(user=user, amount=Decimal("1000"), remarks="test funding", initiated_by=None)
    body = {key: receiver.pk if value == "receiver" else value for key, value in body.items()}
    session = client_for(caller)
    # Each with a key of its own: distinct requests (an unkeyed repeat of a purchase is refused as a
    # duplicate), each of which moves money (201; a purchase is accepted with 202).
    answers = [session.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=f"k{n}") for n in range(4)]
    assert all(answer.status_code in (201, 202) for answer in answers[:3]), [answer.json() for answer in answers]
    assert answers[3].status_code == 429
    assert answers[3].json()["code"] == "throttled"
    assert int(answers[3]["Retry-After"]) >= 1
    # The limit is the caller's own: another user still moves money.
    other = ClientFactory() if role == "client" else AdminFactory()
    ledger.fund_wallet(user=other, amount=Decimal("1000"), remarks="test funding", initiated_by=None)
    assert client_for(other).post(path, body, format="json", HTTP_IDEMPOTENCY_KEY="k9").status_code in (201, 202)


def test_the_benchmark_raises_the_money_limit():
    from pathlib import Path

    bench = (Path(__file__).resolve().parents[2] / "bench" / "run.py").read_text()
    assert '"THROTTLE_MONEY": "100000000/min"' in bench
