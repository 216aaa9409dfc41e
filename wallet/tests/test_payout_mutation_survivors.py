"""Behaviours of bulk payouts that no test held until mutation testing showed it (issue 17).

Each test here kills one or more surviving mutants of `make mutate` in the payout code of
`wallet/services.py` (`pay_out`, its line checks and recipients, `_post_many`, the bulk load
limits, the stored balances; docs/mutation.md lists them by name). Each asserts what a client, an
operator or an auditor relies on: the exact error a client reads for each kind of bad line, the
rows and the payout record written, the limits of the wallets paid, the wallets handed back."""

import re
import uuid
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from accounts.tests.factories import ClientFactory, DistributorFactory, RetailerFactory
from wallet import services
from wallet.models import Payout, SystemWallet, Transfer, Wallet
from wallet.tests.helpers import balance_of, ledger_snapshot

pytestmark = pytest.mark.django_db

URL = reverse("wallet:payouts")
DOMAIN = "@example.com"


def post(api, body, key=None):
    return api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex)


@pytest.fixture
def funded_distributor(distributor, fund):
    fund(distributor, "1000.00")
    return distributor


def line_error(line, code, field, detail):
    return {"line": line, "code": code, "field": field, "detail": detail}


def test_every_bad_line_is_answered_with_its_line_code_field_and_detail(auth_client, funded_distributor):
    """What a client reads to fix its payout: one object per bad line, exactly, and the count of
    bad lines out of all in the message. A bad line never stops the checks of the lines after it."""
    own = [RetailerFactory(parent=funded_distributor) for _ in range(3)]
    longest_email = RetailerFactory(parent=funded_distributor, email="r" * (254 - len(DOMAIN)) + DOMAIN)
    inactive = RetailerFactory(parent=funded_distributor, is_active=False)
    others = RetailerFactory(parent=DistributorFactory())
    lines = [
        {"to_user_id": own[0].pk, "amount": "1.00"},  # 0: good
        "not an object",  # 1
        {"to_user_id": "", "to_phone_number": None, "amount": "1.00"},  # 2: empty names name nobody
        {"to_user_id": own[1].pk, "to_email": own[1].email, "amount": "1.00"},  # 3: two names
        {"to_phone_number": "12", "amount": "1.00"},  # 4
        {"to_user_id": "7", "amount": "1.00"},  # 5: an id is a JSON integer
        {"to_user_id": 2**63, "amount": "1.00"},  # 6: beyond the id column
        {"to_user_id": 2**63 - 1, "amount": "1.00"},  # 7: the largest id there can be: nobody's
        {"to_email": "nobody.example.com", "amount": "1.00"},  # 8: no @
        {"to_email": 42, "amount": "1.00"},  # 9
        {"to_email": "r" * (255 - len(DOMAIN)) + DOMAIN, "amount": "1.00"},  # 10: longer than an address
        {"to_email": longest_email.email.upper(), "amount": "1.00"},  # 11: good, the longest address
        {"to_user_id": own[1].pk, "amount": "1.00", "remarks": "x" * 256},  # 12
        {"to_user_id": own[1].pk, "amount": "1.00", "remarks": 42},  # 13
        {"to_user_id": own[1].pk, "amount": 1.5},  # 14: a JSON number
        {"to_user_id": own[1].pk, "amount": "1.001"},  # 15
        {"to_email": "nobody" + DOMAIN, "amount": "1.00"},  # 16
        {"to_email": others.email, "amount": "1.00"},  # 17: another distributor's retailer
        {"to_phone_number": inactive.phone_number, "amount": "1.00"},  # 18
        {"to_email": own[0].email, "amount": "1.00"},  # 19: line 0's account by another name
        {"to_user_id": own[2].pk, "amount": "1.00", "remarks": "y" * 255},  # 20: good, the longest remarks
    ]
    before = ledger_snapshot()
    response = post(auth_client(funded_distributor), {"lines": lines})
    assert response.status_code == 400, response.json()
    malformed = "{} is malformed."
    assert response.json() == {
        "detail": "18 of 21 payout lines are invalid; nothing was paid.",
        "code": "invalid_payout_lines",
        "lines": [
            line_error(1, "invalid", None, "A line is an object."),
            *[
                line_error(
                    n, "recipient_required", "to_user_id", "Give exactly one of to_user_id, to_phone_number, to_email."
                )
                for n in (2, 3)
            ],
            line_error(4, "invalid_phone_number", "to_phone_number", "Enter a valid phone number."),
            line_error(5, "invalid", "to_user_id", malformed.format("to_user_id")),
            line_error(6, "invalid", "to_user_id", malformed.format("to_user_id")),
            line_error(7, "user_not_found", "to_user_id", "No account matches this recipient."),
            *[line_error(n, "invalid", "to_email", malformed.format("to_email")) for n in (8, 9, 10)],
            *[line_error(n, "invalid", "remarks", "remarks is a string of at most 255 characters.") for n in (12, 13)],
            line_error(
                14, "amount_not_a_string", "amount", 'Send the amount as a string ("150.50"), not a JSON number.'
            ),
            line_error(15, "amount_too_precise", "amount", "The amount can have at most two decimal places."),
            line_error(16, "user_not_found", "to_email", "No account matches this recipient."),
            line_error(17, "not_in_scope", "to_email", "A distributor pays only its own retailers."),
            line_error(18, "wallet_inactive", "to_phone_number", "The receiving account is deactivated."),
            line_error(19, "duplicate_recipient", "to_email", "The same account as line 0."),
        ],
    }
    assert ledger_snapshot() == before and not Payout.objects.exists()


