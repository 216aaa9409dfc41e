"""Reads of purchases, scoped by role (api-contract.md: a record outside the scope is a 404)."""

from django.db.models import QuerySet

from accounts.selectors import users_in_scope
from core.errors import NotFound
from purchases.models import Purchase


def purchases_for(*, user) -> QuerySet:
    """Purchases of the buyers `user` may see (accounts.selectors.users_in_scope): an admin all; a
    distributor its own and its retailers'; anyone else its own."""
    queryset = Purchase.objects.select_related("plan__provider", "buyer", "distributor")
    return queryset.filter(users_in_scope(viewer=user, through="buyer__"))


def purchase_for(*, user, pk) -> Purchase:
    purchase = purchases_for(user=user).filter(pk=pk).first()
    if purchase is None:
        raise NotFound("Purchase not found.")
    return purchase
