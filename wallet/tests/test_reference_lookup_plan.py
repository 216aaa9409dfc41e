"""A purchase's hold is found through the reference's index, however old the table's statistics.

PostgreSQL plans with the statistics of its last ANALYZE. Taken before the day's purchases (a fresh
deployment, autovacuum behind, a bulk load), they say there are hardly any PURCHASE rows; asked for
the reference and the kind together, the planner then walked the (kind, created_at) index through
every purchase ever made, on every settlement (bench/README.md, "Scenario 9")."""

import pytest
from django.db import connection

from accounts.tests.factories import RetailerFactory
from wallet import selectors

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

PURCHASES = 20_000


def _plan_for(reference):
    sql, positions, params, *_ = selectors._TRANSFERS_BY_REFERENCE._compile("default")
    for position in positions:
        params[position] = reference
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}", params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_hold_is_read_through_the_reference_index_with_statistics_older_than_the_purchases(db):
    buyer, seller = RetailerFactory().wallet, RetailerFactory().wallet
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE wallet_transfer")  # no purchase yet
        # Journal rows written directly: only the plan is looked at, no balance is read.
        cursor.execute(
            "INSERT INTO wallet_transfer (amount, kind, status, remarks, created_at, updated_at, from_wallet_id, "
            "to_wallet_id, reference) SELECT 1, 'PURCHASE', 'PENDING', '', now(), now(), %s, %s, 'P' || n "
            "FROM generate_series(1, %s) AS n",
            [buyer.pk, seller.pk, PURCHASES],
        )
    plan = _plan_for(f"P{PURCHASES // 2}")
    assert "transfer_reference" in plan, plan
    assert "transfer_kind_created" not in plan, plan
