from django.conf import settings
from django.core.management.base import BaseCommand

from core.services import purge_idempotency_keys


class Command(BaseCommand):
    help = "Delete Idempotency-Key records older than IDEMPOTENCY_KEY_TTL_HOURS (at least 24 h)."

    def add_arguments(self, parser):
        parser.add_argument("--hours", type=int, default=settings.IDEMPOTENCY_KEY_TTL_HOURS)

    def handle(self, *args, hours, **options):
        deleted, hours = purge_idempotency_keys(hours=hours)
        self.stdout.write(f"Purged {deleted} idempotency key(s) older than {hours} h.")
