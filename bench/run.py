"""The benchmark: the real stack under load, next to what PostgreSQL alone can do (`make bench`).

    .venv/bin/python bench/run.py                       # the full run (about 15 minutes)
    .venv/bin/python bench/run.py --users 500 --journal 20000 --duration 2 --concurrency 1,8   # a smoke run

1. A fresh PostgreSQL database (BENCH_DATABASE_URL, dropped and recreated), migrated and seeded
   through the services' bulk paths (bench/seed.py); `verify_ledger` timed on the whole journal.
2. gunicorn serving config.wsgi with persistent connections (--workers, --threads).
3. For each scenario and concurrency level, a load generator in its own process (bench/load.py)
   for a fixed time; after each money-moving run, `verify_ledger` and an exactly-once check (the
   journal grew by exactly the requests that succeeded).
4. The ceiling: pgbench running scenarios 2 and 3 in raw SQL (bench/pgbench/*.sql) on the same
   server, at the same concurrency levels, for the same time.
5. Queries per request, counted with Django's CaptureQueriesContext on one request of each scenario.
6. bench/results/latest.md, latest.json and latest.png; with --update-readme, the README's table.
"""

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/recharge_bench"
SCENARIOS = {
    # name: (title, moves money, pgbench ceiling script, the naive twin's scenario mirroring it)
    "floor": ("0. the floor: an anonymous DRF view and one SELECT 1 (GET /api/health/)", False, None, None),
    "balance": ("1. balance read", False, None, "balance"),
    "transfers": ("2. transfers, random pairs, with Idempotency-Key", True, None, "transfers"),
    "transfers_unkeyed": ("2b. transfers, random pairs, no Idempotency-Key", True, None, "transfers"),
    "hot_wallet": ("3. hot wallet: one distributor paying its retailers", True, "transfer_hot.sql", "hot_wallet"),
    "purchases": ("4. recharge purchases by many retailers", True, None, None),
    "plans": ("5. plan list with filters", False, None, None),
    "history_first": ("6a. history of the busy wallet, first page", False, None, "history_first"),
    "history_deep": ("6b. history of the busy wallet, deep page", False, None, "history_deep"),
    "wallets": ("7. a retailer lists its wallet", False, None, "wallets"),
    "funding": ("8. admin funding (add-to-wallet)", True, None, "funding"),
    # Its own stacks (broker, gunicorn 2x4, one worker, the sandbox at 1,000 ms): bench/busy_hour.py.
    "busy_hour": ("9. busy hour: purchases on the task queue, polling and callbacks", True, None, None),
    # One "request" is a whole top-up: intent, sandbox payment, the provider's signed webhook, a balance
    # read (bench/load.py, topup_client); its credit latency is webhook sent -> balance answered.
    "topups": ("10. wallet top-ups: intent, sandbox payment, signed webhook, balance", True, None, None),
    "payouts": ("11. bulk payout: the hot distributor pays 1,000 retailers in one request", True, None, None),
}
# Scenarios that run their own stack and checks rather than one load at each concurrency level.
OWN_STACK_SCENARIOS = {"busy_hour"}
# Run at one client only: one payout is 1,000 transfers; the comparison is with 1,000 single ones.
SEQUENTIAL_SCENARIOS = {"payouts"}
# Issue 16: each mirrored endpoint against its naive twin, measured side by side in the same run.
TWIN_TARGETS = {
    "balance": 1.2,
    "transfers": 1.5,
    "transfers_unkeyed": 1.5,
    "hot_wallet": 1.5,
    "history_first": 1.2,
    "history_deep": 1.2,
    "wallets": 1.2,
    "funding": 1.2,
}
TARGETS = {
    "hot_wallet": {"min_ratio_at_8": 0.40, "max_p99_ms_at_32": 250},
    "history_first": {"max_p95_ms_at_8": 50},
    "history_deep": {"max_p95_ms_at_8": 50},
}
KEYED_OVERHEAD_TARGET = 1.15  # a keyed transfer costs at most 15 % more than an unkeyed one
PAYOUT_LINES = 1000
PAYOUT_TARGET_SECONDS = 1.0
PAYOUT_TARGET_SHARE = 0.05  # of the time 1,000 single transfers take
PURCHASE_QUERY_BUDGET = 12
VERIFY_TARGET_SECONDS = 60
CLIENTS_IN_LOAD = 2000  # senders and receivers of scenario 2
BENCH_WEBHOOK_SECRET = "bench-payment-webhook-secret"  # the load generator signs as the payment provider


