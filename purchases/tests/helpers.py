import json
from decimal import Decimal

from django.utils import timezone

from accounts.models import UserMargin
from purchases.models import Purchase
from wallet import services as ledger
from wallet.models import Wallet


def fund(user, amount, admin=None):
    return ledger.fund_wallet(user=user, amount=Decimal(amount), remarks="test funding", initiated_by=admin)


def give_margin(user, percentage):
    UserMargin.objects.update_or_create(user=user, defaults={"margin_percentage": Decimal(percentage)})


def balances(*users):
    """(balance, held) of each user's wallet, fresh from the database."""
    wallets = {w.user_id: w for w in Wallet.objects.filter(user__in=users)}
    return [(wallets[u.pk].balance, wallets[u.pk].held) for u in users]


def assert_purchases_match_ledger():
    """Every purchase's journal rows agree with its status: SUCCESS has its PURCHASE transfer
    posted and each recorded commission paid exactly once; FAILED has it voided and no commission;
    PENDING has it still pending. Exactly one PURCHASE transfer per purchase; every leg carries the
    purchase's reference."""
    from purchases.models import Purchase
    from wallet.models import Transfer

    expected_hold = {"SUCCESS": "POSTED", "FAILED": "VOIDED", "PENDING": "PENDING"}
    for purchase in Purchase.objects.all():
        legs = Transfer.objects.filter(reference=purchase.reference)
        holds = list(legs.filter(kind=Transfer.Kind.PURCHASE).values_list("status", "amount"))
        assert holds == [(expected_hold[purchase.status], purchase.amount)], (purchase, holds)
        paid = sorted(legs.filter(kind=Transfer.Kind.COMMISSION).values_list("amount", flat=True))
        owed = [purchase.buyer_commission, purchase.distributor_commission]
        if purchase.status == "FAILED":
            assert owed == [0, 0], (purchase, owed)  # a failed sale shows that it paid nobody
        if purchase.status != "SUCCESS":
            owed = []
        assert paid == sorted(amount for amount in owed if amount > 0), (purchase, paid, owed)


def assert_ledger_clean():
    """`manage.py verify_ledger` (the wallet app's reconciliation) passes: it raises CommandError
    on any mismatch."""
    from io import StringIO

    from django.core.management import call_command

    call_command("verify_ledger", stdout=StringIO(), stderr=StringIO())


def queue_fulfilments(monkeypatch, *, broker_down=False) -> list:
    """Make purchases behave as with a broker: the fulfilment is enqueued (its purchase id appended to
    the returned list) instead of running in process. With `broker_down`, enqueueing fails."""
    from purchases import services, tasks

    queued = []

    def apply_async(args=None, kwargs=None, **options):
        if broker_down:
            raise ConnectionRefusedError("broker down (test)")
        queued.append(kwargs["purchase_id"])

    monkeypatch.setattr(services, "fulfilled_in_process", lambda: False)
    monkeypatch.setattr(tasks.fulfil_purchase, "apply_async", apply_async)
    return queued


def age_purchase(purchase_id, *, created=None, sent=None):
    """Move a purchase's creation and send back in time by the given timedeltas (a test's clock)."""
    fields = {}
    if created is not None:
        fields["created_at"] = timezone.now() - created
    if sent is not None:
        fields["sent_at"] = timezone.now() - sent
    Purchase.objects.filter(pk=purchase_id).update(**fields)


class FakeAggregatorEndpoint:
    """urllib.request.urlopen as the sandbox's senders call it: records each callback (its body and
    signature header) and answers `status` (an int) or raises it (an exception)."""

    def __init__(self, status=200):
        self.status, self.sent = status, []

    def __call__(self, request, timeout):
        import urllib.error

        self.sent.append((json.loads(request.data), request.get_header("X-signature"), request.data))
        if isinstance(self.status, Exception):
            raise self.status
        if self.status >= 400:
            raise urllib.error.HTTPError(request.full_url, self.status, "refused", {}, None)
        status = self.status

        class Answer:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

        Answer.status = status
        return Answer()
