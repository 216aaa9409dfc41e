from decimal import Decimal

import pytest

from wallet import services
from wallet.models import Transfer


@pytest.mark.django_db
def test_fund_then_transfer_moves_money_between_user_wallets(admin_user, distributor, retailer):
    services.fund_wallet(user=distributor, amount="100.00", initiated_by=admin_user)
    transfer = services.transfer_funds(sender=distributor, receiver=retailer, amount="40.00")
    distributor.wallet.refresh_from_db()
    retailer.wallet.refresh_from_db()
    assert (distributor.wallet.balance, retailer.wallet.balance) == (Decimal("60.00"), Decimal("40.00"))
    assert transfer.kind == Transfer.Kind.TRANSFER and transfer.from_balance_after == Decimal("60.00")