def log(message):
    print(message, flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--journal", type=int, default=1_000_000, help="journal rows before the load")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--concurrency", default="8,32", help="comma-separated client counts")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, of: " + ", ".join(SCENARIOS))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_WORKERS", 4)))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 1)))
    parser.add_argument("--no-twin", action="store_true", help="skip the naive twin (no ratios to it)")
    parser.add_argument("--payout-repeats", type=int, default=5, help="1,000-line payouts timed")
    parser.add_argument("--gateway-latency-ms", type=int, default=0, help="sandbox operator latency")
    parser.add_argument("--output", default=str(BENCH / "results"), help="where latest.md/json/png go")
    parser.add_argument("--reuse-db", action="store_true", help="keep the seeded database of an earlier run")
    parser.add_argument("--update-readme", action="store_true", help="rewrite the README's benchmark table")
    return parser.parse_args()


def configure_environment(database_url):
    """The server's and this process's settings: production-like, except plain HTTP on loopback."""
    os.environ.update(
        {
            "DATABASE_URL": database_url,
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DEBUG": "false",
            "SECRET_KEY": os.environ.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,testserver",
            "SECURE_SSL_REDIRECT": "false",
            "CONN_MAX_AGE": "600",
            "JWT_ACCESS_TOKEN_LIFETIME": "720",
            "LOG_LEVEL": "WARNING",
            "OTP_EXPOSE_IN_RESPONSE": "false",
            # The load is a few users sending hundreds of requests a second: the per-user money
            # throttle would refuse it (the throttle's cost stays on the path: it still counts).
            "THROTTLE_MONEY": "100000000/min",
            "PAYMENT_WEBHOOK_SECRET": BENCH_WEBHOOK_SECRET,
            "PAYMENT_SANDBOX_ENABLED": "true",  # DEBUG is off; the top-up scenario pays in the sandbox
        }
    )


def database_exists(database_url):
    import psycopg2
    from dj_database_url import parse

    config = parse(database_url)
    admin = psycopg2.connect(
        dbname="postgres", user=config["USER"], host=config["HOST"], port=config["PORT"], password=config["PASSWORD"]
    )
    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [config["NAME"]])
            return cursor.fetchone() is not None
    finally:
        admin.close()


def recreate_database(database_url):
    import psycopg2
    from dj_database_url import parse
    from psycopg2 import sql

    config = parse(database_url)
    name = config["NAME"]
    admin = psycopg2.connect(
        dbname="postgres", user=config["USER"], host=config["HOST"], port=config["PORT"], password=config["PASSWORD"]
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    admin.close()


# --- the server -------------------------------------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """gunicorn serving `app` with the given shape; ready once it answers `probe` (any HTTP status)."""

    def __init__(self, *, workers, threads, app="config.wsgi:application", env=None, probe="/api/health/", port=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            str(Path(sys.executable).parent / "gunicorn"),
            app,
            f"--bind=127.0.0.1:{self.port}",
            f"--workers={workers}",
            f"--threads={threads}",
            "--backlog=2048",
            "--keep-alive=30",
            "--log-level=warning",
        ]
        env = {
            **os.environ,
            "PYTHONWARNINGS": "ignore:No directory at",  # whitenoise: no collectstatic for an API benchmark
            **(env or {}),
        }
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + probe, timeout=2):
                    return
            except urllib.error.HTTPError:
                return  # it answered: a 401 from a protected path is an answer
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit(f"gunicorn ({app}) did not answer {probe} within 30 s")

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


def twin_database_url(database_url):
    """The naive twin's own database on the same server: BENCH_NAIVE_DATABASE_URL, or <name>_naive."""
    configured = os.environ.get("BENCH_NAIVE_DATABASE_URL")
    if configured:
        return configured
    base, _, name = database_url.rpartition("/")
    return f"{base}/{name}_naive"


def twin_environment(database_url):
    return {
        "DJANGO_SETTINGS_MODULE": "bench.naive.settings",
        "NAIVE_DATABASE_URL": database_url,
        "NAIVE_SECRET_KEY": os.environ.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(50),
    }


