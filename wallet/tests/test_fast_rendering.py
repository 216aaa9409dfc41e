"""The money bodies are rendered by hand for speed; each must equal DRF's own field-by-field
rendering of the same serializer, key for key and in the same order, for every kind of party."""

import pytest
from rest_framework import serializers

from accounts.tests.factories import ClientFactory
from wallet import selectors, services
from wallet.api.serializers import (
    AdminMoneyMovedSerializer,
    BalanceSerializer,
    MoneyMovedSerializer,
    PartySerializer,
    TransferSerializer,
)
from wallet.models import Transfer

pytestmark = pytest.mark.django_db


def drf_rendering(serializer, instance):
    return serializers.Serializer.to_representation(serializer, instance)


def assert_same_body(serializer, instance):
    fast, generic = serializer.to_representation(instance), drf_rendering(serializer, instance)
    assert list(fast.items()) == list(generic.items())


@pytest.fixture
def journal(admin_user, distributor, retailer, fund):
    """A funding (system party), a transfer between users, a pending hold and a refused visibility."""
    fund(distributor, "100.50")
    stranger = ClientFactory()
    moved = services.transfer_funds(sender=distributor, receiver=retailer, amount="25.25", remarks="float")
    held = services.hold_funds(user=retailer, amount="3.00", remarks="recharge")
    paid = services.transfer_funds(sender=retailer, receiver=stranger, amount="1.00")
    return [selectors.all_transfers().get(pk=transfer.pk) for transfer in (moved, held, paid)]


@pytest.mark.parametrize("viewer_name", ["admin_user", "distributor", "retailer", None])
def test_a_journal_row_renders_as_drf_would_for_every_viewer(journal, request, viewer_name):
    viewer = request.getfixturevalue(viewer_name) if viewer_name else None
    funding = selectors.all_transfers().filter(kind=Transfer.Kind.FUND).first()
    for transfer in [funding, *journal]:
        assert_same_body(TransferSerializer(context={"viewer": viewer}), transfer)
        assert_same_body(PartySerializer(), transfer.from_wallet)
        assert_same_body(PartySerializer(), transfer.to_wallet)
    pending = journal[1]
    assert pending.finalized_at is None and TransferSerializer().to_representation(pending)["finalized_at"] is None


def test_the_money_moved_bodies_render_as_drf_would(journal, distributor, retailer):
    transfer = journal[0]
    wallet = selectors.wallet_of(user=distributor)
    moved = {
        "transfer": transfer,
        "user": distributor.username,
        "balance": wallet.balance,
        "held": wallet.held,
        "available": wallet.available,
    }
    context = {"viewer": distributor}
    assert_same_body(MoneyMovedSerializer(context=context), moved)
    assert_same_body(BalanceSerializer(), wallet)
    admin_moved = {**moved, "message": "Wallet funded successfully", "wallet": selectors.wallet_of(user=retailer)}
    assert_same_body(AdminMoneyMovedSerializer(context=context), admin_moved)
    assert MoneyMovedSerializer(moved, context=context).data["balance"] == "75.25"
