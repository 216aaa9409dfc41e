"""The second seed's manual flow, end to end, at its own paths and under /api/."""

import pytest
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

PATHS = {
    "seed": {
        "send_otp": "/auth/send-otp/",
        "verify_otp": "/auth/verify-otp/",
        "balance": "/wallet/balance/",
        "credit": "/wallet/credit/",
        "debit": "/wallet/debit/",
        "transfer": "/wallet/transfer/",
        "admin_list": "/transactions/admin-list/",
    },
    "api": {
        "send_otp": "/api/auth/otp/generate/",
        "verify_otp": "/api/auth/otp/verify/",
        "balance": "/api/wallet/balance/",
        "credit": "/api/wallet/credit/",
        "debit": "/api/wallet/debit/",
        "transfer": "/api/wallet/transfer/",
        "admin_list": "/api/wallet/admin/transactions/",
    },
}


def login_by_otp(paths, phone):
    anonymous = APIClient()
    sent = anonymous.post(paths["send_otp"], {"phone_number": phone})
    assert sent.status_code == 200, sent.json()
    verified = anonymous.post(paths["verify_otp"], {"phone_number": phone, "otp": sent.json()["otp"]})
    assert verified.status_code == 200, verified.json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {verified.json()['access']}")
    return client, verified.json()["user"]


@pytest.mark.parametrize("where", ["seed", "api"])
def test_the_second_seeds_manual_flow(settings, auth_client, admin_user, where):
    settings.OTP_EXPOSE_IN_RESPONSE = True
    paths = PATHS[where]

    first, first_user = login_by_otp(paths, "9999999999")
    assert first_user["username"] == "user_9999999999"
    balance = first.get(paths["balance"]).json()
    assert {key: balance[key] for key in ("user", "balance", "held", "available")} == {
        "user": "user_9999999999",
        "balance": "0.00",
        "held": "0.00",
        "available": "0.00",
    }
    credited = first.post(paths["credit"], {"amount": "200.00", "remarks": "Initial top-up"})
    assert credited.status_code == 201 and credited.json()["balance"] == "200.00"
    assert first.get(paths["balance"]).json()["balance"] == "200.00"

    second, second_user = login_by_otp(paths, "8888888888")
    paid = first.post(paths["transfer"], {"to_phone_number": "8888888888", "amount": "50.00", "remarks": "Payment"})
    assert paid.status_code == 201, paid.json()
    record = paid.json()["transfer"]
    assert record["transaction_type"] == "TRANSFER" and record["amount"] == "50.00"
    assert (record["sender"], record["receiver"]) == ("user_9999999999", "user_8888888888")
    assert record["from_balance_after"] == "150.00" and record["remarks"] == "Payment"
    assert first.get(paths["balance"]).json()["balance"] == "150.00"
    assert second.get(paths["balance"]).json()["balance"] == "50.00"

    beyond = second.post(paths["debit"], {"amount": "50.01", "remarks": "Purchase"})
    assert beyond.status_code == 400 and beyond.json()["code"] == "insufficient_funds"
    assert second.post(paths["debit"], {"amount": "50.00"}).status_code == 201

    admin = auth_client(admin_user)
    assert first.get(paths["admin_list"]).status_code == 403
    searched = admin.get(paths["admin_list"], {"search": "user_8888888888"}).json()
    assert searched["count"] == 2  # the transfer in, the debit out
    by_type = admin.get(paths["admin_list"], {"search": "TRANSFER"}).json()["results"]
    assert [row["id"] for row in by_type] == [record["id"]]
    ordered = admin.get(paths["admin_list"], {"ordering": "-timestamp"}).json()["results"]
    assert [row["transaction_type"] for row in ordered] == ["DEBIT", "TRANSFER", "CREDIT"]
    by_amount = admin.get(paths["admin_list"], {"ordering": "amount"}).json()["results"]
    assert [row["amount"] for row in by_amount] == ["50.00", "50.00", "200.00"]
