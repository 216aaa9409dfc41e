from decimal import Decimal

from wallet import services as ledger
from wallet.models import UserMargin, Wallet


def fund(user, amount, admin=None):
    return ledger.fund_wallet(user=user, amount=Decimal(amount), remarks="test funding", initiated_by=admin)


def give_margin(user, percentage):
    UserMargin.objects.update_or_create(user=user, defaults={"margin_percentage": Decimal(percentage)})


def balances(*users):
    """(balance, held) of each user's wallet, fresh from the database."""
    wallets = {w.user_id: w for w in Wallet.objects.filter(user__in=users)}
    return [(wallets[u.pk].balance, wallets[u.pk].held) for u in users]
