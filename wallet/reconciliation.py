"""Proof that the ledger holds its invariants (ledger.md, "Invariants").

`verify_ledger()` checks the whole database with SQL aggregation: only rows that break an
invariant come back, streamed with `.iterator()`, so memory stays constant on millions of
transfers. `manage.py verify_ledger`, the tests and the property-based state machine call it.
"""

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import DecimalField, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Round

from wallet.models import Transfer, Wallet

ZERO = Decimal("0.00")
MONEY = DecimalField(max_digits=20, decimal_places=2)
Status = Transfer.Status


@dataclass
class Check:
    name: str
    rows: int
    mismatches: int = 0


@dataclass
class LedgerReport:
    checks: list[Check] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)  # the first `keep` of them
    mismatch_count: int = 0

    @property
    def ok(self) -> bool:
        return self.mismatch_count == 0


def _sum_of(status, side):
    """Correlated SUM(amount) of `status` transfers whose `side` (from_wallet / to_wallet) is the row."""
    rows = (
        Transfer.objects.filter(**{side: OuterRef("pk")}, status=status)
        .order_by()
        .values(side)
        .annotate(total=Sum("amount"))
        .values("total")
    )
    # Round: SQLite sums decimals as floats (30.2 + 0.2 ...); on PostgreSQL numeric is exact anyway.
    return Round(Coalesce(Subquery(rows, output_field=MONEY), Value(ZERO), output_field=MONEY), 2, output_field=MONEY)


def wallets_with_journal_totals():
    """Wallets annotated with what the journal says: posted in, posted out, pending out."""
    return Wallet.objects.annotate(
        posted_in=_sum_of(Status.POSTED, "to_wallet"),
        posted_out=_sum_of(Status.POSTED, "from_wallet"),
        pending_out=_sum_of(Status.PENDING, "from_wallet"),
    ).annotate(derived=Round(F("posted_in") - F("posted_out"), 2, output_field=MONEY))


@contextmanager
def _consistent_snapshot():
    """On PostgreSQL, one REPEATABLE READ, read-only transaction without a statement timeout: every
    check sees the same committed state, so transfers committing meanwhile (a live system) cannot
    show up as a false mismatch between two checks, and a large journal is not cut off by the
    request-sized statement_timeout. Inside a caller's transaction (tests) the caller's view is used."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            cursor.execute("SET LOCAL statement_timeout = 0")
        yield


def verify_ledger(*, chunk_size=2000, keep=1000, on_mismatch: Callable[[str], None] | None = None) -> LedgerReport:
    """Check every invariant over the whole database. Each mismatch is passed to `on_mismatch` as
    it is found (the command prints it) and the first `keep` are kept in the report."""
    with _consistent_snapshot():
        return _verify(chunk_size=chunk_size, keep=keep, on_mismatch=on_mismatch)


def _verify(*, chunk_size, keep, on_mismatch) -> LedgerReport:
    report = LedgerReport()

    def run(name, total, offenders, describe):
        check = Check(name=name, rows=total)
        for row in offenders.iterator(chunk_size=chunk_size):
            check.mismatches += 1
            report.mismatch_count += 1
            message = f"{name}: {describe(row)}"
            if len(report.mismatches) < keep:
                report.mismatches.append(message)
            if on_mismatch is not None:
                on_mismatch(message)
        report.checks.append(check)

    user_wallets = Wallet.objects.filter(user__isnull=False)
    system_wallets = Wallet.objects.filter(user__isnull=True)
    transfers = Transfer.objects.order_by()
    wallet_count, transfer_count = user_wallets.count(), transfers.count()
    journal = wallets_with_journal_totals().filter(user__isnull=False).order_by("pk")

    run(
        "user wallet balance = posted in - posted out",
        wallet_count,
        journal.exclude(balance=F("derived")).values("pk", "user_id", "balance", "derived"),
        lambda w: f"wallet #{w['pk']} (user {w['user_id']}) stores {_m(w['balance'])}, journal says {_m(w['derived'])}",
    )
    run(
        "user wallet held = pending transfers out",
        wallet_count,
        journal.exclude(held=F("pending_out")).values("pk", "user_id", "held", "pending_out"),
        lambda w: f"wallet #{w['pk']} (user {w['user_id']}) holds {_m(w['held'])}, pending out {_m(w['pending_out'])}",
    )
    run(
        "no user wallet with negative balance, held or available",
        wallet_count,
        user_wallets.filter(Q(balance__lt=0) | Q(held__lt=0) | Q(balance__lt=F("held")))
        .order_by("pk")
        .values("pk", "balance", "held"),
        lambda w: f"wallet #{w['pk']} balance {_m(w['balance'])} held {_m(w['held'])}",
    )
    run(
        "system wallets keep no stored balance (theirs is derived from the journal)",
        system_wallets.count(),
        system_wallets.exclude(balance=0, held=0).order_by("pk").values("pk", "system_code", "balance", "held"),
        lambda w: f"{w['system_code']} stores balance {_m(w['balance'])} held {_m(w['held'])}",
    )

    user_total = user_wallets.aggregate(total=Coalesce(Sum("balance"), Value(ZERO), output_field=MONEY))["total"]
    system_total = ZERO
    for wallet in wallets_with_journal_totals().filter(user__isnull=True).values("derived"):
        system_total += wallet["derived"]
    grand_total = Decimal(user_total).quantize(ZERO) + Decimal(system_total).quantize(ZERO)
    run(
        "sum of all balances (system wallets derived from the journal) is zero",
        1,
        _Constant([grand_total] if grand_total != 0 else []),
        lambda total: f"user wallets {_m(user_total)} + system wallets {_m(system_total)} = {_m(total)}",
    )

    run(
        "posted and voided transfers unchanged since finalised (updated_at = finalized_at)",
        transfer_count,
        transfers.filter(status__in=[Status.POSTED, Status.VOIDED])
        .filter(Q(finalized_at__isnull=True) | ~Q(updated_at=F("finalized_at")))
        .order_by("pk")
        .values("pk", "status", "updated_at", "finalized_at"),
        lambda t: f"transfer #{t['pk']} {t['status']} updated {t['updated_at']} finalised {t['finalized_at']}",
    )
    run(
        "pending transfers are not finalised and leave a user wallet",
        transfer_count,
        transfers.filter(status=Status.PENDING)
        .filter(Q(finalized_at__isnull=False) | Q(from_wallet__user__isnull=True))
        .order_by("pk")
        .values("pk", "from_wallet_id", "finalized_at"),
        lambda t: f"transfer #{t['pk']} from wallet #{t['from_wallet_id']} finalised {t['finalized_at']}",
    )
    run(
        "transfers have a positive amount between two different wallets",
        transfer_count,
        transfers.filter(Q(amount__lte=0) | Q(from_wallet=F("to_wallet"))).order_by("pk").values("pk", "amount"),
        lambda t: f"transfer #{t['pk']} amount {_m(t['amount'])}",
    )
    run(
        "every user has a wallet",
        get_user_model().objects.count(),
        get_user_model().objects.filter(wallet__isnull=True).order_by("pk").values("pk", "username"),
        lambda u: f"user #{u['pk']} {u['username']} has no wallet",
    )
    return report


def _m(value) -> str:
    return f"{Decimal(value):.2f}" if value is not None else "None"


class _Constant(list):
    """A computed result that `run` can iterate like a queryset."""

    def iterator(self, chunk_size=None):
        return iter(self)
