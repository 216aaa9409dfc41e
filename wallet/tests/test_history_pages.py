"""Keyset (cursor) pages of the journal: every transfer exactly once, newest first, at a cost that
does not grow with the depth; page numbers keep the contract's shape."""

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import ClientFactory, DistributorFactory, RetailerFactory
from wallet import services
from wallet.models import Transfer

pytestmark = pytest.mark.django_db
PATH = "/api/wallet/transactions/"


@pytest.fixture
def busy(admin_user):
    """A distributor, its busy retailer (a bulk payout: rows sharing one created_at), and noise
    between other people interleaved in the journal."""
    distributor = DistributorFactory()
    retailer, sibling = RetailerFactory(parent=distributor), RetailerFactory(parent=distributor)
    strangers = [ClientFactory(), ClientFactory()]
    services.pay_out_in_bulk(
        payments=[(distributor.pk, "1000.00"), *[(s.pk, "100.00") for s in strangers]],
        kind=services.Kind.FUND,
        initiated_by=admin_user,
    )
    for round_ in range(3):
        services.pay_out_in_bulk(payer=distributor, payments=[(retailer.pk, "1.00")] * 9 + [(sibling.pk, "1.00")])
        services.transfer_funds(sender=strangers[0], receiver=strangers[1], amount="1.00")
        services.transfer_funds(sender=retailer, receiver=sibling, amount="0.50")
    return {"distributor": distributor, "retailer": retailer, "sibling": sibling, "strangers": strangers}


def walk(api, first_url, *, page_size):
    pages, url = [], first_url
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert "count" not in body and len(body["results"]) <= page_size
        pages.append(body)
        url = body["next"]
    return pages


def ids(pages):
    return [row["id"] for page in pages for row in page["results"]]


@pytest.mark.parametrize("who", ["retailer", "distributor"])
def test_following_next_returns_every_transfer_in_scope_once_newest_first(auth_client, busy, who):
    user = busy[who]
    pages = walk(auth_client(user), f"{PATH}?cursor=&page_size=4", page_size=4)
    wallets = (
        [busy["retailer"].wallet.pk]
        if who == "retailer"
        else [busy["distributor"].wallet.pk, busy["retailer"].wallet.pk, busy["sibling"].wallet.pk]
    )
    expected = list(
        Transfer.objects.filter(Q(from_wallet_id__in=wallets) | Q(to_wallet_id__in=wallets))
        .order_by("-id")
        .values_list("id", flat=True)
    )
    assert ids(pages) == expected and len(expected) > 8
    assert pages[-1]["next"] is None and pages[0]["previous"] is None


def test_previous_goes_back_to_the_same_page(auth_client, busy):
    api = auth_client(busy["retailer"])
    first = api.get(f"{PATH}?cursor=&page_size=5").json()
    second = api.get(first["next"]).json()
    back = api.get(second["previous"]).json()
    assert [row["id"] for row in back["results"]] == [row["id"] for row in first["results"]]


def test_following_previous_from_the_last_page_returns_the_same_pages(auth_client, busy):
    """`previous` reads the oldest rows above the cursor (wallet.selectors.history_window, `after`):
    walked back from the last page, every page is the one `next` gave."""
    api = auth_client(busy["retailer"])
    forward = walk(api, f"{PATH}?cursor=&page_size=3", page_size=3)
    assert len(forward) >= 4
    backward, url = [], forward[-1]["previous"]
    while url:
        body = api.get(url).json()
        backward.append(body)
        url = body["previous"]
    assert [ids([page]) for page in reversed(backward)] == [ids([page]) for page in forward[:-1]]


def test_a_deep_page_costs_the_same_queries_as_the_first(auth_client, busy):
    api = auth_client(busy["retailer"])
    pages = walk(api, f"{PATH}?cursor=&page_size=3", page_size=3)
    counts = []
    for url in (f"{PATH}?cursor=&page_size=3", pages[-2]["next"]):
        with CaptureQueriesContext(connection) as queries:
            assert api.get(url).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_cursor_pages_respect_filters(auth_client, busy):
    pages = walk(
        auth_client(busy["retailer"]), f"{PATH}?cursor=&page_size=2&kind=TRANSFER&amount_max=0.50", page_size=2
    )
    rows = [row for page in pages for row in page["results"]]
    assert len(rows) == 3 and {row["amount"] for row in rows} == {"0.50"}


