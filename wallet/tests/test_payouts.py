"""Bulk payouts (POST /api/wallet/payouts/): all or nothing, one journal row per line, bad lines
reported one by one with their codes, Idempotency-Key required, the role rules of transfers."""

import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.tests.factories import ClientFactory, DistributorFactory, RetailerFactory
from core.precompiled import statement_of
from wallet.models import Payout, PayoutLine, Transfer
from wallet.tests.helpers import assert_ledger_clean, balance_of, ledger_snapshot

pytestmark = pytest.mark.django_db

URL = reverse("wallet:payouts")


def post(client, body, key="auto"):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": uuid.uuid4().hex if key == "auto" else key}
    return client.post(URL, body, format="json", **headers)


@pytest.fixture
def funded_distributor(distributor, fund):
    fund(distributor, "1000.00")
    return distributor


def test_a_distributor_pays_its_retailers_one_journal_row_per_line(auth_client, funded_distributor):
    retailers = [RetailerFactory(parent=funded_distributor) for _ in range(3)]
    lines = [
        {"to_user_id": retailers[0].pk, "amount": "100.00"},
        {"to_phone_number": retailers[1].phone_number, "amount": "50.50", "remarks": "bonus"},
        {"to_email": retailers[2].email.upper(), "amount": "0.01"},
    ]
    response = post(auth_client(funded_distributor), {"lines": lines, "remarks": "March"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["balance"] == "849.49" and body["user"] == funded_distributor.username
    payout = body["payout"]
    assert payout["kind"] == "TRANSFER" and payout["total"] == "150.51" and payout["line_count"] == 3
    assert payout["source"] == funded_distributor.username
    assert [(line["line"], line["user_id"], line["amount"]) for line in payout["lines"]] == [
        (0, retailers[0].pk, "100.00"),
        (1, retailers[1].pk, "50.50"),
        (2, retailers[2].pk, "0.01"),
    ]
    assert [balance_of(r) for r in retailers] == [Decimal("100.00"), Decimal("50.50"), Decimal("0.01")]
    rows = Transfer.objects.filter(from_wallet__user=funded_distributor, kind="TRANSFER").order_by("pk")
    assert [row.remarks for row in rows] == ["March", "bonus", "March"]
    assert [row.from_balance_after for row in rows] == [Decimal("900.00"), Decimal("849.50"), Decimal("849.49")]
    assert [line["transfer_id"] for line in payout["lines"]] == [row.pk for row in rows]
    record = Payout.objects.get()
    assert (record.payer, record.line_count, record.total) == (funded_distributor, 3, Decimal("150.51"))
    assert list(record.lines.values_list("line", "recipient_id", "amount", "transfer_id")) == [
        (0, retailers[0].pk, Decimal("100.00"), rows[0].pk),
        (1, retailers[1].pk, Decimal("50.50"), rows[1].pk),
        (2, retailers[2].pk, Decimal("0.01"), rows[2].pk),
    ]
    assert_ledger_clean()


def test_an_admin_pays_any_account_from_the_treasury(auth_client, admin_user):
    recipients = [ClientFactory(), RetailerFactory(parent=DistributorFactory()), DistributorFactory()]
    lines = [{"to_user_id": user.pk, "amount": "10.00"} for user in recipients]
    response = post(auth_client(admin_user), {"lines": lines})
    assert response.status_code == 201, response.json()
    assert response.json()["payout"]["kind"] == "FUND" and response.json()["payout"]["source"] == "TREASURY"
    assert [balance_of(user) for user in recipients] == [Decimal("10.00")] * 3
    assert set(Transfer.objects.values_list("kind", "from_wallet__system_code")) == {("FUND", "TREASURY")}
    assert_ledger_clean()


def test_bad_lines_are_reported_line_by_line_and_nothing_is_paid(auth_client, funded_distributor):
    own = RetailerFactory(parent=funded_distributor)
    inactive = RetailerFactory(parent=funded_distributor, is_active=False)
    unverified = RetailerFactory(parent=funded_distributor, phone_verified=False)
    others = RetailerFactory(parent=DistributorFactory())
    lines = [
        {"to_user_id": own.pk, "amount": "1.00"},  # 0: good
        {"to_user_id": 10**9, "amount": "1.00"},  # 1: unknown
        {"to_user_id": others.pk, "amount": "1.00"},  # 2: another distributor's retailer
        {"to_user_id": ClientFactory().pk, "amount": "1.00"},  # 3: a client
        {"to_user_id": funded_distributor.pk, "amount": "1.00"},  # 4: itself
        {"to_user_id": own.pk, "amount": "2.00"},  # 5: named twice
        {"to_email": own.email, "amount": "2.00"},  # 6: the same account by another name
        {"to_user_id": inactive.pk, "amount": "1.00"},  # 7: deactivated
        {"to_phone_number": unverified.phone_number, "amount": "1.00"},  # 8: unproved number names nobody
        {"to_phone_number": "12", "amount": "1.00"},  # 9: not a phone number
        {"to_user_id": own.pk, "to_email": own.email, "amount": "1.00"},  # 10: two recipients
        {"amount": "1.00"},  # 11: none
        {"to_user_id": own.pk, "amount": 1.5},  # 12: a JSON number
        {"to_user_id": own.pk, "amount": "1.001"},  # 13: three places
        {"to_user_id": own.pk, "amount": "0"},  # 14: zero
        {"to_user_id": "7", "amount": "1.00"},  # 15: a string id
        "not an object",  # 16
    ]
    before = ledger_snapshot()
    response = post(auth_client(funded_distributor), {"lines": lines})
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "invalid_payout_lines" and "nothing was paid" in body["detail"]
    assert [(error["line"], error["code"]) for error in body["lines"]] == [
        (1, "user_not_found"),
        (2, "not_in_scope"),
        (3, "not_in_scope"),
        (4, "not_in_scope"),
        (5, "duplicate_recipient"),
        (6, "duplicate_recipient"),
        (7, "wallet_inactive"),
        (8, "user_not_found"),
        (9, "invalid_phone_number"),
        (10, "recipient_required"),
        (11, "recipient_required"),
        (12, "amount_not_a_string"),
        (13, "amount_too_precise"),
        (14, "amount_not_positive"),
        (15, "invalid"),
        (16, "invalid"),
    ]
    assert body["lines"][4]["detail"] == "The same account as line 0."
    assert ledger_snapshot() == before and not Payout.objects.exists()


def test_a_payout_beyond_the_payers_funds_pays_nobody(auth_client, funded_distributor):
    retailers = [RetailerFactory(parent=funded_distributor) for _ in range(2)]
    before = ledger_snapshot()
    lines = [{"to_user_id": r.pk, "amount": "600.00"} for r in retailers]
    response = post(auth_client(funded_distributor), {"lines": lines})
    assert response.status_code == 400 and response.json()["code"] == "insufficient_funds"
    assert ledger_snapshot() == before and not Payout.objects.exists()


@pytest.mark.parametrize("count", [0, 4])
def test_a_payout_has_one_to_the_maximum_lines(settings, auth_client, funded_distributor, count):
    settings.WALLET_PAYOUT_MAX_LINES = 3
    retailer = RetailerFactory(parent=funded_distributor)
    response = post(auth_client(funded_distributor), {"lines": [{"to_user_id": retailer.pk, "amount": "1.00"}] * count})
    # The whole answer: the field and the maximum are what a client corrects its request by.
    assert response.status_code == 400 and response.json() == {
        "detail": "A payout has 1 to 3 lines.",
        "code": "invalid_payout_size",
        "errors": {"lines": ["A payout has 1 to 3 lines."]},
    }
    assert not Transfer.objects.filter(kind="TRANSFER").exists()


@pytest.mark.parametrize("body", [{}, {"lines": "x"}, {"lines": [1, 2]}, []])
def test_a_malformed_payout_body_is_a_400(auth_client, funded_distributor, body):
    response = post(auth_client(funded_distributor), body)
    assert response.status_code == 400, response.json()


def test_a_payout_needs_an_idempotency_key(auth_client, funded_distributor, retailer):
    response = post(auth_client(funded_distributor), {"lines": [{"to_user_id": retailer.pk, "amount": "1.00"}]}, None)
    assert response.status_code == 400 and response.json()["code"] == "idempotency_key_required"
    assert balance_of(retailer) == 0


def test_a_repeated_payout_pays_once_and_replays_its_answer(auth_client, funded_distributor, retailer):
    api, body = auth_client(funded_distributor), {"lines": [{"to_user_id": retailer.pk, "amount": "5.00"}]}
    first, again = post(api, body, "payout-1"), post(api, body, "payout-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert balance_of(retailer) == Decimal("5.00") and Payout.objects.count() == 1
    assert post(api, {"lines": [{"to_user_id": retailer.pk, "amount": "6.00"}]}, "payout-1").status_code == 422


@pytest.mark.parametrize("role", ["retailer", "client_user"])
def test_only_admins_and_distributors_make_payouts(request, auth_client, role, funded_distributor):
    user = request.getfixturevalue(role)
    target = RetailerFactory(parent=funded_distributor)
    response = post(auth_client(user), {"lines": [{"to_user_id": target.pk, "amount": "1.00"}]})
    assert response.status_code == 403 and response.json()["code"] == "permission_denied"


def test_a_payouts_queries_do_not_grow_with_its_lines(auth_client, funded_distributor):
    retailers = [RetailerFactory(parent=funded_distributor) for _ in range(30)]
    api = auth_client(funded_distributor)

    def queries(recipients):
        with CaptureQueriesContext(connection) as captured:
            response = post(api, {"lines": [{"to_user_id": r.pk, "amount": "1.00"} for r in recipients]})
        assert response.status_code == 201, response.json()
        if connection.vendor == "postgresql":  # SQLite has no row locks
            locks = [statement_of(q["sql"]) for q in captured if "FOR UPDATE" in statement_of(q["sql"])]
            assert len(locks) == 1 and 'ORDER BY "wallet_wallet"."id" ASC' in locks[0]
        return len(captured)

    assert queries(retailers[:2]) == queries(retailers[2:30])


def test_the_django_admin_shows_a_payout_with_its_lines(client, auth_client, admin_user, funded_distributor):
    retailers = [RetailerFactory(parent=funded_distributor) for _ in range(2)]
    post(auth_client(funded_distributor), {"lines": [{"to_user_id": r.pk, "amount": "3.00"} for r in retailers]})
    admin_user.is_staff = admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    payout = Payout.objects.get()
    page = client.get(reverse("admin:wallet_payout_change", args=[payout.pk]))
    assert page.status_code == 200
    for line in PayoutLine.objects.all():
        assert f"#{line.transfer_id}" in page.content.decode()
    assert client.get(reverse("admin:wallet_payout_changelist")).status_code == 200
    assert client.post(reverse("admin:wallet_payout_delete", args=[payout.pk])).status_code == 403
