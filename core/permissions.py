"""Role checks, named for what they allow. Object scope (404 outside it) lives in selectors."""

from rest_framework.permissions import BasePermission

from core.roles import UserType

ADMIN, DISTRIBUTOR = UserType.ADMIN, UserType.DISTRIBUTOR


def _role(request):
    user = request.user
    return getattr(user, "user_type", None) if user and user.is_authenticated else None


class IsAdmin(BasePermission):
    message = "Only administrators may do this."

    def has_permission(self, request, view):
        return _role(request) == ADMIN


class IsDistributor(BasePermission):
    message = "Only distributors may do this."

    def has_permission(self, request, view):
        return _role(request) == DISTRIBUTOR


class IsAdminOrDistributor(BasePermission):
    message = "Only administrators and distributors may do this."

    def has_permission(self, request, view):
        return _role(request) in (ADMIN, DISTRIBUTOR)


class IsAdminOrReadOnly(BasePermission):
    """Any signed-in user may read; only administrators may write."""

    message = "Only administrators may change this."

    def has_permission(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return bool(request.user and request.user.is_authenticated)
        return _role(request) == ADMIN
