"""The first seed's business workflow, end to end through the API, as its README describes it:
admin creates and funds a distributor and sets its margin; the distributor creates a retailer,
funds it and sets its margin; the retailer recharges a customer's phone; everyone earns their
margin; a failed recharge gives the money back."""

from decimal import Decimal

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.tests.factories import DEFAULT_PASSWORD, AdminFactory
from purchases.gateways import SandboxGateway
from purchases.tests.helpers import assert_ledger_clean, assert_purchases_match_ledger

pytestmark = pytest.mark.django_db


def signed_in(email, password):
    client = APIClient()
    response = client.post("/api/auth/login/email/", {"email": email, "password": password})
    assert response.status_code == 200, response.data
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.data['access']}")
    return client


def ok(response, status=200):
    assert response.status_code == status, (response.status_code, response.data)
    return response.data


def balance_of(client):
    return Decimal(ok(client.get("/api/wallet/balance/"))["balance"])


def test_first_seed_workflow_end_to_end(capsys):
    call_command("populate_plans")
    admin_user = AdminFactory(email="owner@example.com")
    admin = signed_in(admin_user.email, DEFAULT_PASSWORD)

    # 1. System setup: the seed's exact sample calls.
    created = ok(
        admin.post(
            "/api/auth/admin/users/create/",
            {
                "email": "distributor@example.com",
                "username": "distributor",
                "first_name": "John",
                "last_name": "Distributor",
                "phone": "+1234567890",
                "user_type": 2,
                "password": "SecurePass123!",
                "password_confirm": "SecurePass123!",
            },
        ),
        201,
    )
    assert created["message"] == "User created successfully"
    assert (created["user"]["wallet_balance"], created["user"]["user_type_display"]) == ("0.00", "Distributor")
    ok(
        admin.post(
            "/api/wallet/add-to-wallet/",
            {"user_email": "distributor@example.com", "amount": "1000.00", "description": "Initial wallet funding"},
        ),
        201,
    )
    listed = ok(admin.get("/api/auth/admin/users/", {"user_type": 2}))["results"]
    assert [(row["email"], row["wallet_balance"]) for row in listed] == [("distributor@example.com", "1000.00")]
    ok(admin.post("/api/wallet/set-margin/", {"user_email": "distributor@example.com", "margin_percentage": "4.00"}))

    # 2. Distributor operations.
    distributor = signed_in("distributor@example.com", "SecurePass123!")
    ok(
        distributor.post(
            "/api/auth/retailers/",
            {
                "username": "corner_shop",
                "email": "shop@example.com",
                "phone_number": "9876500001",
                "password": "ShopPass123!",
                "password_confirm": "ShopPass123!",
            },
        ),
        201,
    )
    ok(
        distributor.post(
            "/api/wallet/transfer/", {"to_email": "shop@example.com", "amount": "600.00", "remarks": "float"}
        ),
        201,
    )
    ok(distributor.post("/api/wallet/set-margin/", {"user_email": "shop@example.com", "margin_percentage": "2.50"}))

    # 3. Retailer operations: browse the catalogue, recharge a customer's phone.
    retailer = signed_in("shop@example.com", "ShopPass123!")
    plans = ok(retailer.get("/api/plans/plans/", {"provider": "jio", "min_amount": "299", "max_amount": "299"}))
    plan = next(row for row in plans["results"] if row["plan_type"] == "PREPAID")
    bought = ok(
        retailer.post(
            "/api/purchases/purchase/",
            {"plan_id": plan["id"], "mobile_number": "9812345678"},
            HTTP_IDEMPOTENCY_KEY="shop-recharge-1",
        ),
        202,
    )
    assert bought["purchase"]["status"] == "SUCCESS"
    # Everyone earns its margin on the 299 sale, rounded down: 2.5% = 7.475 -> 7.47, 4% = 11.96.
    assert (bought["purchase"]["buyer_commission"], bought["purchase"]["distributor_commission"]) == ("7.47", "11.96")
    assert bought["balance"] == "308.47"  # 600 - 299 + 7.47
    assert balance_of(distributor) == Decimal("411.96")  # 1000 - 600 + 11.96

    # 4. A failed recharge gives the money back.
    failed = ok(
        retailer.post("/api/purchases/purchase/", {"plan_id": plan["id"], "mobile_number": SandboxGateway.FAILS}), 202
    )
    assert failed["purchase"]["status"] == "FAILED"
    assert balance_of(retailer) == Decimal("308.47")
    assert balance_of(distributor) == Decimal("411.96")

    # 5. Purchase history, seen by the retailer and by its distributor.
    assert ok(retailer.get("/api/purchases/history/"))["count"] == 2
    assert ok(distributor.get("/api/purchases/history/", {"status": "SUCCESS"}))["count"] == 1
    assert_purchases_match_ledger()
    assert_ledger_clean()
