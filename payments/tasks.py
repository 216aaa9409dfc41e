"""Tasks of the payments app (config/celery.py). Ids in, one service call, safe to run twice."""

from celery import shared_task
from django.conf import settings

from payments import sandbox, services


@shared_task(name="payments.settle_stale_top_ups")
def settle_stale_top_ups():
    """Beat: ask the provider about top-ups whose webhook has not come (PAYMENT_STATUS_CHECK_*)."""
    return str(services.settle_stale_top_ups())


@shared_task(
    name="payments.deliver_sandbox_webhook",
    autoretry_for=(sandbox.WebhookDeliveryFailed,),
    max_retries=settings.PAYMENT_SANDBOX_WEBHOOK_RETRIES,
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
)
def deliver_sandbox_webhook(reference):
    """The sandbox provider calling our webhook (again, if the receiver failed: it is idempotent)."""
    return sandbox.deliver_webhook(reference=reference)


@shared_task(name="payments.return_refused_payment", autoretry_for=(Exception,), max_retries=5, retry_backoff=5)
def return_refused_payment(top_up_id):
    """Give back at the provider a payment the wallet refused (safe twice: once refunded, it stops)."""
    return services.return_refused_payment(top_up_id=top_up_id).provider_refund_reference
