"""Behaviours of the ledger service that no test held until mutation testing showed it (issue 17).

Each test here kills one or more surviving mutants of `make mutate` (docs/mutation.md lists them
by name); each asserts what a caller or an auditor relies on, not how the code is written."""

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from accounts.tests.factories import ClientFactory, DistributorFactory, RetailerFactory
from core.money import (
    AmountAboveMaximum,
    AmountNotAString,
    AmountNotPlainDecimal,
    AmountNotPositive,
    AmountTooPrecise,
    InvalidAmount,
)
from core.precompiled import statement_of
from wallet import services
from wallet.models import Transfer, Wallet
from wallet.reconciliation import verify_ledger
from wallet.tests.helpers import balance_of, ledger_snapshot

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "operation", ["credit_wallet", "debit_wallet", "fund_wallet", "defund_wallet", "transfer_funds", "hold_funds"]
)
def test_every_operation_records_its_remarks_and_idempotency_key(fund, admin_user, operation):
    user, friend = ClientFactory(), ClientFactory()
    fund(user, "10.00")
    parties = {"sender": user, "receiver": friend} if operation == "transfer_funds" else {"user": user}
    if operation in ("fund_wallet", "defund_wallet"):
        parties["initiated_by"] = admin_user
    row = getattr(services, operation)(
        **parties, amount="1.00", remarks=f"why {operation}", idempotency_key=f"key-{operation}"
    )
    row.refresh_from_db()
    assert (row.remarks, row.idempotency_key) == (f"why {operation}", f"key-{operation}")


def test_a_deactivated_payer_cannot_pay_out_in_bulk(fund):
    distributor = DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    fund(distributor, "50.00")
    User.objects.filter(pk=distributor.pk).update(is_active=False)
    distributor.refresh_from_db()
    before = ledger_snapshot()
    with pytest.raises(services.WalletInactive) as refusal:
        services.pay_out_in_bulk(payer=distributor, payments=[(retailer.pk, "10.00")])
    assert str(refusal.value) == "The paying account is deactivated."
    assert ledger_snapshot() == before


def test_a_bulk_payout_writes_rows_and_balances_batch_size_at_a_time(fund):
    """batch_size bounds each statement (a million-row seed must not build one giant INSERT)."""
    distributor = DistributorFactory()
    retailers = [RetailerFactory(parent=distributor) for _ in range(3)]
    fund(distributor, "50.00")
    payments = [(retailer.pk, "1.00") for retailer in retailers] + [(retailers[0].pk, "2.00")] * 2
    with CaptureQueriesContext(connection) as captured:
        assert services.pay_out_in_bulk(payer=distributor, payments=payments, batch_size=2) == 5
    # Django logs an executemany as "<n> times: <sql>".
    statements = [re.sub(r"^\d+ times: ", "", statement_of(q["sql"])) for q in captured]
    # On PostgreSQL a batch's UPDATE ... FROM unnest(...) and its INSERT are one statement (WITH);
    # elsewhere one bulk INSERT and one executemany per batch.
    inserts = [sql for sql in statements if 'INSERT INTO "wallet_transfer"' in sql]
    updates = [sql for sql in statements if 'UPDATE "wallet_wallet"' in sql]
    assert len(inserts) == 3  # 5 rows, 2 at a time
    assert len(updates) == 2  # 4 wallets (3 receivers and the payer), 2 at a time
    assert Transfer.objects.filter(from_wallet__user=distributor).count() == 5
    assert [balance_of(r) for r in retailers] == [Decimal("5.00"), Decimal("1.00"), Decimal("1.00")]
    assert balance_of(distributor) == Decimal("43.00")
    assert verify_ledger().ok


def test_a_refund_reads_the_refunded_transfer_with_its_settlement_wallet_in_one_query(fund):
    """Round trips on the money path are budgeted (tests/test_query_budget.py): the settlement
    wallet the refund pays from comes with the locked transfer row, not in a query of its own."""
    buyer = ClientFactory()
    fund(buyer, "10.00")
    posted, _ = services.post_transfer(transfer=services.hold_funds(user=buyer, amount="4.00"))
    with CaptureQueriesContext(connection) as captured:
        refund = services.refund_transfer(transfer=posted)
    wallet_reads = [
        q
        for q in captured
        if statement_of(q["sql"]).startswith("SELECT") and 'FROM "wallet_wallet"' in statement_of(q["sql"])
    ]
    assert len(wallet_reads) == 1  # the buyer's wallet, locked
    assert refund.from_wallet.system_code == "RECHARGE_SETTLEMENT"


