"""bench/report.py's verdicts against the naive twin: a twin that answered errors is no measure."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.report import cpu_table, extras_table, markdown_table, verdicts  # noqa: E402


def _run(rps, p99, errors=0):
    samples = ["GET /wallet/balance/ -> 500: <!doctype html>"] if errors else []
    return {
        "rps": rps,
        "p50_ms": p99 / 2,
        "p95_ms": p99,
        "p99_ms": p99,
        "errors": errors,
        "requests": 1000,
        "error_samples": samples,
    }


def _results(twin_errors):
    return {
        "runs": {"balance": {8: _run(300.0, 20.0)}},
        "checks": {},
        "twin_runs": {"balance": {8: _run(900.0 if twin_errors else 200.0, 10.0, errors=twin_errors)}},
        "ceilings": {},
        "queries": {},
        "verify_initial": {"ok": True, "seconds": 1.0, "rss_mb": [100, 100]},
        "seed": {"transfers": 1000},
    }


def test_a_ratio_to_a_twin_that_answered_is_a_target_met_or_missed():
    lines = verdicts(_results(twin_errors=0), targets={}, verify_target_seconds=60)
    assert "MET: balance @ 8: 1.50x the naive twin (target >= 1.2x)" in lines
    assert not any(line.startswith("FAIL") for line in lines)


def test_a_twin_that_answered_errors_fails_the_run_instead_of_giving_a_ratio():
    lines = verdicts(_results(twin_errors=9000), targets={}, verify_target_seconds=60)
    assert "FAIL: balance @ 8: the naive twin answered 9000 errors (GET /wallet/balance/ -> 500)" in lines
    assert not any("x the naive twin" in line for line in lines)


def test_the_report_bounds_a_transfers_ratio_by_the_floor():
    results = _results(twin_errors=0)
    results["runs"]["floor"] = {8: _run(420.0, 9.0), 32: _run(400.0, 30.0)}
    results["twin_runs"]["transfers"] = {8: _run(280.0, 40.0), 32: _run(250.0, 120.0, errors=300)}
    rows = extras_table(results).splitlines()
    assert any(
        row.startswith("| the floor @ 8: 420 req/s, the twin's transfer 280 req/s") and "| 1.50x |" in row
        for row in rows
    )
    assert not any("the floor @ 32" in row for row in rows)  # a twin with errors is no measure


def test_the_cpu_table_sets_each_request_beside_the_twins_where_the_twin_answered():
    results = _results(twin_errors=0)
    results["runs"]["balance"][8]["cpu_ms_per_request"] = {"web": 1.5, "database": 0.4, "load generator": 0.3}
    results["twin_runs"]["balance"][8]["cpu_ms_per_request"] = {"web": 2.0, "database": 0.3, "load generator": 0.3}
    assert "| 1. balance read | 8 | 1.5 | 0.4 | 0.3 | 2.0 | 0.3 | 0.3 |" in cpu_table(
        results, {"balance": "1. balance read"}
    )
    results["twin_runs"]["balance"][8]["errors"] = 500
    assert "| 1. balance read | 8 | 1.5 | 0.4 | 0.3 |  |  |  |" in cpu_table(results, {"balance": "1. balance read"})


def test_the_results_table_gives_no_ratio_to_a_twin_that_answered_errors():
    titles = {"balance": "1. balance read"}
    assert markdown_table(_results(twin_errors=0), titles).splitlines()[-1].endswith("| 1.50 |")
    row = markdown_table(_results(twin_errors=9000), titles).splitlines()[-1]
    assert row.endswith("|  |") and "1.50" not in row and "0.33" not in row


def test_a_twin_with_a_stray_error_is_still_compared():
    lines = verdicts(_results(twin_errors=5), targets={}, verify_target_seconds=60)  # 5 of 1,000
    assert not any(line.startswith("FAIL") for line in lines)
    assert any("x the naive twin" in line for line in lines)
