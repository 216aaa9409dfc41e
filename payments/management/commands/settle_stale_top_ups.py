from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from payments.services import settle_stale_top_ups


class Command(BaseCommand):
    help = (
        "Ask the payment provider about PENDING top-ups whose webhook has not come and apply each answer "
        "(credit once, fail or expire); expire intents the provider never answered. What `make beat` runs "
        "every PAYMENT_STATUS_CHECK_INTERVAL_SECONDS; safe beside webhooks and beside itself."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Only top-ups opened at least this long ago (default: PAYMENT_STATUS_CHECK_AFTER_SECONDS).",
        )
        parser.add_argument("--limit", type=int, default=None, help="Ask about at most this many top-ups.")

    def handle(self, *args, older_than=None, limit=None, **options):
        if older_than is not None and older_than < 0:
            raise CommandError("--older-than must be 0 or more seconds.")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        seconds = settings.PAYMENT_STATUS_CHECK_AFTER_SECONDS if older_than is None else older_than
        report = settle_stale_top_ups(older_than=timedelta(seconds=seconds), limit=limit)
        self.stdout.write(self.style.SUCCESS(f"Top-ups older than {timedelta(seconds=seconds)}: {report}"))
