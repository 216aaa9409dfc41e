"""Margins: the share of each recharge a distributor or retailer earns back (ledger.md, "Margins
and recharges"). A rule of the role hierarchy: admins set anyone's margin, a distributor its own
retailers', never above its own. The ledger only pays what purchases compute from them."""

from decimal import Decimal, InvalidOperation

from django.db import transaction

from accounts.models import User, UserMargin
from accounts.selectors import users_in_scope
from core.errors import DomainError, NotFound, PermissionRefused
from core.money import PAISA
from core.precompiled import PrecompiledQuery
from core.roles import UserType


class InvalidMargin(DomainError):
    code = "invalid_margin"
    message = "The margin must be a percentage from 0 to 100 with at most two decimal places."


class MarginAboveOwn(DomainError):
    code = "margin_above_own"
    message = "A retailer's margin cannot exceed its distributor's own margin ({own}%), which an administrator sets."


class MarginNotAllowed(PermissionRefused):
    message = "Only administrators, and distributors for their own retailers, may set margins."


def margin_for(*, user) -> Decimal:
    """`user`'s margin percentage, 0.00 when none is set."""
    value = UserMargin.objects.filter(user_id=user.pk).values_list("margin_percentage", flat=True).first()
    return value if value is not None else Decimal("0.00")


def sale_margins(*, buyer):
    """(buyer's margin, its distributor or None, the distributor's margin) for a sale, in one query:
    a retailer's parent is read with it, each with its margin (0.00 when none is set)."""
    parent_id = buyer.parent_id if buyer.user_type == UserType.RETAILER else None
    # Every purchase asks: compiled once (core.precompiled); with no parent, the buyer's id twice.
    users = {
        user.pk: user for user in _USERS_WITH_MARGINS.fetch(buyer.pk, buyer.pk if parent_id is None else parent_id)
    }

    def margin(user):
        record = getattr(user, "margin", None) if user is not None else None
        return record.margin_percentage if record is not None else Decimal("0.00")

    parent = users.get(parent_id) if parent_id is not None else None
    return margin(users.get(buyer.pk)), parent, margin(parent)


_USERS_WITH_MARGINS = PrecompiledQuery(
    lambda first, second: User.objects.filter(pk__in=[first, second]).select_related("margin").order_by(), -1, -2
)


def margins_in_scope(*, user):
    """The margins of the accounts `user` may see (accounts.selectors.users_in_scope)."""
    return UserMargin.objects.filter(users_in_scope(viewer=user, through="user__")).select_related("user", "set_by")


def set_margin(*, user, margin_percentage, set_by) -> UserMargin:
    """Set `user`'s margin. Admins set anyone's; a distributor only its own retailers', never above
    its own margin; anyone else is refused. A retailer outside the distributor's scope is NotFound."""
    margin = check_margin_change(user=user, margin_percentage=margin_percentage, set_by=set_by)
    with transaction.atomic():
        record, _ = UserMargin.objects.update_or_create(
            user=user, defaults={"margin_percentage": margin, "set_by": set_by}
        )
        return record


def check_margin_change(*, user, margin_percentage, set_by) -> Decimal:
    """The validated margin, or the DomainError set_margin would raise (the Django admin's form uses it)."""
    try:
        margin = Decimal(str(margin_percentage)) if not isinstance(margin_percentage, (bool, float)) else None
    except (InvalidOperation, ValueError):
        margin = None
    if margin is None or not margin.is_finite() or not 0 <= margin <= 100 or margin.as_tuple().exponent < -2:
        raise InvalidMargin(field="margin_percentage")
    if set_by.user_type == UserType.ADMIN:
        return margin.quantize(PAISA)
    if set_by.user_type != UserType.DISTRIBUTOR:
        raise MarginNotAllowed()
    if user.user_type != UserType.RETAILER or user.parent_id != set_by.pk:
        raise NotFound("User not found.")
    own = margin_for(user=set_by)
    if margin > own:
        raise MarginAboveOwn(field="margin_percentage", own=f"{own:.2f}")
    return margin.quantize(PAISA)
