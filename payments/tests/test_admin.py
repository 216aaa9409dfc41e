from decimal import Decimal

import pytest
from django.contrib.admin.sites import site
from django.test import Client
from django.urls import reverse

from accounts.tests.factories import ClientFactory
from payments import services
from payments.models import SandboxPayment, TopUp
from payments.tests.helpers import event_body, pay_in_sandbox, post_webhook
from wallet.tests.helpers import assert_ledger_clean, balance_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_browser(admin_user):
    browser = Client()
    browser.force_login(admin_user)
    return browser


@pytest.mark.parametrize("model", [TopUp, SandboxPayment])
def test_nobody_adds_changes_or_deletes_top_ups_in_the_admin(rf, admin_user, model):
    request = rf.get("/")
    request.user = admin_user
    model_admin = site._registry[model]
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, None)
    assert not model_admin.has_delete_permission(request, None)


def test_the_top_up_list_shows_status_provider_reference_and_age(admin_browser):
    top_up = services.create_top_up(user=ClientFactory(), amount=Decimal("75.00"))
    page = admin_browser.get(reverse("admin:payments_topup_changelist"), {"status": "PENDING"}).content.decode()
    assert top_up.provider_reference in page and "Pending" in page and "minute" in page
    assert admin_browser.get(reverse("admin:payments_topup_change", args=[top_up.pk])).status_code == 200
    assert admin_browser.get(reverse("admin:payments_sandboxpayment_changelist")).status_code == 200


def test_the_refund_action_gives_a_succeeded_top_up_back_and_debits_the_wallet(admin_browser, api_client):
    payer = ClientFactory()
    top_up = services.create_top_up(user=payer, amount=Decimal("75.00"))
    pay_in_sandbox(top_up)
    post_webhook(api_client, event_body(top_up))
    pending = services.create_top_up(user=payer, amount=Decimal("5.00"))
    response = admin_browser.post(
        reverse("admin:payments_topup_changelist"),
        {"action": "refund_to_payer", "_selected_action": [top_up.pk, pending.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert f"Top-up #{top_up.pk} refunded" in page and f"Top-up #{pending.pk} is pending" in page
    top_up.refresh_from_db()
    assert top_up.status == "REFUNDED" and balance_of(payer) == 0
    assert_ledger_clean()
