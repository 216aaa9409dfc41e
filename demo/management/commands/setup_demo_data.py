from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core.roles import UserType
from demo.services import setup_demo_data


class Command(BaseCommand):
    help = (
        "Create demo data: an admin, distributors with retailers, clients, funded wallets, margins, the plan "
        "catalogue and a few recharges (sandbox gateway). Idempotent: a second run creates nothing and moves "
        "no money. Prints the logins."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--force",
            action="store_true",
            help="Run with DEBUG off too. The demo accounts' passwords are published in the repository: "
            "`check --deploy` fails until they are changed.",
        )

    def handle(self, *args, force=False, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "DEBUG is off: this looks like production, and the demo accounts (an admin among them) have "
                "passwords published in the repository. Refusing; pass --force to create them anyway."
            )
        report = setup_demo_data()
        self.stdout.write(str(report.catalogue))
        self.stdout.write(
            f"users created: {len(report.users_created)}, margins set: {report.margins_set}, "
            f"fundings: {report.transfers_made}, purchases: {report.purchases_made}"
        )
        self.stdout.write("\nDemo logins (POST /api/auth/login/email/ with email + password, or OTP by phone):")
        self.stdout.write(f"  {'role':<12} {'username':<20} {'email':<40} {'password':<18} phone")
        for username, email, password, phone, role in report.logins:
            self.stdout.write(f"  {UserType(role).label:<12} {username:<20} {email:<40} {password:<18} {phone}")
        self.stdout.write(
            self.style.SUCCESS(
                "\nDemo data ready. Sandbox test numbers: 9000000001 fails, 9000000002 pending then success, "
                "9000000003 pending then fails (see purchases/gateways.py)."
            )
        )
