"""Assign phone numbers in bulk: one `username_or_email,phone` line per user (the OTP wallet app's script).

    python manage.py assign_phone_numbers numbers.csv
    printf 'alice,9999999999\\nbob@example.com,+1234567890\\n' | python manage.py assign_phone_numbers

Blank lines and lines starting with `#` are skipped. Each line is normalised (E.164) and assigned in its
own transaction; a bad line (malformed, unknown user, invalid number, number taken by someone else) is
reported and changes nothing. Exits with status 1 if any line failed.
"""

import sys

from django.core.management.base import BaseCommand, CommandError

from accounts import selectors, services
from core.errors import DomainError
from core.phone import normalize_phone


class Command(BaseCommand):
    help = "Assign phone numbers from `username_or_email,phone` lines (a file, or standard input)."

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", default="-", help="CSV file; '-' or nothing reads standard input")

    def handle(self, *args, file, **options):
        if file == "-":
            lines = sys.stdin.read().splitlines()
        else:
            try:
                with open(file, encoding="utf-8") as handle:
                    lines = handle.read().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"cannot read {file}: {exc}") from None
        assigned = unchanged = failed = 0
        for number, line in enumerate(lines, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                changed = self._assign(text)
            except DomainError as exc:
                failed += 1
                self.stderr.write(f"line {number}: {exc.message} ({text!r})")
                continue
            if changed:
                assigned += 1
            else:
                unchanged += 1
        summary = f"{assigned} assigned, {unchanged} unchanged, {failed} failed"
        if failed:
            self.stderr.write(summary)
            sys.exit(1)
        self.stdout.write(self.style.SUCCESS(summary))

    def _assign(self, text):
        parts = [part.strip() for part in text.split(",")]
        if len(parts) != 2 or not all(parts) or "\x00" in text:
            raise DomainError("expected `username_or_email,phone`")
        login, raw_phone = parts
        phone = normalize_phone(raw_phone)
        user = selectors.user_by_login(login=login)
        if user is None:
            raise DomainError("no user with username or email {login!r}", login=login)
        return services.assign_phone_number(user=user, phone_number=phone)
