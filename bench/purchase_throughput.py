"""Recharge purchase throughput and latency on PostgreSQL (the money path: hold, gateway, post).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/recharge .venv/bin/python bench/purchase_throughput.py \
        --threads 8 --purchases 50 --retailers 4 --latency-ms 20

Runs in a throwaway database (test_<name>, created and dropped like the test runner does), so it
never touches real data. Each thread buys through purchases.services.purchase_recharge against the
sandbox gateway; retailers share one distributor, so commissions contend on its wallet lock.
Prints purchases/second, p50/p95/max latency, and verify_ledger's verdict.
"""

import argparse
import os
import statistics
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "true")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--purchases", type=int, default=50, help="per thread")
    parser.add_argument("--retailers", type=int, default=4)
    parser.add_argument("--latency-ms", type=int, default=20, help="sandbox gateway latency")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor != "postgresql":
        sys.exit("Run this against PostgreSQL (DATABASE_URL=postgres://...): SQLite serialises every write.")
    settings.RECHARGE_GATEWAY = "purchases.gateways.SandboxGateway"
    settings.RECHARGE_GATEWAY_LATENCY_MS = args.latency_ms
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        run(args)
        call_command("verify_ledger")
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run(args):
    from django.db import connection

    from accounts.models import User, UserMargin
    from core.roles import UserType
    from plans.models import RechargePlan
    from plans.services import load_catalogue
    from purchases import services
    from wallet import services as ledger

    load_catalogue()
    plan = RechargePlan.objects.get(code="jio-pre-299")
    admin = User.objects.create_user("bench_admin", "bench_admin@example.com", "x", user_type=UserType.ADMIN)
    distributor = User.objects.create_user("bench_dist", "bench_dist@example.com", "x", user_type=UserType.DISTRIBUTOR)
    UserMargin.objects.create(user=distributor, margin_percentage=Decimal("3.00"))
    retailers = []
    for i in range(args.retailers):
        retailer = User.objects.create_user(
            f"bench_r{i}", f"bench_r{i}@example.com", "x", user_type=UserType.RETAILER, parent=distributor
        )
        UserMargin.objects.create(user=retailer, margin_percentage=Decimal("2.00"))
        ledger.fund_wallet(user=retailer, amount=Decimal("99000.00"), initiated_by=admin)
        retailers.append(retailer)
    latencies, failures = [], []
    barrier = threading.Barrier(args.threads)

    def worker(index):
        buyer = retailers[index % len(retailers)]
        try:
            barrier.wait()
            for n in range(args.purchases):
                started = time.perf_counter()
                try:
                    services.purchase_recharge(buyer=buyer, plan_id=plan.pk, mobile_number=f"98{index:03d}{n:05d}")
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    failures.append(repr(exc))
                latencies.append(time.perf_counter() - started)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.threads)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    total = args.threads * args.purchases
    latencies.sort()
    p50, p95 = statistics.median(latencies) * 1000, latencies[int(len(latencies) * 0.95) - 1] * 1000
    print(
        f"{total} purchases by {args.threads} threads over {args.retailers} retailers of one distributor, "
        f"gateway latency {args.latency_ms} ms: {total / elapsed:.1f} purchases/s; latency "
        f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, "
        f"max {latencies[-1] * 1000:.0f} ms; {len(failures)} failed"
    )
    for failure in failures[:5]:
        print("  failure:", failure)


if __name__ == "__main__":
    main()
