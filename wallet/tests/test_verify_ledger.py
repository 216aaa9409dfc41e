from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from accounts.tests.factories import ClientFactory
from wallet import services
from wallet.models import Transfer
from wallet.reconciliation import verify_ledger

pytestmark = pytest.mark.django_db


@pytest.fixture
def busy_ledger(fund, distributor, retailer):
    fund(distributor, "100.00")
    services.transfer_funds(sender=distributor, receiver=retailer, amount="30.00")
    posted, _ = services.post_transfer(
        transfer=services.hold_funds(user=retailer, amount="10.00"),
        payouts=[services.Payout(user_id=retailer.pk, amount=Decimal("0.20"))],
    )
    services.refund_transfer(transfer=posted)
    services.void_transfer(transfer=services.hold_funds(user=retailer, amount="5.00"))
    services.hold_funds(user=retailer, amount="3.00")
    return distributor, retailer


def test_verify_ledger_passes_on_a_consistent_ledger_and_says_what_it_checked(busy_ledger, capsys):
    call_command("verify_ledger")
    out = capsys.readouterr().out
    assert "Ledger verified" in out and "held = pending transfers out" in out and "[FAIL]" not in out


def test_verify_ledger_finds_a_balance_tampered_with_by_raw_sql_and_exits_non_zero(busy_ledger, capsys):
    _, retailer = busy_ledger
    with connection.cursor() as cursor:
        cursor.execute("UPDATE wallet_wallet SET balance = balance + 1 WHERE user_id = %s", [retailer.pk])
    with pytest.raises(CommandError):
        call_command("verify_ledger")
    captured = capsys.readouterr()
    assert f"user {retailer.pk}" in captured.err and "[FAIL] sum of all balances" in captured.out


def test_verify_ledger_finds_a_held_amount_without_a_pending_transfer(busy_ledger):
    _, retailer = busy_ledger
    with connection.cursor() as cursor:
        cursor.execute("UPDATE wallet_wallet SET held = 0 WHERE user_id = %s", [retailer.pk])
    report = verify_ledger()
    assert [check.name for check in report.checks if check.mismatches] == ["user wallet held = pending transfers out"]


@contextmanager
def journal_guard_lifted():
    """Tamper as someone who can switch the database's guard off (a superuser at a psql prompt):
    verify_ledger must still notice. On SQLite there is no guard to lift."""
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")  # row triggers off for this session
        try:
            yield
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")


def test_verify_ledger_finds_a_final_transfer_changed_after_finalisation(busy_ledger):
    with journal_guard_lifted():
        Transfer.objects.filter(kind="TRANSFER").update(updated_at=timezone.now(), remarks="edited")
    report = verify_ledger()
    assert not report.ok and "unchanged since finalised" in report.mismatches[0]


def test_verify_ledger_finds_a_journal_row_deleted_behind_the_services_back(fund):
    user = ClientFactory()
    fund(user, "5.00")
    with journal_guard_lifted():
        Transfer.objects.all().delete()
    report = verify_ledger()
    # the wallet's balance, the grand total, the wallet's chain (it stores entry 1, none left) and the
    # month's loads it keeps (5.00, the journal none)
    assert report.mismatch_count == 4
    assert any(message.startswith("each user wallet's loads this month") for message in report.mismatches)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_verify_ledger_reads_one_snapshot_without_the_request_statement_timeout(monkeypatch):
    """Run against a live system, every check must see the same committed state (else a transfer
    committing between two checks reads as a mismatch), and a large journal must not be cut off
    by the request-sized statement_timeout."""
    from django.db import connection

    from wallet import reconciliation

    seen = {}
    verify = reconciliation._verify

    def spy(**kwargs):
        with connection.cursor() as cursor:
            for setting in ("transaction_isolation", "transaction_read_only", "statement_timeout"):
                cursor.execute(f"SHOW {setting}")
                seen[setting] = cursor.fetchone()[0]
        return verify(**kwargs)

    monkeypatch.setattr(reconciliation, "_verify", spy)
    assert reconciliation.verify_ledger().ok
    assert seen == {"transaction_isolation": "repeatable read", "transaction_read_only": "on", "statement_timeout": "0"}


