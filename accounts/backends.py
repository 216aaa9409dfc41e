"""How the Django admin signs people in: by username or by email, as the README's logins are written."""

from django.contrib.auth.backends import ModelBackend

from accounts.models import User
from accounts.selectors import user_by_login


class UsernameOrEmailBackend(ModelBackend):
    """Django's ModelBackend, reading the login as a username (exact) or an email (any case)."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None or password is None:
            return None
        user = user_by_login(login=username)
        if user is None:
            User().set_password(password)  # an unknown login costs a hash too: timing tells nothing
            return None
        if user.check_password(password) and self.user_can_authenticate(user):
            return user
        return None
