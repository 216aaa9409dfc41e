"""Enqueueing tasks: only after the enqueuing transaction commits, and never at the caller's expense.

A task enqueued inside a transaction that then rolls back would run for rows that do not exist (or,
worse, would run before the rows are visible to the worker). `enqueue_after_commit` defers the send
to the commit (at once outside a transaction). If the broker cannot take the message then, the work
is already committed: the failure is logged and the caller still gets its answer; each kind of work
has a periodic sweep that enqueues again whatever was left behind (purchases: see
`purchases.services.enqueue_pending_purchases`, which reads `queue_depth` to hold back copies of
messages that are most likely still waiting).
"""

import functools
import logging

from django.conf import settings
from django.db import transaction
from kombu.exceptions import ChannelError, OperationalError

logger = logging.getLogger(__name__)


def enqueue_after_commit(task, **kwargs):
    transaction.on_commit(functools.partial(enqueue_now, task, **kwargs))


def enqueue_now(task, **kwargs) -> bool:
    """Send `task(**kwargs)` to the broker (or run it, eagerly, with no broker). False if it could not be
    sent; never raises."""
    try:
        task.apply_async(kwargs=kwargs)
    except Exception as exc:  # noqa: BLE001 - broker down or unreachable: a sweep sends it again later
        # A broker that is down is an outage operators expect to read about in one line per message (at
        # the busy hour that is thousands of messages); anything else keeps its traceback.
        unreachable = isinstance(exc, (OperationalError, ConnectionError, TimeoutError))
        logger.warning(
            "could not enqueue %s(%s): %s; a periodic sweep will retry",
            task.name,
            kwargs,
            exc,
            exc_info=not unreachable,
        )
        return False
    return True


def queue_depth(queue=None):
    """Messages waiting in `queue` (the default queue if None), on Redis or RabbitMQ, or None with no
    broker or if it cannot be reached now."""
    if not settings.CELERY_BROKER_URL:
        return None
    from config.celery import app

    try:
        with app.connection_for_read(settings.CELERY_BROKER_URL, connect_timeout=2) as connection:
            return connection.default_channel.queue_declare(
                queue=queue or settings.CELERY_TASK_DEFAULT_QUEUE, passive=True
            ).message_count
    except Exception as error:  # noqa: BLE001 - a scrape or a sweep must not fail because the broker is down
        if isinstance(error, ChannelError) and _no_such_queue(error):
            # Redis deletes a list once it is empty (and RabbitMQ has no queue until a worker
            # declared it): nothing is waiting.
            return 0
        logger.warning("the task queue's depth could not be read", exc_info=True)
        return None


def _no_such_queue(error) -> bool:
    # kombu's virtual transports (Redis) give the reply code as the string "404"; py-amqp's NotFound
    # (RabbitMQ) as the integer class attribute `code`.
    return str(getattr(error, "reply_code", None) or getattr(error, "code", "")) == "404"