def test_posting_pays_each_commission_with_its_remarks_at_the_moment_of_posting(fund, distributor, retailer):
    """A statement shows a sale and the margins it earned at one instant, each with its own words."""
    fund(retailer, "50.00")
    pending = services.hold_funds(user=retailer, amount="20.00")
    posted, paid = services.post_transfer(
        transfer=pending,
        payouts=[
            services.Payout(user_id=retailer.pk, amount=Decimal("0.40"), remarks="Margin on recharge #1"),
            services.Payout(user_id=distributor.pk, amount=Decimal("0.20"), remarks="Distributor margin on #1"),
        ],
    )
    rows = Transfer.objects.filter(pk__in=[row.pk for row in paid]).order_by("pk")
    assert [(row.to_wallet.user_id, row.amount, row.remarks) for row in rows] == [
        (retailer.pk, Decimal("0.40"), "Margin on recharge #1"),
        (distributor.pk, Decimal("0.20"), "Distributor margin on #1"),
    ]
    posted.refresh_from_db()
    assert {row.created_at for row in rows} == {posted.finalized_at}
    assert {row.finalized_at for row in rows} == {posted.finalized_at}


@pytest.mark.parametrize("settle", ["post_transfer", "void_transfer"])
def test_settling_a_final_transfer_again_names_it_and_its_status(fund, settle):
    buyer = ClientFactory()
    fund(buyer, "10.00")
    voided = services.void_transfer(transfer=services.hold_funds(user=buyer, amount="1.00"))
    with pytest.raises(services.TransferNotPending) as refusal:
        getattr(services, settle)(transfer=voided)
    assert str(refusal.value) == f"Transfer #{voided.pk} is VOIDED, not pending."


def test_a_deactivated_sender_cannot_transfer(fund):
    """The API refuses a deactivated account's token first; the ledger refuses on its own too
    (the Django admin, management commands and tasks call it directly)."""
    sender, receiver = ClientFactory(), ClientFactory()
    fund(sender, "50.00")
    User.objects.filter(pk=sender.pk).update(is_active=False)
    sender.refresh_from_db()
    before = ledger_snapshot()
    with pytest.raises(services.WalletInactive) as refusal:
        services.transfer_funds(sender=sender, receiver=receiver, amount="10.00")
    assert str(refusal.value) == "The paying account is deactivated."
    assert ledger_snapshot() == before


def test_only_user_wallets_number_their_balance_changes(fund, admin_user):
    """Transfer.from_entry / to_entry number a user wallet's chain of balances; a system wallet has
    no stored balance, so its side of a row stays unnumbered (wallet.models.Transfer)."""
    user = ClientFactory()
    credit = services.credit_wallet(user=user, amount="10.00")
    debit = services.debit_wallet(user=user, amount="1.00")
    posted, _ = services.post_transfer(transfer=services.hold_funds(user=user, amount="2.00"))
    for row in (credit, debit, posted):
        row.refresh_from_db()
    assert [(row.from_entry, row.to_entry) for row in (credit, debit, posted)] == [(None, 1), (2, None), (3, None)]
    # nor does it show a balance after
    assert [(row.from_balance_after, row.to_balance_after) for row in (credit, debit, posted)] == [
        (None, Decimal("10.00")),
        (Decimal("9.00"), None),
        (Decimal("7.00"), None),
    ]


def test_a_wallet_row_records_when_its_balance_last_changed(fund):
    sender, receiver = ClientFactory(), ClientFactory()
    fund(sender, "10.00")
    row = services.transfer_funds(sender=sender, receiver=receiver, amount="1.00")
    stamps = Wallet.objects.filter(user__in=[sender, receiver]).values_list("updated_at", flat=True)
    assert set(stamps) == {row.created_at}


def test_remarks_longer_than_the_column_are_cut_to_255_characters(fund):
    user = ClientFactory()
    row = services.credit_wallet(user=user, amount="1.00", remarks="x" * 300)
    row.refresh_from_db()
    assert row.remarks == "x" * 255


