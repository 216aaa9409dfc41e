"""Random sequences of ledger operations against a plain in-memory model (hypothesis).

After every step each wallet's balance and held amount equal the model's, and every invariant of
ledger.md holds over the whole database (wallet.reconciliation.verify_ledger).
"""

import os
import re
from decimal import Decimal
from functools import partial

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule, run_state_machine_as_test

from accounts.tests.factories import AdminFactory, ClientFactory
from core.money import InvalidAmount
from wallet import services
from wallet.models import Transfer, Wallet
from wallet.reconciliation import verify_ledger

settings.register_profile(
    "ledger",
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

VALID = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("80.00"), places=2)
INVALID = st.sampled_from(
    [Decimal("-5"), 0, "0", "1.005", "abc", None, "1e9999", 10.5, True, "NaN", "Infinity", Decimal("100000.01"), "", []]
)
AMOUNTS = st.one_of(VALID, VALID.map(str), INVALID)
USERS = st.integers(min_value=0, max_value=2)


def _valid(amount):
    """The model's own rule for an amount, written independently of the service under test: digits
    with at most two decimals, above zero, at most the 100000.00 default maximum."""
    if isinstance(amount, bool) or not isinstance(amount, (Decimal, int, str)):
        return None
    text = str(amount)
    if re.fullmatch(r"[0-9]+(\.[0-9]{1,2})?", text) is None:
        return None
    value = Decimal(text)
    return value if Decimal("0") < value <= Decimal("100000.00") else None


class LedgerMachine(RuleBasedStateMachine):
    pending = Bundle("pending")

    def __init__(self):
        super().__init__()
        self.admin = AdminFactory()
        self.users = [ClientFactory() for _ in range(3)]
        self.balance = [Decimal("0.00")] * 3
        self.held = [Decimal("0.00")] * 3

    def _expect(self, source, amount, operation):
        """Run `operation`; the model says whether it must succeed, or which refusal it must give."""
        value = _valid(amount)
        if value is None:
            with pytest.raises(InvalidAmount):
                operation()
            return None
        if source is not None and self.balance[source] - self.held[source] < value:
            with pytest.raises(services.InsufficientFunds):
                operation()
            return None
        operation()
        return value

    @rule(user=USERS, amount=AMOUNTS)
    def credit(self, user, amount):
        if value := self._expect(None, amount, lambda: services.credit_wallet(user=self.users[user], amount=amount)):
            self.balance[user] += value

    @rule(user=USERS, amount=AMOUNTS)
    def fund(self, user, amount):
        operation = partial(services.fund_wallet, user=self.users[user], amount=amount, initiated_by=self.admin)
        if value := self._expect(None, amount, operation):
            self.balance[user] += value

    @rule(user=USERS, amount=AMOUNTS)
    def debit(self, user, amount):
        if value := self._expect(user, amount, lambda: services.debit_wallet(user=self.users[user], amount=amount)):
            self.balance[user] -= value

    @rule(user=USERS, amount=AMOUNTS)
    def defund(self, user, amount):
        operation = partial(services.defund_wallet, user=self.users[user], amount=amount, initiated_by=self.admin)
        if value := self._expect(user, amount, operation):
            self.balance[user] -= value

    @rule(sender=USERS, receiver=USERS, amount=AMOUNTS)
    def transfer(self, sender, receiver, amount):
        operation = partial(
            services.transfer_funds, sender=self.users[sender], receiver=self.users[receiver], amount=amount
        )
        if sender == receiver and _valid(amount) is not None:
            with pytest.raises(services.SameWallet):
                operation()
            return
        if value := self._expect(sender, amount, operation):
            self.balance[sender] -= value
            self.balance[receiver] += value

    @rule(target=pending, user=USERS, amount=AMOUNTS)
    def hold(self, user, amount):
        created = []
        if value := self._expect(
            user, amount, lambda: created.append(services.hold_funds(user=self.users[user], amount=amount))
        ):
            self.held[user] += value
            return (created[0].pk, user, value)
        return None

    @rule(entry=consumes(pending), commission=st.one_of(st.none(), VALID))
    def post(self, entry, commission):
        if entry is None:
            return
        pk, user, value = entry
        payouts = [services.Payout(user_id=self.users[user].pk, amount=commission)] if commission else []
        services.post_transfer(transfer=Transfer(pk=pk), payouts=payouts)
        self.held[user] -= value
        self.balance[user] += (commission or 0) - value
        with pytest.raises(services.TransferNotPending):
            services.void_transfer(transfer=Transfer(pk=pk))

    @rule(entry=consumes(pending))
    def void(self, entry):
        if entry is None:
            return
        pk, user, value = entry
        services.void_transfer(transfer=Transfer(pk=pk))
        self.held[user] -= value
        with pytest.raises(services.TransferNotPending):
            services.post_transfer(transfer=Transfer(pk=pk))

    @invariant()
    def wallets_match_the_model_and_the_ledger_holds(self):
        stored = dict(Wallet.objects.filter(user__in=self.users).values_list("user_id", "balance"))
        held = dict(Wallet.objects.filter(user__in=self.users).values_list("user_id", "held"))
        assert [stored[u.pk] for u in self.users] == self.balance
        assert [held[u.pk] for u in self.users] == self.held
        report = verify_ledger()
        assert report.ok, report.mismatches


@pytest.mark.django_db
def test_random_ledger_operations_keep_every_balance_and_invariant():
    profile = settings.get_profile("ledger")
    if os.environ.get("MUTANT_UNDER_TEST"):
        # Under `make mutate` (docs/mutation.md) the first failing sequence is enough to kill a
        # mutant; shrinking it to the shortest one took minutes per mutant on a loaded machine.
        profile = settings(profile, phases=[Phase.explicit, Phase.reuse, Phase.generate])
    run_state_machine_as_test(LedgerMachine, settings=profile)
