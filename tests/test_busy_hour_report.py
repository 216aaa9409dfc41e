"""bench/busy_hour.py's verdicts: correctness failures fail the run; targets are met or missed."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.busy_hour import verdicts  # noqa: E402


def _checks(**changes):
    checks = {
        "accepted": 10,
        "purchases": 10,
        "exactly_once": True,
        "statuses": {"SUCCESS": 10},
        "received_twice": 0,
        "sandbox_disagrees": 0,
        "held_left": "0",
        "ledger_clean": True,
    }
    return {**checks, **changes}


def _mode(*, purchases_rps=60.0, transfers_rps=100.0, final=3.0, disturbed=None):
    run = {"rps": purchases_rps, "p95_ms": 100.0, "p99_ms": 120.0, "errors": 0}
    transfers = {"rps": transfers_rps, "p95_ms": 100.0, "p99_ms": 120.0, "errors": 0}
    phase = {"accepted_rps": 50.0, "p95_ms": 90.0, "errors": 0, "final_after_seconds": 5.0, "checks": _checks()}
    return {
        "measured": {"transfers": transfers, "purchases": run, "final_after_seconds": final, "checks": _checks()},
        "worker_killed": disturbed or phase,
        "broker_stopped": phase,
    }


def test_a_clean_busy_hour_meets_its_targets_and_passes_its_checks():
    lines = verdicts({"polling": _mode()})
    assert all(ok for _, ok, _ in lines), lines
    assert [kind for kind, _, _ in lines].count("judge") == 3


def test_a_purchase_received_twice_or_a_hold_left_fails_the_run():
    twice = {"accepted_rps": 1, "p95_ms": 1, "errors": 0, "final_after_seconds": 5.0}
    lines = verdicts({"callbacks": _mode(disturbed={**twice, "checks": _checks(received_twice=1)})})
    assert [ok for kind, ok, text in lines if kind == "judge" and "worker killed" in text] == [False]
    lines = verdicts({"callbacks": _mode(disturbed={**twice, "checks": _checks(held_left="19.00")})})
    assert [ok for kind, ok, text in lines if kind == "judge" and "worker killed" in text] == [False]


def test_slow_acceptance_or_slow_settling_misses_the_targets():
    lines = verdicts({"polling": _mode(purchases_rps=40.0, final=45.0)})
    missed = [text for kind, ok, text in lines if kind == "target" and not ok]
    assert len(missed) == 2 and "40%" in missed[0] and "45.0 s" in missed[1]
