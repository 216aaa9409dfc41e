from django.core.management.base import BaseCommand

from wallet.services import recount_month_loads


class Command(BaseCommand):
    help = (
        "Count every user wallet's loads of the current month again from the journal (after a rolling "
        "deployment of wallet 0012, or a change of TIME_ZONE). Safe to repeat."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=1000, help="wallets locked and counted at a time")

    def handle(self, *args, batch_size, **options):
        changed = recount_month_loads(batch_size=batch_size)
        self.stdout.write(self.style.SUCCESS(f"{changed} wallet(s) counted again; the others were right."))
