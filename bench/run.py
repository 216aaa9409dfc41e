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
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/recharge_bench"
SCENARIOS = {
    # name: (title, moves money, pgbench ceiling script)
    "balance": ("1. balance read", False, None),
    "transfers": ("2. transfers, random pairs", True, "transfer_random.sql"),
    "hot_wallet": ("3. hot wallet: one distributor paying its retailers", True, "transfer_hot.sql"),
    "purchases": ("4. recharge purchases by many retailers", True, None),
    "plans": ("5. plan list with filters", False, None),
    "history_first": ("6a. history of the busy wallet, first page", False, None),
    "history_deep": ("6b. history of the busy wallet, deep page", False, None),
}
TARGETS = {
    "transfers": {"min_ratio": 0.15},
    "hot_wallet": {"min_ratio": 0.25, "max_p99_ms_at_32": 250},
    "history_first": {"max_p95_ms": 50},
    "history_deep": {"max_p95_ms": 50},
}
VERIFY_TARGET_SECONDS = 60
CLIENTS_IN_LOAD = 2000  # senders and receivers of scenario 2, and the range its pgbench script picks from


def log(message):
    print(message, flush=True)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--journal", type=int, default=1_000_000, help="journal rows before the load")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated, of: " + ", ".join(SCENARIOS))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("BENCH_WORKERS", 4)))
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", 1)))
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
        }
    )


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
    def __init__(self, *, workers, threads, gateway_latency_ms):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            str(Path(sys.executable).parent / "gunicorn"),
            "config.wsgi:application",
            f"--bind=127.0.0.1:{self.port}",
            f"--workers={workers}",
            f"--threads={threads}",
            "--backlog=2048",
            "--keep-alive=30",
            "--log-level=warning",
        ]
        env = {
            **os.environ,
            "RECHARGE_GATEWAY_LATENCY_MS": str(gateway_latency_ms),
            "PYTHONWARNINGS": "ignore:No directory at",  # whitenoise: no collectstatic for an API benchmark
        }
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/api/health/", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit("gunicorn did not answer /api/health/ within 30 s")

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)


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

    return {"transfers": Transfer.objects.count(), "purchases": Purchase.objects.count()}


def money_check(scenario, before, after, load):
    """Exactly once: every success wrote its rows, and nothing else was written."""
    from purchases.models import Purchase

    succeeded = load["succeeded_including_warmup"]
    if scenario in ("transfers", "hot_wallet"):
        return after["transfers"] - before["transfers"] == succeeded
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
    return {
        "base_url": base_url,
        "client_tokens": [token(pk) for pk in population.client_ids[:CLIENTS_IN_LOAD]],
        "client_phones": population.client_phones[:CLIENTS_IN_LOAD],
        "retailer_tokens": [token(pk) for pk in population.retailer_ids],
        "hot_distributor_token": token(population.hot_distributor_id),
        "hot_retailer_phones": population.hot_retailer_phones,
        "plan_ids": population.plan_ids,
        "plan_queries": plan_queries,
        "busy_wallet_token": token(population.busy_retailer_id),
        "history_first_path": "/api/wallet/transactions/?cursor=",
        "history_deep_paths": deep_paths,
        "history_rows": total,
    }


def count_queries(fixture):
    """Queries one request of each scenario runs, through Django's test client (in this process)."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from bench.load import Scenarios

    scenarios = Scenarios(fixture)
    client = Client()
    counts = {}
    for name in SCENARIOS:
        method, path, headers, body, expected = getattr(scenarios, name)()
        extra = {f"HTTP_{key.upper().replace('-', '_')}": value for key, value in headers.items()}
        with CaptureQueriesContext(connection) as queries:
            if method == "GET":
                response = client.get(path, **extra)
            else:
                response = client.post(path, data=json.dumps(body), content_type="application/json", **extra)
        if response.status_code != expected:
            raise SystemExit(f"{name}: {method} {path} answered {response.status_code}: {response.content[:300]}")
        counts[name] = len(queries)
    return counts


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
    configure_environment(database_url)
    population_file = Path(args.output) / ".population.json"
    if not args.reuse_db:
        recreate_database(database_url)

    import warnings

    import django

    warnings.filterwarnings("ignore", "No directory at")  # whitenoise: no collectstatic for an API benchmark
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from bench.seed import Population, seed

    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 0")  # seeding and verifying a million rows
    results = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "args": vars(args)}
    results["machine"] = machine()
    Path(args.output).mkdir(parents=True, exist_ok=True)
    if args.reuse_db and not population_file.exists():
        raise SystemExit(f"--reuse-db needs the {population_file} of the run that seeded it (same --output)")
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

    server = Server(workers=args.workers, threads=args.threads, gateway_latency_ms=args.gateway_latency_ms)
    try:
        fixture = build_fixture(population, server.url)
        fixture_path = Path(args.output) / ".fixture.json"
        fixture_path.write_text(json.dumps(fixture))
        results["history_rows"] = fixture["history_rows"]
        results["queries"] = count_queries(fixture)
        log(f"queries per request: {results['queries']}")
        results["runs"], results["ceilings"], results["checks"] = {}, {}, {}
        for scenario in scenarios:
            title, moves_money, ceiling_script = SCENARIOS[scenario]
            for level in levels:
                before = journal_counts()
                load = run_load(fixture_path, scenario, level, args.duration)
                check = {}
                if moves_money:
                    check["exactly_once"] = money_check(scenario, before, journal_counts(), load)
                    check["verify"] = timed_verify()
                results["runs"].setdefault(scenario, {})[level] = load
                results["checks"].setdefault(scenario, {})[level] = check
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
            if ceiling_script:
                variables = ceiling_variables(scenario, population)
                for level in levels:
                    ceiling = run_pgbench(database_url, ceiling_script, level, args.duration, variables)
                    results["ceilings"].setdefault(scenario, {})[level] = ceiling
                    log(f"    pgbench ceiling @ {level}: {ceiling['tps']:.0f} tps, p99 {ceiling['p99_ms']:.1f} ms")
                results["checks"][scenario]["ceiling_verify"] = timed_verify()
    finally:
        server.stop()
    results["server"] = {"workers": args.workers, "threads": args.threads}

    from bench.report import write_report

    paths = write_report(results, Path(args.output), update_readme=args.update_readme, readme=ROOT / "README.md")
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

    if scenario == "transfers":
        first, last = wallet_range(population.client_ids[:CLIENTS_IN_LOAD])
        return {"first": first, "last": last}
    first, last = wallet_range(population.hot_retailer_ids)
    hot = Wallet.objects.get(user_id=population.hot_distributor_id).pk
    return {"hot": hot, "first": first, "last": last}


if __name__ == "__main__":
    main()