def test_a_payout_of_exactly_the_maximum_lines_is_paid(settings, auth_client, funded_distributor):
    settings.WALLET_PAYOUT_MAX_LINES = 3
    retailers = [RetailerFactory(parent=funded_distributor) for _ in range(3)]
    response = post(
        auth_client(funded_distributor), {"lines": [{"to_user_id": r.pk, "amount": "1.00"} for r in retailers]}
    )
    assert response.status_code == 201, response.json()
    assert response.json()["payout"]["line_count"] == 3
    assert [balance_of(r) for r in retailers] == [Decimal("1.00")] * 3


@pytest.mark.parametrize("payer_role", ["admin_user", "funded_distributor"])
def test_a_payout_records_its_remarks_key_and_payer_on_the_payout_and_every_row(request, auth_client, payer_role):
    """An auditor finds a payout's rows by the request's Idempotency-Key and sees who paid, on the
    payout (the answer and the stored record) and on each journal row."""
    payer = request.getfixturevalue(payer_role)
    if payer_role == "admin_user":  # pays anyone, from the treasury
        recipients = [ClientFactory(), ClientFactory()]
    else:  # pays its own retailers, from its wallet
        recipients = [RetailerFactory(parent=payer), RetailerFactory(parent=payer)]
    lines = [{"to_user_id": user.pk, "amount": "2.00"} for user in recipients]
    response = post(auth_client(payer), {"lines": lines, "remarks": "March"}, key="payout-march")
    assert response.status_code == 201, response.json()
    assert response.json()["payout"]["remarks"] == "March"
    record = Payout.objects.get()
    assert (record.remarks, record.idempotency_key) == ("March", "payout-march")
    rows = Transfer.objects.filter(to_wallet__user__in=recipients)
    assert {(row.remarks, row.idempotency_key, row.initiated_by_id) for row in rows} == {
        ("March", "payout-march", payer.pk)
    }
    assert rows.count() == 2


def test_a_payout_without_remarks_records_none_and_long_remarks_are_cut_to_the_column(funded_distributor):
    retailers = [RetailerFactory(parent=funded_distributor) for _ in range(2)]
    plain = services.pay_out(payer=funded_distributor, lines=[{"to_user_id": retailers[0].pk, "amount": "1.00"}])
    long = services.pay_out(
        payer=funded_distributor, lines=[{"to_user_id": retailers[1].pk, "amount": "1.00"}], remarks="z" * 300
    )
    assert [Payout.objects.get(pk=record.pk).remarks for record in (plain, long)] == ["", "z" * 255]
    assert [row.remarks for row in Transfer.objects.filter(to_wallet__user__in=retailers).order_by("pk")] == [
        "",
        "z" * 255,
    ]


@pytest.fixture
def clients_limited(settings):
    """A client's wallet may load at most 100.00 a month (no other limit)."""
    settings.WALLET_LIMITS = {
        **settings.WALLET_LIMITS,
        "MIN_KYC": {"max_balance": None, "monthly_load": Decimal("100.00"), "per_transaction": None},
    }


def test_a_payout_counts_what_its_recipients_already_loaded_this_month(clients_limited, auth_client, admin_user, fund):
    """An admin's payout is a load: a client that loaded 80.00 this month (and spent it) may take
    20.00 more, not the 30.00 paid, and nobody in the payout is paid."""
    spent, fresh = ClientFactory(), ClientFactory()
    fund(spent, "80.00")
    services.debit_wallet(user=spent, amount="80.00")
    before = ledger_snapshot()
    lines = [{"to_user_id": fresh.pk, "amount": "30.00"}, {"to_user_id": spent.pk, "amount": "30.00"}]
    response = post(auth_client(admin_user), {"lines": lines})
    assert response.status_code == 400, response.json()
    message = (
        "This would take what the receiving wallet loaded this month above its limit of 100.00; it can take 20.00 more."
    )
    assert response.json() == {
        "detail": message,
        "code": "monthly_load_limit_exceeded",
        "errors": {"amount": [message]},
    }
    assert ledger_snapshot() == before


