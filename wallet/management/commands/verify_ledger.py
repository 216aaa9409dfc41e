from django.core.management.base import BaseCommand, CommandError

from wallet.reconciliation import verify_ledger


class Command(BaseCommand):
    help = "Check every ledger invariant (ledger.md) over the whole database; exit non-zero on any mismatch."

    def add_arguments(self, parser):
        parser.add_argument("--chunk-size", type=int, default=2000, help="rows fetched per round trip")

    def handle(self, *args, chunk_size, **options):
        report = verify_ledger(chunk_size=chunk_size, on_mismatch=lambda line: self.stderr.write(f"MISMATCH {line}"))
        for check in report.checks:
            verdict = "ok" if not check.mismatches else f"{check.mismatches} mismatch(es)"
            self.stdout.write(
                f"[{'OK' if not check.mismatches else 'FAIL'}] {check.name} ({check.rows} rows): {verdict}"
            )
        if not report.ok:
            raise CommandError(f"ledger verification failed: {report.mismatch_count} mismatch(es)")
        self.stdout.write(self.style.SUCCESS("Ledger verified: every invariant holds."))
