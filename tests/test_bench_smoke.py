"""`make bench` keeps working: a miniature run of bench/run.py end to end (seed, the naive twin,
gunicorn, load generator, pgbench ceiling, report), so the benchmark cannot rot between the times someone runs it.
Its numbers mean nothing at this size; only correctness is asserted (no errors, money exactly once,
a clean ledger), which the run itself checks and turns into its exit status."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.run import SCENARIOS  # noqa: E402

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture
def bench_database_url():
    settings = connection.settings_dict
    name = f"recharge_bench_smoke_{os.getpid()}"
    url = f"postgres://{settings['USER']}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{name}"
    yield url
    # Not through the test's connection: DROP DATABASE cannot run inside its transaction.
    import psycopg2

    admin = psycopg2.connect(
        dbname="postgres", user=settings["USER"], host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432
    )
    admin.autocommit = True
    with admin.cursor() as cursor:
        for database in (name, f"{name}_naive"):  # the project's and its naive twin's
            cursor.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    admin.close()


def test_a_miniature_benchmark_runs_end_to_end(tmp_path, bench_database_url):
    command = [
        sys.executable,
        str(ROOT / "bench" / "run.py"),
        "--users=300",
        "--journal=3000",
        "--duration=1",
        "--concurrency=2",
        # The busy hour runs stacks of its own (a broker, a worker, chaos): its own test, below.
        "--scenarios=" + ",".join(name for name in SCENARIOS if name != "busy_hour"),
        f"--output={tmp_path}",
    ]
    env = {**os.environ, "BENCH_DATABASE_URL": bench_database_url}
    env.pop("DATABASE_URL", None)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = (tmp_path / "latest.md").read_text()
    for scenario in (
        "1. balance",
        "2. transfers",
        "2b.",
        "3. hot wallet",
        "4. recharge",
        "5. plan",
        "6a.",
        "6b.",
        "7.",
        "8.",
        "10. wallet top-ups",
        "11. bulk payout",
    ):
        assert scenario in report
    assert "raw-SQL ceiling (pgbench)" in report and "x twin" in report
    assert "credit latency, webhook -> balance" in report
    assert report.count("completed/s; credit latency") == 1  # one row per concurrency level (one here)
    assert "FAIL" not in report and report.count("PASS") >= 11
    assert (tmp_path / "latest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The report's query counts are the budgets' (tests/test_query_budget.py): a purchase is counted as
    # its acceptance, not with the fulfilment the benchmark's broker-less server runs in process.
    from tests.test_query_budget import BUDGET

    queries = json.loads((tmp_path / "latest.json").read_text())["queries"]
    assert queries["purchases"]["queries"] == BUDGET["purchase"]
    assert queries["funding"]["queries"] == BUDGET["add-to-wallet"]

    # The twin's side of a profile (bench/profile_request.py --twin), on this run's database and people.
    profiled = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "profile_request.py"), "balance", "--requests=20", "--no-profile"]
        + [f"--twin={tmp_path / '.fixture-naive.json'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert profiled.returncode == 0, profiled.stderr[-3000:]
    assert "balance: 20 requests, statuses {'200 OK': 20}" in profiled.stdout
