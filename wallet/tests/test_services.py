"""The ledger service's guarantees that the API tests do not reach."""

import re
from decimal import Decimal

import pytest
from django.db import IntegrityError

from accounts.tests.factories import ClientFactory
from core.precompiled import statement_of
from wallet import services
from wallet.models import Transfer, Wallet
from wallet.tests.helpers import assert_ledger_clean, balance_of, ledger_snapshot

pytestmark = pytest.mark.django_db


def _fail_on_call(monkeypatch, target, name, on_call):
    original, calls = getattr(target, name), {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == on_call:
            raise RuntimeError("injected failure")
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, flaky)
    return calls


@pytest.fixture
def orm_posting(monkeypatch):
    """The ORM posting path (one UPDATE per wallet, then the INSERT), which SQLite always takes."""
    monkeypatch.setattr(services, "ONE_STATEMENT_POSTING", False)


def test_a_failure_after_the_first_balance_update_leaves_both_wallets_and_the_journal_as_they_were(
    monkeypatch, fund, orm_posting
):
    sender, receiver = ClientFactory(), ClientFactory()
    fund(sender, "50.00")
    before = ledger_snapshot()
    calls = _fail_on_call(monkeypatch, services, "_store_balance", on_call=2)
    with pytest.raises(RuntimeError):
        services.transfer_funds(sender=sender, receiver=receiver, amount="20.00")
    assert calls["n"] == 2  # the sender's balance had been written when the failure hit
    assert ledger_snapshot() == before
    assert (balance_of(sender), balance_of(receiver)) == (Decimal("50.00"), Decimal("0.00"))


def test_a_failure_writing_the_journal_row_rolls_back_both_balances(monkeypatch, fund, orm_posting):
    sender, receiver = ClientFactory(), ClientFactory()
    fund(sender, "50.00")
    before = ledger_snapshot()
    _fail_on_call(monkeypatch, Transfer.objects, "create", on_call=1)
    with pytest.raises(RuntimeError):
        services.transfer_funds(sender=sender, receiver=receiver, amount="20.00")
    assert ledger_snapshot() == before


def _corrupt_new_rows(monkeypatch):
    """Make every journal row the ledger inserts carry a negative amount, past the service's checks."""
    original = services._write

    def corrupted(*, new_rows=(), **write):
        return original(new_rows=[{**row, "amount": Decimal("-1.00")} for row in new_rows], **write)

    monkeypatch.setattr(services, "_write", corrupted)


def test_a_journal_row_the_database_refuses_leaves_the_balances_its_statement_updated(monkeypatch, fund):
    """A posting's writes (on PostgreSQL one statement, wallet.services._write) stand or fall together:
    a row refused by a CHECK (a negative amount smuggled past the service's checks) leaves no balance
    changed."""
    sender, receiver = ClientFactory(), ClientFactory()
    fund(sender, "50.00")
    before = ledger_snapshot()
    _corrupt_new_rows(monkeypatch)
    with pytest.raises(IntegrityError):
        services.transfer_funds(sender=sender, receiver=receiver, amount="20.00")
    assert ledger_snapshot() == before


def test_a_margin_row_the_database_refuses_leaves_the_hold_pending_and_the_balances_as_they_were(monkeypatch, fund):
    """A settlement's writes (the buyer's balance, the posted hold, the margins' rows; on PostgreSQL one
    statement) stand or fall together: a margin's row refused by a CHECK leaves the hold PENDING and no
    balance changed."""
    buyer, distributor = ClientFactory(), ClientFactory()
    fund(buyer, "50.00")
    hold = services.hold_funds(user=buyer, amount="20.00")
    before = ledger_snapshot()
    _corrupt_new_rows(monkeypatch)
    margins = [
        services.Payout(user_id=buyer.pk, amount=Decimal("0.40")),
        services.Payout(user_id=distributor.pk, amount=Decimal("0.10")),
    ]
    with pytest.raises(IntegrityError):
        services.post_transfer(transfer=hold, payouts=margins)
    assert ledger_snapshot() == before
    hold.refresh_from_db()
    assert hold.status == Transfer.Status.PENDING


def test_a_posted_purchase_is_refunded_at_most_once(fund):
    buyer = ClientFactory()
    fund(buyer, "10.00")
    posted, _ = services.post_transfer(transfer=services.hold_funds(user=buyer, amount="4.00"))
    services.refund_transfer(transfer=posted)
    with pytest.raises(services.TransferAlreadyRefunded):
        services.refund_transfer(transfer=posted)
    assert balance_of(buyer) == Decimal("10.00")
    assert_ledger_clean()


