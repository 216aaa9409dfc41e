"""The two ways a posting is written, held to the same result (hypothesis).

On PostgreSQL a ledger operation's writes (its wallets' balances, the row it finalises, the rows it
inserts) are one SQL statement (wallet.services._write_in_one_statement; a bulk payout's, of arrays:
_post_many_in_one_statement); the ORM path (one UPDATE per wallet, the finalised row's UPDATE, one
INSERT per row, a payout's bulk_create) is what SQLite runs. The same random sequence of ledger
operations, run once through each path, must leave identical journals (every field but ids and
timestamps), identical balances, held amounts and chain numbers, and the same refusals.
"""

import re
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.tests.factories import AdminFactory, ClientFactory
from core.errors import DomainError
from wallet import services
from wallet.models import Transfer, Wallet
from wallet.reconciliation import verify_ledger

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

PEOPLE = 3
AMOUNTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("60.00"), places=2)
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("transfer"), st.integers(0, PEOPLE - 1), st.integers(0, PEOPLE - 1), AMOUNTS),
        st.tuples(st.sampled_from(["credit", "debit", "fund", "defund", "hold"]), st.integers(0, PEOPLE - 1), AMOUNTS),
        st.tuples(st.sampled_from(["post", "void", "refund"]), st.integers(0, 5)),
        # A bulk payout from a person (None: the treasury): 1-3 lines, a recipient possibly named twice
        # (or the payer itself: refused), written `batch_size` rows and wallets at a time.
        st.tuples(
            st.just("payout"),
            st.one_of(st.none(), st.integers(0, PEOPLE - 1)),
            st.lists(st.tuples(st.integers(0, PEOPLE - 1), AMOUNTS), min_size=1, max_size=3),
            st.integers(1, 3),
        ),
    ),
    min_size=1,
    max_size=25,
)


def run(operations, people, admin):
    """Apply `operations`; return what the journal and the wallets look like, and each outcome."""
    outcomes, held, posted = [], [], []
    for operation in operations:
        name = operation[0]
        try:
            if name == "transfer":
                _, a, b, amount = operation
                services.transfer_funds(sender=people[a], receiver=people[b], amount=amount)
            elif name in ("credit", "debit"):
                _, a, amount = operation
                getattr(services, f"{name}_wallet")(user=people[a], amount=amount)
            elif name in ("fund", "defund"):
                _, a, amount = operation
                getattr(services, f"{name}_wallet")(user=people[a], amount=amount, initiated_by=admin)
            elif name == "hold":
                _, a, amount = operation
                held.append(services.hold_funds(user=people[a], amount=amount))
            elif name == "post" and held:
                transfer = held.pop(operation[1] % len(held))
                # Both margins of a sale: the buyer's own (its wallet changed twice by one posting)
                # and another person's, as a distributor's.
                buyer = transfer.from_wallet.user_id
                other = next(person.pk for person in people if person.pk != buyer)
                margins = [
                    services.Payout(user_id=buyer, amount=Decimal("0.05")),
                    services.Payout(user_id=other, amount=Decimal("0.02")),
                ]
                posted.append(services.post_transfer(transfer=transfer, payouts=margins)[0])
            elif name == "void" and held:
                services.void_transfer(transfer=held.pop(operation[1] % len(held)))
            elif name == "payout":
                _, payer, lines, batch_size = operation
                services.pay_out_in_bulk(
                    payer=None if payer is None else people[payer],
                    payments=[(people[index].pk, amount) for index, amount in lines],
                    kind=services.Kind.FUND if payer is None else services.Kind.TRANSFER,
                    initiated_by=admin if payer is None else None,
                    remarks=f"payout {len(outcomes)}",
                    batch_size=batch_size,
                )
            elif name == "refund" and posted:
                services.refund_transfer(transfer=posted[operation[1] % len(posted)])
            outcomes.append("ok")
        except DomainError as refusal:
            outcomes.append(refusal.code)
    return outcomes, snapshot(people)


def snapshot(people):
    names = {Wallet.objects.get(user=user).pk: index for index, user in enumerate(people)}
    system = dict(Wallet.objects.filter(user__isnull=True).values_list("pk", "system_code"))
    order = {pk: position for position, pk in enumerate(Transfer.objects.order_by("pk").values_list("pk", flat=True))}

    def party(wallet_id):
        return names.get(wallet_id, system.get(wallet_id))

    journal = [
        (
            row.kind,
            row.status,
            row.amount,
            party(row.from_wallet_id),
            party(row.to_wallet_id),
            row.from_balance_after,
            row.to_balance_after,
            row.from_entry,
            row.to_entry,
            re.sub(r"#(\d+)", lambda m: f"#{order.get(int(m.group(1)))}", row.remarks),  # ids differ per run
            row.initiated_by_id,
            order.get(row.refund_of_id),
            row.finalized_at is None,
            row.idempotency_key,
            row.reference,
            # The timestamps differ between the runs; how they relate within a row does not.
            row.updated_at == row.created_at,
            row.finalized_at == row.created_at,
            row.finalized_at == row.updated_at,
        )
        for row in Transfer.objects.order_by("pk")
    ]
    wallets = [
        Wallet.objects.filter(user=user)
        .values_list("balance", "held", "last_entry", "month_loads", "month_loads_since")
        .get()
        for user in people
    ]
    return journal, wallets


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_one_statement_and_orm_postings_write_the_same_journal_and_balances(monkeypatch, operations):
    with transaction.atomic():
        admin = AdminFactory()
        people = [ClientFactory() for _ in range(PEOPLE)]
        for person in people:
            services.fund_wallet(user=person, amount="50.00", initiated_by=admin)
        results = {}
        for one_statement in (True, False):
            monkeypatch.setattr(services, "ONE_STATEMENT_POSTING", one_statement)
            with transaction.atomic():
                results[one_statement] = run(operations, people, admin)
                report = verify_ledger()
                assert report.ok, report.mismatches
                transaction.set_rollback(True)
        transaction.set_rollback(True)
    assert results[True] == results[False]