def seed_twin(*, population, project_fixture, twin_env, base_url, path):
    """The naive twin's database, seeded with the project's people and history (bench/naive/seed.py,
    in its own process: it runs under the twin's settings). Returns the twin's load fixture."""
    from accounts.models import User
    from wallet.models import Transfer, Wallet

    rows = User.objects.order_by("pk").values_list(
        "pk", "username", "email", "phone_number", "user_type", "parent__username"
    )
    names = {}
    users = []
    for pk, username, email, phone, user_type, parent in rows:
        names[pk] = username
        users.append({"username": username, "email": email, "phone": phone, "user_type": user_type, "parent": parent})
    hot_wallet = Wallet.objects.get(user_id=population.hot_distributor_id)
    spec = {
        "users": users,
        "admin": names[population.admin_id],
        "hot_distributor": names[population.hot_distributor_id],
        "busy_retailer": names[population.busy_retailer_id],
        "hot_retailers": [names[pk] for pk in population.hot_retailer_ids],
        "retailers": [names[pk] for pk in population.retailer_ids],
        "clients": [names[pk] for pk in population.client_ids[:CLIENTS_IN_LOAD]],
        "history_payouts": Transfer.objects.filter(from_wallet=hot_wallet, kind=Transfer.Kind.TRANSFER).count(),
        "base_url": base_url,
        # What both fixtures share: the people the requests name (phones and emails are the same).
        "fixture": {key: project_fixture[key] for key in ("client_phones", "client_emails", "hot_retailer_phones")},
    }
    spec_path = path.with_suffix(".spec.json")
    spec_path.write_text(json.dumps(spec))
    subprocess.run(
        [sys.executable, "-m", "bench.naive.seed", str(spec_path), str(path)],
        cwd=ROOT,
        env={**os.environ, **twin_env},
        check=True,
    )
    return json.loads(path.read_text())


# --- measuring --------------------------------------------------------------------------------


def run_load(fixture_path, scenario, concurrency, duration):
    command = [
        sys.executable,
        str(BENCH / "load.py"),
        f"--fixture={fixture_path}",
        f"--scenario={scenario}",
        f"--concurrency={concurrency}",
        f"--duration={duration}",
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def run_load_metered(server, fixture_path, scenario, concurrency, duration):
    """run_load, with the CPU milliseconds each answered request cost the server (every process of its
    gunicorn), PostgreSQL (every `postgres` process) and the load generator: where a request's cost
    lies outside the application's Python, which a profile in one process does not see."""
    import resource

    from bench.busy_hour import CpuMeter

    meter = CpuMeter(server=server)
    before, children = meter.read(), resource.getrusage(resource.RUSAGE_CHILDREN)
    load = run_load(fixture_path, scenario, concurrency, duration)
    after, children_after = meter.read(), resource.getrusage(resource.RUSAGE_CHILDREN)
    answered = load["succeeded_including_warmup"]
    if answered:
        spent = CpuMeter.per_request(before, after, answered)
        generator = (children_after.ru_utime + children_after.ru_stime) - (children.ru_utime + children.ru_stime)
        load["cpu_ms_per_request"] = {
            "web": spent["web"],
            "database": spent["database"],
            "load generator": round(generator * 1000 / answered, 1),
        }
    return load


def run_pgbench(database_url, script, concurrency, duration, variables):
    from dj_database_url import parse

    config = parse(database_url)
    with tempfile.TemporaryDirectory() as folder:
        command = [
            "pgbench",
            "-n",  # no vacuum of pgbench's own tables: it has none here
            "-M",
            "prepared",
            "-f",
            str(BENCH / "pgbench" / script),
            "-c",
            str(concurrency),
            "-j",
            str(min(concurrency, os.cpu_count() or 1)),
            "-T",
            str(int(duration)),
            "-l",
            "-h",
            config["HOST"],
            "-p",
            str(config["PORT"]),
            "-U",
            config["USER"],
            *[f"-D{name}={value}" for name, value in variables.items()],
            config["NAME"],
        ]
        env = {**os.environ, "PGPASSWORD": config["PASSWORD"] or ""}
        completed = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env)
        if completed.returncode != 0:
            raise SystemExit(f"pgbench failed:\n{completed.stdout}\n{completed.stderr}")
        latencies = []
        for log_file in Path(folder).glob("pgbench_log.*"):
            for line in log_file.read_text().splitlines():
                fields = line.split()
                latencies.append(int(fields[2]) / 1000)  # microseconds -> ms
    tps = float(re.search(r"tps = ([\d.]+) \(without initial connection time\)", completed.stdout).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", completed.stdout)
    latencies.sort()
    from bench.load import percentile

    return {
        "concurrency": concurrency,
        "tps": tps,
        "transactions": len(latencies),
        "failed": int(failed.group(1)) if failed else 0,
        **{f"p{p}_ms": percentile(latencies, p) or 0 for p in (50, 95, 99)},
    }


def timed_verify():
    import resource

    from wallet.reconciliation import verify_ledger

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.monotonic()
    report = verify_ledger()
    seconds = time.monotonic() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"ok": report.ok, "mismatches": report.mismatch_count, "seconds": seconds, "rss_mb": [rss_before, rss_after]}


