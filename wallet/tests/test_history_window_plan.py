"""A wallet's keyset page reads the wallet's own (wallet, -id) index, whatever the statistics say.

With `wallet = X ORDER BY id DESC LIMIT n`, PostgreSQL may walk the journal's primary key backwards
and filter on the wallet, when its statistics say the wallet holds most of the journal: they cannot
say that the newest rows belong to others. The benchmark's busy wallet, after a load of transfers
between other wallets, read tens of thousands of rows for a first page (wallet.selectors.history_window)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.tests.factories import RetailerFactory
from wallet import selectors
from wallet.models import Transfer

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

ROWS = 20_000


def _insert(from_wallet, to_wallet, rows):
    # Journal rows written directly: only the plans are looked at, no balance is read.
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO wallet_transfer (amount, kind, status, remarks, created_at, updated_at, from_wallet_id, "
            "to_wallet_id) SELECT 1, 'TRANSFER', 'PENDING', '', now(), now(), %s, %s FROM generate_series(1, %s)",
            [from_wallet.pk, to_wallet.pk, rows],
        )


@pytest.mark.parametrize("page", ["first", "deeper", "back"])
def test_a_busy_wallets_page_reads_its_own_index_not_the_journal_backwards(page):
    busy, payer, other = (RetailerFactory().wallet for _ in range(3))
    _insert(payer, busy, ROWS)  # the busy wallet's history: all of the journal, by the statistics
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE wallet_transfer")
    _insert(payer, other, ROWS)  # then the newest rows are between others
    ids = list(Transfer.objects.filter(to_wallet=busy).order_by("pk").values_list("pk", flat=True))
    position = {"first": {}, "deeper": {"before": ids[ROWS // 2]}, "back": {"after": ids[ROWS // 2]}}[page]

    with CaptureQueriesContext(connection) as captured:
        selectors.history_window(queryset=Transfer.objects.all(), wallet_id=busy.pk, limit=21, **position)

    sides = [query["sql"] for query in captured.captured_queries]
    assert len(sides) == 2  # sent and received; the page itself is the lazy queryset returned
    for sql in sides:
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN {sql}")
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "wallet_transfer_pkey" not in plan, plan
    assert "transfer_to_keyset" in plan, plan
