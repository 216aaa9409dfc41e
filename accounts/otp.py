"""One-time passwords: codes sent by SMS, tried under limits that bound guessing, consumed once.

Only an HMAC of each code is stored (keyed with SECRET_KEY and bound to the phone).

The SMS is sent by a task (accounts.tasks.send_otp_sms), after the request has answered: a slow or
failing SMS provider neither holds nor fails the request, and is retried with backoff. The task gets
only the code's id: the code itself is derived from that row and SECRET_KEY (`_code_for`), so it is
neither stored nor put on the queue. The rate limits stay at request time.

Guessing (security issue 12.3). One try at a 6-digit code succeeds with probability 1/10^6, so what
must be bounded is the number of tries that are checked against a phone's codes, from anywhere:

- Normal mode: the phone's newest code may be tried from any address, OTP_MAX_ATTEMPTS times, and
  the phone has a budget of OTP_DAILY_GUESS_BUDGET wrong tries per window (24 h from the window's
  first wrong try).
- Guarded mode, once the budget is spent, until the window ends: a code is bound to the address that
  asked for it (a try from anywhere else never reaches it) and allows one try; the phone gets
  OTP_GUARDED_CODES_PER_DAY such codes per window, one address OTP_GUARDED_CODES_PER_ADDRESS of them.
- Per client address: after OTP_ADDRESS_FREE_FAILURES refused tries in a day, each further refusal
  makes the address wait 2, 4, 8 ... s (at most OTP_ADDRESS_BACKOFF_MAX_SECONDS) before its next try
  is looked at.

So at most BUDGET + GUARDED tries are checked per phone per window (defaults 20 + 25 = 45: a chance of
4.5 in 100,000 that a stranger gets in; a 24-hour span overlaps at most two windows: 9 in 100,000),
while a stranger's flood from other addresses can only push the phone into guarded mode, where the
owner's fresh code, bound to the owner's address, is out of its reach. Every try is decided under a
row lock on the phone's guard, so simultaneous tries cannot overrun a budget.
"""

import hashlib
import hmac
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import phonenumbers
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import status

from accounts.models import OneTimePassword, OtpPhoneGuard, User
from accounts.services import AccountInactive, prove_phone_number, release_phone_claims
from accounts.sms import send_sms
from core.errors import Conflict, DomainError
from core.queue import enqueue_after_commit
from core.roles import UserType

ONE_DAY = timedelta(days=1)
ONE_HOUR = timedelta(hours=1)
# 2**30 s is far past any cap; the exponent stops there so that a long flood costs no big integers.
_MAX_BACKOFF_EXPONENT = 30


# --- refusals -------------------------------------------------------------------------------------


class _LiftsByItself(DomainError):
    """A refusal that ends after `retry_after` seconds; answered 429 with a Retry-After header."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS

    def __init__(self, *, retry_after: float):
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(seconds=self.retry_after)


class OtpInvalid(DomainError):
    code = "otp_invalid"
    message = "The code is not valid. Ask for a new one if you no longer have it."


class OtpExpired(DomainError):
    code = "otp_expired"
    message = "The code has expired. Ask for a new one."


class OtpAttemptsExceeded(DomainError):
    code = "otp_attempts_exceeded"
    message = "Too many wrong tries for this code. Ask for a new one."


class OtpLocked(_LiftsByItself):
    code = "otp_locked"
    message = "Too many wrong codes for this phone number today; no more codes for it for {seconds} s."


class OtpCooldown(_LiftsByItself):
    code = "otp_cooldown"
    message = "A code was sent moments ago; wait {seconds} s before asking for another."


class OtpHourlyLimit(_LiftsByItself):
    code = "otp_rate_limited"
    message = "Too many codes asked for this phone number in the last hour; retry in {seconds} s."


class OtpAddressLimit(_LiftsByItself):
    code = "otp_address_limit"
    message = "Too many codes asked for this phone number from your address today; retry in {seconds} s."


class OtpBackoff(_LiftsByItself):
    code = "otp_backoff"
    message = "Too many wrong codes from your address; wait {seconds} s before trying again."


# --- codes ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedOtp:
    phone_number: str
    code: str
    expires_at: datetime

    @property
    def expires_in(self) -> int:
        return settings.OTP_EXPIRY_MINUTES * 60


def hash_otp(*, phone_number: str, code: str) -> str:
    """HMAC-SHA256 of the code, keyed with SECRET_KEY and bound to the phone: the code is never stored."""
    message = f"{phone_number}:{code}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def _code_matches(otp: OneTimePassword, code: str) -> bool:
    return hmac.compare_digest(otp.code_hash, hash_otp(phone_number=otp.phone_number, code=code))


def _code_for(*, phone_number: str, expires_at: datetime) -> str:
    """The code of the OTP row (phone, expiry to the microsecond): HMAC-SHA256 keyed with SECRET_KEY,
    reduced to OTP_LENGTH digits. Unpredictable without SECRET_KEY, like a random code; whoever holds
    SECRET_KEY and the table could equally try every code against `code_hash`, so deriving it costs no
    secrecy, and lets the sending task work from the row's id alone."""
    stamp = expires_at.astimezone(UTC).strftime("%Y%m%d%H%M%S%f")
    digest = hmac.new(settings.SECRET_KEY.encode(), f"otp-code:{phone_number}:{stamp}".encode(), hashlib.sha256)
    return str(int.from_bytes(digest.digest(), "big") % 10**settings.OTP_LENGTH).zfill(settings.OTP_LENGTH)


