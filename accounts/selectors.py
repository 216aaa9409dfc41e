"""Reads of the accounts app. Scope is enforced here: a record outside the caller's scope is NotFound."""

from django.db.models import Q, QuerySet
from django.db.models.functions import Lower
from django.db.models.lookups import Exact, In

from accounts.models import User
from core.errors import DomainError, NotFound
from core.precompiled import PrecompiledQuery
from core.roles import UserType

# --- scope: who sees whom (api-contract.md). Out of scope reads as absent (404). -----------------
# The one statement of the rule; the wallet, purchases, plans and margins selectors apply it.


class UserNotFound(DomainError):
    code = "user_not_found"
    message = "No account matches {what}."
    status_code = 404


def is_admin(user) -> bool:
    return getattr(user, "user_type", None) == UserType.ADMIN


def users_in_scope(*, viewer, through="") -> Q:
    """A condition matching the accounts `viewer` may see: an admin all, a distributor itself and its
    retailers, anyone else itself, an anonymous caller nobody. `through` is the path from the
    queried model to the user ("buyer__", "user__"); "" queries users themselves."""
    if is_admin(viewer):
        return Q()
    if not getattr(viewer, "is_authenticated", False):
        return Q(**{f"{through}pk__in": []})
    own = Q(**{f"{through}pk": viewer.pk})
    if viewer.user_type == UserType.DISTRIBUTOR:
        return own | Q(**{f"{through}parent_id": viewer.pk})
    return own


def can_see_user(*, viewer, user_id, parent_id) -> bool:
    """Whether `viewer` may see the account `user_id` (whose distributor is `parent_id`). No query:
    the same rule as `users_in_scope`, for a row already loaded."""
    if is_admin(viewer):
        return True
    if user_id == viewer.pk:
        return True
    return viewer.user_type == UserType.DISTRIBUTOR and parent_id == viewer.pk


def email_is(email: str) -> Exact:
    """A filter for the account whose email is `email`, in any case. It compares the expression of the
    unique index user_email_unique_ci, LOWER(email), so that the index finds the account (the column
    itself has no index: a lookup on it, or `email__iexact`, reads every account), with the address
    lower-cased as User stores it (Python's str.lower, which folds every script; a database's LOWER
    may fold ASCII only)."""
    return Exact(Lower("email"), email.strip().lower())


def emails_in(emails) -> In:
    """`email_is` for several addresses at once."""
    return In(Lower("email"), [email.strip().lower() for email in emails])


def find_user(*, user_id=None, email=None, phone_number=None, field="user") -> User:
    """The account named by exactly one of id, email (case-insensitive) or E.164 phone, active or
    not (the ledger service refuses deactivated ones with a clear code), or UserNotFound.

    A phone number names only the account that has verified it: an unverified claim on a number
    (public signup, a distributor's entry) must not receive money meant for the number's owner."""
    if user_id is not None:
        found, what = _USER_BY_ID.first(user_id), f"id {user_id}"
    elif email is not None:
        found, what = _USER_BY_EMAIL.first(email.strip().lower()), f"email {email}"
    else:
        found = _VERIFIED_HOLDER.first(phone_number)
        what = f"phone number {phone_number}"
    if found is None:
        raise UserNotFound(field=field, what=what)
    return found


# A transfer names its receiver by phone, an admin's funding its account by email or id: those lookups
# are compiled once (core.precompiled); building the email's through the ORM was a quarter of an admin
# funding's CPU (bench/profile_request.py funding).
_VERIFIED_HOLDER = PrecompiledQuery(
    lambda marker: User.objects.filter(phone_number=marker, phone_verified=True).order_by("pk")[:1], "+0precompiled"
)
_USER_BY_ID = PrecompiledQuery(lambda marker: User.objects.filter(pk=marker).order_by("pk")[:1], -1)
# email_is: `email__iexact` compared UPPER(email), which no index has, and read every account (17 ms at
# 10,000 accounts, the largest part of an admin funding's database time: bench/README.md).
_USER_BY_EMAIL = PrecompiledQuery(
    lambda marker: User.objects.filter(email_is(marker)).order_by("pk")[:1], "precompiled-marker@example"
)


# --- the admin API and distributors' views of their retailers ------------------------------------


def find_users(*, user_ids=(), emails=(), phone_numbers=()) -> dict:
    """The accounts named by ids, emails (lower-cased) or verified E.164 phones, in one query, keyed
    by ("to_user_id", id), ("to_email", email) and ("to_phone_number", phone) (a bulk payout's
    recipients). Absent keys name no account; the same rules as find_user."""
    condition = Q(pk__in=list(user_ids)) if user_ids else Q()
    if emails:
        condition |= Q(emails_in(emails))
    if phone_numbers:
        condition |= Q(phone_number__in=list(phone_numbers), phone_verified=True)
    if not condition:
        return {}
    found = {}
    wanted_ids, wanted_emails, wanted_phones = set(user_ids), set(emails), set(phone_numbers)
    fields = ("pk", "email", "phone_number", "phone_verified", "user_type", "parent_id", "is_active", "username")
    for user in User.objects.filter(condition).only(*fields):
        if user.pk in wanted_ids:
            found["to_user_id", user.pk] = user
        if user.email in wanted_emails:
            found["to_email", user.email] = user
        if user.phone_verified and user.phone_number in wanted_phones:
            found["to_phone_number", user.phone_number] = user
    return found


def users_with_wallets() -> QuerySet:
    """Users with their wallet and parent joined in, so listing balances is one query."""
    return User.objects.select_related("wallet", "parent")


def users_for_admin(*, all_roles: bool) -> QuerySet:
    """The admin list: distributors and retailers by default (the business's user list), any role on request."""
    users = users_with_wallets()
    if not all_roles:
        users = users.filter(user_type__in=[UserType.DISTRIBUTOR, UserType.RETAILER])
    return users


def user_for_admin(*, pk) -> User:
    user = users_with_wallets().filter(pk=pk).first()
    if user is None:
        raise NotFound("User not found.")
    return user


def retailers_of(*, distributor: User) -> QuerySet:
    if not distributor.is_authenticated:
        return User.objects.none()
    return users_with_wallets().filter(parent=distributor, user_type=UserType.RETAILER)


def retailer_of(*, distributor: User, pk) -> User:
    """One of the distributor's own retailers; anyone else's is NotFound, as if it did not exist."""
    retailer = retailers_of(distributor=distributor).filter(pk=pk).first()
    if retailer is None:
        raise NotFound("Retailer not found.")
    return retailer


def profile_of(*, user: User) -> User:
    return users_with_wallets().get(pk=user.pk)


def user_by_login(*, login: str) -> User | None:
    """The user whose username (exact) or email (case-insensitive) is `login`."""
    login = login.strip()
    return User.objects.filter(username=login).first() or User.objects.filter(email_is(login)).first()
