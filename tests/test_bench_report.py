"""bench/report.py's verdicts against the naive twin: a twin that answered errors is no measure."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.report import verdicts  # noqa: E402


def _run(rps, p99, errors=0):
    samples = ["GET /wallet/balance/ -> 500: <!doctype html>"] if errors else []
    return {"rps": rps, "p99_ms": p99, "errors": errors, "requests": 1000, "error_samples": samples}


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