# --- the phone's guard ----------------------------------------------------------------------------


def _in_window(guard: OtpPhoneGuard | None, now: datetime) -> bool:
    return guard is not None and guard.window_started_at > now - ONE_DAY


def _is_guarded(guard: OtpPhoneGuard | None, now: datetime) -> bool:
    failed = guard.failed_count if _in_window(guard, now) else 0
    return failed >= settings.OTP_DAILY_GUESS_BUDGET


def _guard_for_update(*, phone_number: str, now: datetime) -> OtpPhoneGuard:
    """The phone's guard, locked until the caller's transaction ends; a window older than a day
    starts again."""
    guard, _ = OtpPhoneGuard.objects.select_for_update().get_or_create(
        phone_number=phone_number, defaults={"window_started_at": now}
    )
    if not _in_window(guard, now):
        guard.failed_count, guard.window_started_at, guard.guarded_since = 0, now, None
    return guard


def phone_guard_state(*, phone_number: str, now: datetime | None = None) -> dict:
    """What the guard of a phone says now: wrong tries counted, guarded or not, until when."""
    now = now or timezone.now()
    guard = OtpPhoneGuard.objects.filter(phone_number=phone_number).first()
    if not _in_window(guard, now):
        return {"failed_count": 0, "guarded": _is_guarded(None, now), "window_ends_at": None}
    return {
        "failed_count": guard.failed_count,
        "guarded": _is_guarded(guard, now),
        "window_ends_at": guard.window_started_at + ONE_DAY,
    }


def lift_phone_guard(*, phone_number: str) -> bool:
    """An admin puts a phone back in normal mode with a fresh budget. True if it was guarded."""
    now = timezone.now()
    was_guarded = _is_guarded(OtpPhoneGuard.objects.filter(phone_number=phone_number).first(), now)
    OtpPhoneGuard.objects.filter(phone_number=phone_number).update(
        failed_count=0, window_started_at=now, guarded_since=None
    )
    return was_guarded


# --- the client address ---------------------------------------------------------------------------


def _address_keys(address: str) -> tuple[str, str]:
    return f"otp:address-failures:{address}", f"otp:address-wait:{address}"


def _ensure_address_may_try(*, address: str | None, now: datetime) -> None:
    if not address:
        return
    until = cache.get(_address_keys(address)[1])
    if until is not None and until > now.timestamp():
        raise OtpBackoff(retry_after=until - now.timestamp())


def _record_address_failure(*, address: str | None, now: datetime) -> None:
    """Count a refused try from `address` (any phone) in its day; past the free ones, make it wait
    twice as long after each."""
    if not address:
        return
    failures_key, wait_key = _address_keys(address)
    cache.add(failures_key, 0, timeout=int(ONE_DAY.total_seconds()))
    try:
        failures = cache.incr(failures_key)
    except ValueError:  # expired between add and incr
        cache.set(failures_key, failures := 1, timeout=int(ONE_DAY.total_seconds()))
    excess = failures - settings.OTP_ADDRESS_FREE_FAILURES
    if excess > 0:
        wait = min(2 ** min(excess, _MAX_BACKOFF_EXPONENT), settings.OTP_ADDRESS_BACKOFF_MAX_SECONDS)
        cache.set(wait_key, now.timestamp() + wait, timeout=math.ceil(wait))


# --- asking for a code ----------------------------------------------------------------------------


def _ensure_guarded_code_allowed(*, guard: OtpPhoneGuard, address: str | None, now: datetime) -> None:
    window_end = guard.window_started_at + ONE_DAY
    issued = OneTimePassword.objects.filter(
        phone_number=guard.phone_number, bound_to_address=True, created_at__gte=guard.window_started_at
    )
    if address is None or issued.count() >= settings.OTP_GUARDED_CODES_PER_DAY:
        raise OtpLocked(retry_after=(window_end - now).total_seconds())
    if issued.filter(requested_from=address).count() >= settings.OTP_GUARDED_CODES_PER_ADDRESS:
        raise OtpAddressLimit(retry_after=(window_end - now).total_seconds())


