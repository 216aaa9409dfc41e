from decimal import Decimal

import pytest

from wallet import services


@pytest.fixture
def fund(admin_user):
    """fund(user, "100.00"): an admin funding through the ledger service."""

    def _fund(user, amount):
        return services.fund_wallet(user=user, amount=Decimal(amount), initiated_by=admin_user)

    return _fund
