"""Read endpoints: scope (out of scope is 404), filters, search, ordering and query counts."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.models import UserMargin
from accounts.tests.factories import ClientFactory, DistributorFactory, RetailerFactory
from core.precompiled import statement_of
from wallet import services
from wallet.models import Transfer

pytestmark = pytest.mark.django_db


def url(name, **kwargs):
    return reverse(f"wallet:{name}", kwargs=kwargs or None)


@pytest.fixture
def world(admin_user, distributor, retailer, fund):
    """A distributor with its retailer, another distributor's retailer and a client, all with money moved."""
    other_retailer = RetailerFactory(parent=DistributorFactory())
    client = ClientFactory()
    fund(distributor, "100.00")
    fund(other_retailer, "10.00")
    fund(client, "20.00")
    services.transfer_funds(sender=distributor, receiver=retailer, amount="30.00")
    services.transfer_funds(sender=client, receiver=other_retailer, amount="5.00")
    return {"other_retailer": other_retailer, "client": client}


def usernames(results, side):
    return {row[side]["username"] for row in results}


def test_a_balance_read_is_one_query_the_tokens_user_with_its_wallet(auth_client, retailer, fund):
    """A business wallet has no monthly load limit to sum (a client's adds that one aggregate)."""
    fund(retailer, "12.50")
    api = auth_client(retailer)
    with CaptureQueriesContext(connection) as queries:
        response = api.get(url("balance"))
    assert response.status_code == 200 and response.json()["balance"] == "12.50"
    assert len(queries) == 1 and "wallet_wallet" in statement_of(queries[0]["sql"])


def test_balance_answers_the_seed_shape(auth_client, client_user, fund):
    fund(client_user, "12.30")
    services.hold_funds(user=client_user, amount="2.30")
    body = auth_client(client_user).get(url("balance")).json()
    seed_shape = {key: body.pop(key) for key in ("user", "balance", "held", "available")}
    assert seed_shape == {"user": client_user.username, "balance": "12.30", "held": "2.30", "available": "10.00"}
    assert list(body) == ["limits"]  # and, beside the seed's fields, the wallet's limits (test_limits.py)


def test_balance_refuses_an_anonymous_caller(api_client):
    assert api_client.get(url("balance")).status_code == 401


def test_admin_sees_every_user_wallet(auth_client, admin_user, world):
    response = auth_client(admin_user).get(url("wallet-list"))
    assert response.json()["count"] == 6  # admin, 2 distributors, 2 retailers, client


def test_a_distributor_sees_its_own_wallet_and_its_retailers(auth_client, distributor, retailer, world):
    rows = auth_client(distributor).get(url("wallet-list")).json()["results"]
    assert {row["user"]["username"] for row in rows} == {distributor.username, retailer.username}


@pytest.mark.parametrize("role", ["retailer", "client_user"])
def test_retailers_and_clients_see_only_their_own_wallet(request, auth_client, role, world):
    user = request.getfixturevalue(role)
    rows = auth_client(user).get(url("wallet-list")).json()["results"]
    assert [row["user"]["id"] for row in rows] == [user.pk]


@pytest.mark.parametrize("role", ["retailer", "client_user"])
def test_a_one_wallet_scope_lists_its_wallet_with_no_query_but_the_tokens_user(
    request, auth_client, role, world, monkeypatch
):
    """A retailer's or client's list is its own wallet, the one authentication loaded: no COUNT, no
    page query, and the very body the queried list answers (its envelope, fields and balance)."""
    user = request.getfixturevalue(role)
    api = auth_client(user)
    with CaptureQueriesContext(connection) as queries:
        listed = api.get(url("wallet-list"))
    assert listed.status_code == 200
    assert len(queries) == 1 and "wallet_wallet" in statement_of(queries[0]["sql"])

    from wallet import selectors

    monkeypatch.setattr(selectors, "own_wallet_if_single_scope", lambda *, user: None)
    with CaptureQueriesContext(connection) as queries:
        queried = api.get(url("wallet-list"))
    assert len(queries) == 3  # the token's user, the COUNT, the page
    assert listed.json() == queried.json()
    assert listed.json()["count"] == 1 and listed.json()["results"][0]["user"]["id"] == user.pk


