"""Every money-moving request runs a fixed, small number of queries, whatever the data.

Counted as production runs them (`transaction=True`: real BEGIN/COMMIT, not the test's savepoints),
with the Idempotency-Key a real client sends. bench/README.md explains each count; the benchmark
report prints the same numbers measured on the live stack. A change that adds a query to a money
path must change this table on purpose."""

import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import UserMargin
from accounts.tests.factories import AdminFactory, ClientFactory, DistributorFactory, RetailerFactory
from plans.models import Provider, RechargePlan
from purchases.gateways import BaseGateway, GatewayResult
from purchases.models import Purchase
from purchases.services import fulfil_purchase
from purchases.tests.helpers import queue_fulfilments
from tests.helpers import client_for
from wallet import services

pytestmark = pytest.mark.django_db(transaction=True)

# endpoint: queries with an Idempotency-Key
# A load into a client wallet (transfer, credit, add-to-wallet here) checks the wallet's limits with the
# month's loads its locked row keeps (wallet/limits.py): no query more than into a business wallet.
# The key's answer is one INSERT inside the request's transaction (core.idempotency): a keyed request
# runs one query more than a keyless one, and commits once.
BUDGET = {
    "transfer": 7,
    "credit": 6,
    "debit": 6,
    # The admin's own wallet in the answer is the one authentication loaded: no query of its own.
    "add-to-wallet": 7,
    "debit-from-wallet": 7,
    # The acceptance only (validate, create, hold, enqueue): the operator is called by a worker. With a
    # broker its key's answer is stored by its own transaction, as a wallet POST's: one commit, not the
    # claim's, the hold's and the answer's three.
    "purchase": 10,
    # The journal rows and every balance in one statement (WITH ... UPDATE ... INSERT), for 1 line or 1,000.
    "payouts": 9,
}
# Elsewhere than on PostgreSQL (the SQLite demo; `make mutate`) a posting is written by the ORM path of
# wallet.services._write: one UPDATE per user wallet and the journal row's INSERT, instead of one
# statement. So one query more per user wallet posted, and for a bulk payout one more: its rows'
# bulk INSERT and its balances' executemany apart.
USER_WALLETS_POSTED = {
    "transfer": 2,
    "credit": 1,
    "debit": 1,
    "add-to-wallet": 1,
    "debit-from-wallet": 1,
    "purchase": 1,
    "payouts": 1,
}


@pytest.fixture
def people():
    admin = AdminFactory()
    distributor = DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    client = ClientFactory(phone_number="+919876500001")
    for user in (distributor, retailer, client):
        services.fund_wallet(user=user, amount="1000.00", initiated_by=admin)
    for user in (distributor, retailer):
        UserMargin.objects.create(user=user, margin_percentage="2.00")
    provider = Provider.objects.create(code="jio", name="Jio")
    plan = RechargePlan.objects.create(provider=provider, code="jio-199", amount="199.00", validity_days=28)
    return {"admin": admin, "distributor": distributor, "retailer": retailer, "client": client, "plan": plan}


def requests_for(people):
    admin, retailer, client, plan = people["admin"], people["retailer"], people["client"], people["plan"]
    return {
        "transfer": (retailer, "/api/wallet/transfer/", {"to_phone_number": client.phone_number, "amount": "1.00"}),
        "credit": (client, "/api/wallet/credit/", {"amount": "1.00"}),
        "debit": (client, "/api/wallet/debit/", {"amount": "1.00"}),
        "add-to-wallet": (admin, "/api/wallet/add-to-wallet/", {"user_id": client.pk, "amount": "1.00"}),
        "debit-from-wallet": (admin, "/api/wallet/debit-from-wallet/", {"user_id": client.pk, "amount": "1.00"}),
        "purchase": (retailer, "/api/purchases/purchase/", {"plan_id": plan.pk, "mobile_number": "9812345678"}),
        "payouts": (
            people["distributor"],
            "/api/wallet/payouts/",
            {"lines": [{"to_user_id": retailer.pk, "amount": "1.00"}]},
        ),
    }


def queries_of(user, path, body):
    api = client_for(user)
    with CaptureQueriesContext(connection) as queries:
        response = api.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex)
    assert response.status_code in (201, 202), response.content
    return len(queries)


@pytest.mark.parametrize("endpoint", list(BUDGET))
def test_a_money_request_runs_its_budgeted_queries_every_time(people, endpoint, monkeypatch):
    queued = queue_fulfilments(monkeypatch)
    user, path, body = requests_for(people)[endpoint]
    # The test's flush removed the system wallets: the first request recreates them, the second reads
    # them back once (wallet.services remembers their ids from then on).
    queries_of(user, path, body)
    queries_of(user, path, body)
    counts = [queries_of(user, path, body) for _ in range(3)]
    budget = BUDGET[endpoint] + (0 if connection.vendor == "postgresql" else USER_WALLETS_POSTED.get(endpoint, 0))
    assert counts == [budget] * 3
    assert len(queued) == (5 if endpoint == "purchase" else 0)


class AnsweringGateway(BaseGateway):
    """An operator that answers at once and keeps no record (the sandbox's own bookkeeping is not ours
    to count)."""

    def __init__(self, status):
        self.status = status

    def recharge(self, request):
        return GatewayResult(self.status, operator_reference="OP-1")


# A worker's fulfilment of a purchase accepted with both margins: claim the send (UPDATE, and the purchase
# read back), call the operator, then one transaction: BEGIN, the purchase locked (its plan and buyer
# joined), its hold read by reference, the purchase written, the wallets locked, the hold locked, one
# statement for the ledger's writes (the buyer's wallet and the hold posted with the two margins' rows and
# the distributor's wallet, or the hold voided and the buyer's wallet), COMMIT.
FULFILMENT_BUDGET = {GatewayResult.SUCCESS: 10, GatewayResult.FAILED: 10}
# On SQLite those writes are one UPDATE per wallet (the buyer's once, though its margin changed it too),
# one of the hold and one INSERT per margin (wallet.services._write).
FULFILMENT_ORM_EXTRA = {GatewayResult.SUCCESS: 4, GatewayResult.FAILED: 1}


@pytest.mark.parametrize("outcome", list(FULFILMENT_BUDGET))
def test_a_fulfilment_runs_its_budgeted_queries_every_time(people, outcome, monkeypatch):
    queued = queue_fulfilments(monkeypatch)
    user, path, body = requests_for(people)["purchase"]
    for _ in range(4):
        queries_of(user, path, body)
    # The first also reads back the system wallets the margins are paid from (recreated after the flush).
    fulfil_purchase(purchase_id=queued[0], gateway=AnsweringGateway(outcome))
    counts = []
    for purchase_id in queued[1:]:
        with CaptureQueriesContext(connection) as queries:
            fulfil_purchase(purchase_id=purchase_id, gateway=AnsweringGateway(outcome))
        counts.append(len(queries))
    extra = 0 if connection.vendor == "postgresql" else FULFILMENT_ORM_EXTRA[outcome]
    assert counts == [FULFILMENT_BUDGET[outcome] + extra] * 3
    assert set(Purchase.objects.filter(pk__in=queued[1:]).values_list("status", flat=True)) == {outcome}
