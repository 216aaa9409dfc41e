"""The mutants that only PostgreSQL can judge, judged there (`make mutate-pg`, docs/mutation.md).

`make mutate` runs on SQLite, where no test reaches the PostgreSQL-only statements of the ledger
(the one-statement posting, the one-UPDATE balances): mutmut marks their mutants "no tests". This
runs each of them against the tests that drive those statements, on PostgreSQL, in the `mutants/`
copy that `make mutate` left: killed when a test fails, survived when all pass.

    .venv/bin/python scripts/mutate_on_postgres.py [--database-url URL] [--tests PATH ...] [NAME_GLOB ...]

Without a glob it takes every "no tests" mutant of the module files mutmut left results for; a glob
also selects SQLite survivors (e.g. "wallet.services.x__post__mutmut_[3-9]").
"""

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time
from pathlib import Path

NO_TESTS = 33  # mutmut's exit code for a mutant no test reached
SURVIVED = 0
# The tests that drive the PostgreSQL-only statements: the differential tests of both posting paths,
# bulk payouts and funding, the ledger service's own and its mutation survivors' tests, and the query
# budget (which counts the one-statement posting).
DEFAULT_TESTS = [
    "wallet/tests/test_posting_paths.py",
    "wallet/tests/test_bulk.py",
    "wallet/tests/test_payouts.py",
    "wallet/tests/test_services.py",
    "wallet/tests/test_payout_mutation_survivors.py",
    "wallet/tests/test_ledger_mutation_survivors.py",
    "tests/test_query_budget.py",
]


def unreached_mutants(mutants_dir: Path, globs: list[str]) -> list[str]:
    """Every "no tests" mutant, or, given globs, those of them and of the SQLite survivors that match
    (a survivor that only PostgreSQL can kill: a branch on the database vendor, say)."""
    judged = (NO_TESTS, SURVIVED) if globs else (NO_TESTS,)
    names = []
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
        names += [name for name, code in exit_codes.items() if code in judged]
    if globs:
        names = [name for name in names if any(fnmatch.fnmatch(name, pattern) for pattern in globs)]
    return sorted(names)


def judge(name: str, *, mutants_dir: Path, tests: list[str], database_url: str, fresh=False) -> bool:
    """True when the mutant is killed (a test fails with it switched on). The test database is built
    once (`fresh`, for the clean run) and reused by every mutant's session."""
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "REDIS_URL")}
    env.update(DATABASE_URL=database_url, MUTANT_UNDER_TEST=name)
    database = "--create-db" if fresh else "--reuse-db"
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", database, *tests]
    result = subprocess.run(  # noqa: S603 - our own interpreter, our own arguments
        command, cwd=mutants_dir, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode not in (0, 1):  # 2-5: the session itself broke, which proves nothing
        sys.exit(f"{name}: pytest exited {result.returncode}\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return result.returncode == 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("globs", nargs="*", help="mutant names (fnmatch globs); default: every 'no tests' mutant")
    parser.add_argument("--mutants-dir", type=Path, default=Path("mutants"))
    parser.add_argument(
        "--database-url",
        default=os.environ.get("MUTATE_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/recharge_mutate"),
    )
    parser.add_argument("--tests", nargs="+", default=DEFAULT_TESTS)
    args = parser.parse_args()
    names = unreached_mutants(args.mutants_dir, args.globs)
    if not names:
        sys.exit(f"no 'no tests' mutant in {args.mutants_dir} matches (run make mutate first)")
    start, survivors = time.monotonic(), []
    # A clean run first: a test that fails without any mutant would "kill" every one of them.
    if judge("", mutants_dir=args.mutants_dir, tests=args.tests, database_url=args.database_url, fresh=True):
        sys.exit("the tests fail with no mutant switched on: fix them first")
    for name in names:
        killed = judge(name, mutants_dir=args.mutants_dir, tests=args.tests, database_url=args.database_url)
        print(f"{name}: {'killed' if killed else 'survived'}", flush=True)
        if not killed:
            survivors.append(name)
    print(f"{len(names) - len(survivors)} of {len(names)} killed on PostgreSQL in {time.monotonic() - start:.0f} s")
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