def test_a_one_wallet_scope_pages_and_filters_as_the_queried_list_does(auth_client, retailer, world):
    api = auth_client(retailer)
    assert api.get(url("wallet-list"), {"page_size": 1}).json()["count"] == 1
    beyond = api.get(url("wallet-list"), {"page": 2})
    assert beyond.status_code == 404 and beyond.json()["code"] == "not_found"
    assert api.get(url("wallet-list"), {"page": "x"}).status_code == 400
    # A filter is the queried list's: it can leave nothing.
    assert api.get(url("wallet-list"), {"search": "nobody-has-this-name"}).json()["count"] == 0
    assert api.get(url("wallet-list"), {"search": retailer.username}).json()["count"] == 1


def test_a_distributor_lists_by_query_its_own_wallet_and_its_retailers(auth_client, distributor, retailer, world):
    api = auth_client(distributor)
    with CaptureQueriesContext(connection) as queries:
        rows = api.get(url("wallet-list")).json()["results"]
    assert len(queries) == 3 and len(rows) == 2


def test_a_wallet_outside_the_callers_scope_is_404(auth_client, distributor, world):
    foreign = world["other_retailer"].wallet
    response = auth_client(distributor).get(url("wallet-detail", pk=foreign.pk))
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_a_distributor_reads_its_retailers_wallet(auth_client, distributor, retailer, world):
    response = auth_client(distributor).get(url("wallet-detail", pk=retailer.wallet.pk))
    assert response.status_code == 200 and response.json()["balance"] == "30.00"


def test_a_wallet_list_asking_for_no_filter_skips_the_filter_backends_and_keeps_the_id_order(
    auth_client, admin_user, world, monkeypatch
):
    from django_filters.rest_framework import DjangoFilterBackend

    consulted, original = [], DjangoFilterBackend.filter_queryset

    def spy(self, request, queryset, view):
        consulted.append(request.query_params.dict())
        return original(self, request, queryset, view)

    monkeypatch.setattr(DjangoFilterBackend, "filter_queryset", spy)
    api = auth_client(admin_user)
    unasked = api.get(url("wallet-list"), {"page_size": 3}).json()
    everything = api.get(url("wallet-list")).json()
    assert consulted == []
    ids = [row["id"] for row in everything["results"]]
    assert ids == sorted(ids) and [row["id"] for row in unasked["results"]] == ids[:3]

    filtered = api.get(url("wallet-list"), {"user_type": 3}).json()
    assert consulted == [{"user_type": "3"}] and filtered["count"] == 2


def test_admin_filters_wallets_by_role(auth_client, admin_user, world):
    rows = auth_client(admin_user).get(url("wallet-list"), {"user_type": 3}).json()["results"]
    assert {row["user"]["user_type_display"] for row in rows} == {"Retailer"} and len(rows) == 2


def test_transactions_show_a_client_only_its_own_transfers(auth_client, world):
    client = world["client"]
    rows = auth_client(client).get(url("transaction-list")).json()["results"]
    assert len(rows) == 2 and all(client.username in (r["sender"], r["receiver"]) for r in rows)


def test_transactions_show_a_distributor_its_retailers_transfers(auth_client, distributor, retailer, world, fund):
    fund(retailer, "1.00")
    rows = auth_client(distributor).get(url("transaction-list")).json()["results"]
    assert len(rows) == 3
    assert rows[0]["kind"] == "FUND" and rows[0]["to"]["username"] == retailer.username  # newest first


def test_a_transfer_outside_the_callers_scope_is_404(auth_client, distributor, world):
    foreign = Transfer.objects.get(to_wallet__user=world["other_retailer"], kind="TRANSFER")
    assert auth_client(distributor).get(url("transaction-detail", pk=foreign.pk)).status_code == 404


