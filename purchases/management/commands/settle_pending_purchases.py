from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from purchases.services import default_settle_age, settle_pending_purchases


class Command(BaseCommand):
    help = (
        "In this process: send PENDING purchases whose task was lost, ask the operator gateway about those "
        "sent but unsettled, and post (paying the margins) or void each. A purchase is sent at most once and "
        "settled under its row lock, so this is safe to run from cron, twice in a row, or concurrently with "
        "itself, the workers and new purchases (make beat does the same through the queue)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than",
            type=float,
            default=None,
            metavar="SECONDS",
            help="Only purchases sent (or, never sent, accepted) at least this long ago (default: "
            "PURCHASE_STATUS_CHECK_AFTER_SECONDS, so a purchase whose own gateway call may still be running is "
            "left to it).",
        )
        parser.add_argument("--limit", type=int, default=None, help="Settle at most this many purchases.")

    def handle(self, *args, older_than=None, limit=None, **options):
        if older_than is not None and older_than < 0:
            raise CommandError("--older-than must be 0 or more seconds.")
        if limit is not None and limit < 1:
            raise CommandError("--limit must be at least 1.")
        age = default_settle_age() if older_than is None else timedelta(seconds=older_than)
        report = settle_pending_purchases(older_than=age, limit=limit)
        self.stdout.write(self.style.SUCCESS(f"Pending purchases older than {age}: {report}"))
