"""The month's loads a wallet keeps (Wallet.month_loads since month_loads_since): counted by the ledger
under the wallet's lock as the journal would sum them, read by the limits with no query, held to the
journal by verify_ledger, and counted for the current month by the migration that added them."""

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.tests.factories import ClientFactory
from tests.helpers import latest_migrations, migrate_to, with_every_other_app_latest
from wallet import limits, services
from wallet.models import Transfer, Wallet
from wallet.reconciliation import verify_ledger

pytestmark = pytest.mark.django_db


def _wallet(user):
    return Wallet.objects.get(user=user)


def test_every_load_is_counted_in_its_month_and_nothing_else_is(fund, monkeypatch):
    client, other = ClientFactory(), ClientFactory()
    fund(other, "100.00")
    this_month = limits.month_start()
    with monkeypatch.context() as patched:  # last month: counted then, not now
        patched.setattr(timezone, "now", lambda: this_month - timedelta(microseconds=1))
        fund(client, "40.00")
        assert _wallet(client).month_loads == Decimal("40.00")
    services.credit_wallet(user=client, amount="5.00")  # the month's first load starts the count again
    services.transfer_funds(sender=other, receiver=client, amount="13.00")
    sale, _ = services.post_transfer(transfer=services.hold_funds(user=client, amount="2.00"))
    services.refund_transfer(transfer=sale)  # a refund is no load
    services.transfer_funds(sender=client, receiver=other, amount="1.00")  # out: no load of the client's
    wallet = _wallet(client)
    assert (wallet.month_loads, wallet.month_loads_since) == (Decimal("18.00"), this_month)
    assert limits.loaded_this_month(wallet=wallet) == Decimal("18.00")
    assert limits.loaded_since(wallet_id=wallet.pk, since=this_month) == Decimal("18.00")
    assert verify_ledger().ok


def test_a_load_dated_before_the_month_counted_is_not_added():
    wallet = Wallet(month_loads=Decimal("7.00"), month_loads_since=limits.month_start())
    services._count_load(
        wallet, Decimal("3.00"), kind=Transfer.Kind.TRANSFER, created_at=limits.month_start() - timedelta(days=1)
    )
    services._count_load(wallet, Decimal("3.00"), kind=Transfer.Kind.REFUND, created_at=timezone.now())
    assert wallet.month_loads == Decimal("7.00")
    services._count_load(wallet, Decimal("3.00"), kind=Transfer.Kind.FUND, created_at=timezone.now())
    assert wallet.month_loads == Decimal("10.00")


def test_the_limits_read_the_kept_loads_with_no_query_and_sum_the_journal_only_for_an_earlier_month(fund):
    client = ClientFactory()
    fund(client, "25.00")
    wallet = _wallet(client)
    with CaptureQueriesContext(connection) as queries:
        assert limits.loaded_this_month(wallet=wallet) == Decimal("25.00")
        # A month after the one counted: nothing loaded in it yet.
        assert limits.loaded_this_month(wallet=wallet, now=timezone.now() + timedelta(days=40)) == Decimal("0.00")
    assert len(queries) == 0
    # A month before the one counted (a clock behind): the journal is summed for it.
    earlier = limits.month_start() - timedelta(days=1)
    with CaptureQueriesContext(connection) as queries:
        assert limits.loaded_this_month(wallet=wallet, now=earlier) == Decimal("25.00")
    assert len(queries) == 1


def test_verify_ledger_finds_loads_counted_wrong(fund):
    client, quiet = ClientFactory(), ClientFactory()
    fund(client, "25.00")
    assert verify_ledger().ok
    Wallet.objects.filter(user=client).update(month_loads=Decimal("24.00"))
    Wallet.objects.filter(user=quiet).update(month_loads=Decimal("1.00"))  # counts no month, yet holds some
    report = verify_ledger()
    assert report.mismatch_count == 2
    assert any("counts 24.00 loaded since" in message for message in report.mismatches)
    assert any("counts no month" in message for message in report.mismatches)
    Wallet.objects.filter(user=client).update(month_loads=Decimal("25.00"), month_loads_since=None)
    Wallet.objects.filter(user=quiet).update(month_loads=Decimal("0.00"))
    assert verify_ledger().mismatch_count == 1  # loads this month, counted in no month


@pytest.fixture
def back_to_latest():
    """Whatever the test does, the database ends at the latest migrations (the flush needs them)."""
    yield
    migrate_to(latest_migrations())