@pytest.mark.postgres
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE wallet_transfer SET remarks = 'edited' WHERE id = %s",
        "UPDATE wallet_transfer SET amount = amount + 1 WHERE id = %s",
        "DELETE FROM wallet_transfer WHERE id = %s",
    ],
    ids=["remarks", "amount", "delete"],
)
def test_the_database_refuses_to_change_or_delete_a_final_transfer(statement, admin_user):
    from django.db import DatabaseError, transaction

    transfer = services.fund_wallet(user=ClientFactory(), amount="10.00", initiated_by=admin_user)
    with (
        pytest.raises(DatabaseError, match="immutable|never deleted"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, [transfer.pk])
    transfer.refresh_from_db()
    assert (transfer.remarks, transfer.amount) == ("", Decimal("10.00"))


@pytest.mark.postgres
def test_the_database_still_lets_the_ledger_post_and_void_pending_transfers(admin_user):
    buyer = ClientFactory()
    services.fund_wallet(user=buyer, amount="10.00", initiated_by=admin_user)
    posted, _ = services.post_transfer(transfer=services.hold_funds(user=buyer, amount="4.00"))
    voided = services.void_transfer(transfer=services.hold_funds(user=buyer, amount="1.00"))
    assert (posted.status, voided.status) == (Transfer.Status.POSTED, Transfer.Status.VOIDED)
    assert verify_ledger().ok


CHAIN = "each user wallet's balances chain"


def chain_breaks(report):
    return [line for line in report.mismatches if line.startswith(CHAIN)]


def chain_name(report):
    return next(check.name for check in report.checks if check.name.startswith(CHAIN))


def failing_checks(report):
    return [check.name.split(":")[0] for check in report.checks if check.mismatches]


def test_the_chain_follows_posting_order_not_id_order_and_skips_holds_and_voids(fund, admin_user):
    """A hold takes an id before the transfers that follow it but moves the balance only when it is
    posted; a voided hold never moves it. Both must verify clean."""
    buyer, friend = ClientFactory(), ClientFactory()
    fund(buyer, "50.00")
    hold = services.hold_funds(user=buyer, amount="20.00")
    voided = services.hold_funds(user=buyer, amount="5.00")
    paid = services.transfer_funds(sender=buyer, receiver=friend, amount="10.00")
    services.transfer_funds(sender=friend, receiver=buyer, amount="3.00")
    services.void_transfer(transfer=voided)
    posted, _ = services.post_transfer(
        transfer=hold, payouts=[services.Payout(user_id=buyer.pk, amount=Decimal("0.50"))]
    )
    # The case this test is about: the hold's id is below the payment's, its balance comes after.
    assert posted.pk < paid.pk and posted.from_entry > paid.from_entry
    assert (posted.from_entry, posted.from_balance_after) == (4, Decimal("23.00"))  # 50 - 10 + 3 - 20
    assert Transfer.objects.get(pk=voided.pk).from_entry is None
    report = verify_ledger()
    assert report.ok, report.mismatches


def test_the_chain_ignores_the_app_servers_clocks(fund):
    """Two app servers whose clocks disagree write timestamps out of order; the ledger's own entry
    numbers still order each wallet's balances."""
    sender, receiver = ClientFactory(), ClientFactory()
    fund(sender, "10.00")
    first = services.transfer_funds(sender=sender, receiver=receiver, amount="1.00")
    services.transfer_funds(sender=sender, receiver=receiver, amount="2.00")
    skewed = first.created_at + timezone.timedelta(seconds=5)  # the first row's server ran ahead
    with journal_guard_lifted():
        Transfer.objects.filter(pk=first.pk).update(created_at=skewed, updated_at=skewed, finalized_at=skewed)
    report = verify_ledger()
    assert report.ok, report.mismatches


def test_verify_ledger_finds_a_posted_hold_that_kept_its_hold_time_balance_after(fund):
    buyer = ClientFactory()
    fund(buyer, "50.00")
    posted, _ = services.post_transfer(transfer=services.hold_funds(user=buyer, amount="20.00"))
    with journal_guard_lifted():
        Transfer.objects.filter(pk=posted.pk).update(from_balance_after=Decimal("50.00"))  # as at the hold
    report = verify_ledger()
    assert failing_checks(report) == [CHAIN]
    assert chain_breaks(report) == [
        f"{chain_name(report)}: wallet #{posted.from_wallet_id} transfer #{posted.pk}: entry 2, "
        "balance after 50.00; the chain expects entry 2, balance after 30.00",
        f"{chain_name(report)}: wallet #{posted.from_wallet_id} stores last entry 2 and balance 30.00, "
        f"its journal ends at entry 2 (transfer #{posted.pk}) with 50.00",
    ]


def test_verify_ledger_finds_a_balance_after_changed_in_the_middle_of_a_chain(fund):
    sender, receiver = ClientFactory(), ClientFactory()
    fund(sender, "10.00")
    middle = services.transfer_funds(sender=sender, receiver=receiver, amount="1.00")
    services.transfer_funds(sender=sender, receiver=receiver, amount="2.00")
    with journal_guard_lifted():
        Transfer.objects.filter(pk=middle.pk).update(to_balance_after=Decimal("1.01"))
    report = verify_ledger()
    assert failing_checks(report) == [CHAIN]
    # The changed row no longer follows its predecessor, and its successor no longer follows it.
    assert len(chain_breaks(report)) == 2
    assert all(f"wallet #{middle.to_wallet_id} transfer" in line for line in chain_breaks(report))


@pytest.mark.parametrize("tamper", ["swap", "repeat", "erase"])
def test_verify_ledger_finds_entry_numbers_out_of_their_sequence(fund, tamper):
    sender, receiver = ClientFactory(), ClientFactory()
    fund(sender, "10.00")
    first = services.transfer_funds(sender=sender, receiver=receiver, amount="1.00")
    second = services.transfer_funds(sender=sender, receiver=receiver, amount="2.00")
    with journal_guard_lifted():
        if tamper == "swap":  # numbers say the 2.00 came first: its balance after cannot be 7.00
            Transfer.objects.filter(pk=first.pk).update(from_entry=3)
            Transfer.objects.filter(pk=second.pk).update(from_entry=2)
        elif tamper == "repeat":
            Transfer.objects.filter(pk=second.pk).update(from_entry=2)
        else:
            Transfer.objects.filter(pk=second.pk).update(from_entry=None)
    report = verify_ledger()
    assert failing_checks(report) == [CHAIN]
    assert all(f"wallet #{first.from_wallet_id} " in line for line in chain_breaks(report))


def test_verify_ledger_finds_a_wallets_last_entry_out_of_step_with_its_journal(fund):
    user = ClientFactory()
    fund(user, "5.00")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE wallet_wallet SET last_entry = 7 WHERE user_id = %s", [user.pk])
    report = verify_ledger()
    assert failing_checks(report) == [CHAIN]
    assert chain_breaks(report)[0].endswith(
        "stores last entry 7 and balance 5.00, its journal ends at entry 1 "
        f"(transfer #{Transfer.objects.get().pk}) with 5.00"
    )