def test_a_payout_reads_all_its_recipients_months_loads_in_one_query(clients_limited, admin_user):
    """The monthly limit of every recipient is checked from one grouped query: a payout to many
    limited wallets costs the queries of a payout to two."""
    clients = [ClientFactory() for _ in range(7)]
    for _ in range(2):  # the treasury's row, read and remembered as on a long-running server
        services.system_wallet(code=SystemWallet.TREASURY)

    def queries(recipients):
        lines = [{"to_user_id": user.pk, "amount": "1.00"} for user in recipients]
        with CaptureQueriesContext(connection) as captured:
            services.pay_out(payer=admin_user, lines=lines)
        return len(captured)

    assert queries(clients[:2]) == queries(clients[2:])
    assert [balance_of(user) for user in clients] == [Decimal("1.00")] * 7


def test_the_wallets_a_payout_hands_back_are_the_ones_stored(funded_distributor):
    """The payer's wallet in the answer (its balance) and each recipient's are the rows as stored
    after the payout, down to when their balance last changed."""
    retailers = [RetailerFactory(parent=funded_distributor) for _ in range(2)]
    lines = [{"to_user_id": r.pk, "amount": amount} for r, amount in zip(retailers, ["0.10", "0.20"], strict=True)]
    record = services.pay_out(payer=funded_distributor, lines=lines)
    handed_back = [record.source_wallet, *(row.to_wallet for _, row in record.posted)]

    def state(wallet):
        return (wallet.pk, wallet.balance, wallet.held, wallet.last_entry, wallet.updated_at)

    stored = {wallet.pk: wallet for wallet in Wallet.objects.filter(pk__in=[w.pk for w in handed_back])}
    assert [state(wallet) for wallet in handed_back] == [state(stored[wallet.pk]) for wallet in handed_back]
    assert [state(wallet)[1:] for wallet in handed_back] == [
        (Decimal("999.70"), Decimal("0.00"), 3, record.created_at),
        (Decimal("0.10"), Decimal("0.00"), 1, record.created_at),
        (Decimal("0.20"), Decimal("0.00"), 1, record.created_at),
    ]


@pytest.mark.postgres
def test_on_postgresql_a_payouts_balances_and_rows_are_written_by_one_statement_whatever_its_size(funded_distributor):
    """The payer's and every recipient's balance in one UPDATE ... FROM unnest(...) and every
    journal row in one INSERT, both one statement while the wallets are locked: one statement per
    wallet or per row (what the ORM or an executemany sends) is what a payout of 1,000 retailers (the
    benchmark's scenario 11) must not cost."""
    retailers = [RetailerFactory(parent=funded_distributor) for _ in range(5)]
    lines = [{"to_user_id": r.pk, "amount": "1.00"} for r in retailers]
    with CaptureQueriesContext(connection) as captured:
        services.pay_out(payer=funded_distributor, lines=lines)
    # Django logs an executemany as "<n> times: <sql>".
    writes = [q["sql"] for q in captured if 'UPDATE "wallet_wallet"' in q["sql"] or '"wallet_transfer" (' in q["sql"]]
    assert len(writes) == 1 and not re.match(r"^\d+ times: ", writes[0])
    assert 'UPDATE "wallet_wallet"' in writes[0] and 'INSERT INTO "wallet_transfer"' in writes[0]
    assert [balance_of(r) for r in retailers] == [Decimal("1.00")] * 5
    assert balance_of(funded_distributor) == Decimal("995.00")


@pytest.mark.postgres
def test_on_postgresql_a_bulk_posting_refuses_a_value_too_long_for_its_column_and_writes_nothing(funded_distributor):
    """The statement of arrays casts each value to its column's type without its length: a cast to
    varchar(255) would cut a longer key in silence, where the column itself refuses it."""
    from django.db import DataError, transaction
    from django.utils import timezone

    retailers = [RetailerFactory(parent=funded_distributor) for _ in range(2)]
    before = ledger_snapshot()
    with pytest.raises(DataError), transaction.atomic():  # a value every row shares: one parameter
        services._post_many(
            payer=funded_distributor,
            payments=[(r.pk, Decimal("1.00"), "") for r in retailers],
            kind=Transfer.Kind.TRANSFER,
            initiated_by=funded_distributor,
            idempotency_key="k" * 256,
        )
    treasury = services.system_wallet(code=SystemWallet.TREASURY)
    now = timezone.now()
    rows = [
        services._journal_fields(
            source=treasury, destination=wallet, amount=Decimal("1"), kind="FUND", now=now, idempotency_key=key
        )
        for wallet, key in zip(Wallet.objects.filter(user__in=retailers), ["short", "k" * 256], strict=True)
    ]
    with pytest.raises(DataError), transaction.atomic():  # a value of its own for each row: an array
        services._post_many_in_one_statement(wallets=[], now=now, new_rows=rows)
    assert ledger_snapshot() == before
