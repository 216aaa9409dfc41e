"""Concurrent money movements on PostgreSQL (real row locks). Threads start together on a barrier,
each on its own connection, closed at the end."""

import random
import threading
import time
from decimal import Decimal

import pytest
from django.db import connection

from accounts.services import create_users_in_bulk
from accounts.tests.factories import AdminFactory, ClientFactory, DistributorFactory, RetailerFactory
from core.roles import UserType
from tests.concurrency import run_together
from wallet import services
from wallet.models import Payout, PayoutLine, Wallet
from wallet.tests.helpers import assert_ledger_clean

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

THREADS = 8


def user_balances(users):
    return {w.user_id: w.balance for w in Wallet.objects.filter(user__in=users)}


def test_random_transfers_in_both_directions_never_deadlock_lose_or_create_money(capsys):
    admin = AdminFactory()
    users = [ClientFactory() for _ in range(5)]
    for user in users:
        services.fund_wallet(user=user, amount="20.00", initiated_by=admin)
    funded = Decimal("100.00")
    per_thread = 50

    def job(seed):
        rng = random.Random(seed)
        done = refused = 0
        for _ in range(per_thread):
            sender, receiver = rng.sample(users, 2)
            amount = Decimal(rng.randint(1, 1500)) / 100
            try:
                services.transfer_funds(sender=sender, receiver=receiver, amount=amount)
                done += 1
            except services.InsufficientFunds:
                refused += 1
        return done, refused

    started = time.monotonic()
    results, errors = run_together([lambda seed=seed: job(seed) for seed in range(THREADS)])
    elapsed = time.monotonic() - started
    assert not any(errors), errors
    done, refused = sum(r[0] for r in results), sum(r[1] for r in results)
    assert done + refused == THREADS * per_thread and refused > 0 and done > 0
    balances = user_balances(users)
    assert all(balance >= 0 for balance in balances.values())
    assert sum(balances.values()) == funded
    assert_ledger_clean()
    with capsys.disabled():
        print(f"\n{THREADS * per_thread} transfers: {done} done, {refused} refused, {elapsed:.2f}s")


def test_concurrent_debits_against_one_wallet_succeed_exactly_floor_balance_over_amount_times():
    admin, user = AdminFactory(), ClientFactory()
    services.fund_wallet(user=user, amount="100.00", initiated_by=admin)
    amount, attempts_per_thread = Decimal("7.00"), 5

    def job():
        succeeded = 0
        for _ in range(attempts_per_thread):
            try:
                services.debit_wallet(user=user, amount=amount)
                succeeded += 1
            except services.InsufficientFunds:
                pass
        return succeeded

    results, errors = run_together([job] * THREADS)
    assert not any(errors), errors
    assert sum(results) == 14  # floor(100.00 / 7.00)
    assert Wallet.objects.get(user=user).balance == Decimal("2.00")
    assert_ledger_clean()


def test_one_distributor_paying_many_retailers_at_once_never_overspends():
    admin, distributor = AdminFactory(), DistributorFactory()
    retailers = [RetailerFactory(parent=distributor) for _ in range(THREADS * 2)]
    services.fund_wallet(user=distributor, amount="500.00", initiated_by=admin)

    def job(retailer):
        try:
            services.transfer_funds(sender=distributor, receiver=retailer, amount="40.00")
            return True
        except services.InsufficientFunds:
            return False

    results, errors = run_together([lambda r=r: job(r) for r in retailers])
    assert not any(errors), errors
    assert sum(results) == 12  # floor(500 / 40)
    balances = user_balances([distributor, *retailers])
    assert balances[distributor.pk] == Decimal("20.00")
    assert sum(balances[r.pk] for r in retailers) == Decimal("480.00")
    assert_ledger_clean()


def test_concurrent_holds_and_transfers_keep_held_within_the_balance():
    admin, buyer, friend = AdminFactory(), ClientFactory(), ClientFactory()
    services.fund_wallet(user=buyer, amount="50.00", initiated_by=admin)

    def hold_then_settle(index):
        try:
            pending = services.hold_funds(user=buyer, amount="9.00")
        except services.InsufficientFunds:
            return "refused"
        if index % 2:
            services.post_transfer(transfer=pending)
        else:
            services.void_transfer(transfer=pending)
        return "settled"

    def pay_friend():
        try:
            services.transfer_funds(sender=buyer, receiver=friend, amount="5.00")
        except services.InsufficientFunds:
            return "refused"
        return "paid"

    jobs = [lambda i=i: hold_then_settle(i) for i in range(THREADS)] + [pay_friend] * THREADS
    _, errors = run_together(jobs)
    assert not any(errors), errors
    wallet = Wallet.objects.get(user=buyer)
    assert wallet.held == 0 and wallet.balance >= 0
    assert_ledger_clean()


def _planner(**switches):
    """Pin this thread's query plans: on a production-size wallet table PostgreSQL reads a
    `user_id IN (...)` lock query through the user_id index (rows in user id order) and an
    `id IN (...) OR user_id IN (...)` one through a bitmap, in table order. On a test's tiny table
    may pick yet another index, so the switches pin the two orders."""
    with connection.cursor() as cursor:
        for name, on in switches.items():
            cursor.execute(f"SET enable_{name} = {'on' if on else 'off'}")


