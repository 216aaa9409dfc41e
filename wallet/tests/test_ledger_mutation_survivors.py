"""Behaviours of the ledger's single operations that no test held until mutation testing showed it
(issue 17): what a load-limit refusal tells the client (the field, the side, the limit), the
receiver's limits on a transfer of everything the sender has, the journal rows of a top-up, of a
posting's commissions and of margins taken back, and the row a posting hands back.

Each test here kills one or more surviving mutants of `make mutate` (docs/mutation.md lists them
by name); each asserts what a client reads in a refusal or an auditor reads in the journal, not how
the code is written."""

from decimal import Decimal

import pytest

from accounts.tests.factories import ClientFactory
from wallet import services
from wallet.models import SystemWallet, Transfer
from wallet.tests.helpers import balance_of, ledger_snapshot

pytestmark = pytest.mark.django_db


# --- the side a load-limit refusal names ---------------------------------------------------------


def test_a_transfer_of_everything_the_sender_has_is_still_held_to_the_receivers_limits(client_user, fund):
    """The receiver's limits are skipped only when the sender's funds refuse first; a sender whose
    available balance is exactly the amount is not short of anything."""
    sender = ClientFactory()
    fund(sender, "300.00")
    fund(client_user, "9800.00")
    before = ledger_snapshot()
    with pytest.raises(services.BalanceLimitExceeded) as refusal:
        services.transfer_funds(sender=sender, receiver=client_user, amount="300.00")
    assert "receiving wallet" in str(refusal.value) and "200.00 more" in str(refusal.value)
    assert ledger_snapshot() == before


