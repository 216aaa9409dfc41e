"""Reads of the accounts app. Scope is enforced here: a record outside the caller's scope is NotFound."""

from django.db.models import QuerySet

from accounts.models import User
from core.errors import NotFound
from core.roles import UserType


def users_with_wallets() -> QuerySet:
    """Users with their wallet and parent joined in, so listing balances is one query."""
    return User.objects.select_related("wallet", "parent")


def users_for_admin(*, all_roles: bool) -> QuerySet:
    """The admin list: distributors and retailers by default (the first seed), any role on request."""
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
    return User.objects.filter(username=login).first() or User.objects.filter(email=login.lower()).first()