@pytest.mark.parametrize("operation", ["debit_wallet", "defund_wallet"])
def test_only_a_posted_purchase_can_be_refunded(fund, admin_user, operation):
    user = ClientFactory()
    fund(user, "10.00")
    debit = getattr(services, operation)(user=user, amount="3.00", initiated_by=admin_user)
    with pytest.raises(services.NotRefundable):
        services.refund_transfer(transfer=debit)
    pending = services.hold_funds(user=user, amount="2.00")
    with pytest.raises(services.NotRefundable):
        services.refund_transfer(transfer=pending)
    assert balance_of(user) == Decimal("7.00")
    assert_ledger_clean()


def test_posting_skips_a_commission_rounded_down_to_zero(fund):
    buyer = ClientFactory()
    fund(buyer, "10.00")
    pending = services.hold_funds(user=buyer, amount="1.00")
    posted, paid = services.post_transfer(
        transfer=pending, payouts=[services.Payout(user_id=buyer.pk, amount=Decimal("0.00"))]
    )
    assert posted.status == Transfer.Status.POSTED and paid == []
    assert balance_of(buyer) == Decimal("9.00")


def test_posting_or_voiding_a_final_transfer_is_refused(fund):
    buyer = ClientFactory()
    fund(buyer, "10.00")
    pending = services.hold_funds(user=buyer, amount="1.00")
    services.void_transfer(transfer=pending)
    with pytest.raises(services.TransferNotPending):
        services.post_transfer(transfer=pending)
    with pytest.raises(services.TransferNotPending):
        services.void_transfer(transfer=pending)
    assert_ledger_clean()


def test_posting_a_hold_records_the_senders_balance_after_the_debit_not_at_the_hold(fund):
    buyer = ClientFactory()
    fund(buyer, "50.00")
    pending = services.hold_funds(user=buyer, amount="20.00")
    assert pending.from_balance_after == Decimal("50.00")  # a hold moves no money
    posted, _ = services.post_transfer(transfer=pending)
    assert posted.from_balance_after == Decimal("30.00")
    posted.refresh_from_db()
    assert posted.from_balance_after == Decimal("30.00") and posted.to_balance_after is None
    assert balance_of(buyer) == Decimal("30.00")


def test_a_self_transfer_is_refused_on_the_to_field_before_any_lock(client_user, fund, django_assert_num_queries):
    fund(client_user, "30.00")
    before = ledger_snapshot()
    with django_assert_num_queries(0), pytest.raises(services.SameWallet) as refusal:
        services.transfer_funds(sender=client_user, receiver=client_user, amount="5.00")
    assert refusal.value.field == "to"
    assert ledger_snapshot() == before


