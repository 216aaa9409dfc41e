"""Transactions that are rolled back whole by any exception that leaves them.

A money operation opens its own `transaction.atomic()`; nested in a caller's block, that is a
SAVEPOINT and a RELEASE (two round trips) so that a failure can be undone without undoing the
caller's work. When the caller's block is itself undone by any exception leaving it, with no query
in between, the savepoint undoes nothing the caller's ROLLBACK would not: `all_or_nothing()` marks
such a block, and neither `wallet.services` nor another `all_or_nothing()` block opens a savepoint
directly inside one."""

import contextlib
import contextvars

from django.db import connection, transaction

# How many atomic blocks were open once the innermost all-or-nothing block had opened.
_depth = contextvars.ContextVar("all_or_nothing_depth", default=None)


@contextlib.contextmanager
def all_or_nothing():
    """`transaction.atomic()` for a block whose caller lets every exception out of it (never catches
    one inside and goes on querying): operations directly inside need no savepoint of their own, and
    neither does such a block directly inside another (a purchase's acceptance inside its request's
    keyed transaction): whatever leaves it leaves the outer one too."""
    with transaction.atomic(savepoint=not innermost_is_all_or_nothing()):
        token = _depth.set(len(connection.atomic_blocks))
        try:
            yield
        finally:
            _depth.reset(token)


@contextlib.contextmanager
def own_statement():
    """Around one write whose failure the caller catches and goes on from (a duplicate key, say).
    Outside a transaction (a worker's database thread, a request in autocommit) the statement commits
    by itself: one round trip, not BEGIN, statement, COMMIT, and a failure leaves nothing to roll
    back. Inside a caller's transaction (a test's) it is a savepoint, so that the failure does not
    spoil the caller's transaction."""
    if not connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        yield


def innermost_is_all_or_nothing() -> bool:
    """Whether the innermost open atomic block is an `all_or_nothing()` block."""
    depth = _depth.get()
    return depth is not None and connection.in_atomic_block and len(connection.atomic_blocks) == depth
