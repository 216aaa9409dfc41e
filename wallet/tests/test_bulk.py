"""The bulk paths: many accounts with their wallets at once, many payouts from one payer at once.
Same rules as one at a time: every row has its journal entry, a refusal writes nothing."""

from decimal import Decimal

import pytest
from django.db import IntegrityError

from accounts.models import User
from accounts.services import InvalidParent, create_users_in_bulk
from accounts.tests.factories import ClientFactory, DistributorFactory, RetailerFactory
from core.money import InvalidAmount
from core.roles import UserType
from wallet import services
from wallet.models import Transfer, Wallet
from wallet.tests.helpers import assert_ledger_clean, balance_of, ledger_snapshot

pytestmark = pytest.mark.django_db


def test_users_in_bulk_each_get_a_wallet_in_the_same_transaction():
    distributor = DistributorFactory()
    created = create_users_in_bulk(
        users=[
            {"username": "r1", "user_type": UserType.RETAILER, "parent": distributor, "phone_number": "+919811111111"},
            {"username": "c1", "email": " C1@Example.com "},
        ]
    )
    assert [user.username for user in created] == ["r1", "c1"]
    assert Wallet.objects.filter(user__in=created).count() == 2
    assert User.objects.get(username="c1").email == "c1@example.com"
    assert not User.objects.get(username="r1").has_usable_password()


def test_bulk_users_normalise_blank_email_and_phone_like_save_does():
    created = create_users_in_bulk(users=[{"username": "a", "email": "  "}, {"username": "b", "phone_number": ""}])
    assert [(user.email, user.phone_number) for user in created] == [(None, None), (None, None)]


def test_a_duplicate_in_a_bulk_import_creates_nobody():
    ClientFactory(username="taken")
    before = (User.objects.count(), Wallet.objects.count())
    with pytest.raises(IntegrityError):
        create_users_in_bulk(users=[{"username": "fresh"}, {"username": "taken"}])
    assert (User.objects.count(), Wallet.objects.count()) == before


def test_a_bulk_retailer_needs_a_distributor_parent():
    with pytest.raises(InvalidParent):
        create_users_in_bulk(users=[{"username": "r", "user_type": UserType.RETAILER, "parent": ClientFactory()}])
    assert not User.objects.filter(username="r").exists()


def test_treasury_funds_many_wallets_with_one_journal_row_each(admin_user):
    clients = [ClientFactory() for _ in range(3)]
    written = services.pay_out_in_bulk(
        payments=[(c.pk, "10.00") for c in clients] + [(clients[0].pk, "5.50")],
        kind=services.Kind.FUND,
        initiated_by=admin_user,
    )
    assert written == 4
    assert [balance_of(c) for c in clients] == [Decimal("15.50"), Decimal("10.00"), Decimal("10.00")]
    rows = Transfer.objects.filter(to_wallet__user=clients[0]).order_by("pk")
    assert [row.to_balance_after for row in rows] == [Decimal("10.00"), Decimal("15.50")]
    assert {row.kind for row in rows} == {"FUND"} and rows[0].from_balance_after is None
    assert_ledger_clean()


def test_a_distributor_pays_its_retailers_with_running_balances(fund):
    distributor = DistributorFactory()
    retailers = [RetailerFactory(parent=distributor) for _ in range(2)]
    fund(distributor, "100.00")
    services.pay_out_in_bulk(payer=distributor, payments=[(retailers[0].pk, "30.00"), (retailers[1].pk, "20.00")])
    assert balance_of(distributor) == Decimal("50.00")
    rows = Transfer.objects.filter(from_wallet__user=distributor).order_by("pk")
    assert [row.from_balance_after for row in rows] == [Decimal("70.00"), Decimal("50.00")]
    assert all(row.initiated_by_id == distributor.pk and row.kind == "TRANSFER" for row in rows)
    assert_ledger_clean()


@pytest.mark.parametrize(
    "problem",
    ["insufficient_funds", "payer_in_receivers", "inactive_receiver", "bad_amount", "unknown_receiver"],
)
def test_a_refused_batch_writes_nothing(fund, problem):
    distributor = DistributorFactory()
    retailer, other = RetailerFactory(parent=distributor), RetailerFactory(parent=distributor)
    fund(distributor, "50.00")
    payments = [(retailer.pk, "10.00"), (other.pk, "10.00")]
    expected = {
        "insufficient_funds": services.InsufficientFunds,
        "payer_in_receivers": services.SameWallet,
        "inactive_receiver": services.WalletInactive,
        "bad_amount": InvalidAmount,
        "unknown_receiver": services.WalletNotFound,
    }[problem]
    if problem == "insufficient_funds":
        payments.append((retailer.pk, "30.01"))
    elif problem == "payer_in_receivers":
        payments.append((distributor.pk, "1.00"))
    elif problem == "inactive_receiver":
        User.objects.filter(pk=other.pk).update(is_active=False)
    elif problem == "bad_amount":
        payments.append((retailer.pk, "0.001"))
    else:
        payments.append((10**9, "1.00"))
    before = ledger_snapshot()
    with pytest.raises(expected):
        services.pay_out_in_bulk(payer=distributor, payments=payments)
    assert ledger_snapshot() == before


def test_an_empty_batch_writes_nothing_and_says_so(django_assert_num_queries):
    with django_assert_num_queries(0):
        assert services.pay_out_in_bulk(payments=[]) == 0


def test_a_batch_may_spend_the_payers_whole_available_balance(fund):
    distributor = DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    fund(distributor, "50.00")
    assert services.pay_out_in_bulk(payer=distributor, payments=[(retailer.pk, "20.00"), (retailer.pk, "30.00")]) == 2
    assert (balance_of(distributor), balance_of(retailer)) == (Decimal("0.00"), Decimal("50.00"))
    rows = Transfer.objects.filter(from_wallet__user=distributor)
    assert {(row.kind, row.remarks) for row in rows} == {("TRANSFER", "")}
    assert_ledger_clean()


def test_batch_refusals_name_the_field_and_the_shortfall(fund):
    distributor = DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    fund(distributor, "50.00")
    with pytest.raises(services.SameWallet) as refusal:
        services.pay_out_in_bulk(payer=distributor, payments=[(distributor.pk, "1.00")])
    assert refusal.value.field == "payments"
    with pytest.raises(services.InsufficientFunds) as refusal:
        services.pay_out_in_bulk(payer=distributor, payments=[(retailer.pk, "20.00"), (retailer.pk, "30.01")])
    assert str(refusal.value) == "Insufficient funds: available 50.00, needed 50.01."


def test_a_treasury_batch_keeps_its_remarks_and_never_rewrites_the_treasury_row(admin_user):
    from wallet.models import SystemWallet

    clients = [ClientFactory() for _ in range(2)]
    treasury = services.system_wallet(code=SystemWallet.TREASURY)
    services.pay_out_in_bulk(payments=[(c.pk, "5.00") for c in clients], kind=services.Kind.FUND, remarks="April float")
    assert set(Transfer.objects.values_list("remarks", flat=True)) == {"April float"}
    # A system wallet is touched by nearly every transfer: its row is never rewritten (ledger.md).
    assert services.system_wallet(code=SystemWallet.TREASURY).updated_at == treasury.updated_at
