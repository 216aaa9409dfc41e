"""Race tests' one helper: callables run in threads released together, each on its own connection."""

import threading

from django.db import connection


def run_together(jobs, *, timeout=120):
    """Run each callable of `jobs` in its own thread, all released at once by a barrier; return
    (results, errors), both aligned with `jobs` (None where a job raised, or did not)."""
    barrier = threading.Barrier(len(jobs))
    results, errors = [None] * len(jobs), [None] * len(jobs)

    def worker(index, job):
        try:
            barrier.wait(timeout=30)
            results[index] = job()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on by the test
            errors[index] = exc
        finally:
            connection.close()  # each thread opened its own connection; give it back

    threads = [threading.Thread(target=worker, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (deadlock?)"
    return results, errors
