"""Database work on a few dedicated threads, for a worker whose many threads mostly wait on the network.

Django gives every thread its own connection. A Celery worker with a thread pool of 64, each thread
waiting about a second on an operator, would hold 64 PostgreSQL connections while using none of them
(the server allows 100, shared with every app server). Inside a worker, `run(fn, **kwargs)` runs
`fn` on one of CELERY_WORKER_DB_CONNECTIONS dedicated threads and waits for its result: those few
threads keep their persistent connections, and a pool thread never opens one. A gateway call is then
made with no connection held, however many are in flight.

Outside a worker (web requests, eager tasks, tests) `run` calls `fn` directly, on the caller's
connection and inside the caller's transaction.
"""

import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from django.db import Error, connection

_size = 0
_executor = None
_executor_pid = None
_lock = threading.Lock()


def enable(*, size):
    """Route `run` through `size` dedicated threads from now on, in this process (a worker's start)."""
    global _size
    _size = max(1, int(size))


def disable():
    global _size, _executor
    with _lock:
        _size = 0
        if _executor is not None:
            _executor.shutdown(wait=True)
            _executor = None


def reset_after_fork():
    """A forked child has the parent's executor object but none of its threads: start afresh."""
    global _executor, _executor_pid
    _executor, _executor_pid = None, None


def enabled() -> bool:
    return _size > 0


def run(fn, /, **kwargs):
    """`fn(**kwargs)`, on a dedicated database thread when enabled, else right here."""
    if not _size:
        return fn(**kwargs)
    return _get_executor().submit(_run_on_database_thread, fn, kwargs).result()


def _get_executor():
    global _executor, _executor_pid
    with _lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(max_workers=_size, thread_name_prefix="db")
            _executor_pid = os.getpid()
        return _executor


def _run_on_database_thread(fn, kwargs):
    # Django's request cycle closes dead or expired connections around each request; these threads
    # live as long as the worker, so they do the same around each piece of work. Checking only after
    # an error or past CONN_MAX_AGE avoids a health-check query on every call.
    _close_if_obsolete()
    try:
        return fn(**kwargs)
    except Error:
        _close_quietly()
        raise


def _close_if_obsolete():
    close_at = getattr(connection, "close_at", None)
    if connection.connection is not None and close_at is not None and time.monotonic() >= close_at:
        _close_quietly()


def _close_quietly():
    if connection.in_atomic_block:
        return
    with contextlib.suppress(Error):
        connection.close()
