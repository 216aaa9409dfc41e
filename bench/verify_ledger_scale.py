"""verify_ledger over a large journal: wall time and peak memory (it must stay flat as rows grow).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/recharge .venv/bin/python bench/verify_ledger_scale.py \
        --transfers 1000000 --wallets 1000

Runs in a throwaway database (test_<name>). The journal is written with one INSERT ... SELECT from
generate_series, as the ledger would have written it: every wallet funded once by the treasury,
then pairs of posted transfers A -> B and B -> A of the same amount (so each wallet ends where its
funding left it), each row with the balances after it and its entry numbers in both wallets'
chains, computed with window functions. Like a real journal, the ids do not follow the order of the
balances everywhere: one transfer in ten took its id 50 rows before it moved money (a hold posted
later), and one pair in twenty has a voided hold beside it. The stored balances and last entries
are then written to match: a benchmark's shortcut, never the application's (only the ledger
service writes balances). Prints rows, seconds and the peak resident memory of this process.
"""

import argparse
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "true")


FUNDING = "100000.00"


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=1_000_000, help="journal rows (rounded to even)")
    parser.add_argument("--wallets", type=int, default=1000, help="user wallets the transfers move between")
    parser.add_argument("--keep", action="store_true", help="leave the database (test_<name>) for a closer look")
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("Run this against PostgreSQL (DATABASE_URL=postgres://...).")
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        run(args)
    finally:
        if args.keep:
            print(f"kept database {connection.settings_dict['NAME']}")
        else:
            connection.creation.destroy_test_db(old_name, verbosity=0)


def run(args):
    from django.db import connection

    from accounts.models import User
    from wallet.models import SystemWallet, Wallet
    from wallet.reconciliation import verify_ledger
    from wallet.services import system_wallet

    User.objects.bulk_create(User(username=f"bench{i}") for i in range(args.wallets))
    Wallet.objects.bulk_create(Wallet(user=user) for user in User.objects.filter(wallet__isnull=True))
    wallet_ids = list(Wallet.objects.filter(user__isnull=False).order_by("pk").values_list("pk", flat=True))
    first, count = wallet_ids[0], len(wallet_ids)
    treasury = system_wallet(code=SystemWallet.TREASURY).pk
    pairs = max(0, args.transfers - count) // 2

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
        cursor.execute("SET work_mem = '256MB'")  # seeding only: the window sums sort in memory
        # plan: one row per transfer. seq orders the balances (funding first); id_order is the
        # order ids are taken in.
        cursor.execute(
            """
            CREATE TEMPORARY TABLE plan AS
            SELECT -%(count)s + (w - %(first)s) AS seq, -%(count)s + (w - %(first)s) AS id_order,
                   %(treasury)s AS from_w, w AS to_w, %(funding)s::numeric AS amount, 'FUND' AS kind,
                   'POSTED' AS status
            FROM generate_series(%(first)s, %(first)s + %(count)s - 1) AS w
            UNION ALL
            SELECT 2 * n + leg, CASE WHEN n %% 5 = 0 AND leg = 0 THEN 2 * n - 50 ELSE 2 * n + leg END,
                   CASE WHEN leg = 0 THEN a ELSE b END, CASE WHEN leg = 0 THEN b ELSE a END,
                   amount, 'TRANSFER', 'POSTED'
            FROM (SELECT %(first)s + (n %% %(count)s) AS a,
                         %(first)s + ((n + 1 + n / %(count)s) %% %(count)s) AS b,
                         ((n %% 997) + 1)::numeric / 100 AS amount, n
                  FROM generate_series(0, %(pairs)s - 1) AS n) AS pair
            CROSS JOIN (VALUES (0), (1)) AS legs(leg)
            WHERE a <> b
            """,
            {"first": first, "count": count, "pairs": pairs, "treasury": treasury, "funding": FUNDING},
        )
        cursor.execute(
            """
            INSERT INTO plan
            SELECT NULL, 2 * n + 1, a, %(treasury)s, 1.00, 'PURCHASE', 'VOIDED'
            FROM (SELECT %(first)s + (n %% %(count)s) AS a, n FROM generate_series(0, %(pairs)s - 1, 20) AS n) AS h
            """,
            {"first": first, "count": count, "pairs": pairs, "treasury": treasury},
        )
        cursor.execute(
            """
            WITH legs AS (
                SELECT seq, from_w AS wallet, -amount AS amount, 'from' AS side FROM plan
                WHERE status = 'POSTED' AND from_w <> %(treasury)s
                UNION ALL
                SELECT seq, to_w, amount, 'to' FROM plan WHERE status = 'POSTED' AND to_w <> %(treasury)s
            ),
            chained AS (
                SELECT seq, side, ROW_NUMBER() OVER w AS entry, SUM(amount) OVER w AS balance_after
                FROM legs WINDOW w AS (PARTITION BY wallet ORDER BY seq ROWS UNBOUNDED PRECEDING)
            )
            INSERT INTO wallet_transfer (from_wallet_id, to_wallet_id, amount, kind, status, remarks,
                                         from_balance_after, to_balance_after, from_entry, to_entry,
                                         created_at, updated_at, finalized_at)
            SELECT plan.from_w, plan.to_w, plan.amount, plan.kind, plan.status, '',
                   out_leg.balance_after, in_leg.balance_after, out_leg.entry, in_leg.entry, now(), now(), now()
            FROM plan
            LEFT JOIN chained out_leg ON out_leg.seq = plan.seq AND out_leg.side = 'from'
            LEFT JOIN chained in_leg ON in_leg.seq = plan.seq AND in_leg.side = 'to'
            ORDER BY plan.id_order, plan.seq
            """,
            {"treasury": treasury},
        )
        cursor.execute(
            """
            UPDATE wallet_wallet SET balance = %(funding)s, last_entry = entries.last
            FROM (SELECT wallet, MAX(entry) AS last FROM (
                      SELECT from_wallet_id AS wallet, from_entry AS entry FROM wallet_transfer
                      UNION ALL SELECT to_wallet_id, to_entry FROM wallet_transfer) AS sides
                  WHERE entry IS NOT NULL GROUP BY wallet) AS entries
            WHERE wallet_wallet.id = entries.wallet
            """,
            {"funding": FUNDING},
        )
        cursor.execute("RESET work_mem")
        cursor.execute("ANALYZE wallet_transfer")
    # The journal above was written in SQL, past the ledger: the month's loads it put into each wallet
    # are counted as the ledger would have (verify_ledger checks them too).
    from wallet.services import recount_month_loads

    recount_month_loads(batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM wallet_transfer")
        rows = cursor.fetchone()[0]
    print(f"journal: {rows} transfers over {count} wallets, written in {time.monotonic() - started:.1f} s")

    before = peak_rss_mb()
    started = time.monotonic()
    report = verify_ledger()
    elapsed = time.monotonic() - started
    print(
        f"verify_ledger: {'clean' if report.ok else f'{report.mismatch_count} mismatch(es)'} in {elapsed:.1f} s; "
        f"peak RSS {before:.0f} MB before, {peak_rss_mb():.0f} MB after"
    )
    if not report.ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
