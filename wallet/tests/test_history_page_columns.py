"""A retailer's or client's cursor page (TransferPagination's one-wallet fast path) loads only the
columns its rows show (wallet.selectors.HISTORY_ROW_FIELDS): on the benchmark's busy wallet, reading
and setting the parties' whole user rows (password hash, dates, KYC, token version) and wallets cost
a history page about a tenth of its throughput. The rows must still render exactly as a fully loaded transfer
does, whichever side of a transfer the wallet is on and whatever the other side is (a person, a
system wallet), for holds, voids, postings and refunds alike."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import ClientFactory, DistributorFactory, RetailerFactory
from wallet import services
from wallet.models import Transfer

pytestmark = pytest.mark.django_db
PATH = "/api/wallet/transactions/"


@pytest.fixture
def people(admin_user):
    """A retailer whose history has every shape of row: funded by the treasury (a system sender),
    paid by its distributor, paying a sibling, a recharge hold posted and refunded (a system wallet on
    either side), and a hold voided (finalized_at set, nothing moved); a client paying another
    (whose balance after the transfer it may not see)."""
    distributor = DistributorFactory()
    retailer, sibling = RetailerFactory(parent=distributor), RetailerFactory(parent=distributor)
    payer, payee = ClientFactory(), ClientFactory()
    services.pay_out_in_bulk(
        payments=[(distributor.pk, "500.00"), (retailer.pk, "50.00"), (payer.pk, "20.00")],
        kind=services.Kind.FUND,
        initiated_by=admin_user,
    )
    services.transfer_funds(sender=distributor, receiver=retailer, amount="10.00", remarks="float")
    services.transfer_funds(sender=retailer, receiver=sibling, amount="2.50")
    sold = services.hold_funds(user=retailer, amount="9.00", reference="sale-1")
    services.post_transfer(transfer=sold)
    services.refund_transfer(transfer=sold, initiated_by=admin_user)
    services.void_transfer(transfer=services.hold_funds(user=retailer, amount="3.00", reference="sale-2"))
    services.transfer_funds(sender=payer, receiver=payee, amount="1.25")
    return {"retailer": retailer, "payer": payer, "payee": payee}


def cursor_rows(api, *, page_size):
    """Every row of the cursor pages, following `next` to the end and `previous` back to the start."""
    rows, url, pages = [], f"{PATH}?cursor=&page_size={page_size}", []
    while url:
        body = api.get(url).json()
        pages.append(body)
        rows.extend(body["results"])
        url = body["next"]
    url = pages[-1]["previous"]
    while url:  # the reverse direction (`after` an id) goes through the same window
        body = api.get(url).json()
        rows.extend(body["results"])
        url = body["previous"]
    return rows


@pytest.mark.parametrize("who", ["retailer", "payer", "payee"])
def test_every_cursor_page_row_is_rendered_exactly_as_the_transfers_detail_renders_it(auth_client, people, who):
    api = auth_client(people[who])
    rows = cursor_rows(api, page_size=2)
    wallet_id = people[who].wallet.pk
    own = Transfer.objects.filter(from_wallet_id=wallet_id) | Transfer.objects.filter(to_wallet_id=wallet_id)
    assert {row["id"] for row in rows} == set(own.values_list("pk", flat=True))
    if who == "retailer":  # the history holds every shape of row the fixture promises
        kinds = {(row["kind"], row["status"], row["from"]["system"], row["to"]["system"]) for row in rows}
        holds = {(("PURCHASE", status, None, "RECHARGE_SETTLEMENT")) for status in ("POSTED", "VOIDED")}
        assert holds <= kinds, kinds
        assert ("REFUND", "POSTED", "RECHARGE_SETTLEMENT", None) in kinds and len(kinds) >= 5
    # The detail endpoint loads the whole transfer with both parties' whole rows.
    for row in rows:
        assert row == api.get(f"{PATH}{row['id']}/").json()


def test_a_cursor_page_reads_only_the_columns_its_rows_show(auth_client, people):
    api = auth_client(people["retailer"])
    with CaptureQueriesContext(connection) as queries:
        body = api.get(f"{PATH}?cursor=&page_size=3").json()
    assert len(body["results"]) == 3
    # The token's user and wallet, the two sides' ids, the page: a column the rows need but the page
    # did not load would be fetched row by row here.
    assert len(queries) == 4, [query["sql"][:120] for query in queries]
    page_sql = queries[-1]["sql"]
    assert "wallet_transfer" in page_sql and "accounts_user" in page_sql, page_sql
    for unread in ('"password"', '"last_login"', '"token_version"', '"idempotency_key"', '"held"', '"last_entry"'):
        assert unread not in page_sql, unread
