"""Password login lockout per account (django-axes), for the API's email login and /admin/login/ alike.

Both logins go through django.contrib.auth.authenticate, whose first backend is axes': after
AXES_FAILURE_LIMIT wrong passwords for one account (from any address, with no pause of
AXES_COOLOFF_MINUTES between them) the account's password login is refused, the right password
included, until the cool-off has passed or an admin deletes its "Access attempts" row in the Django
admin (or runs `manage.py axes_reset_username <username>`). OTP login is not affected.

Failures are counted per account, not per name typed: the admin's username and the API's email of
one account share one count (`account_key`).
"""

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.http import JsonResponse

from accounts.models import User
from accounts.selectors import email_is


class LockoutBackend(AxesStandaloneBackend):
    """axes' lockout check for every login that comes with a request (the API's and the admin's always
    do). An authenticate() without one (the test client's login(), a shell) is no attempt from the
    network: it is left to the next backends instead of being refused outright, as axes would."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class EmailBackend(ModelBackend):
    """`authenticate(request, email=..., password=...)`: the active user with this email
    (case-insensitive) and password. An unknown email costs one password hash too, so timing does not
    tell which emails exist."""

    def authenticate(self, request, email=None, password=None, **kwargs):
        if email is None or password is None:
            return None
        user = User.objects.filter(email_is(email)).first()
        if user is None:
            User().set_password(password)
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None


def account_key(request, credentials):
    """AXES_USERNAME_CALLABLE: the account a login attempt is against, as its username. An email that
    names no account is counted under the email itself (it locks nobody out)."""
    credentials = credentials or {}
    login = str(credentials.get("username") or "")
    if login and ("@" not in login or User.objects.filter(username=login).exists()):
        return login
    # An email typed into the admin's username field (accounts.backends) counts for its account too.
    email = (login or str(credentials.get("email") or "")).strip().lower()
    if not email:
        return None
    cached = getattr(request, "_lockout_account_key", None)
    if cached is None or cached[0] != email:
        username = User.objects.filter(email_is(email)).values_list("username", flat=True).first()
        cached = (email, username or f"email:{email}")
        request._lockout_account_key = cached
    return cached[1]


LOCKED_MESSAGE = "Too many wrong passwords for this account: password login is locked for a while."


def cool_off_seconds() -> int:
    return int(settings.AXES_COOLOFF_TIME.total_seconds())


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: 429 `account_locked` in the project's error shape, with Retry-After (the
    cool-off: the most a client waits, since it restarts at the last failure)."""
    response = JsonResponse({"detail": LOCKED_MESSAGE, "code": "account_locked"}, status=429)
    response["Retry-After"] = str(cool_off_seconds())
    return response