def test_strangers_transfers_never_appear(auth_client, busy):
    pages = walk(auth_client(busy["strangers"][1]), f"{PATH}?cursor=&page_size=50", page_size=50)
    parties = {(row["from"]["user_id"], row["to"]["user_id"]) for page in pages for row in page["results"]}
    assert all(busy["strangers"][1].pk in pair for pair in parties)


@pytest.mark.parametrize("query", ["cursor=&ordering=amount", "cursor=&page=2"])
def test_cursor_with_ordering_or_page_is_400(auth_client, busy, query):
    response = auth_client(busy["retailer"]).get(f"{PATH}?{query}")
    assert response.status_code == 400 and "cursor" in response.json()["errors"]


@pytest.mark.parametrize("cursor", ["not-base64!", "cD1hYmM=", "cD0xJnI9eA=="])  # garbage, p=abc, r=x
def test_a_malformed_cursor_is_404_not_a_500(auth_client, busy, cursor):
    for user in (busy["retailer"], busy["distributor"]):
        response = auth_client(user).get(PATH, {"cursor": cursor})
        assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_page_numbers_keep_the_contracts_count(auth_client, busy):
    body = auth_client(busy["retailer"]).get(f"{PATH}?page_size=5").json()
    assert (
        body["count"]
        == Transfer.objects.filter(from_wallet__user=busy["retailer"]).count()
        + Transfer.objects.filter(to_wallet__user=busy["retailer"]).count()
    )
    assert "page=2" in body["next"]


def test_a_retailers_cursor_page_is_its_token_two_index_reads_and_the_page(auth_client, busy):
    """The retailer's wallet comes with its user from the token's query: no query of its own."""
    api = auth_client(busy["retailer"])
    with CaptureQueriesContext(connection) as queries:
        response = api.get(f"{PATH}?cursor=&page_size=4")
    assert response.status_code == 200 and len(response.json()["results"]) == 4
    assert len(queries) == 4, [query["sql"][:120] for query in queries]


def test_a_page_asking_for_no_filter_skips_the_filter_backends_and_one_that_asks_uses_them(
    auth_client, busy, monkeypatch
):
    from django_filters.rest_framework import DjangoFilterBackend

    consulted = []
    original = DjangoFilterBackend.filter_queryset

    def spy(self, request, queryset, view):
        consulted.append(request.query_params.dict())
        return original(self, request, queryset, view)

    monkeypatch.setattr(DjangoFilterBackend, "filter_queryset", spy)
    api = auth_client(busy["retailer"])
    for url in (f"{PATH}?cursor=&page_size=4", f"{PATH}?page=1&page_size=4", PATH):
        assert api.get(url).status_code == 200
    assert consulted == []

    filtered = api.get(f"{PATH}?page_size=50&kind=TRANSFER&amount_max=0.50").json()
    assert consulted == [{"page_size": "50", "kind": "TRANSFER", "amount_max": "0.50"}]
    assert {row["amount"] for row in filtered["results"]} == {"0.50"}


def test_a_window_beyond_the_largest_page_is_answered_but_never_kept(auth_client, busy, settings):
    """A cursor's offset makes any limit: such windows are compiled per request, so that no request can
    grow the kept queries (wallet.selectors._precompiled_sides)."""
    from wallet import selectors

    wallet_id = busy["retailer"].wallet.pk
    selectors._precompiled_sides.clear()
    small = selectors.history_window(queryset=Transfer.objects.all(), wallet_id=wallet_id, limit=3)
    large = selectors.history_window(
        queryset=Transfer.objects.all(), wallet_id=wallet_id, limit=settings.MAX_PAGE_SIZE + 2
    )
    expected = list(
        Transfer.objects.filter(Q(from_wallet_id=wallet_id) | Q(to_wallet_id=wallet_id)).values_list("pk", flat=True)
    )
    assert set(large.values_list("pk", flat=True)) == set(expected)
    assert len(small) <= 6 and set(small.values_list("pk", flat=True)) <= set(expected)
    assert sorted(key[2] for key in selectors._precompiled_sides) == [3, 3]
