"""A 1,000-line bulk payout in-process, the two ways it can be written, alternating in one process.

    PROFILE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/recharge_profile \\
        .venv/bin/python bench/payout_paths.py

Seeds as `profile_request.py payouts --hot-retailers 1000` does, then sends the benchmark's own payout
request (1,000 retailers by phone) to the WSGI application in blocks of four, switching between the
statement of arrays that PostgreSQL runs (`wallet.services._post_many_in_one_statement`) and the ORM path
(`bulk_create` of the rows and one UPDATE of the balances: how PostgreSQL wrote them before the eighth
session; SQLite runs the same bulk_create with an executemany). Both answer in one process on one
database, so a machine whose speed moves between minutes moves both alike. Prints each path's CPU and
wall time per payout.
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROUNDS, BLOCK = 8, 4


def main():
    import profile_request

    application, make_request = profile_request.project_application("payouts", hot_retailers=1000)
    from wallet import services

    def call():
        method, path, headers, body, _expected = make_request()
        environ = profile_request.environ_for(method=method, path=path, headers=headers, body=body)
        response = application(environ, lambda status, headers: None)
        b"".join(response)
        response.close()

    for _ in range(5):  # warm-up: imports, the first connection, the statements' first plans
        call()
    times = {True: [], False: []}
    for round_number in range(ROUNDS):
        for arrays in (True, False) if round_number % 2 else (False, True):
            services.ONE_STATEMENT_POSTING = arrays
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(BLOCK):
                call()
            times[arrays].append(((time.process_time() - cpu) / BLOCK, (time.perf_counter() - wall) / BLOCK))
    for arrays, name in ((False, "ORM bulk_create + one UPDATE"), (True, "one statement of arrays")):
        cpu, wall = ([1000 * sample[i] for sample in times[arrays]] for i in (0, 1))
        print(
            f"{name}: CPU {statistics.median(cpu):.0f} ms ({min(cpu):.0f}-{max(cpu):.0f}), "
            f"wall {statistics.median(wall):.0f} ms ({min(wall):.0f}-{max(wall):.0f}) per payout, median (range)"
        )


if __name__ == "__main__":
    main()
