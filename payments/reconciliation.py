"""verify_ledger's checks of the top-ups (registered by PaymentsConfig.ready): the wallet credits the
ledger shows for payments equal the top-ups' own record, so the provider's settlement account is
exactly what the provider collected for us and has not refunded."""

from decimal import Decimal

from django.db.models import F, Q, Sum

from payments.models import TopUp
from wallet.models import SystemWallet, Transfer, Wallet

Kind = Transfer.Kind
CREDITED = [TopUp.Status.SUCCEEDED, TopUp.Status.REFUNDED]


def check_top_ups(run):
    posted = Transfer.objects.filter(status=Transfer.Status.POSTED).order_by("pk")
    top_ups = TopUp.objects.order_by()
    run(
        "every TOPUP credit is the credit of one succeeded top-up, to its user, of its amount",
        posted.filter(kind=Kind.TOPUP).count(),
        posted.filter(kind=Kind.TOPUP)
        .filter(
            Q(top_up__isnull=True)
            | ~Q(top_up__status__in=CREDITED)
            | ~Q(top_up__amount=F("amount"))
            | ~Q(top_up__user_id=F("to_wallet__user_id"))
        )
        .values("pk", "amount", "to_wallet_id"),
        lambda t: f"transfer #{t['pk']} TOPUP {t['amount']:.2f} to wallet #{t['to_wallet_id']} matches no top-up",
    )
    run(
        "every TOPUP_REFUND gives back a top-up marked REFUNDED",
        posted.filter(kind=Kind.TOPUP_REFUND).count(),
        posted.filter(kind=Kind.TOPUP_REFUND)
        .filter(Q(top_up_refunded__isnull=True) | ~Q(top_up_refunded__status=TopUp.Status.REFUNDED))
        .values("pk", "amount"),
        lambda t: f"transfer #{t['pk']} TOPUP_REFUND {t['amount']:.2f} matches no refunded top-up",
    )
    settlement = Wallet.objects.filter(system_code=SystemWallet.PAYMENT_SETTLEMENT).first()
    touching = Q(from_wallet=settlement) | Q(to_wallet=settlement) if settlement is not None else Q(pk__in=[])
    run(
        "only top-ups and their refunds move the payment provider's settlement account",
        1,
        posted.filter(touching).exclude(kind__in=[Kind.TOPUP, Kind.TOPUP_REFUND]).values("pk", "kind"),
        lambda t: f"transfer #{t['pk']} {t['kind']} touches {SystemWallet.PAYMENT_SETTLEMENT}",
    )
    derived = Decimal("0.00")
    if settlement is not None:
        incoming = posted.filter(to_wallet=settlement).aggregate(total=Sum("amount"))["total"] or 0
        outgoing = posted.filter(from_wallet=settlement).aggregate(total=Sum("amount"))["total"] or 0
        derived = Decimal(incoming - outgoing).quantize(Decimal("0.01"))
    kept = top_ups.filter(status=TopUp.Status.SUCCEEDED).aggregate(total=Sum("amount"))["total"] or 0
    expected = -Decimal(kept).quantize(Decimal("0.01"))
    run(
        "the payment provider's settlement account = minus the succeeded top-ups not refunded",
        1,
        _Rows([(derived, expected)] if derived != expected else []),
        lambda row: f"{SystemWallet.PAYMENT_SETTLEMENT} is {row[0]:.2f}, the top-ups say {row[1]:.2f}",
    )


class _Rows(list):
    def iterator(self, chunk_size=None):
        return iter(self)
