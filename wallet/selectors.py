"""Reads of the ledger. Nothing here writes or locks."""

from decimal import Decimal
from functools import partial

from django.conf import settings
from django.db.models import Q, Sum

from accounts.selectors import is_admin, users_in_scope
from core.precompiled import PrecompiledQuery
from core.roles import UserType
from wallet.limits import headroom
from wallet.models import Transfer, Wallet


def purchase_transfer(*, reference) -> Transfer:
    """The PURCHASE transfer (the hold, later posted or voided) of the sale named `reference`; raises
    as `QuerySet.get` does when there is none, or more than one."""
    found = [row for row in _TRANSFERS_BY_REFERENCE.fetch(reference) if row.kind == Transfer.Kind.PURCHASE]
    if not found:
        raise Transfer.DoesNotExist(f"No purchase transfer {reference!r}.")
    if len(found) > 1:
        raise Transfer.MultipleObjectsReturned(f"More than one purchase transfer {reference!r}.")
    return found[0]


# Every purchase's settlement reads its hold by reference: compiled once (core.precompiled). By the
# reference alone (a sale has a handful of rows: the hold, its margins, a refund), the kind picked here:
# asked for both, PostgreSQL with statistics older than the day's purchases walked the (kind, created_at)
# index through every purchase ever made (14 ms at 19,000, and growing) instead of the reference's index.
_TRANSFERS_BY_REFERENCE = PrecompiledQuery(
    lambda marker: Transfer.objects.filter(reference=marker).order_by(), "\x00precompiled"
)


def derived_balance(*, wallet) -> Decimal:
    """A wallet's balance computed from the journal: posted transfers in minus posted transfers out.

    This is the only balance a system wallet has (its stored balance is never written)."""
    posted = Transfer.objects.filter(status=Transfer.Status.POSTED)
    incoming = posted.filter(to_wallet=wallet).aggregate(total=Sum("amount"))["total"] or Decimal("0")
    outgoing = posted.filter(from_wallet=wallet).aggregate(total=Sum("amount"))["total"] or Decimal("0")
    return (incoming - outgoing).quantize(Decimal("0.01"))


def load_headroom(*, wallet, user):
    """What `wallet` (of `user`) may still receive under its limits (wallet/limits.py); unlocked, so a
    guide for the client: the credit itself checks again under the wallet's lock."""
    return headroom(wallet=wallet, user=user)


# --- scope (accounts.selectors.users_in_scope). Out of scope reads as absent (404). ------------


def wallet_of(*, user) -> Wallet:
    """`user`'s own wallet."""
    return Wallet.objects.select_related("user").get(user_id=user.pk)


def own_wallet(*, user) -> Wallet:
    """`user`'s own wallet for a read: the one authentication loaded with the user when it did (as of
    the request's start, no query), else from the database. Never for a write: writes lock and re-read."""
    if type(user).wallet.is_cached(user):
        wallet = user.wallet
        wallet.user = user
        return wallet
    return wallet_of(user=user)


def own_wallet_if_single_scope(*, user):
    """A retailer's or client's own wallet, all it may see of wallets (`wallets_in_scope`), as `own_wallet`
    reads it; None for wider scopes (an admin, a distributor) and for a user without a wallet."""
    if is_admin(user) or user.user_type == UserType.DISTRIBUTOR:
        return None
    try:  # a user without a wallet: RelatedObjectDoesNotExist, cached or read, is Wallet.DoesNotExist
        return own_wallet(user=user)
    except Wallet.DoesNotExist:
        return None


def wallets_in_scope(*, user):
    """User wallets `user` may see, with their owners."""
    return Wallet.objects.filter(users_in_scope(viewer=user, through="user__"), user__isnull=False).select_related(
        "user"
    )


def transfers_in_scope(*, user):
    """Transfers touching a wallet `user` may see, newest first, with both parties' owners."""
    queryset = Transfer.objects.select_related("from_wallet__user", "to_wallet__user").order_by("-created_at", "-id")
    if is_admin(user):
        return queryset
    if not user.is_authenticated:
        return queryset.none()
    if user.user_type == UserType.DISTRIBUTOR:
        # Two halves, each through its own index: as one OR across the user join, the planner
        # hashed every wallet and user on each page (7 ms of a 9 ms page at 10,000 users).
        own = Wallet.objects.filter(user_id=user.pk).order_by().values_list("pk", flat=True)
        retailers = Wallet.objects.filter(user__parent_id=user.pk).order_by().values_list("pk", flat=True)
        wallet_ids = own.union(retailers, all=True)
        return queryset.filter(Q(from_wallet_id__in=wallet_ids) | Q(to_wallet_id__in=wallet_ids))
    wallet_id = own_wallet_id(user=user)
    if wallet_id is None:
        return queryset.none()
    return queryset.filter(Q(from_wallet_id=wallet_id) | Q(to_wallet_id=wallet_id))