def journal_counts():
    from purchases.models import Purchase
    from wallet.models import Transfer

    return {
        "transfers": Transfer.objects.count(),
        "purchases": Purchase.objects.count(),
        "topups": Transfer.objects.filter(kind=Transfer.Kind.TOPUP).count(),
    }


def money_check(scenario, before, after, load, payout_lines=PAYOUT_LINES):
    """Exactly once: every success wrote its rows, and nothing else was written."""
    from purchases.models import Purchase

    succeeded = load["succeeded_including_warmup"]
    if scenario in ("transfers", "transfers_unkeyed", "hot_wallet", "funding"):
        return after["transfers"] - before["transfers"] == succeeded
    if scenario == "payouts":
        return after["transfers"] - before["transfers"] == succeeded * payout_lines
    if scenario == "topups":  # one credit per completed top-up, and nothing else moved money
        return after["topups"] - before["topups"] == succeeded == after["transfers"] - before["transfers"]
    if scenario == "purchases":
        new = Purchase.objects.order_by("-pk")[: after["purchases"] - before["purchases"]]
        all_success = all(p.status == Purchase.Status.SUCCESS for p in new)
        return after["purchases"] - before["purchases"] == succeeded and all_success
    return True


# --- the fixture the load generator reads ---------------------------------------------------------


def build_fixture(population, base_url):
    from rest_framework_simplejwt.tokens import AccessToken

    from accounts.models import User
    from plans.models import Provider, RechargePlan
    from wallet.api.pagination import history_cursor_path
    from wallet.selectors import transfers_in_scope

    users = User.objects.in_bulk(
        [population.hot_distributor_id, *population.retailer_ids, *population.client_ids[:CLIENTS_IN_LOAD]]
    )

    def token(pk):
        return str(AccessToken.for_user(users[pk]))

    busy = users[population.busy_retailer_id]
    history = transfers_in_scope(user=busy)
    total = history.count()
    deep_positions = [int(total * share) for share in (0.5, 0.6, 0.7, 0.8, 0.9)]
    deep_paths = [history_cursor_path(queryset=history, position=position) for position in deep_positions]
    providers = list(Provider.objects.values_list("code", flat=True))
    circles = sorted(set(RechargePlan.objects.values_list("circle", flat=True)))
    plan_queries = [
        f"provider={provider}&circle={circle}&min_amount=100&max_amount=1000&ordering=amount"
        for provider in providers
        for circle in circles[:6]
    ]
    clients = population.client_ids[:CLIENTS_IN_LOAD]
    emails = dict(User.objects.filter(pk__in=clients).values_list("pk", "email"))
    admin = User.objects.get(pk=population.admin_id)
    hot_retailer_phones = population.hot_retailer_phones
    return {
        "base_url": base_url,
        "keyed": True,
        "webhook_secret": BENCH_WEBHOOK_SECRET,
        "paths": {
            "balance": "/api/wallet/balance/",
            "transfer": "/api/wallet/transfer/",
            "wallets": "/api/wallet/wallets/",
            "funding": "/api/wallet/add-to-wallet/",
        },
        "admin_token": str(AccessToken.for_user(admin)),
        "client_emails": [emails[pk] for pk in clients],
        "payout_lines": [{"to_phone_number": phone, "amount": "1.00"} for phone in hot_retailer_phones[:PAYOUT_LINES]],
        "client_tokens": [token(pk) for pk in population.client_ids[:CLIENTS_IN_LOAD]],
        "client_phones": population.client_phones[:CLIENTS_IN_LOAD],
        "retailer_tokens": [token(pk) for pk in population.retailer_ids],
        "hot_distributor_token": token(population.hot_distributor_id),
        "hot_retailer_phones": hot_retailer_phones,
        "plan_ids": population.plan_ids,
        "plan_queries": plan_queries,
        "busy_wallet_token": token(population.busy_retailer_id),
        "history_first_path": "/api/wallet/transactions/?cursor=",
        "history_deep_paths": deep_paths,
        "history_rows": total,
    }


