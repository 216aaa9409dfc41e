"""The ledger's figures for Prometheus (core/metrics.py), read at each scrape."""

from django.db.models import Count, Sum
from prometheus_client.core import GaugeMetricFamily

from wallet.models import Transfer


class HoldCollector:
    def collect(self):
        pending = Transfer.objects.filter(status=Transfer.Status.PENDING).aggregate(
            count=Count("pk"), total=Sum("amount")
        )
        yield GaugeMetricFamily("wallet_pending_holds", "PENDING transfers (held money).", value=pending["count"])
        yield GaugeMetricFamily(
            "wallet_pending_holds_amount", "Money held by PENDING transfers.", value=float(pending["total"] or 0)
        )
