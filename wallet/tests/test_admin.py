from decimal import Decimal

import pytest
from django.contrib.admin.sites import site
from django.test import Client
from django.urls import reverse

from wallet.models import Transfer, Wallet
from wallet.tests.helpers import assert_ledger_clean, balance_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(admin_user):
    # force_login: Client.login() calls authenticate() without a request, which the login lockout
    # (django-axes) refuses; signing in through the admin's form is what tests/security covers.
    browser = Client()
    browser.force_login(admin_user)
    return browser


@pytest.mark.parametrize("model", [Transfer, Wallet])
def test_nobody_adds_changes_or_deletes_journal_rows_or_wallets_not_even_a_superuser(rf, admin_user, model):
    request = rf.get("/")
    request.user = admin_user
    model_admin = site._registry[model]
    assert admin_user.is_superuser
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, None)
    assert not model_admin.has_delete_permission(request, None)


def test_the_journal_and_wallet_lists_render_with_search_and_filters(admin_browser, distributor, fund):
    fund(distributor, "10.00")
    journal = admin_browser.get(
        reverse("admin:wallet_transfer_changelist"), {"q": distributor.username, "kind": "FUND"}
    )
    assert journal.status_code == 200 and distributor.username in journal.content.decode()
    wallets = admin_browser.get(reverse("admin:wallet_wallet_changelist"), {"q": distributor.phone_number})
    assert wallets.status_code == 200 and "10.00" in wallets.content.decode()
    transfer = Transfer.objects.get()
    assert admin_browser.get(reverse("admin:wallet_transfer_change", args=[transfer.pk])).status_code == 200
    assert admin_browser.post(reverse("admin:wallet_transfer_delete", args=[transfer.pk])).status_code == 403


def test_the_admin_funds_and_debits_a_wallet_through_the_service(admin_browser, admin_user, retailer):
    page = reverse("admin:wallet_wallet_move_money", args=[retailer.wallet.pk])
    assert admin_browser.get(page).status_code == 200
    form = {"operation": "FUND", "amount": "100.00", "description": "float", "token": "t1"}
    assert admin_browser.post(page, form).status_code == 302
    assert admin_browser.post(page, form).status_code == 302  # a double submit moves money once
    admin_browser.post(page, {"operation": "DEFUND", "amount": "30.00", "description": "", "token": "t2"})
    assert balance_of(retailer) == Decimal("70.00")
    assert list(Transfer.objects.order_by("id").values_list("kind", "initiated_by")) == [
        ("FUND", admin_user.pk),
        ("DEFUND", admin_user.pk),
    ]
    assert_ledger_clean()


def test_the_admin_debit_form_refuses_more_than_the_balance(admin_browser, retailer):
    page = reverse("admin:wallet_wallet_move_money", args=[retailer.wallet.pk])
    response = admin_browser.post(page, {"operation": "DEFUND", "amount": "1.00", "token": "t"})
    assert response.status_code == 200 and "Insufficient funds" in response.content.decode()
    assert Transfer.objects.count() == 0


def test_a_staff_user_who_is_not_an_admin_cannot_move_money(distributor, retailer):
    distributor.is_staff = True
    distributor.save()
    browser = Client()
    browser.force_login(distributor)
    page = reverse("admin:wallet_wallet_move_money", args=[retailer.wallet.pk])
    assert browser.post(page, {"operation": "FUND", "amount": "1.00", "token": "t"}).status_code == 403
    assert Transfer.objects.count() == 0


def test_the_fund_action_leads_to_the_form_for_one_wallet(admin_browser, retailer):
    response = admin_browser.post(
        reverse("admin:wallet_wallet_changelist"),
        {"action": "fund_or_debit", "_selected_action": [retailer.wallet.pk]},
    )
    assert response.status_code == 302
    assert response.url == reverse("admin:wallet_wallet_move_money", args=[retailer.wallet.pk])


def test_the_admin_form_accepts_the_smallest_amount(admin_browser, retailer):
    page = reverse("admin:wallet_wallet_move_money", args=[retailer.wallet.pk])
    response = admin_browser.post(page, {"operation": "FUND", "amount": "0.01", "description": "", "token": "min"})
    assert response.status_code == 302
    assert balance_of(retailer) == Decimal("0.01")


def test_a_refused_submit_can_be_corrected_and_sent_again_with_the_same_form(admin_browser, retailer):
    page = reverse("admin:wallet_wallet_move_money", args=[retailer.wallet.pk])
    refused = admin_browser.post(page, {"operation": "DEFUND", "amount": "5.00", "token": "same"})
    assert refused.status_code == 200
    corrected = admin_browser.post(page, {"operation": "FUND", "amount": "5.00", "token": "same"})
    assert corrected.status_code == 302 and balance_of(retailer) == Decimal("5.00")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_submits_of_one_form_move_money_once(admin_user, retailer):
    from tests.concurrency import run_together

    page = reverse("admin:wallet_wallet_move_money", args=[retailer.wallet.pk])
    form = {"operation": "FUND", "amount": "25.00", "description": "double click", "token": "race"}
    browsers = [Client() for _ in range(4)]
    for browser in browsers:
        browser.force_login(admin_user)

    statuses, errors = run_together([lambda b=browser: b.post(page, form).status_code for browser in browsers])
    assert not any(errors), errors
    assert statuses == [302] * 4
    assert balance_of(retailer) == Decimal("25.00")
    assert Transfer.objects.filter(kind="FUND").count() == 1
    assert_ledger_clean()


def test_idempotency_keys_are_read_only_in_the_admin(rf, admin_user, admin_browser):
    from core.models import IdempotencyRecord

    request = rf.get("/")
    request.user = admin_user
    keys = site._registry[IdempotencyRecord]
    assert not (keys.has_add_permission(request) or keys.has_change_permission(request, None))
    assert not keys.has_delete_permission(request, None)
    assert admin_browser.get(reverse("admin:core_idempotencyrecord_changelist")).status_code == 200
