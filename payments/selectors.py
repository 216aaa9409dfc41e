"""Reads of the top-ups. Nothing here writes or locks."""

from core.errors import NotFound
from payments.models import TopUp


def top_ups_of(*, user):
    """The caller's own top-ups, newest first (an admin sees everyone's in the Django admin); an
    anonymous caller (drf-yasg building the schema) has none."""
    if not user.is_authenticated:
        return TopUp.objects.none()
    return TopUp.objects.filter(user=user).order_by("-created_at", "-id")


def top_up_of(*, user, pk) -> TopUp:
    top_up = top_ups_of(user=user).filter(pk=pk).first()
    if top_up is None:
        raise NotFound("Top-up not found.")
    return top_up
