"""Wallet limits (issue 15, item 4): a client wallet's balance, monthly load and per-transaction
limits by KYC level, checked on every load in the credit's own locked transaction."""

from datetime import timedelta
from decimal import Decimal

import pytest

from accounts.tests.factories import ClientFactory, DistributorFactory, RetailerFactory
from core.roles import KycLevel
from wallet import services
from wallet.tests.helpers import assert_ledger_clean, balance_of, ledger_snapshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_user(db):
    return ClientFactory()


def test_a_minimum_kyc_client_wallet_holds_at_most_ten_thousand(client_user, fund):
    fund(client_user, "10000.00")
    before = ledger_snapshot()
    with pytest.raises(services.BalanceLimitExceeded) as refusal:
        fund(client_user, "0.01")
    assert refusal.value.code == "balance_limit_exceeded" and "0.00 more" in refusal.value.message
    assert ledger_snapshot() == before


def test_a_minimum_kyc_client_loads_at_most_ten_thousand_a_calendar_month(client_user, fund):
    fund(client_user, "6000.00")
    services.debit_wallet(user=client_user, amount="6000.00")
    before = ledger_snapshot()
    with pytest.raises(services.MonthlyLoadLimitExceeded) as refusal:
        fund(client_user, "5000.00")
    assert "4000.00 more" in refusal.value.message
    assert ledger_snapshot() == before
    fund(client_user, "4000.00")  # exactly the rest of the month's allowance
    assert balance_of(client_user) == Decimal("4000.00")


def test_last_months_loads_do_not_count_against_this_month(client_user, fund, monkeypatch):
    from django.utils import timezone

    from wallet.limits import month_start

    last_month = month_start() - timedelta(seconds=1)
    with monkeypatch.context() as patched:
        patched.setattr(timezone, "now", lambda: last_month)
        fund(client_user, "9000.00")
        services.debit_wallet(user=client_user, amount="9000.00")
    fund(client_user, "9000.00")
    assert balance_of(client_user) == Decimal("9000.00")


def test_the_per_transaction_limit_refuses_a_single_large_load(client_user, fund, settings):
    settings.WALLET_LIMITS = {
        **settings.WALLET_LIMITS,
        "MIN_KYC": {**settings.WALLET_LIMITS["MIN_KYC"], "per_transaction": Decimal("500.00")},
    }
    with pytest.raises(services.TransactionLimitExceeded):
        fund(client_user, "500.01")
    fund(client_user, "500.00")


def test_a_full_kyc_client_holds_up_to_two_lakh(client_user, fund):
    client_user.kyc_level = KycLevel.FULL
    client_user.save(update_fields=["kyc_level"])
    fund(client_user, "100000.00")
    fund(client_user, "100000.00")
    with pytest.raises(services.BalanceLimitExceeded):
        fund(client_user, "0.01")
    assert balance_of(client_user) == Decimal("200000.00")


def test_business_wallets_are_unlimited_by_default(fund):
    distributor = DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    for _ in range(5):
        fund(distributor, "100000.00")
    services.transfer_funds(sender=distributor, receiver=retailer, amount="100000.00")
    services.pay_out_in_bulk(payer=distributor, payments=[(retailer.pk, Decimal("100000.00"))] * 3)
    assert balance_of(retailer) == Decimal("400000.00")


def test_a_transfer_into_a_full_client_wallet_is_refused_naming_the_receiving_side(client_user, fund, auth_client):
    sender = ClientFactory()
    fund(sender, "500.00")
    fund(client_user, "9800.00")
    response = auth_client(sender).post(
        "/api/wallet/transfer/", {"to_user_id": client_user.pk, "amount": "300.00"}, format="json"
    )
    assert response.status_code == 400 and response.json()["code"] == "balance_limit_exceeded"
    assert "receiving wallet" in response.json()["detail"] and client_user.username not in response.json()["detail"]
    assert balance_of(sender) == Decimal("500.00") and balance_of(client_user) == Decimal("9800.00")


