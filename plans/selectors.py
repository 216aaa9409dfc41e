"""Reads of the recharge catalogue."""

from django.db.models import QuerySet

from accounts.selectors import is_admin
from core.errors import NotFound
from plans.models import Provider, RechargePlan


def active_providers() -> QuerySet:
    return Provider.objects.filter(is_active=True)


def plans_for(*, user) -> QuerySet:
    """The plans `user` may browse: active plans of active operators. An admin also sees retired
    plans (the list's FilterSet shows them only on `?include_retired=true`)."""
    queryset = RechargePlan.objects.select_related("provider")
    if is_admin(user):
        return queryset
    return queryset.filter(is_active=True, provider__is_active=True)


def plan_by_id(*, pk) -> RechargePlan:
    """Any plan by id, retired ones included, since a purchase's history points at its plan."""
    plan = RechargePlan.objects.select_related("provider").filter(pk=pk).first()
    if plan is None:
        raise NotFound("Plan not found.")
    return plan
