"""One-time passwords: codes sent by SMS, verified once, rate-limited per phone.

Only an HMAC of each code is stored (keyed with SECRET_KEY and bound to the phone). A phone that
fails too often in a day is locked out of OTP login until the day passes or an admin unlocks it.

The SMS is sent by a task (accounts.tasks.send_otp_sms), after the request has answered: a slow or
failing SMS provider neither holds nor fails the request, and is retried with backoff. The task gets
only the code's id: the code itself is derived from that row and SECRET_KEY (`_code_for`), so it is
neither stored nor put on the queue. The rate limits stay at request time.
"""

import hashlib
import hmac
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import phonenumbers
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone
from rest_framework import status

from accounts.models import OneTimePassword, OtpPhoneLock, User
from accounts.services import AccountInactive
from accounts.sms import send_sms
from core.errors import Conflict, DomainError
from core.queue import enqueue_after_commit
from core.roles import UserType

ONE_DAY = timedelta(days=1)
ONE_HOUR = timedelta(hours=1)


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
    message = "Too many failed codes for this phone number today; OTP login is locked for {seconds} s."


class OtpCooldown(_LiftsByItself):
    code = "otp_cooldown"
    message = "A code was sent moments ago; wait {seconds} s before asking for another."


class OtpHourlyLimit(_LiftsByItself):
    code = "otp_rate_limited"
    message = "Too many codes asked for this phone number in the last hour; retry in {seconds} s."


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


def _ensure_not_locked(*, phone_number: str, now: datetime) -> None:
    locked_until = (
        OtpPhoneLock.objects.filter(phone_number=phone_number, locked_until__gt=now)
        .values_list("locked_until", flat=True)
        .first()
    )
    if locked_until is not None:
        raise OtpLocked(retry_after=(locked_until - now).total_seconds())


def record_otp_failure(*, phone_number: str, now: datetime | None = None) -> OtpPhoneLock:
    """Count one failed try for the phone in its current 24-hour window; lock at the daily limit.

    The lock lasts until the window's day has passed (or an admin unlocks the phone)."""
    now = now or timezone.now()
    with transaction.atomic():
        lock, _ = OtpPhoneLock.objects.select_for_update().get_or_create(
            phone_number=phone_number, defaults={"window_started_at": now}
        )
        if lock.window_started_at <= now - ONE_DAY:
            lock.failed_count, lock.window_started_at, lock.locked_until = 0, now, None
        lock.failed_count += 1
        if lock.failed_count >= settings.OTP_DAILY_FAILURE_LIMIT and lock.locked_until is None:
            lock.locked_until = lock.window_started_at + ONE_DAY
        lock.save()
    return lock


def unlock_phone(*, phone_number: str) -> bool:
    """An admin lifts a phone's OTP lock and clears its failure count. True if it was locked."""
    now = timezone.now()
    was_locked = OtpPhoneLock.objects.filter(phone_number=phone_number, locked_until__gt=now).exists()
    OtpPhoneLock.objects.filter(phone_number=phone_number).update(
        failed_count=0, window_started_at=now, locked_until=None
    )
    return was_locked


def request_otp(*, phone_number: str, requested_from: str | None = None) -> IssuedOtp:
    """Create a code for the (normalised) phone and have it sent by SMS (a task, after commit).

    The same answer whether or not the phone belongs to a user. Refused while the phone is locked,
    inside the resend cooldown, or past the hourly cap. Only the newest code of a phone can be used."""
    now = timezone.now()
    _ensure_not_locked(phone_number=phone_number, now=now)
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
    otp = OneTimePassword.objects.create(
        phone_number=phone_number,
        code_hash=hash_otp(phone_number=phone_number, code=code),
        expires_at=expires_at,
        requested_from=requested_from,
    )
    from accounts import tasks

    enqueue_after_commit(tasks.send_otp_sms, otp_id=otp.pk)
    return IssuedOtp(phone_number=phone_number, code=code, expires_at=otp.expires_at)


def send_otp_sms(*, otp_id) -> bool:
    """Send the SMS of code `otp_id`, if it is still worth sending: not used, not expired and still the
    phone's newest code (only that one can be used). True if sent; SmsDeliveryFailed propagates, for
    the task to retry."""
    otp = OneTimePassword.objects.filter(pk=otp_id).first()
    if otp is None or otp.consumed_at is not None or otp.expires_at <= timezone.now():
        return False
    newer = OneTimePassword.objects.filter(phone_number=otp.phone_number, created_at__gt=otp.created_at).exists()
    if newer:
        return False
    code = _code_for(phone_number=otp.phone_number, expires_at=otp.expires_at)
    send_sms(to=otp.phone_number, body=f"Your login code is {code}. It expires in {settings.OTP_EXPIRY_MINUTES} min.")
    return True


def verify_otp(*, phone_number: str, code: str) -> tuple[User, bool]:
    """Log in by the phone's newest code: (user, created). Creates a CLIENT with a wallet if needed.

    Guarantees: a code works once, even under simultaneous verifications (it is consumed by ONE
    conditional UPDATE that also re-checks expiry and attempts); after OTP_MAX_ATTEMPTS wrong tries
    the code is dead; every failure counts towards the phone's daily limit."""
    now = timezone.now()
    _ensure_not_locked(phone_number=phone_number, now=now)
    max_attempts = settings.OTP_MAX_ATTEMPTS
    otp = OneTimePassword.objects.filter(phone_number=phone_number).order_by("-created_at", "-pk").first()
    refusal = None
    if otp is None or otp.consumed_at is not None:
        refusal = OtpInvalid()
    elif otp.expires_at <= now:
        refusal = OtpExpired()
    elif otp.attempts >= max_attempts:
        refusal = OtpAttemptsExceeded()
    elif not _code_matches(otp, code):
        counted = OneTimePassword.objects.filter(pk=otp.pk, attempts__lt=max_attempts).update(
            attempts=F("attempts") + 1
        )
        refusal = OtpInvalid() if counted else OtpAttemptsExceeded()
    if refusal is not None:
        record_otp_failure(phone_number=phone_number, now=now)
        raise refusal
    with transaction.atomic():
        consumed = OneTimePassword.objects.filter(
            pk=otp.pk, consumed_at__isnull=True, attempts__lt=max_attempts, expires_at__gt=now
        ).update(consumed_at=now)
        if not consumed:
            # Another verification consumed it between our read and this UPDATE.
            raise OtpInvalid()
        return _user_for_phone(phone_number=phone_number)


def _username_for_phone(phone_number: str) -> str:
    """`user_<digits>`: the national number for the default region (the seed's `user_9999999999`)."""
    number = phonenumbers.parse(phone_number)
    if phonenumbers.region_code_for_number(number) == settings.PHONE_DEFAULT_REGION:
        return f"user_{number.national_number}"
    return f"user_{phone_number.lstrip('+')}"


def _user_for_phone(*, phone_number: str) -> tuple[User, bool]:
    user = User.objects.filter(phone_number=phone_number).first()
    if user is not None:
        if not user.is_active:
            raise AccountInactive()
        return user, False
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
        # Someone registered this phone (or the username) at the same moment.
        existing = User.objects.filter(phone_number=phone_number).first()
        if existing is None:
            raise Conflict("The account could not be created because of a concurrent change; retry.") from None
        return existing, False
    return user, True
