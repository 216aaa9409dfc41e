"""Tasks of the purchases app (config/celery.py): ids in, one service call, safe to run twice."""

from celery import shared_task

from purchases import services


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