@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_each_wallets_loads_of_the_current_month(back_to_latest):
    old = migrate_to(with_every_other_app_latest([("wallet", "0011_payouts")]))
    User, OldWallet, OldTransfer = (
        old.get_model(*name) for name in (("accounts", "User"), ("wallet", "Wallet"), ("wallet", "Transfer"))
    )
    treasury = OldWallet.objects.get_or_create(system_code="TREASURY")[0]
    loaded, business, quiet = (
        OldWallet.objects.create(user=User.objects.create(username=name, password="!"), balance="0.00")
        for name in ("loaded", "business", "quiet")
    )
    month = limits.month_start()

    def row(to_wallet, amount, kind, created_at, status="POSTED"):
        OldTransfer.objects.create(
            from_wallet=treasury,
            to_wallet=to_wallet,
            amount=amount,
            kind=kind,
            status=status,
            created_at=created_at,
            updated_at=created_at,
            finalized_at=created_at if status != "PENDING" else None,
        )

    row(loaded, "10.00", "FUND", month)  # this month, from its first instant
    row(loaded, "2.50", "TRANSFER", timezone.now())
    row(loaded, "99.00", "FUND", month - timedelta(microseconds=1))  # last month
    row(loaded, "5.00", "REFUND", timezone.now())  # no load
    row(loaded, "6.00", "TRANSFER", timezone.now(), status="PENDING")  # not posted
    row(loaded, "8.00", "TRANSFER", timezone.now(), status="VOIDED")
    row(business, "7.00", "CREDIT", timezone.now())
    migrate_to(latest_migrations())
    counted = {
        w.user.username: (w.month_loads, w.month_loads_since)
        for w in Wallet.objects.filter(user__isnull=False).select_related("user")
    }
    assert counted["loaded"] == (Decimal("12.50"), month)
    assert counted["business"] == (Decimal("7.00"), month)
    assert counted["quiet"] == (Decimal("0.00"), None)


def _hold_into(client, *, payer, amount=Decimal("4.00")):
    """A TRANSFER of `amount` from `payer` to `client`, held (PENDING): no service makes one, the ledger can."""
    from django.db import transaction

    with transaction.atomic():
        by_user = {w.user_id: w for w in services.wallets_for_update(user_ids=[payer.pk, client.pk])}
        return services._move(
            source=by_user[payer.pk],
            destination=by_user[client.pk],
            amount=amount,
            kind=Transfer.Kind.TRANSFER,
            status=Transfer.Status.PENDING,
        )


def test_a_held_load_into_a_user_wallet_counts_when_it_is_posted(fund):
    """No service holds money for a user wallet today (holds pay the recharge settlement), but the
    ledger posts one the same way: the load counts then, in the month of its row."""
    payer, client = ClientFactory(), ClientFactory()
    fund(payer, "50.00")
    hold = _hold_into(client, payer=payer)
    assert _wallet(client).month_loads == Decimal("0.00")
    services.post_transfer(transfer=hold)
    assert (_wallet(client).month_loads, _wallet(client).balance) == (Decimal("4.00"), Decimal("4.00"))
    assert verify_ledger().ok


def test_a_hold_made_last_month_and_posted_this_month_counts_in_no_month_still_counted(fund, monkeypatch):
    """As the journal's sum counts it: by its row's created_at, last month."""
    payer, client = ClientFactory(), ClientFactory()
    fund(payer, "50.00")
    fund(client, "1.00")  # this month's count: 1.00
    last_month = limits.month_start() - timedelta(seconds=1)
    with monkeypatch.context() as patched:
        patched.setattr(timezone, "now", lambda: last_month)
        hold = _hold_into(client, payer=payer)
    services.post_transfer(transfer=hold)
    wallet = _wallet(client)
    assert (wallet.balance, wallet.month_loads) == (Decimal("5.00"), Decimal("1.00"))
    assert verify_ledger().ok


def test_recounting_puts_right_what_old_code_posted_without_counting(fund):
    from django.core.management import call_command

    counted, missed, quiet = ClientFactory(), ClientFactory(), ClientFactory()
    fund(counted, "3.00")
    fund(missed, "9.00")
    # A server still on the code from before the count posted this load: it counted nothing.
    Wallet.objects.filter(user=missed).update(month_loads=Decimal("0.00"), month_loads_since=None)
    assert not verify_ledger().ok
    assert services.recount_month_loads(batch_size=2) == 1
    assert (_wallet(missed).month_loads, _wallet(missed).month_loads_since) == (Decimal("9.00"), limits.month_start())
    assert (_wallet(counted).month_loads, _wallet(quiet).month_loads_since) == (Decimal("3.00"), None)
    assert verify_ledger().ok
    out = io.StringIO()
    call_command("recount_month_loads", stdout=out)
    assert "0 wallet(s) counted again" in out.getvalue()


def test_old_code_opening_a_wallet_without_the_column_gets_no_loads_counted():
    """A rolling deployment: a server on the code from before wallet 0012 inserts wallets without
    month_loads; the column's own default fills it."""
    user = ClientFactory()
    Wallet.objects.filter(user=user).delete()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO wallet_wallet (user_id, balance, held, currency, last_entry, created_at, updated_at) "
            "VALUES (%s, 0, 0, 'INR', 0, %s, %s)",
            [user.pk, timezone.now(), timezone.now()],
        )
    assert (_wallet(user).month_loads, _wallet(user).month_loads_since) == (Decimal("0.00"), None)
