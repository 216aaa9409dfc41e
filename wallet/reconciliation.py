"""Proof that the ledger holds its invariants (ledger.md, "Invariants").

`verify_ledger()` checks the whole database with SQL aggregation: only rows that break an
invariant come back, streamed with `.iterator()` (or a server-side cursor), so memory stays
constant on millions of transfers. `manage.py verify_ledger`, the tests and the property-based
state machine call it.

The chain of balances. Every journal row that moved a user wallet's balance records the balance
after it; each must equal the one before plus this row's effect, and the last must be the stored
balance. That needs the order in which the effects happened, and neither obvious key gives it:
- id follows creation, but a hold (PENDING: it changes `held`, not the balance) moves the money
  only when it is posted, later, after rows with higher ids; a VOIDED hold never moves it;
- created_at/finalized_at come from the app servers' clocks: rows of one transaction share one,
  and two servers' clocks disagree by milliseconds, so under contention a later change can carry
  an earlier time and read as a false mismatch.
So the ledger numbers each change itself: under the wallet's row lock it increments
`Wallet.last_entry` and stores the number in the row (`Transfer.from_entry` / `to_entry`), at
creation for a row created POSTED and at posting for a hold. The lock serialises every change of
one wallet, so these numbers are exactly the order of its balances, whatever the clocks say; they
cost no query (the wallet row is read under the lock and written anyway) and work the same on
SQLite. A database sequence would order them too, but SQLite has none.
"""

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import DecimalField, Exists, F, OuterRef, Q, Subquery, Sum, Value
from django.db.models.functions import Coalesce, Round

from wallet.limits import month_start, posted_loads
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
            # The chain check is one large window query: JIT-compiling it costs more (about 3 s on
            # a million transfers) than it saves.
            cursor.execute("SET LOCAL jit = off")
        yield


# Checks other apps add (payments: the top-ups equal the provider's settlement account). Each is
# called with `run(name, total, offenders, describe)` inside the same snapshot; wallet imports no app.
_EXTRA_CHECKS: list[Callable] = []