def own_wallet_id(*, user):
    """`user`'s wallet id, or None: from the wallet authentication loaded with the user (no query), else
    from the database. A wallet's id never changes, so the request's start is as good as now."""
    if type(user).wallet.is_cached(user):
        wallet = getattr(user, "wallet", None)  # a user without a wallet has None cached
        return None if wallet is None else wallet.pk
    return Wallet.objects.filter(user_id=user.pk).values_list("pk", flat=True).first()


def own_wallet_id_if_single_scope(*, user):
    """A retailer's or client's wallet id (their history is one wallet's); None for wider scopes."""
    if user.user_type in (UserType.ADMIN, UserType.DISTRIBUTOR):
        return None
    return own_wallet_id(user=user)


# What a history row shows (TransferSerializer.to_representation reads these and nothing else of a
# transfer and its two parties). A field read but not listed would cost a query per row:
# wallet/tests/test_history_page_columns.py holds a page to its four queries.
HISTORY_ROW_FIELDS = (
    *("kind", "status", "amount", "remarks", "created_at", "finalized_at", "from_balance_after", "to_balance_after"),
    *(
        f"{side}__{field}"
        for side in ("from_wallet", "to_wallet")
        for field in ("user_id", "system_code", "user__username", "user__phone_number", "user__parent_id")
    ),
)


def history_window(*, queryset, wallet_id, before=None, after=None, limit):
    """`queryset` narrowed to the `limit` newest transfers of `wallet_id` below id `before` (or the
    `limit` oldest above id `after`), so that a keyset page costs the same at any depth.

    A wallet's history is "sent OR received"; as one OR the planner must gather every row of a busy
    wallet and sort them (a million rows), or walk the whole journal backwards when the wallet is
    quiet. Each side alone is a short range read of its (wallet, id) index; the page is among the
    union of the two.

    The page loads only HISTORY_ROW_FIELDS: the parties' whole user and wallet rows (password hash,
    dates, KYC, balances) were read, parsed and set on 84 model instances a page for nothing (about
    15 % more pages per second on the benchmark's busy wallet without them). One query with the two
    sides as a UNION subquery instead of three was measured too, and was slower: PostgreSQL plans
    the five-table join around a subquery in twice the time it takes with a list of ids."""
    direction = "after" if after is not None else "before" if before is not None else "newest"
    position = () if direction == "newest" else (after if after is not None else before,)
    sides = []
    for side in ("from_wallet_id", "to_wallet_id"):
        if limit > settings.MAX_PAGE_SIZE + 1:  # a cursor's offset can ask for any limit: not kept
            sides.extend(pk for (pk,) in _history_side(side, direction, limit, wallet_id, wallet_id, *position))
            continue
        query = _precompiled_sides.get((side, direction, limit))
        if query is None:
            markers = (-1_000_001, -1_000_002, -1_000_003)[: 3 if position else 2]
            # Not prepared: the plan must be made for the wallet asked (wallet/tests/test_history_window_plan.py).
            query = PrecompiledQuery(partial(_history_side, side, direction, limit), *markers, prepared=False)
            _precompiled_sides[(side, direction, limit)] = query
        sides.extend(pk for (pk,) in query.fetch(wallet_id, wallet_id, *position))
    return queryset.filter(pk__in=sides).only(*HISTORY_ROW_FIELDS)


# Every history page reads its wallet's two sides: each shape (side, direction, limit) is compiled once
# (core.precompiled); limits beyond a page of the largest size (and the cursor's extra row) are
# compiled each time, so that no request grows the cache.
_precompiled_sides = {}


def _history_side(side, direction, limit, wallet_from, wallet_to, position=None):
    """The ids of one side (`side`: sent or received) of a wallet's history window.

    The wallet as a range of one value, ordered by (wallet, id): asked for `wallet = X ORDER BY id`,
    PostgreSQL may walk the journal's primary key backwards and filter, when its statistics say the
    wallet holds most of the journal: they cannot say its rows are not the newest. The benchmark's
    busy wallet, after the load's transfers between others, read 38,714 rows for its 21 (11 ms; first
    page p95 101 ms at 8 clients). A range is no equality, so the order by wallet stays, and only the
    (wallet, -id) index gives it: 0.3 ms. (`wallet_from` and `wallet_to` are the same wallet, given
    twice so that each bound is a parameter of its own.)"""
    rows = Transfer.objects.filter(**{f"{side}__gte": wallet_from, f"{side}__lte": wallet_to})
    if direction == "after":
        rows = rows.filter(pk__gt=position).order_by(f"-{side}", "pk")  # that index read backwards
    elif direction == "before":
        rows = rows.filter(pk__lt=position).order_by(side, "-pk")
    else:
        rows = rows.order_by(side, "-pk")
    return rows.values_list("pk")[:limit]


def all_transfers():
    return Transfer.objects.select_related("from_wallet__user", "to_wallet__user").order_by("-created_at", "-id")
