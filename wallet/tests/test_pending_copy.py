"""Posting or voiding a pending transfer by the caller's copy of it: the copy names the wallets to lock."""

import copy
from decimal import Decimal

import pytest

from accounts.tests.factories import AdminFactory, RetailerFactory
from wallet import services
from wallet.models import SystemWallet, Transfer, Wallet

pytestmark = pytest.mark.django_db


@pytest.fixture
def hold():
    buyer = RetailerFactory()
    services.fund_wallet(user=buyer, amount="100.00", initiated_by=AdminFactory())
    return services.hold_funds(user=buyer, amount="40.00", reference="P-test")


def test_a_copy_naming_other_wallets_is_refused_and_nothing_moves(hold):
    other = RetailerFactory().wallet
    forged = copy.copy(hold)
    forged.from_wallet_id = other.pk
    with pytest.raises(ValueError, match="other wallets"):
        services.post_transfer(transfer=forged)
    assert Transfer.objects.get(pk=hold.pk).status == Transfer.Status.PENDING
    buyer = Wallet.objects.get(pk=hold.from_wallet_id)
    assert (buyer.balance, buyer.held) == (Decimal("100.00"), Decimal("40.00"))


def test_a_stale_copy_still_posts_its_own_wallets(hold):
    stale = Transfer.objects.get(pk=hold.pk)
    posted, _ = services.post_transfer(transfer=stale)
    buyer = Wallet.objects.get(pk=hold.from_wallet_id)
    assert posted.status == Transfer.Status.POSTED
    assert (buyer.balance, buyer.held) == (Decimal("60.00"), Decimal("0.00"))


def test_a_bare_transfer_is_read_for_its_wallets(hold):
    services.void_transfer(transfer=Transfer(pk=hold.pk))
    buyer = Wallet.objects.get(pk=hold.from_wallet_id)
    assert Transfer.objects.get(pk=hold.pk).status == Transfer.Status.VOIDED
    assert (buyer.balance, buyer.held) == (Decimal("100.00"), Decimal("0.00"))


def test_the_initiator_is_given_one_way_only(hold):
    buyer = Wallet.objects.get(pk=hold.from_wallet_id)
    treasury = services.system_wallet(code=SystemWallet.TREASURY)
    with pytest.raises(TypeError, match="not both"):
        services._move(
            source=treasury,
            destination=buyer,
            amount=Decimal("1.00"),
            kind=Transfer.Kind.CREDIT,
            initiated_by=buyer.user,
            initiated_by_id=buyer.user_id,
        )
