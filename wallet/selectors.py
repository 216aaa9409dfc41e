"""Reads of the ledger. Nothing here writes or locks."""

from decimal import Decimal

from django.db.models import Q, Sum

from wallet.models import SystemWallet, Transfer, UserMargin, Wallet


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