def _lock_waiters(monitor) -> int:
    with monitor.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def _wait_for(condition, timeout=20):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the interleaving did not happen"
        time.sleep(0.02)


def test_wallets_whose_ids_run_against_their_users_ids_are_still_locked_without_deadlock():
    """A distributor (older user, newer wallet) pays its retailer while the retailer's recharge is
    posted with the distributor's commission. The payment's lock query finds the wallets by user id
    (distributor first), the posting's by wallet id (retailer first): only ordering the locks by
    wallet id makes both take the retailer's wallet first.

    The interleaving is forced: a third connection holds the distributor's wallet until both
    operations wait, so without the ordering each would hold the wallet the other needs."""
    admin, distributor = AdminFactory(), DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    # A table large enough for the planner to use its indexes as in production.
    create_users_in_bulk(users=[{"username": f"bystander{i}", "user_type": UserType.CLIENT} for i in range(2000)])
    # Give the distributor a wallet newer than the retailer's: user ids and wallet ids now disagree.
    Wallet.objects.filter(user=distributor).delete()
    services.open_wallet(user=distributor)
    wallet_of = {w.user_id: w.pk for w in Wallet.objects.filter(user__in=[distributor, retailer])}
    assert distributor.pk < retailer.pk and wallet_of[distributor.pk] > wallet_of[retailer.pk]
    services.fund_wallet(user=retailer, amount="50.00", initiated_by=admin)
    services.fund_wallet(user=distributor, amount="50.00", initiated_by=admin)
    purchase = services.hold_funds(user=retailer, amount="20.00")
    with connection.cursor() as cursor:
        cursor.execute("CLUSTER wallet_wallet USING wallet_wallet_pkey")  # table order = wallet id order
        cursor.execute("ANALYZE wallet_wallet")

    params = connection.get_connection_params()
    blocker, monitor = connection.get_new_connection(params), connection.get_new_connection(params)
    monitor.autocommit = True
    payment_waits = threading.Event()
    try:
        with blocker.cursor() as cursor:
            cursor.execute("SELECT id FROM wallet_wallet WHERE id = %s FOR UPDATE", [wallet_of[distributor.pk]])

        def payment():
            _planner(seqscan=False, bitmapscan=False, hashjoin=False, mergejoin=False)
            return services.transfer_funds(sender=distributor, receiver=retailer, amount="5.00")

        def posting():
            _planner(indexscan=False, indexonlyscan=False, bitmapscan=False, hashjoin=False, mergejoin=False)
            payment_waits.wait(timeout=30)
            commission = services.Payout(user_id=distributor.pk, amount=Decimal("0.40"))
            return services.post_transfer(transfer=purchase, payouts=[commission])

        def conductor():
            _wait_for(lambda: _lock_waiters(monitor) == 1)  # the payment waits on the blocker
            payment_waits.set()
            _wait_for(lambda: _lock_waiters(monitor) == 2)  # the posting waits too
            blocker.commit()

        _, errors = run_together([payment, posting, conductor])
    finally:
        blocker.close()
        monitor.close()
    assert not any(errors), errors
    balances = user_balances([distributor, retailer])
    assert balances == {distributor.pk: Decimal("45.40"), retailer.pk: Decimal("35.00")}
    assert_ledger_clean()


def test_bulk_payouts_and_single_transfers_over_the_same_wallets_never_deadlock_or_lose_money():
    admin = AdminFactory()
    distributor = DistributorFactory()
    retailers = [RetailerFactory(parent=distributor) for _ in range(6)]
    services.fund_wallet(user=distributor, amount="300.00", initiated_by=admin)
    for retailer in retailers:
        services.fund_wallet(user=retailer, amount="10.00", initiated_by=admin)
    everyone = [distributor, *retailers]
    funded = Decimal("360.00")
    rounds = 15

    def payouts(seed):
        rng = random.Random(seed)
        paid = refused = 0
        for _ in range(rounds):
            paid_to = rng.sample(retailers, 4)
            lines = [{"to_user_id": r.pk, "amount": f"{rng.randint(1, 300) / 100:.2f}"} for r in paid_to]
            try:
                services.pay_out(payer=distributor, lines=lines, idempotency_key=f"p{seed}-{paid + refused}")
                paid += 1
            except services.InsufficientFunds:
                refused += 1
        return paid

    def singles(seed):
        rng = random.Random(seed)
        done = 0
        for _ in range(rounds * 2):
            sender, receiver = rng.sample(everyone, 2)
            try:
                services.transfer_funds(sender=sender, receiver=receiver, amount=Decimal(rng.randint(1, 500)) / 100)
                done += 1
            except services.InsufficientFunds:
                pass
        return done

    jobs = [lambda seed=seed: payouts(seed) for seed in range(3)]
    jobs += [lambda seed=seed: singles(seed) for seed in range(3, THREADS)]
    results, errors = run_together(jobs)
    assert not any(errors), errors
    paid = sum(results[:3])
    assert paid > 0 and sum(results[3:]) > 0
    assert Payout.objects.count() == paid and PayoutLine.objects.count() == 4 * paid
    assert sum(user_balances(everyone).values()) == funded
    assert_ledger_clean()
