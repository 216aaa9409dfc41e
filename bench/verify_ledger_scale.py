"""verify_ledger over a large journal: wall time and peak memory (it must stay flat as rows grow).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/recharge .venv/bin/python bench/verify_ledger_scale.py \
        --transfers 1000000 --wallets 1000

Runs in a throwaway database (test_<name>). The journal is written with one INSERT ... SELECT from
generate_series: pairs of posted transfers A -> B and B -> A of the same amount, so every wallet's
journal nets to zero and no stored balance has to be written (only the ledger service writes
balances). Prints rows, seconds and the peak resident memory of this process before and after.
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


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=1_000_000, help="journal rows (rounded to even)")
    parser.add_argument("--wallets", type=int, default=1000, help="user wallets the transfers move between")
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
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run(args):
    from django.db import connection

    from accounts.models import User
    from wallet.models import Wallet
    from wallet.reconciliation import verify_ledger

    User.objects.bulk_create(User(username=f"bench{i}") for i in range(args.wallets))
    Wallet.objects.bulk_create(Wallet(user=user) for user in User.objects.filter(wallet__isnull=True))
    wallet_ids = list(Wallet.objects.filter(user__isnull=False).order_by("pk").values_list("pk", flat=True))
    first, count = wallet_ids[0], len(wallet_ids)
    pairs = args.transfers // 2

    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
        cursor.execute(
            """
            INSERT INTO wallet_transfer (from_wallet_id, to_wallet_id, amount, kind, status, remarks,
                                         created_at, updated_at, finalized_at)
            SELECT CASE WHEN leg = 0 THEN a ELSE b END, CASE WHEN leg = 0 THEN b ELSE a END,
                   amount, 'TRANSFER', 'POSTED', '', now(), now(), now()
            FROM (SELECT %(first)s + (n %% %(count)s) AS a,
                         %(first)s + ((n + 1 + n / %(count)s) %% %(count)s) AS b,
                         ((n %% 997) + 1)::numeric / 100 AS amount, n
                  FROM generate_series(0, %(pairs)s - 1) AS n) AS pair
            CROSS JOIN (VALUES (0), (1)) AS legs(leg)
            WHERE a <> b
            """,
            {"first": first, "count": count, "pairs": pairs},
        )
        cursor.execute("ANALYZE wallet_transfer")
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
