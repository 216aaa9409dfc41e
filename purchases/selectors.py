"""Reads of purchases, scoped by role (api-contract.md: a record outside the scope is a 404)."""

from django.db.models import Q, QuerySet

from core.errors import NotFound
from core.roles import UserType
from purchases.models import Purchase


def purchases_for(*, user) -> QuerySet:
    """Purchases `user` may see: an admin all; a distributor its own and its retailers'; anyone
    else its own."""
    queryset = Purchase.objects.select_related("plan__provider", "buyer", "distributor")
    role = getattr(user, "user_type", None)
    if role == UserType.ADMIN:
        return queryset
    if role == UserType.DISTRIBUTOR:
        return queryset.filter(Q(buyer=user) | Q(buyer__parent=user))
    return queryset.filter(buyer=user)


def purchase_for(*, user, pk) -> Purchase:
    purchase = purchases_for(user=user).filter(pk=pk).first()
    if purchase is None:
        raise NotFound("Purchase not found.")
    return purchase
