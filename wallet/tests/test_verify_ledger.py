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
    assert report.mismatch_count == 2  # the wallet's balance and the grand total


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