def register_check(check: Callable) -> None:
    """Add `check(run)` to every verify_ledger run (an app's AppConfig.ready calls this)."""
    if check not in _EXTRA_CHECKS:
        _EXTRA_CHECKS.append(check)


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
    # The month's loads a wallet keeps (wallet.limits.loaded_this_month) = its posted loads since the
    # month it counts; a wallet counting none has had no load since the month began.
    loads = posted_loads(to_wallet=OuterRef("pk"))
    journal_loads = Round(
        Coalesce(
            Subquery(
                loads.filter(created_at__gte=OuterRef("month_loads_since"))
                .values("to_wallet")
                .annotate(total=Sum("amount"))
                .values("total"),
                output_field=MONEY,
            ),
            Value(ZERO),
            output_field=MONEY,
        ),
        2,
        output_field=MONEY,
    )
    run(
        "each user wallet's loads this month = its posted loads since the month it counts",
        wallet_count,
        user_wallets.filter(month_loads_since__isnull=False)
        .annotate(journal_loads=journal_loads)
        .exclude(month_loads=F("journal_loads"))
        .order_by("pk")
        .values("pk", "month_loads", "month_loads_since", "journal_loads"),
        lambda w: (
            f"wallet #{w['pk']} counts {_m(w['month_loads'])} loaded since {w['month_loads_since']}, "
            f"its journal {_m(w['journal_loads'])}"
        ),
    )
    run(
        "a user wallet counting no month's loads has none this month",
        wallet_count,
        user_wallets.filter(month_loads_since__isnull=True)
        .filter(Q(~Q(month_loads=0)) | Exists(loads.filter(created_at__gte=month_start())))
        .order_by("pk")
        .values("pk", "month_loads"),
        lambda w: f"wallet #{w['pk']} counts no month, yet {_m(w['month_loads'])} or loads this month",
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
        "each user wallet's balances chain: entries 1, 2, 3..., balance after = previous + amount, "
        "the last = the stored balance",
        transfer_count,
        _BalanceChainBreaks(),
        _describe_chain_break,
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
    for check in _EXTRA_CHECKS:
        check(run)
    return report


# One pass over the posted journal, both sides of each transfer ("legs") of user wallets, sorted
# by wallet and entry number; window functions compare each leg with the one before and after.
# Only breaks come back, each row flagged with what it breaks:
# - chain: its number is not the previous + 1 (a row missing, repeated or unnumbered), or its
#   balance after is not the previous balance after (0 before the first) + its amount;
# - end: it is the wallet's last leg but not the wallet's stored last_entry and balance.
# A user wallet with no posted leg at all must store 0 and 0.00 (the last branch).
# ROUND(..., 2) on both sides: SQLite computes decimals as floats; PostgreSQL's numeric is exact.
# Plain SQL that PostgreSQL and SQLite (3.25+, window functions) both run.
_CHAIN_SQL = """
WITH legs AS (
    SELECT t.from_wallet_id AS wallet_id, t.from_entry AS entry, -t.amount AS amount,
           t.from_balance_after AS balance_after, t.id AS transfer_id
    FROM wallet_transfer t WHERE t.status = %(posted)s
    UNION ALL
    SELECT t.to_wallet_id, t.to_entry, t.amount, t.to_balance_after, t.id
    FROM wallet_transfer t WHERE t.status = %(posted)s
),
chain AS (
    SELECT legs.wallet_id, legs.transfer_id, legs.entry, legs.balance_after,
           wallet.last_entry AS stored_entry, wallet.balance AS stored_balance,
           CASE WHEN LAG(legs.transfer_id) OVER w IS NULL THEN 1 ELSE LAG(legs.entry) OVER w + 1 END
               AS expected_entry,
           CASE WHEN LAG(legs.transfer_id) OVER w IS NULL THEN legs.amount
                ELSE LAG(legs.balance_after) OVER w + legs.amount END AS expected_balance,
           LEAD(legs.transfer_id) OVER w IS NULL AS is_last
    FROM legs JOIN wallet_wallet wallet ON wallet.id = legs.wallet_id AND wallet.user_id IS NOT NULL
    WINDOW w AS (PARTITION BY legs.wallet_id
                 ORDER BY CASE WHEN legs.entry IS NULL THEN 1 ELSE 0 END, legs.entry, legs.transfer_id)
),
checked AS (
    SELECT chain.*,
           (entry IS NULL OR balance_after IS NULL OR entry <> expected_entry
            OR ROUND(balance_after, 2) <> ROUND(expected_balance, 2)) AS breaks_chain,
           (is_last AND (entry IS NULL OR balance_after IS NULL OR entry <> stored_entry
                         OR ROUND(balance_after, 2) <> ROUND(stored_balance, 2))) AS breaks_end
    FROM chain
)
SELECT wallet_id, transfer_id, entry, expected_entry, balance_after, expected_balance,
       breaks_chain, breaks_end, stored_entry, stored_balance
FROM checked WHERE breaks_chain OR breaks_end
UNION ALL
SELECT wallet.id, NULL, 0, NULL, 0, NULL, FALSE, TRUE, wallet.last_entry, wallet.balance
FROM wallet_wallet wallet
WHERE wallet.user_id IS NOT NULL AND (wallet.last_entry <> 0 OR wallet.balance <> 0)
  AND NOT EXISTS (SELECT 1 FROM wallet_transfer t WHERE t.from_wallet_id = wallet.id AND t.status = %(posted)s)
  AND NOT EXISTS (SELECT 1 FROM wallet_transfer t WHERE t.to_wallet_id = wallet.id AND t.status = %(posted)s)
"""


class _BalanceChainBreaks:
    """The chain check's breaks, one per broken rule, fetched in chunks (a server-side cursor on
    PostgreSQL, so a badly broken journal does not fill memory either)."""

    def iterator(self, chunk_size=2000):
        with connection.chunked_cursor() as cursor:
            cursor.execute(_CHAIN_SQL, {"posted": Status.POSTED.value})
            while rows := cursor.fetchmany(chunk_size):
                for wallet_id, transfer_id, entry, expected_entry, balance, expected, chain, end, *stored in rows:
                    if chain:
                        yield ("chain", wallet_id, transfer_id, entry, expected_entry, balance, expected)
                    if end:
                        yield ("end", wallet_id, transfer_id, entry, *stored, balance)


def _describe_chain_break(row) -> str:
    if row[0] == "end":
        _, wallet_id, transfer_id, entry, stored_entry, stored_balance, balance = row
        return (
            f"wallet #{wallet_id} stores last entry {stored_entry} and balance {_m(stored_balance)}, "
            f"its journal ends at entry {entry} (transfer #{transfer_id}) with {_m(balance)}"
        )
    _, wallet_id, transfer_id, entry, expected_entry, balance, expected_balance = row
    return (
        f"wallet #{wallet_id} transfer #{transfer_id}: entry {entry}, balance after {_m(balance)}; "
        f"the chain expects entry {expected_entry}, balance after {_m(expected_balance)}"
    )


def _m(value) -> str:
    return f"{Decimal(value):.2f}" if value is not None else "None"


class _Constant(list):
    """A computed result that `run` can iterate like a queryset."""

    def iterator(self, chunk_size=None):
        return iter(self)