def count_queries(fixture, scenarios):
    """Queries and database round trips one request of each scenario costs, through Django's test
    client (in this process). Django logs BEGIN, COMMIT and savepoints as queries, each its own round
    trip; a persistent connection adds one more per request, the health check (`SELECT 1`, not logged)
    that CONN_HEALTH_CHECKS runs on its first use in a request."""
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.load import Scenarios

    requests = Scenarios(fixture)
    client = Client()
    health_check = 1 if settings.DATABASES["default"].get("CONN_HEALTH_CHECKS") else 0
    counts = {}
    for name in scenarios:
        # The second request is counted: the first warms what a running server keeps per process (the
        # system wallets' ids, wallet.services), as the load's thousands of requests find it.
        for _ in range(2):
            method, path, headers, body, expected = getattr(requests, name)()
            extra = {f"HTTP_{key.upper().replace('-', '_')}": value for key, value in headers.items()}
            with CaptureQueriesContext(connection) as queries, _acceptance_only() as accepted:
                if method == "GET":
                    response = client.get(path, **extra)
                else:
                    response = client.post(path, data=json.dumps(body), content_type="application/json", **extra)
            if response.status_code != expected:
                raise SystemExit(f"{name}: {method} {path} answered {response.status_code}: {response.content[:300]}")
            _fulfil(accepted)
        counts[name] = {"queries": len(queries), "round_trips": len(queries) + health_check}
    return counts


@contextlib.contextmanager
def _acceptance_only():
    """A purchase counted as production runs it, with a broker: the request accepts and enqueues, and
    a worker calls the operator later (issue 16 budgets the acceptance). The benchmark's server has no
    broker and fulfils in process; counting that would add the worker's queries to the request's.
    Yields the ids of the purchases enqueued."""
    from unittest import mock

    from purchases import services, tasks

    enqueued = []
    with (
        mock.patch.object(services, "fulfilled_in_process", return_value=False),
        mock.patch.object(tasks.fulfil_purchase, "apply_async", lambda kwargs=None, **_: enqueued.append(kwargs)),
    ):
        yield enqueued


def _fulfil(enqueued):
    """Do what the worker would have done, so that no purchase is left PENDING before the load."""
    from purchases import services

    for kwargs in enqueued:
        services.fulfil_purchase(**kwargs)


# --- the report -------------------------------------------------------------------------------------


def machine():
    import django
    from django.db import connection

    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = found.group(1).strip() if found else cpu
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = int(re.search(r"MemTotal:\s+(\d+)", meminfo.read_text()).group(1))
        memory = f"{kb / 1024 / 1024:.0f} GiB"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgresql": pg,
    }


