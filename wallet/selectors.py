"""Reads of the ledger. Nothing here writes or locks."""

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db.models import Q, Sum

from core.errors import DomainError
from core.roles import UserType
from wallet.models import SystemWallet, Transfer, UserMargin, Wallet


def purchase_hold(*, purchase) -> Transfer:
    """The PURCHASE transfer (the hold, then the payment) of a recharge purchase."""
    return Transfer.objects.get(purchase=purchase, kind=Transfer.Kind.PURCHASE)


def margin_for(*, user) -> Decimal:
    """`user`'s margin percentage, 0.00 when none is set."""
    value = UserMargin.objects.filter(user_id=user.pk).values_list("margin_percentage", flat=True).first()
    return value if value is not None else Decimal("0.00")


def derived_balance(*, wallet) -> Decimal:
    """A wallet's balance computed from the journal: posted transfers in minus posted transfers out.

    This is the only balance a system wallet has (its stored balance is never written)."""
    posted = Transfer.objects.filter(status=Transfer.Status.POSTED)
    incoming = posted.filter(to_wallet=wallet).aggregate(total=Sum("amount"))["total"] or Decimal("0")
    outgoing = posted.filter(from_wallet=wallet).aggregate(total=Sum("amount"))["total"] or Decimal("0")
    return (incoming - outgoing).quantize(Decimal("0.01"))


def system_wallet_balances() -> dict[str, Decimal]:
    return {
        wallet.system_code: derived_balance(wallet=wallet)
        for wallet in Wallet.objects.filter(~Q(system_code=None), system_code__in=SystemWallet.values)
    }


# --- scope: who sees what (api-contract.md). Out of scope reads as absent (404). ---------------


class UserNotFound(DomainError):
    code = "user_not_found"
    message = "No account matches {what}."
    status_code = 404


def _is_admin(user) -> bool:
    return user.user_type == UserType.ADMIN


def _scope_users(user) -> Q:
    """A condition on a user relation (prefix `p`) matching the users `user` may see."""
    if _is_admin(user):
        return Q()
    if user.user_type == UserType.DISTRIBUTOR:
        return Q(pk=user.pk) | Q(parent_id=user.pk)
    return Q(pk=user.pk)


def _prefixed(condition: Q, prefix: str) -> Q:
    """Rewrite a Q over User fields onto a relation path (`from_wallet__user__` ...)."""
    if not condition.children:
        return condition
    rewritten = Q()
    rewritten.connector, rewritten.negated = condition.connector, condition.negated
    for child in condition.children:
        if isinstance(child, Q):
            rewritten.children.append(_prefixed(child, prefix))
        else:
            rewritten.children.append((f"{prefix}{child[0]}", child[1]))
    return rewritten


def can_see_user(*, viewer, user_id, parent_id) -> bool:
    """Whether `viewer` may see the account `user_id` (whose distributor is `parent_id`). No query."""
    if _is_admin(viewer):
        return True
    if user_id == viewer.pk:
        return True
    return viewer.user_type == UserType.DISTRIBUTOR and parent_id == viewer.pk


def wallet_of(*, user) -> Wallet:
    """`user`'s own wallet."""
    return Wallet.objects.select_related("user").get(user_id=user.pk)


def wallets_in_scope(*, user):
    """User wallets `user` may see, with their owners."""
    return Wallet.objects.filter(_prefixed(_scope_users(user), "user__"), user__isnull=False).select_related("user")


def transfers_in_scope(*, user):
    """Transfers touching a wallet `user` may see, newest first, with both parties' owners."""
    queryset = Transfer.objects.select_related("from_wallet__user", "to_wallet__user").order_by("-created_at", "-id")
    if _is_admin(user):
        return queryset
    if user.user_type == UserType.DISTRIBUTOR:
        # Two halves, each through its own index: as one OR across the user join, the planner
        # hashed every wallet and user on each page (7 ms of a 9 ms page at 10,000 users).
        own = Wallet.objects.filter(user_id=user.pk).order_by().values_list("pk", flat=True)
        retailers = Wallet.objects.filter(user__parent_id=user.pk).order_by().values_list("pk", flat=True)
        wallet_ids = own.union(retailers, all=True)
        return queryset.filter(Q(from_wallet_id__in=wallet_ids) | Q(to_wallet_id__in=wallet_ids))
    wallet_id = Wallet.objects.filter(user_id=user.pk).values("pk")
    return queryset.filter(Q(from_wallet_id__in=wallet_id) | Q(to_wallet_id__in=wallet_id))


def own_wallet_id_if_single_scope(*, user):
    """A retailer's or client's wallet id (their history is one wallet's); None for wider scopes."""
    if user.user_type in (UserType.ADMIN, UserType.DISTRIBUTOR):
        return None
    return Wallet.objects.filter(user_id=user.pk).values_list("pk", flat=True).first()


def history_window(*, queryset, wallet_id, before=None, after=None, limit):
    """`queryset` narrowed to the `limit` newest transfers of `wallet_id` below id `before` (or the
    `limit` oldest above id `after`), so that a keyset page costs the same at any depth.

    A wallet's history is "sent OR received"; as one OR the planner must gather every row of a busy
    wallet and sort them (a million rows), or walk the whole journal backwards when the wallet is
    quiet. Each side alone is a short range read of its (wallet, id) index; the page is among the
    union of the two."""
    sides = []
    for side in ("from_wallet_id", "to_wallet_id"):
        rows = Transfer.objects.filter(**{side: wallet_id}).order_by()
        if after is not None:
            rows = rows.filter(pk__gt=after).order_by("pk")
        else:
            rows = (rows.filter(pk__lt=before) if before is not None else rows).order_by("-pk")
        sides.extend(rows.values_list("pk", flat=True)[:limit])
    return queryset.filter(pk__in=sides)


def all_transfers():
    return Transfer.objects.select_related("from_wallet__user", "to_wallet__user").order_by("-created_at", "-id")


def margins_in_scope(*, user):
    return UserMargin.objects.filter(_prefixed(_scope_users(user), "user__")).select_related("user", "set_by")


def find_user(*, user_id=None, email=None, phone_number=None, field="user"):
    """The account named by exactly one of id, email (case-insensitive) or E.164 phone, active or
    not (the ledger service refuses deactivated ones with a clear code), or UserNotFound.

    A phone number names only the account that has verified it: an unverified claim on a number
    (public signup, a distributor's entry) must not receive money meant for the number's owner."""
    users = get_user_model().objects.all()
    if user_id is not None:
        found, what = users.filter(pk=user_id).first(), f"id {user_id}"
    elif email is not None:
        found, what = users.filter(email__iexact=email.strip()).first(), f"email {email}"
    else:
        found = users.filter(phone_number=phone_number, phone_verified=True).first()
        what = f"phone number {phone_number}"
    if found is None:
        raise UserNotFound(field=field, what=what)
    return found