def test_a_sender_short_of_funds_is_told_so_before_any_limit(client_user, fund):
    sender = ClientFactory()
    fund(client_user, "10000.00")
    with pytest.raises(services.InsufficientFunds):
        services.transfer_funds(sender=sender, receiver=client_user, amount="1.00")


def test_admin_funding_over_the_limit_is_refused_by_the_api(client_user, admin_user, auth_client, fund):
    fund(client_user, "5000.00")
    response = auth_client(admin_user).post(
        "/api/wallet/add-to-wallet/", {"user_id": client_user.pk, "amount": "5000.01"}, format="json"
    )
    assert response.status_code == 400 and response.json()["code"] == "balance_limit_exceeded"
    assert balance_of(client_user) == Decimal("5000.00")


def test_a_bulk_payment_over_a_receivers_limit_moves_nothing(client_user, fund):
    distributor = DistributorFactory()
    fund(distributor, "50000.00")
    before = ledger_snapshot()
    with pytest.raises(services.BalanceLimitExceeded):
        services.pay_out_in_bulk(
            payer=distributor, payments=[(client_user.pk, Decimal("6000.00")), (client_user.pk, Decimal("4000.01"))]
        )
    assert ledger_snapshot() == before


def test_refunds_are_not_loads_and_are_never_refused(client_user, fund):
    fund(client_user, "10000.00")  # the month's allowance is spent
    hold = services.hold_funds(user=client_user, amount="100.00")
    purchase, _ = services.post_transfer(transfer=hold)
    with pytest.raises(services.MonthlyLoadLimitExceeded):
        fund(client_user, "100.00")
    services.refund_transfer(transfer=purchase)
    assert balance_of(client_user) == Decimal("10000.00")
    assert_ledger_clean()


def test_the_balance_shows_the_headroom_left(client_user, fund, auth_client):
    fund(client_user, "2500.00")
    services.debit_wallet(user=client_user, amount="500.00")
    limits = auth_client(client_user).get("/api/wallet/balance/").json()["limits"]
    assert limits == {
        "tier": "MIN_KYC",
        "kyc_level": 1,
        "max_balance": "10000.00",
        "monthly_load": "10000.00",
        "per_transaction": "10000.00",
        "loaded_this_month": "2500.00",
        "balance_headroom": "8000.00",
        "monthly_load_headroom": "7500.00",
        "can_load_now": "7500.00",
    }


def test_a_business_wallets_balance_shows_no_limits(auth_client):
    body = auth_client(RetailerFactory()).get("/api/wallet/balance/").json()
    assert body["limits"]["tier"] == "BUSINESS" and body["limits"]["can_load_now"] is None
    assert body["balance"] == "0.00"


def test_an_admin_sets_a_users_kyc_level_and_its_limits_follow(client_user, admin_user, auth_client, fund):
    response = auth_client(admin_user).patch(
        f"/api/auth/admin/users/{client_user.pk}/update/", {"kyc_level": KycLevel.FULL}, format="json"
    )
    assert response.status_code == 200 and response.json()["kyc_level"] == 2
    client_user.refresh_from_db()
    fund(client_user, "50000.00")
    assert balance_of(client_user) == Decimal("50000.00")


def test_the_django_admin_shows_and_filters_by_kyc_level(client_user, admin_user):
    from django.test import Client
    from django.urls import reverse

    client_user.kyc_level = KycLevel.FULL
    client_user.save(update_fields=["kyc_level"])
    browser = Client()
    browser.force_login(admin_user)
    page = browser.get(reverse("admin:accounts_user_changelist"), {"kyc_level__exact": KycLevel.FULL}).content.decode()
    assert client_user.username in page and "Full KYC" in page and admin_user.username not in page.split("<tbody>")[-1]
    form = browser.get(reverse("admin:accounts_user_change", args=[client_user.pk])).content.decode()
    assert 'name="kyc_level"' in form