def test_a_party_reads_its_transfer(auth_client, retailer, world):
    mine = Transfer.objects.get(to_wallet__user=retailer)
    body = auth_client(retailer).get(url("transaction-detail", pk=mine.pk)).json()
    assert body["amount"] == "30.00" and body["to_balance_after"] == "30.00" and body["from_balance_after"] is None


def test_transactions_filter_by_kind_status_amount_and_date(auth_client, admin_user, world):
    client = auth_client(admin_user)
    assert client.get(url("transaction-list"), {"kind": "TRANSFER"}).json()["count"] == 2
    assert client.get(url("transaction-list"), {"status": "PENDING"}).json()["count"] == 0
    assert client.get(url("transaction-list"), {"amount_min": "20", "amount_max": "30"}).json()["count"] == 2
    tomorrow = (timezone.localdate() + timedelta(days=1)).isoformat()  # the filter reads dates in TIME_ZONE
    assert client.get(url("transaction-list"), {"date_from": tomorrow}).json()["count"] == 0
    assert client.get(url("transaction-list"), {"date_to": tomorrow}).json()["count"] == 5


@pytest.mark.parametrize(
    "params",
    [{"kind": "NOPE"}, {"amount_min": "abc"}, {"amount_max": "1e9999"}, {"created_after": "yesterday"}],
)
def test_a_malformed_filter_is_400(auth_client, admin_user, params):
    assert auth_client(admin_user).get(url("transaction-list"), params).status_code == 400


def test_transactions_search_matches_sender_or_receiver_username_or_phone(auth_client, admin_user, world):
    client = world["client"]
    api = auth_client(admin_user)
    assert api.get(url("transaction-list"), {"search": client.username}).json()["count"] == 2
    assert api.get(url("transaction-list"), {"search": client.phone_number}).json()["count"] == 2


def test_transactions_order_by_amount(auth_client, admin_user, world):
    rows = auth_client(admin_user).get(url("transaction-list"), {"ordering": "amount"}).json()["results"]
    amounts = [Decimal(row["amount"]) for row in rows]
    assert amounts == sorted(amounts)


def test_only_an_admin_lists_every_transfer(auth_client, admin_user, distributor, world):
    assert auth_client(admin_user).get(url("admin-transaction-list")).json()["count"] == 5
    response = auth_client(distributor).get(url("admin-transaction-list"))
    assert response.status_code == 403


def test_admin_list_searches_kind_and_filters_by_transaction_type(auth_client, admin_user, world):
    api = auth_client(admin_user)
    assert api.get(url("admin-transaction-list"), {"search": "TRANSFER"}).json()["count"] == 2
    assert api.get(url("admin-transaction-list"), {"transaction_type": "FUND"}).json()["count"] == 3
    assert api.get(url("admin-transaction-list"), {"sender": world["client"].username}).json()["count"] == 1


@pytest.mark.parametrize("path", ["/api/wallet/admin/transactions/", "/transactions/admin-list/"])
def test_admin_list_orders_by_the_seeds_timestamp_and_by_amount(auth_client, admin_user, world, path):
    api = auth_client(admin_user)
    oldest_first = api.get(path, {"ordering": "timestamp"}).json()["results"]
    newest_first = api.get(path, {"ordering": "-timestamp"}).json()["results"]
    assert [row["id"] for row in oldest_first] == [row["id"] for row in reversed(newest_first)]
    assert oldest_first[0]["timestamp"] <= oldest_first[-1]["timestamp"]
    by_amount = [Decimal(row["amount"]) for row in api.get(path, {"ordering": "-amount"}).json()["results"]]
    assert by_amount == sorted(by_amount, reverse=True)


