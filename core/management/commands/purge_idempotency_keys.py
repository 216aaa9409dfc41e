from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils import timezone

from core.models import IdempotencyRecord


class Command(BaseCommand):
    help = "Delete Idempotency-Key records older than IDEMPOTENCY_KEY_TTL_HOURS (at least 24 h)."

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=int, default=settings.IDEMPOTENCY_KEY_TTL_HOURS)

    def handle(self, *args, hours, **options):
        hours = max(hours, 24)  # ledger.md: keys are kept at least a day
        cutoff = timezone.now() - timedelta(hours=hours)
        deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
        self.stdout.write(f"Purged {deleted} idempotency key(s) older than {hours} h.")
