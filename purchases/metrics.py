"""The purchases' figures for Prometheus (core/metrics.py), read at each scrape."""

from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from core.queue import queue_depth
from purchases.models import Purchase


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

        queues = (settings.CELERY_TASK_DEFAULT_QUEUE, settings.CELERY_SETTLE_QUEUE)
        depths = {name: queue_depth(name) for name in queues}
        if any(depth is not None for depth in depths.values()):
            queue = GaugeMetricFamily("recharge_queue_depth", "Messages waiting in the task queue.", labels=["queue"])
            for name, depth in depths.items():
                if depth is not None:
                    queue.add_metric([name], depth)
            yield queue
