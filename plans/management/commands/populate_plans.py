from django.core.management.base import BaseCommand, CommandError

from plans.services import CATALOGUE_FILE, InvalidCatalogue, load_catalogue


class Command(BaseCommand):
    help = (
        "Load the recharge plan catalogue (operators and plans) from plans/data/plans.json. "
        "Idempotent by plan code: a second run changes nothing. Retired plans stay retired."
    )

    def add_arguments(self, parser):
        parser.add_argument("--file", default=str(CATALOGUE_FILE), help="A catalogue JSON file (default: %(default)s)")

    def handle(self, *args, **options):
        try:
            report = load_catalogue(path=options["file"])
        except InvalidCatalogue as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(self.style.SUCCESS(str(report)))
