"""Seed the naive twin's database with the project's population, and write the load fixture for it.

    NAIVE_DATABASE_URL=... NAIVE_SECRET_KEY=... python -m bench.naive.seed IN.json OUT.json

IN.json (written by bench/run.py from the project's seeded database): the users (username, email,
phone, role, distributor), the hot distributor, the busy retailer, the hot distributor's retailers,
how many payouts the project's journal holds and which load-fixture entries name whom. The twin
gets the same users with funded wallets and the same history (each payout as the twin writes a
transfer: one transaction row per wallet), then OUT.json: the same fixture entries, with the
twin's own tokens and paths."""

import json
import os
import sys
import time
from decimal import Decimal

FUNDING = Decimal("100000.00")


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.naive.settings")
    import django

    django.setup()
    from django.contrib.auth.hashers import make_password
    from django.core.management import call_command
    from django.db import connection, transaction
    from rest_framework_simplejwt.tokens import AccessToken

    from bench.naive.models import User, Wallet

    with open(sys.argv[1]) as handle:
        spec = json.load(handle)
    started = time.monotonic()
    call_command("migrate", verbosity=0)
    password = make_password("bench-password-not-used")
    with transaction.atomic():
        users = User.objects.bulk_create(
            [
                User(
                    username=row["username"],
                    email=row["email"] or "",
                    phone_number=row["phone"],
                    user_type=row["user_type"],
                    password=password,
                )
                for row in spec["users"]
            ],
            batch_size=2000,
        )
        by_name = {user.username: user for user in users}
        for row in spec["users"]:
            if row["parent"]:
                by_name[row["username"]].parent_id = by_name[row["parent"]].pk
        User.objects.bulk_update([u for u in users if u.parent_id], ["parent"], batch_size=2000)
        Wallet.objects.bulk_create([Wallet(user=user, balance=FUNDING) for user in users], batch_size=2000)
    hot = by_name[spec["hot_distributor"]]
    Wallet.objects.filter(user=hot).update(balance=FUNDING * 21)
    retailer_ids = [by_name[name].pk for name in spec["hot_retailers"]]
    busy = by_name[spec["busy_retailer"]]
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")
        # The project's history, payout by payout (bench/seed.py: nine in ten to the busy retailer),
        # as the twin records a transfer: a row on the sender's wallet and one on the receiver's.
        cursor.execute(
            """
            CREATE TEMP TABLE payouts AS
            SELECT k, now() - (%(n)s - k) * interval '1 millisecond' AS at,
                   CASE WHEN k %% 10 <> 0 THEN %(busy)s ELSE (%(ids)s::bigint[])[1 + k %% %(count)s] END AS receiver
            FROM generate_series(0, %(n)s - 1) AS k;
            INSERT INTO naive_transaction
                (wallet_id, sender_id, receiver_id, amount, transaction_type, remarks, timestamp)
            SELECT w.id, %(hot)s, p.receiver, 1.00, 'TRANSFER', 'Daily payout', p.at
            FROM payouts p JOIN naive_wallet w ON w.user_id = %(hot)s ORDER BY p.k;
            INSERT INTO naive_transaction
                (wallet_id, sender_id, receiver_id, amount, transaction_type, remarks, timestamp)
            SELECT w.id, %(hot)s, p.receiver, 1.00, 'TRANSFER', 'Daily payout', p.at
            FROM payouts p JOIN naive_wallet w ON w.user_id = p.receiver ORDER BY p.k;
            """,
            {
                "n": spec["history_payouts"],
                "busy": busy.pk,
                "ids": retailer_ids,
                "count": len(retailer_ids),
                "hot": hot.pk,
            },
        )
    connection.close()
    connection.ensure_connection()
    connection.connection.autocommit = True
    with connection.connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")

    def token(name):
        return str(AccessToken.for_user(by_name[name]))

    history_rows = busy.wallet.transactions.count()
    page_size = 20
    fixture = {
        **spec["fixture"],
        "base_url": spec["base_url"],
        "keyed": False,
        "paths": {
            "balance": "/wallet/balance/",
            "transfer": "/wallet/transfer/",
            "wallets": "/api/wallet/wallets/",
            "funding": "/api/wallet/add-to-wallet/",
        },
        "client_tokens": [token(name) for name in spec["clients"]],
        "retailer_tokens": [token(name) for name in spec["retailers"]],
        "hot_distributor_token": token(spec["hot_distributor"]),
        "admin_token": token(spec["admin"]),
        "busy_wallet_token": token(spec["busy_retailer"]),
        "history_first_path": "/api/wallet/transactions/",
        # The same depths as the project's deep pages, as the twin pages: by page number.
        "history_deep_paths": [
            f"/api/wallet/transactions/?page={int(history_rows * share) // page_size + 1}"
            for share in (0.5, 0.6, 0.7, 0.8, 0.9)
        ],
        "history_rows": history_rows,
        "seed_seconds": time.monotonic() - started,
    }
    with open(sys.argv[2], "w") as handle:
        json.dump(fixture, handle)


if __name__ == "__main__":
    main()
