from decimal import Decimal

import pytest

from plans.tests.factories import ProviderFactory, RechargePlanFactory
from purchases.tests import gateways


@pytest.fixture(autouse=True)
def recording_gateway(settings):
    """Every purchases test talks to the sandbox through a recorder, with no latency."""
    settings.RECHARGE_GATEWAY = "purchases.tests.gateways.RecordingSandboxGateway"
    settings.RECHARGE_GATEWAY_LATENCY_MS = 0
    gateways.calls.clear()
    yield gateways.calls
    gateways.calls.clear()


@pytest.fixture
def plan(db):
    return RechargePlanFactory(provider=ProviderFactory(code="airtel", name="Airtel"), amount=Decimal("199.00"))