def request_otp(*, phone_number: str, requested_from: str | None = None) -> IssuedOtp:
    """Create a code for the (normalised) phone and have it sent by SMS (a task, after commit).

    The same answer whether or not the phone belongs to a user. Refused inside the resend cooldown,
    past the hourly cap, and, while the phone is guarded, past its guarded codes (for the phone or
    for this address). Only the newest code of a phone (of this address, while guarded) can be used."""
    now = timezone.now()
    cooldown = settings.OTP_RESEND_COOLDOWN_SECONDS
    recent = OneTimePassword.objects.filter(phone_number=phone_number, created_at__gt=now - ONE_HOUR)
    last_sent = recent.order_by("-created_at").values_list("created_at", flat=True).first()
    if last_sent is not None and (now - last_sent).total_seconds() < cooldown:
        raise OtpCooldown(retry_after=cooldown - (now - last_sent).total_seconds())
    if recent.count() >= settings.OTP_MAX_PER_HOUR:
        oldest = recent.order_by("created_at").values_list("created_at", flat=True).first()
        raise OtpHourlyLimit(retry_after=(oldest + ONE_HOUR - now).total_seconds())
    # The database check above is the rule; this shared-cache claim closes the race between two
    # simultaneous requests (Redis makes it hold across app servers).
    cooldown_key = f"otp:cooldown:{phone_number}"
    if cooldown > 0 and not cache.add(cooldown_key, now.timestamp(), timeout=cooldown):
        raise OtpCooldown(retry_after=cooldown)
    # A random microsecond makes the expiry (and so the code) unguessable even to someone who knows
    # when the request was made; the code's strength rests on SECRET_KEY either way.
    expires_at = now + timedelta(minutes=settings.OTP_EXPIRY_MINUTES, microseconds=secrets.randbelow(1_000_000))
    code = _code_for(phone_number=phone_number, expires_at=expires_at)
    try:
        with transaction.atomic():
            guard = _guard_for_update(phone_number=phone_number, now=now)
            bound = _is_guarded(guard, now)
            if bound:
                _ensure_guarded_code_allowed(guard=guard, address=requested_from, now=now)
            otp = OneTimePassword.objects.create(
                phone_number=phone_number,
                code_hash=hash_otp(phone_number=phone_number, code=code),
                expires_at=expires_at,
                requested_from=requested_from,
                bound_to_address=bound,
            )
            from accounts import tasks  # here: accounts.tasks imports this module

            enqueue_after_commit(tasks.send_otp_sms, otp_id=otp.pk)
    except DomainError:
        cache.delete(cooldown_key)
        raise
    return IssuedOtp(phone_number=phone_number, code=code, expires_at=otp.expires_at)


def send_otp_sms(*, otp_id) -> bool:
    """Send the SMS of code `otp_id`, if it is still worth sending: not used, not expired and still the
    newest code that can be used (the phone's; for a code bound to an address, that address's). True
    if sent; SmsDeliveryFailed propagates, for the task to retry."""
    now = timezone.now()
    otp = OneTimePassword.objects.filter(pk=otp_id).first()
    if otp is None or otp.consumed_at is not None or otp.expires_at <= now:
        return False
    # The code a try from its address would be checked against now, under the phone's guard as it
    # stands now (not as it stood when the code was asked for): a phone guarded since then accepts
    # no unbound code, and a newer code replaces this one (a stranger's bound code does not).
    guarded = _is_guarded(OtpPhoneGuard.objects.filter(phone_number=otp.phone_number).first(), now)
    if _code_to_try(phone_number=otp.phone_number, address=otp.requested_from, guarded=guarded) != otp:
        return False
    code = _code_for(phone_number=otp.phone_number, expires_at=otp.expires_at)
    send_sms(to=otp.phone_number, body=f"Your login code is {code}. It expires in {settings.OTP_EXPIRY_MINUTES} min.")
    return True


# --- trying a code --------------------------------------------------------------------------------


def _code_to_try(*, phone_number: str, address: str | None, guarded: bool) -> OneTimePassword | None:
    """The code a try is checked against: the phone's newest; while guarded, the newest one bound
    to this address (a bound code is never reached from another address)."""
    codes = OneTimePassword.objects.filter(phone_number=phone_number)
    if guarded:
        if not address:
            return None
        codes = codes.filter(bound_to_address=True, requested_from=address)
    otp = codes.order_by("-created_at", "-pk").first()
    if otp is not None and otp.bound_to_address and otp.requested_from != address:
        return None
    return otp