def test_a_shortfall_names_what_is_available_and_what_was_needed(fund):
    sender, receiver = ClientFactory(), ClientFactory()
    fund(sender, "5.00")
    services.hold_funds(user=sender, amount="1.50")
    with pytest.raises(services.InsufficientFunds) as refusal:
        services.transfer_funds(sender=sender, receiver=receiver, amount="3.51")
    assert str(refusal.value) == "Insufficient funds: available 3.50, needed 3.51."


def test_a_system_wallet_recreated_after_a_flush_takes_the_configured_currency(settings):
    from wallet.models import SystemWallet

    settings.WALLET_CURRENCY = "USD"
    Wallet.objects.filter(system_code=SystemWallet.COMMISSION).delete()
    assert services.system_wallet(code=SystemWallet.COMMISSION).currency == "USD"
    assert Wallet.objects.get(system_code=SystemWallet.COMMISSION).currency == "USD"


@pytest.mark.parametrize(
    ("amount", "refusal_class"),
    [
        (1.5, AmountNotAString),
        (True, InvalidAmount),
        (None, InvalidAmount),
        (["1.00"], InvalidAmount),
        ("abc", AmountNotPlainDecimal),
        ("0", AmountNotPositive),
        ("1.001", AmountTooPrecise),
        ("100000.01", AmountAboveMaximum),
    ],
)
def test_every_refused_amount_names_the_field_and_why(amount, refusal_class):
    # One parser (core.money.parse_amount): each reason its own code, every one an InvalidAmount.
    with pytest.raises(InvalidAmount) as refusal:
        services.validate_amount(amount=amount)
    assert type(refusal.value) is refusal_class
    assert refusal.value.field == "amount"


def test_an_amount_above_the_maximum_names_the_maximum():
    with pytest.raises(AmountAboveMaximum) as refusal:
        services.validate_amount(amount="100000.01")
    assert str(refusal.value) == "The amount can be at most 100000.00."


def test_a_holds_reference_follows_its_commissions_and_its_refund(fund, distributor, retailer):
    """The journal rows of one sale are found by its reference (wallet.selectors.purchase_transfer)."""
    fund(retailer, "50.00")
    pending = services.hold_funds(user=retailer, amount="20.00", reference="P-42")
    posted, paid = services.post_transfer(
        transfer=pending, payouts=[services.Payout(user_id=distributor.pk, amount=Decimal("0.20"))]
    )
    refund = services.refund_transfer(transfer=posted)
    rows = Transfer.objects.filter(pk__in=[posted.pk, *(row.pk for row in paid), refund.pk])
    assert sorted(rows.values_list("kind", "reference")) == [
        ("COMMISSION", "P-42"),
        ("PURCHASE", "P-42"),
        ("REFUND", "P-42"),
    ]


def test_a_system_wallet_created_by_someone_else_meanwhile_is_found_not_duplicated(monkeypatch):
    """Two first requests may both miss a flushed system wallet: the loser of the insert takes the
    winner's row (the unique system_code refuses a second one)."""
    from wallet.models import SystemWallet

    existing = services.system_wallet(code=SystemWallet.COMMISSION)
    filter_ = Wallet.objects.filter
    monkeypatch.setattr(
        Wallet.objects, "filter", lambda *a, **kw: Wallet.objects.none() if "system_code" in kw else filter_(*a, **kw)
    )
    assert services.system_wallet(code=SystemWallet.COMMISSION) == existing
    assert Wallet.objects.exclude(system_code=None).filter(system_code=SystemWallet.COMMISSION).count() == 1


def test_the_maximum_amount_itself_is_allowed():
    assert services.validate_amount(amount="100000.00") == Decimal("100000.00")


def test_a_deactivated_receiver_is_named_as_the_receiving_side(fund):
    sender, receiver = ClientFactory(), ClientFactory()
    fund(sender, "5.00")
    User.objects.filter(pk=receiver.pk).update(is_active=False)
    with pytest.raises(services.WalletInactive) as refusal:
        services.transfer_funds(sender=sender, receiver=receiver, amount="1.00")
    assert str(refusal.value) == "The receiving account is deactivated."