def test_margins_are_listed_within_scope(auth_client, admin_user, distributor, retailer, world):
    UserMargin.objects.create(user=distributor, margin_percentage=Decimal("3"))
    UserMargin.objects.create(user=retailer, margin_percentage=Decimal("2"))
    UserMargin.objects.create(user=world["other_retailer"], margin_percentage=Decimal("1"))
    assert auth_client(admin_user).get(url("margin-list")).json()["count"] == 3
    assert auth_client(distributor).get(url("margin-list")).json()["count"] == 2
    rows = auth_client(retailer).get(url("margin-list")).json()["results"]
    assert [row["user"]["id"] for row in rows] == [retailer.pk] and rows[0]["margin_percentage"] == "2.00"


# --- query counts ---------------------------------------------------------------------------


def test_balance_uses_a_small_fixed_number_of_queries(auth_client, client_user, django_assert_max_num_queries):
    api = auth_client(client_user)
    with django_assert_max_num_queries(3):  # the token's user, the wallet, a client's loads this month
        assert api.get(url("balance")).status_code == 200


def test_a_business_wallets_balance_costs_no_limits_query(auth_client, retailer, django_assert_max_num_queries):
    api = auth_client(retailer)
    with django_assert_max_num_queries(2):  # the token's user, the wallet: no limit, nothing to sum
        assert api.get(url("balance")).status_code == 200


def test_transfer_uses_a_small_fixed_number_of_queries(auth_client, fund, django_assert_max_num_queries):
    sender, receiver = ClientFactory(), ClientFactory()
    fund(sender, "10.00")
    api = auth_client(sender)
    # user, receiver lookup, BEGIN/savepoints, lock both wallets, 2 updates, insert, commit
    with django_assert_max_num_queries(9):
        response = api.post(url("transfer"), {"to_user_id": receiver.pk, "amount": "1.00"})
    assert response.status_code == 201


def _queries_for(api, path, params):
    with CaptureQueriesContext(connection) as queries:
        response = api.get(path, params)
    assert response.status_code == 200 and len(response.json()["results"]) == params["page_size"]
    return len(queries)


@pytest.mark.parametrize(
    "name", ["transaction-list", "admin-transaction-list", "wallet-list", "margin-list"], ids=lambda n: n
)
def test_list_endpoints_do_not_grow_with_the_page_size(auth_client, admin_user, name, fund):
    users = [RetailerFactory() for _ in range(50)]
    for user in users:
        fund(user, "1.00")
        UserMargin.objects.create(user=user, margin_percentage=Decimal("1"))
    api = auth_client(admin_user)
    assert _queries_for(api, url(name), {"page_size": 5}) == _queries_for(api, url(name), {"page_size": 50})


@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/wallet/balance/"),
        ("get", "/api/wallet/wallets/"),
        ("get", "/api/wallet/wallets/1/"),
        ("get", "/api/wallet/transactions/"),
        ("get", "/api/wallet/transactions/1/"),
        ("get", "/api/wallet/margins/"),
        ("get", "/api/wallet/admin/transactions/"),
        ("post", "/api/wallet/credit/"),
        ("post", "/api/wallet/debit/"),
        ("post", "/api/wallet/transfer/"),
        ("post", "/api/wallet/add-to-wallet/"),
        ("post", "/api/wallet/debit-from-wallet/"),
        ("post", "/api/wallet/set-margin/"),
        ("get", "/wallet/balance/"),
        ("post", "/wallet/credit/"),
        ("post", "/wallet/debit/"),
        ("post", "/wallet/transfer/"),
        ("get", "/transactions/admin-list/"),
    ],
)
def test_every_wallet_endpoint_refuses_an_anonymous_caller(api_client, method, path):
    response = getattr(api_client, method)(path, {"amount": "1.00"} if method == "post" else None)
    assert response.status_code == 401 and response.json()["code"] == "not_authenticated"
    assert Transfer.objects.count() == 0


@pytest.mark.parametrize("role", ["distributor", "retailer", "client_user"])
def test_the_seeds_admin_list_refuses_non_admins(request, auth_client, role):
    response = auth_client(request.getfixturevalue(role)).get("/transactions/admin-list/")
    assert response.status_code == 403