def _try(otp: OneTimePassword | None, code: str, now: datetime) -> DomainError | None:
    """The refusal, or None when `code` is right and now consumed. The attempt is taken before the
    code is compared, so a code's limit holds under simultaneous tries."""
    if otp is None or otp.consumed_at is not None:
        return OtpInvalid()
    if otp.expires_at <= now:
        return OtpExpired()
    limit = 1 if otp.bound_to_address else settings.OTP_MAX_ATTEMPTS
    taken = OneTimePassword.objects.filter(pk=otp.pk, attempts__lt=limit, consumed_at__isnull=True).update(
        attempts=F("attempts") + 1
    )
    if not taken:
        return OtpAttemptsExceeded()
    if not _code_matches(otp, code):
        return OtpInvalid()
    consumed = OneTimePassword.objects.filter(pk=otp.pk, consumed_at__isnull=True, expires_at__gt=now).update(
        consumed_at=now
    )
    if not consumed:
        # Another verification consumed it between our read and this UPDATE.
        return OtpInvalid()
    return None


def _verify(*, phone_number: str, code: str, client_address: str | None, on_success: Callable):
    """Check `code` for the phone under the limits described above; on success consume it and
    return on_success() in the same transaction (a refusal from on_success leaves the code unused).

    Every refused try counts against the phone's budget (under its guard's row lock) and against
    the client address. Not only the wrong codes: a flood at a dead code guards the phone as soon as
    a flood at a live one would, and the owner's next code is then out of the flood's reach."""
    now = timezone.now()
    _ensure_address_may_try(address=client_address, now=now)
    with transaction.atomic():
        guard = _guard_for_update(phone_number=phone_number, now=now)
        guarded = _is_guarded(guard, now)
        otp = _code_to_try(phone_number=phone_number, address=client_address, guarded=guarded)
        refusal = _try(otp, code, now)
        if refusal is None:
            return on_success()
        guard.failed_count += 1
        if guard.guarded_since is None and _is_guarded(guard, now):
            guard.guarded_since = now
        guard.save()
    _record_address_failure(address=client_address, now=now)
    raise refusal


def verify_otp(*, phone_number: str, code: str, client_address: str | None = None) -> tuple[User, bool]:
    """Log in by a code: (user, created).

    The phone's verified holder is logged in. With no verified holder, the caller has just proved the
    number: every unverified claim on it is released and a CLIENT account with a wallet is created
    for the caller, the number verified (security issue 12.1)."""
    return _verify(
        phone_number=phone_number,
        code=code,
        client_address=client_address,
        on_success=lambda: _user_for_phone(phone_number=phone_number),
    )


def verify_phone_for(*, user: User, phone_number: str, code: str, client_address: str | None = None) -> User:
    """The signed-in `user` proves `phone_number` with a code sent to it: the number becomes the
    account's, verified. 409 `phone_taken` when another account already holds it verified (told only
    to a caller who has just proved the number)."""
    return _verify(
        phone_number=phone_number,
        code=code,
        client_address=client_address,
        on_success=lambda: prove_phone_number(user=user, phone_number=phone_number),
    )


def _username_for_phone(phone_number: str) -> str:
    """`user_<digits>`: the national number for the default region (the OTP wallet app's `user_9999999999`)."""
    number = phonenumbers.parse(phone_number)
    if phonenumbers.region_code_for_number(number) == settings.PHONE_DEFAULT_REGION:
        return f"user_{number.national_number}"
    return f"user_{phone_number.lstrip('+')}"


def _verified_holder(phone_number: str) -> User | None:
    holder = User.objects.filter(phone_number=phone_number, phone_verified=True).first()
    if holder is not None and not holder.is_active:
        raise AccountInactive()
    return holder


def _user_for_phone(*, phone_number: str) -> tuple[User, bool]:
    holder = _verified_holder(phone_number)
    if holder is not None:
        return holder, False
    # Nobody has proved this number; the caller just did. An unverified claim is someone's word
    # only (its password may be a stranger's): it is released, and the owner gets its own account.
    release_phone_claims(phone_number=phone_number)
    base = _username_for_phone(phone_number)
    username, suffix = base, 1
    while User.objects.filter(username=username).exists():
        suffix += 1
        username = f"{base}_{suffix}"
    user = User(username=username, phone_number=phone_number, phone_verified=True, user_type=UserType.CLIENT)
    user.set_unusable_password()
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        # Someone verified this phone (or took the username) at the same moment.
        holder = _verified_holder(phone_number)
        if holder is None:
            raise Conflict("The account could not be created because of a concurrent change; retry.") from None
        return holder, False
    return user, True
