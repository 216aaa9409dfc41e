from io import StringIO

import pytest
from django.core.management import call_command

from accounts.models import User, UserMargin
from purchases.models import Purchase
from purchases.tests.helpers import assert_ledger_clean, assert_purchases_match_ledger
from wallet.models import Transfer, Wallet

pytestmark = pytest.mark.django_db


def state():
    return {
        "users": sorted(User.objects.values_list("username", flat=True)),
        "balances": sorted(Wallet.objects.filter(user__isnull=False).values_list("user__username", "balance", "held")),
        "transfers": Transfer.objects.count(),
        "purchases": sorted(Purchase.objects.values_list("idempotency_key", "status")),
        "margins": sorted(UserMargin.objects.values_list("user__username", "margin_percentage")),
    }


def test_setup_demo_data_builds_a_living_system_and_prints_the_logins():
    out = StringIO()

    call_command("setup_demo_data", force=True, stdout=out)

    printed = out.getvalue()
    assert "retailer_delhi" in printed and "Demo-Pass-2024!" in printed and "+917000000021" in printed
    retailer = User.objects.get(username="retailer_delhi")
    assert retailer.parent.username == "distributor_north"
    assert retailer.wallet.balance > 0
    assert set(Purchase.objects.values_list("status", flat=True)) == {"SUCCESS", "FAILED", "PENDING"}
    assert Transfer.objects.filter(kind=Transfer.Kind.COMMISSION).exists()
    assert_purchases_match_ledger()
    assert_ledger_clean()


def test_setup_demo_data_twice_creates_nothing_and_moves_no_money():
    call_command("setup_demo_data", force=True, stdout=StringIO())
    first = state()

    out = StringIO()
    call_command("setup_demo_data", force=True, stdout=out)

    assert state() == first
    assert "users created: 0, margins set: 0, fundings: 0, purchases: 0" in out.getvalue()


def test_setup_demo_data_does_not_precreate_the_seed_phones():
    call_command("setup_demo_data", force=True, stdout=StringIO())
    assert not User.objects.filter(phone_number__in=["+919999999999", "+918888888888", "+1234567890"]).exists()
