"""The purchases' figures for Prometheus (core/metrics.py), read at each scrape."""

import logging

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from purchases.models import Purchase

logger = logging.getLogger(__name__)


class PurchaseCollector:
    def collect(self):
        by_status = GaugeMetricFamily("recharge_purchases", "Purchases by status.", labels=["status"])
        counts = dict(Purchase.objects.order_by().values_list("status").annotate(Count("pk")))
        for status in Purchase.Status.values:
            by_status.add_metric([status], counts.get(status, 0))
        yield by_status

        oldest = Purchase.objects.filter(status=Purchase.Status.PENDING).aggregate(oldest=Min("created_at"))["oldest"]
        yield GaugeMetricFamily(
            "recharge_oldest_pending_purchase_seconds",
            "Age of the oldest PENDING purchase (0: none).",
            value=(timezone.now() - oldest).total_seconds() if oldest else 0,
        )

        depth = queue_depth()
        if depth is not None:
            queue = GaugeMetricFamily("recharge_queue_depth", "Messages waiting in the task queue.", labels=["queue"])
            queue.add_metric([settings.CELERY_TASK_DEFAULT_QUEUE], depth)
            yield queue


def queue_depth():
    """Messages waiting in the task queue (Redis or RabbitMQ), or None with no broker or if it cannot
    be reached now."""
    if not settings.CELERY_BROKER_URL:
        return None
    from config.celery import app

    try:
        with app.connection_for_read(settings.CELERY_BROKER_URL, connect_timeout=2) as connection:
            return connection.default_channel.queue_declare(
                queue=settings.CELERY_TASK_DEFAULT_QUEUE, passive=True
            ).message_count
    except Exception:  # noqa: BLE001 - a scrape must not fail because the broker is down
        logger.warning("metrics: the task queue's depth could not be read", exc_info=True)
        return None
