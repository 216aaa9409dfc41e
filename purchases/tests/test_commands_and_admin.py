from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from purchases.gateways import SandboxGateway
from purchases.models import Purchase
from purchases.services import purchase_recharge
from purchases.tests.helpers import fund, give_margin
from wallet.models import Transfer

pytestmark = pytest.mark.django_db


def test_settle_command_settles_old_pending_purchases_and_prints_a_summary(retailer, plan):
    fund(retailer, "1000.00")
    for number in (SandboxGateway.PENDING_THEN_SUCCESS, SandboxGateway.PENDING_THEN_FAILS):
        purchase_recharge(buyer=retailer, plan_id=plan.pk, mobile_number=number)
    out = StringIO()

    call_command("settle_pending_purchases", "--older-than", "0", stdout=out)

    assert sorted(Purchase.objects.values_list("status", flat=True)) == ["FAILED", "SUCCESS"]
    assert "checked 2: 1 succeeded, 1 failed" in out.getvalue()


def test_settle_command_by_default_leaves_a_fresh_pending_purchase_alone(retailer, plan):
    fund(retailer, "1000.00")
    purchase_recharge(buyer=retailer, plan_id=plan.pk, mobile_number=SandboxGateway.PENDING_THEN_SUCCESS)

    call_command("settle_pending_purchases", stdout=StringIO())

    assert Purchase.objects.get().status == Purchase.Status.PENDING


def test_settle_command_refuses_a_negative_age():
    with pytest.raises(CommandError):
        call_command("settle_pending_purchases", "--older-than", "-1", stdout=StringIO())


def test_purchase_admin_lists_with_filters_and_refuses_edits(client, admin_user, retailer, plan):
    fund(retailer, "1000.00")
    purchase = purchase_recharge(buyer=retailer, plan_id=plan.pk, mobile_number="9876543210").purchase
    client.force_login(admin_user)

    listing = client.get("/admin/purchases/purchase/", {"status__exact": "SUCCESS"})
    assert listing.status_code == 200 and purchase.mobile_number in listing.content.decode()
    assert client.get("/admin/purchases/purchase/add/").status_code == 403
    detail = client.post(f"/admin/purchases/purchase/{purchase.pk}/change/", {"status": "FAILED"})
    assert detail.status_code in (200, 403)
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.SUCCESS


def test_plan_admin_lists_plans_with_filters(client, admin_user, plan):
    client.force_login(admin_user)
    response = client.get("/admin/plans/rechargeplan/", {"plan_type__exact": "PREPAID", "q": plan.code})
    assert response.status_code == 200 and plan.code in response.content.decode()
    assert client.get("/admin/plans/provider/").status_code == 200


def test_the_purchase_admin_links_to_its_transfers_in_the_journal(client, admin_user, retailer, plan):
    fund(retailer, "1000.00")
    give_margin(retailer, "2.00")
    purchase = purchase_recharge(buyer=retailer, plan_id=plan.pk, mobile_number="9876543210").purchase
    fund(retailer, "1.00")  # a transfer of no purchase
    client.force_login(admin_user)

    listing = client.get("/admin/purchases/purchase/").content.decode()
    assert f'/admin/wallet/transfer/?q={purchase.reference}"' in listing
    journal = client.get("/admin/wallet/transfer/", {"q": purchase.reference})
    assert [row.pk for row in journal.context["cl"].result_list] == list(
        Transfer.objects.filter(kind__in=["PURCHASE", "COMMISSION"])
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)
    )
