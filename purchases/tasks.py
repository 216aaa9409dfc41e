"""Tasks of the purchases app (config/celery.py): ids in, one service call, safe to run twice."""

import contextlib

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from core import db_threads
from purchases import gateways, services


@shared_task(name="purchases.fulfil_purchase")
def fulfil_purchase(purchase_id):
    """Send a purchase to the operator, or ask what became of it, and settle it (at-least-once safe:
    services.fulfil_purchase sends at most once)."""
    services.fulfil_purchase(purchase_id=purchase_id)


@shared_task(name="purchases.settle_pending_purchases")
def settle_pending_purchases():
    """The periodic sweep: fulfilment again for PENDING purchases whose task was lost or whose
    outcome is still unknown (one task each, so that slow status checks run side by side)."""
    return services.enqueue_pending_purchases()


@shared_task(
    name="purchases.apply_operator_callback",
    # The operator was answered 202 and will not send it again: a database that fails (a lock wait
    # timed out, a lost connection) must not lose it. Applying it again is safe.
    autoretry_for=(DatabaseError,),
    max_retries=10,
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
)
def apply_operator_callback(reference, status, operator_reference="", message=""):
    """An operator's verified callback, received by the web tier and applied here. The message is the
    callback itself (there is no row to name by id); delivered twice, the second changes nothing. A
    conflict found only now is logged at ERROR by the service, for a person; the purchase stays as it is.
    Its database work runs on the worker's database threads (core.db_threads), like fulfilment's."""
    with contextlib.suppress(services.CallbackConflict):
        db_threads.run(
            services.apply_operator_callback,
            reference=reference,
            status=status,
            operator_reference=operator_reference,
            message=message,
        )


@shared_task(name="purchases.deliver_sandbox_callbacks")
def deliver_sandbox_callbacks():
    """The sandbox operator calling back (callback mode; beat starts one every
    RECHARGE_SANDBOX_CALLBACK_ROUND_SECONDS): for that long, every callback that comes due is sent.
    Two at once never send the same callback twice; one that dies leaves its callbacks to the next."""
    return gateways.run_sandbox_operator(seconds=settings.RECHARGE_SANDBOX_CALLBACK_ROUND_SECONDS)