def main():
    args = parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    scenarios = [name for name in args.scenarios.split(",") if name]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if shutil.which("pgbench") is None:
        raise SystemExit("pgbench is not installed (Debian: apt-get install postgresql-client)")
    database_url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    naive_url = twin_database_url(database_url)
    with_twin = not args.no_twin
    configure_environment(database_url)
    output = Path(args.output)
    population_file = output / ".population.json"
    twin_fixture_path = output / ".fixture-naive.json"
    # Before anything is dropped: a reuse with the wrong --output must not cost the twin's database.
    if args.reuse_db and not population_file.exists():
        raise SystemExit(f"--reuse-db needs the {population_file} of the run that seeded it (same --output)")
    if not args.reuse_db:
        recreate_database(database_url)
        if with_twin:
            recreate_database(naive_url)
    elif with_twin and not (twin_fixture_path.exists() and database_exists(naive_url)):
        # The project's database is reused but the twin was never seeded beside it (an earlier
        # --no-twin run, or another BENCH_NAIVE_DATABASE_URL): create and seed the twin now.
        recreate_database(naive_url)
        twin_fixture_path.unlink(missing_ok=True)

    import warnings

    import django

    warnings.filterwarnings("ignore", "No directory at")  # whitenoise: no collectstatic for an API benchmark
    django.setup()
    from django.core.management import call_command
    from django.db import DatabaseError, connection

    from bench.seed import Population, seed

    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")  # seeding and verifying a million rows
    results = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "args": vars(args)}
    results["machine"] = machine()
    results["load_before"] = os.getloadavg()
    output.mkdir(parents=True, exist_ok=True)
    if args.reuse_db:
        population = Population(**json.loads(population_file.read_text()))
        log("reusing the seeded database")
    else:
        call_command("migrate", verbosity=0)
        log(f"seeding {args.users} users and a {args.journal}-row journal ...")
        population = seed(users=args.users, journal=args.journal, log=log)
        population_file.write_text(json.dumps(population.as_dict()))
    results["seed"] = {"seconds": population.seconds, "users": args.users, **journal_counts()}
    log(f"seeded in {population.seconds:.0f} s: {results['seed']}")

    verify = timed_verify()
    results["verify_initial"] = verify
    log(f"verify_ledger on {results['seed']['transfers']} transfers: ok={verify['ok']} in {verify['seconds']:.1f} s")
    if not verify["ok"]:
        raise SystemExit("the seeded ledger does not verify")

    shape = {"workers": args.workers, "threads": args.threads}
    server = Server(**shape, env={"RECHARGE_GATEWAY_LATENCY_MS": str(args.gateway_latency_ms)})
    twin = None
    try:
        fixture = build_fixture(population, server.url)
        fixture_path = output / ".fixture.json"
        fixture_path.write_text(json.dumps(fixture))
        twin_fixture = None
        if with_twin:
            twin_env = twin_environment(naive_url)
            if args.reuse_db and twin_fixture_path.exists():
                twin_env["NAIVE_SECRET_KEY"] = json.loads(twin_fixture_path.read_text())["secret_key"]
            twin = Server(**shape, app="bench.naive.wsgi:application", env=twin_env, probe="/wallet/balance/")
            if args.reuse_db and twin_fixture_path.exists():
                twin_fixture = json.loads(twin_fixture_path.read_text())
            else:
                log("seeding the naive twin with the same people and history ...")
                twin_fixture = seed_twin(
                    population=population,
                    project_fixture=fixture,
                    twin_env=twin_env,
                    base_url=twin.url,
                    path=twin_fixture_path,
                )
                twin_fixture["secret_key"] = twin_env["NAIVE_SECRET_KEY"]
            twin_fixture["base_url"] = twin.url
            twin_fixture_path.write_text(json.dumps(twin_fixture))
            log(f"twin seeded: {twin_fixture['history_rows']:,} rows in the busy wallet's history")
        results["history_rows"] = fixture["history_rows"]
        results["payout_lines"] = len(fixture["payout_lines"])  # 1,000, fewer in a small smoke run
        results["queries"] = count_queries(fixture, [name for name in scenarios if name not in OWN_STACK_SCENARIOS])
        log(f"queries (round trips) per request: {results['queries']}")
        # Seeding wrote two million rows: without a checkpoint now, the server flushes them during the
        # first scenarios, which would pay for it and not the later ones.
        try:
            with connection.cursor() as cursor:
                cursor.execute("CHECKPOINT")
        except DatabaseError as refused:  # CHECKPOINT needs a superuser or pg_checkpoint
            log(f"no checkpoint after seeding ({refused}): the first scenarios may pay for its writes")
        results["runs"], results["twin_runs"], results["ceilings"], results["checks"] = {}, {}, {}, {}
        for scenario in [name for name in scenarios if name not in OWN_STACK_SCENARIOS]:
            title, moves_money, ceiling_script, twin_scenario = SCENARIOS[scenario]
            scenario_levels = [1] if scenario in SEQUENTIAL_SCENARIOS else levels
            if scenario == "payouts":
                # The comparison: the same distributor paying one retailer per request, one at a time.
                single = run_load(fixture_path, "hot_wallet", 1, args.duration)
                results["payout_single_transfers"] = single
                log(f"    single hot-wallet transfers @ 1: {single['rps']:.0f} req/s, p50 {single['p50_ms']:.1f} ms")
            for level in scenario_levels:
                before = journal_counts()
                load = run_load_metered(server, fixture_path, scenario, level, args.duration)
                check = {}
                if moves_money:
                    check["exactly_once"] = money_check(
                        scenario, before, journal_counts(), load, payout_lines=len(fixture["payout_lines"])
                    )
                    check["verify"] = timed_verify()
                results["runs"].setdefault(scenario, {})[level] = load
                results["checks"].setdefault(scenario, {})[level] = check
                if "credit_p50_ms" in load:
                    log(
                        f"    credit latency, webhook -> balance: p50 {load['credit_p50_ms']:.1f} ms, "
                        f"p95 {load['credit_p95_ms']:.1f} ms, p99 {load['credit_p99_ms']:.1f} ms"
                    )
                log(
                    f"{title} @ {level}: {load['rps']:.0f} req/s, p50 {load['p50_ms']:.1f} ms, "
                    f"p95 {load['p95_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms, {load['errors']} errors"
                    + (
                        f"; exactly once: {check['exactly_once']}, ledger clean: {check['verify']['ok']}"
                        if check
                        else ""
                    )
                )
                for sample in load["error_samples"]:
                    log(f"    {sample}")
                if twin is not None and twin_scenario and level not in results["twin_runs"].get(twin_scenario, {}):
                    # Right after the project's run at the same level: both see the same machine.
                    twin_load = run_load_metered(twin, twin_fixture_path, twin_scenario, level, args.duration)
                    results["twin_runs"].setdefault(twin_scenario, {})[level] = twin_load
                    log(
                        f"    naive twin @ {level}: {twin_load['rps']:.0f} req/s, p99 {twin_load['p99_ms']:.1f} ms, "
                        f"{twin_load['errors']} errors"
                    )
                    for sample in twin_load["error_samples"]:
                        log(f"        {sample}")
            if ceiling_script:
                variables = ceiling_variables(scenario, population)
                for level in levels:
                    ceiling = run_pgbench(database_url, ceiling_script, level, args.duration, variables)
                    results["ceilings"].setdefault(scenario, {})[level] = ceiling
                    log(f"    pgbench ceiling @ {level}: {ceiling['tps']:.0f} tps, p99 {ceiling['p99_ms']:.1f} ms")
                results["checks"][scenario]["ceiling_verify"] = timed_verify()
        if "busy_hour" in scenarios:
            from bench import busy_hour

            log(f"{SCENARIOS['busy_hour'][0]} ...")
            results["busy_hour"] = busy_hour.run(
                fixture=fixture,
                folder=output,
                run_load=run_load,
                server_class=Server,
                duration=args.duration,
                log=log,
            )
    finally:
        server.stop()
        if twin is not None:
            twin.stop()
    results["server"] = shape
    results["load_after"] = os.getloadavg()

    from bench.report import write_report

    paths = write_report(results, output, update_readme=args.update_readme, readme=ROOT / "README.md")
    log("report: " + ", ".join(str(path) for path in paths))
    log("\n".join(results["verdicts"]))
    if any(line.startswith("FAIL") for line in results["verdicts"]):
        sys.exit("a correctness check failed: errors, money written not exactly once, or an unclean ledger")


def ceiling_variables(scenario, population):
    from wallet.models import Wallet

    def wallet_range(user_ids):
        ids = sorted(Wallet.objects.filter(user_id__in=user_ids).values_list("pk", flat=True))
        if ids[-1] - ids[0] + 1 != len(ids):
            raise SystemExit("the seeded wallets are not one contiguous id range; pgbench picks ids from a range")
        return ids[0], ids[-1]

    from wallet.limits import month_start

    first, last = wallet_range(population.hot_retailer_ids)
    hot = Wallet.objects.get(user_id=population.hot_distributor_id).pk
    return {"hot": hot, "first": first, "last": last, "month": month_start().isoformat()}


if __name__ == "__main__":
    main()