def test_the_wallet_lock_query_orders_by_wallet_id(fund, distributor, retailer):
    """Rule 2 of ledger.md: every operation locks its wallets in one query, ascending wallet id.
    (Wallet.Meta.ordering is also by id, so this holds the explicit order_by against a change of
    either.) The deadlock this prevents: test_concurrency.py."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    fund(retailer, "10.00")
    pending = services.hold_funds(user=retailer, amount="1.00")
    with CaptureQueriesContext(connection) as captured:
        services.wallets_for_update(user_ids=[retailer.pk, distributor.pk])
        services.transfer_funds(sender=retailer, receiver=distributor, amount="1.00")
        services.post_transfer(
            transfer=pending, payouts=[services.Payout(user_id=distributor.pk, amount=Decimal("0.10"))]
        )
    lock_queries = [
        statement_of(q["sql"])
        for q in captured
        if re.search(r'FROM "wallet_wallet" (INNER|LEFT OUTER) JOIN "accounts_user"', statement_of(q["sql"]))
    ]
    assert len(lock_queries) == 3
    for sql in lock_queries:
        if connection.vendor == "postgresql":
            assert sql.endswith('ORDER BY "wallet_wallet"."id" ASC FOR UPDATE OF "wallet_wallet"'), sql
        else:  # SQLite has no FOR UPDATE: its single writer lock serialises the transactions
            assert sql.endswith('ORDER BY "wallet_wallet"."id" ASC'), sql


# --- held by mutation testing (docs/mutation.md) ----------------------------------------------


def test_wallets_opened_one_by_one_or_in_bulk_take_the_configured_currency(settings):
    from accounts.services import create_users_in_bulk

    settings.WALLET_CURRENCY = "USD"
    single = ClientFactory()
    bulk = create_users_in_bulk(users=[{"username": "bulk-one", "user_type": single.user_type}])
    assert {Wallet.objects.get(user=user).currency for user in [single, *bulk]} == {"USD"}


def test_operations_without_remarks_or_initiator_record_none_and_the_account_holder(fund):
    user, friend = ClientFactory(), ClientFactory()
    rows = [
        services.credit_wallet(user=user, amount="10.00"),
        services.debit_wallet(user=user, amount="1.00"),
        services.transfer_funds(sender=user, receiver=friend, amount="1.00"),
        services.hold_funds(user=user, amount="1.00"),
    ]
    assert [(row.remarks, row.initiated_by_id) for row in rows] == [("", user.pk)] * 4
    assert [row.kind for row in rows] == ["CREDIT", "DEBIT", "TRANSFER", "PURCHASE"]
    assert rows[3].to_wallet.system_code == "RECHARGE_SETTLEMENT" and rows[3].status == "PENDING"
    funded = services.fund_wallet(user=user, amount="2.00", initiated_by=None)
    taken = services.defund_wallet(user=user, amount="1.00", initiated_by=None)
    assert [(row.kind, row.remarks) for row in (funded, taken)] == [("FUND", ""), ("DEFUND", "")]


def test_a_refund_pays_the_buyer_back_and_says_what_it_refunds(fund, admin_user):
    buyer, other = ClientFactory(), ClientFactory()
    for _ in range(8):  # transfer ids no longer coincide with wallet ids
        fund(other, "1.00")
    fund(buyer, "10.00")
    posted, _ = services.post_transfer(transfer=services.hold_funds(user=buyer, amount="4.00"))
    assert posted.pk not in set(Wallet.objects.values_list("pk", flat=True))
    refund = services.refund_transfer(transfer=posted)
    assert (refund.kind, refund.refund_of_id, refund.to_wallet.user_id) == ("REFUND", posted.pk, buyer.pk)
    assert refund.remarks == f"Refund of transfer #{posted.pk}" and refund.initiated_by is None
    assert refund.from_wallet.system_code == "RECHARGE_SETTLEMENT" and refund.amount == Decimal("4.00")
    assert (balance_of(buyer), balance_of(other)) == (Decimal("10.00"), Decimal("8.00"))
    custom = services.refund_transfer(
        transfer=services.post_transfer(transfer=services.hold_funds(user=buyer, amount="1.00"))[0],
        remarks="operator failed",
        initiated_by=admin_user,
    )
    assert (custom.remarks, custom.initiated_by) == ("operator failed", admin_user)
    assert_ledger_clean()


def test_refund_refusals_name_the_transfer(fund, admin_user):
    buyer = ClientFactory()
    fund(buyer, "10.00")
    debit = services.debit_wallet(user=buyer, amount="1.00")
    with pytest.raises(services.NotRefundable) as refusal:
        services.refund_transfer(transfer=debit)
    assert (
        str(refusal.value) == f"Transfer #{debit.pk} (DEBIT, POSTED) is not a posted purchase; only those are refunded."
    )
    posted, _ = services.post_transfer(transfer=services.hold_funds(user=buyer, amount="2.00"))
    services.refund_transfer(transfer=posted)
    with pytest.raises(services.TransferAlreadyRefunded) as refusal:
        services.refund_transfer(transfer=posted)
    assert str(refusal.value) == f"Transfer #{posted.pk} has already been refunded."


@pytest.mark.django_db(transaction=True)
def test_system_wallets_are_looked_up_once_and_forgotten_when_a_flush_deletes_them():
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from wallet.models import SystemWallet

    services.system_wallet(code=SystemWallet.TREASURY)  # created here if an earlier test's flush removed it
    first = services.system_wallet(code=SystemWallet.TREASURY)
    with CaptureQueriesContext(connection) as queries:
        assert services.system_wallet(code=SystemWallet.TREASURY).pk == first.pk
    assert len(queries) == 0
    call_command("flush", interactive=False, verbosity=0)
    assert not Wallet.objects.filter(pk=first.pk).exists()
    again = services.system_wallet(code=SystemWallet.TREASURY)
    assert Wallet.objects.filter(pk=again.pk, system_code=SystemWallet.TREASURY).exists()


def test_a_settlement_returns_each_margin_as_the_row_stored(fund):
    """The new rows' ids come back from one multi-row INSERT on PostgreSQL: each returned margin is the
    journal row stored for it (its recipient and amount), in the order the payouts were given."""
    buyer, distributor = ClientFactory(), ClientFactory()
    fund(buyer, "50.00")
    hold = services.hold_funds(user=buyer, amount="20.00")
    margins = [
        services.Payout(user_id=distributor.pk, amount=Decimal("0.10")),
        services.Payout(user_id=buyer.pk, amount=Decimal("0.40")),
    ]
    _, paid = services.post_transfer(transfer=hold, payouts=margins)
    stored = [Transfer.objects.select_related("to_wallet").get(pk=row.pk) for row in paid]
    assert [(row.to_wallet.user_id, row.amount) for row in stored] == [(m.user_id, m.amount) for m in margins]
    assert [(row.to_wallet_id, row.amount, row.to_entry) for row in paid] == [
        (row.to_wallet_id, row.amount, row.to_entry) for row in stored
    ]