def test_a_self_top_up_over_the_limit_is_refused_naming_the_callers_own_wallet(client_user, fund, auth_client):
    fund(client_user, "9800.00")
    response = auth_client(client_user).post("/api/wallet/credit/", {"amount": "300.00"}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "balance_limit_exceeded"
    assert response.json()["detail"] == (
        "This would take your wallet above its balance limit of 10000.00; it can take 200.00 more."
    )
    assert balance_of(client_user) == Decimal("9800.00")


@pytest.mark.parametrize("initiated_by", ["nobody", "the owner"])
def test_a_credit_the_owner_makes_is_refused_naming_the_owners_own_wallet(client_user, fund, initiated_by):
    fund(client_user, "9800.00")
    by = None if initiated_by == "nobody" else client_user
    with pytest.raises(services.BalanceLimitExceeded) as refusal:
        services.credit_wallet(user=client_user, amount="300.00", initiated_by=by)
    assert "your wallet" in str(refusal.value) and "receiving" not in str(refusal.value)


def test_an_admins_funding_over_the_limit_is_refused_naming_the_receiving_wallet(
    client_user, admin_user, fund, auth_client
):
    """The admin is told about the account funded, not about "your" (the admin's own) wallet."""
    fund(client_user, "9800.00")
    response = auth_client(admin_user).post(
        "/api/wallet/add-to-wallet/", {"user_id": client_user.pk, "amount": "300.00"}, format="json"
    )
    assert response.status_code == 400 and response.json()["code"] == "balance_limit_exceeded"
    detail = response.json()["detail"]
    assert "receiving wallet" in detail and "your" not in detail
    assert balance_of(client_user) == Decimal("9800.00")


def test_a_paid_top_up_over_the_limit_is_refused_naming_the_payers_own_wallet(client_user, fund):
    """payments.services writes this message into the failed top-up the payer reads."""
    fund(client_user, "9800.00")
    before = ledger_snapshot()
    with pytest.raises(services.BalanceLimitExceeded) as refusal:
        services.credit_top_up(user=client_user, amount="500.00", remarks="Top-up #1 (sbx_1)")
    assert "your wallet" in str(refusal.value) and "receiving" not in str(refusal.value)
    assert ledger_snapshot() == before


# --- a top-up's journal row ----------------------------------------------------------------------


def test_a_top_up_is_recorded_as_the_payers_own_with_its_remarks_and_idempotency_key(client_user):
    row = services.credit_top_up(
        user=client_user, amount="50.00", remarks="Top-up #7 (sbx_abc)", idempotency_key="topup-7"
    )
    row = Transfer.objects.get(pk=row.pk)
    assert (row.kind, row.from_wallet.system_code, row.to_wallet.user_id, row.amount) == (
        Transfer.Kind.TOPUP,
        SystemWallet.PAYMENT_SETTLEMENT,
        client_user.pk,
        Decimal("50.00"),
    )
    assert (row.initiated_by_id, row.remarks, row.idempotency_key) == (
        client_user.pk,
        "Top-up #7 (sbx_abc)",
        "topup-7",
    )


def test_a_top_up_credited_without_remarks_records_none(client_user):
    row = services.credit_top_up(user=client_user, amount="50.00")
    row.refresh_from_db()
    assert (row.remarks, row.idempotency_key) == ("", None)


# --- the commissions of a posting ----------------------------------------------------------------


def test_the_commissions_of_a_posting_are_recorded_as_initiated_by_whoever_made_the_sale(fund, distributor, retailer):
    fund(retailer, "50.00")
    pending = services.hold_funds(user=retailer, amount="20.00")
    _, paid = services.post_transfer(
        transfer=pending, payouts=[services.Payout(user_id=distributor.pk, amount=Decimal("0.20"))]
    )
    rows = Transfer.objects.filter(pk__in=[row.pk for row in paid])
    assert [row.initiated_by_id for row in rows] == [retailer.pk]


# --- taking margins back after a refund ----------------------------------------------------------


@pytest.fixture
def refunded_sale(fund, distributor, retailer):
    """A retailer's sale (reference "P-7") that paid margins of 0.40 (the retailer) and 0.20 (its
    distributor), then was refunded: what purchases.services.refund_purchase takes back from."""
    fund(retailer, "50.00")
    hold = services.hold_funds(user=retailer, amount="20.00", reference="P-7")
    posted, _ = services.post_transfer(
        transfer=hold,
        payouts=[
            services.Payout(user_id=retailer.pk, amount=Decimal("0.40")),
            services.Payout(user_id=distributor.pk, amount=Decimal("0.20")),
        ],
    )
    services.refund_transfer(transfer=posted)
    return hold


def test_margins_taken_back_are_journal_rows_with_their_reason_who_asked_and_the_sale(
    refunded_sale, distributor, retailer, admin_user
):
    """An auditor finds each margin taken back under the sale's reference, with its own remarks and
    the admin who refunded, and the margins under a rupee are taken back like any other."""
    retailer_before, distributor_before = balance_of(retailer), balance_of(distributor)
    margins = [
        services.Payout(user_id=retailer.pk, amount=Decimal("0.40"), remarks="Margin taken back: recharge #7"),
        services.Payout(user_id=distributor.pk, amount=Decimal("0.20"), remarks="Distributor margin taken back: #7"),
    ]
    taken = services.take_back_payouts(payouts=margins, transfer=refunded_sale, initiated_by=admin_user)
    assert [amount for _, amount in taken] == [Decimal("0.40"), Decimal("0.20")]
    rows = Transfer.objects.filter(to_wallet__system_code=SystemWallet.COMMISSION).order_by("pk")
    assert [
        (row.from_wallet.user_id, row.kind, row.amount, row.remarks, row.initiated_by_id, row.reference) for row in rows
    ] == [
        (retailer.pk, "COMMISSION", Decimal("0.40"), "Margin taken back: recharge #7", admin_user.pk, "P-7"),
        (distributor.pk, "COMMISSION", Decimal("0.20"), "Distributor margin taken back: #7", admin_user.pk, "P-7"),
    ]
    assert balance_of(retailer) == retailer_before - Decimal("0.40")
    assert balance_of(distributor) == distributor_before - Decimal("0.20")


def test_the_margins_of_one_refund_are_taken_back_at_one_moment(refunded_sale, distributor, retailer):
    """A statement shows one refund's take-backs together, at the instant they were made."""
    margins = [
        services.Payout(user_id=retailer.pk, amount=Decimal("0.40")),
        services.Payout(user_id=distributor.pk, amount=Decimal("0.20")),
    ]
    services.take_back_payouts(payouts=margins, transfer=refunded_sale)
    rows = Transfer.objects.filter(to_wallet__system_code=SystemWallet.COMMISSION)
    stamps = {(row.created_at, row.updated_at, row.finalized_at) for row in rows}
    assert len(rows) == 2 and len(stamps) == 1
    (stamp,) = stamps
    assert len(set(stamp)) == 1


def test_a_margin_rounded_down_to_nothing_is_not_taken_back_and_refuses_nothing(refunded_sale, distributor, retailer):
    """A margin rounded down to the paisa can be 0.00 (post_transfer pays nothing for it): taking it
    back is not an invalid amount, and a refund whose margins are all zero takes nothing back."""
    distributor_margin = services.Payout(user_id=distributor.pk, amount=Decimal("0.20"))
    margins = [services.Payout(user_id=retailer.pk, amount=Decimal("0.00")), distributor_margin]
    assert services.take_back_payouts(payouts=margins, transfer=refunded_sale) == [
        (distributor_margin, Decimal("0.20"))
    ]
    before = ledger_snapshot()
    zero = [services.Payout(user_id=retailer.pk, amount=Decimal("0.00"))]
    assert services.take_back_payouts(payouts=zero, transfer=refunded_sale) == []
    assert ledger_snapshot() == before


# --- load-limit refusals, as the client reads them -------------------------------------------------


@pytest.mark.parametrize(
    ("setup", "amount", "code", "detail"),
    [
        (
            "per_transaction",
            "500.01",
            "transaction_limit_exceeded",
            "At most 500.00 can go into the receiving wallet in one transaction.",
        ),
        (
            "balance",
            "300.00",
            "balance_limit_exceeded",
            "This would take the receiving wallet above its balance limit of 10000.00; it can take 200.00 more.",
        ),
        (
            "monthly_load",
            "5000.00",
            "monthly_load_limit_exceeded",
            "This would take what the receiving wallet loaded this month above its limit of 10000.00; "
            "it can take 4000.00 more.",
        ),
    ],
)
def test_a_load_limit_refusal_names_the_amount_field_the_side_the_limit_and_the_room_left(
    client_user, fund, auth_client, settings, setup, amount, code, detail
):
    """A client form puts the message under the field it names; the sender learns which side refused
    and how much it could send instead, never whose wallet."""
    sender = ClientFactory()
    fund(sender, "9000.00")
    if setup == "per_transaction":
        settings.WALLET_LIMITS = {
            **settings.WALLET_LIMITS,
            "MIN_KYC": {**settings.WALLET_LIMITS["MIN_KYC"], "per_transaction": Decimal("500.00")},
        }
    elif setup == "balance":
        fund(client_user, "9800.00")
    else:
        fund(client_user, "6000.00")
        services.debit_wallet(user=client_user, amount="6000.00")
    before = ledger_snapshot()
    response = auth_client(sender).post(
        "/api/wallet/transfer/", {"to_user_id": client_user.pk, "amount": amount}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"detail": detail, "code": code, "errors": {"amount": [detail]}}
    assert ledger_snapshot() == before


# --- the row a posting returns -------------------------------------------------------------------


def test_the_row_a_posting_returns_is_known_to_django_as_the_stored_row(fund):
    """Both ways of writing a posting (the ORM's INSERT, PostgreSQL's one statement) hand back a row
    Django treats as saved: validating it does not take it for a second refund of the same sale
    (`refund_of` is unique)."""
    buyer = ClientFactory()
    fund(buyer, "10.00")
    posted, _ = services.post_transfer(transfer=services.hold_funds(user=buyer, amount="4.00"))
    refund = services.refund_transfer(transfer=posted)
    refund.validate_unique()  # raises ValidationError if the returned row counted as a new one
    assert Transfer.objects.get(refund_of=posted).pk == refund.pk
