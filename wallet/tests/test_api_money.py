"""Money-moving endpoints: who may call them, what they answer, and what a refusal leaves."""

from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.models import UserMargin
from accounts.tests.factories import ClientFactory, RetailerFactory
from wallet.models import Transfer
from wallet.tests.helpers import assert_ledger_clean, balance_of, ledger_snapshot

pytestmark = pytest.mark.django_db

BAD_AMOUNTS = {
    "negative": "-5",
    "zero": "0",
    "three places": "1.005",
    "not a number": "abc",
    "null": None,
    "infinite exponent": "1e9999",
    "over the maximum": "100000.01",
    "json float": 10.5,
    "nan": "NaN",
    "boolean": True,
    "object": {"value": "1.00"},
    "empty": "",
    "nul byte": "1\x00",
}


def url(name):
    return reverse(f"wallet:{name}")


# --- credit ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin_user", "distributor", "retailer", "client_user"])
def test_every_role_may_top_up_its_own_wallet(request, auth_client, role):
    user = request.getfixturevalue(role)
    response = auth_client(user).post(url("credit"), {"amount": "150.50", "remarks": "Initial top-up"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["balance"] == "150.50" and body["user"] == user.username and body["available"] == "150.50"
    assert body["transfer"]["kind"] == "CREDIT" and body["transfer"]["status"] == "POSTED"
    assert body["transfer"]["amount"] == "150.50" and body["transfer"]["from"]["system"] == "TREASURY"
    assert body["transfer"]["to"]["username"] == user.username and body["transfer"]["to_balance_after"] == "150.50"
    assert balance_of(user) == Decimal("150.50")


def test_credit_refuses_an_anonymous_caller(api_client):
    response = api_client.post(url("credit"), {"amount": "10.00"})
    assert response.status_code == 401 and response.json()["code"] == "not_authenticated"


def test_credit_is_403_with_a_code_when_self_top_up_is_switched_off(settings, auth_client, client_user):
    settings.WALLET_SELF_TOPUP_ENABLED = False
    before = ledger_snapshot()
    response = auth_client(client_user).post(url("credit"), {"amount": "10.00"})
    assert response.status_code == 403 and response.json()["code"] == "self_topup_disabled"
    assert ledger_snapshot() == before


@pytest.mark.parametrize("amount", BAD_AMOUNTS.values(), ids=BAD_AMOUNTS.keys())
@pytest.mark.parametrize("name", ["credit", "debit"])
def test_every_bad_amount_is_400_on_the_amount_and_writes_nothing(auth_client, client_user, fund, name, amount):
    fund(client_user, "50.00")
    before = ledger_snapshot()
    response = auth_client(client_user).post(url(name), {"amount": amount, "remarks": "x"}, format="json")
    assert response.status_code == 400, response.json()
    assert "amount" in response.json()["errors"]
    assert ledger_snapshot() == before


def test_an_amount_field_that_is_missing_is_400(auth_client, client_user):
    response = auth_client(client_user).post(url("credit"), {"remarks": "nothing"})
    assert response.status_code == 400 and "amount" in response.json()["errors"]


def test_an_over_long_remark_is_400_and_writes_nothing(auth_client, client_user):
    before = ledger_snapshot()
    response = auth_client(client_user).post(url("credit"), {"amount": "1.00", "remarks": "x" * 256})
    assert response.status_code == 400 and "remarks" in response.json()["errors"]
    assert ledger_snapshot() == before


# --- debit ----------------------------------------------------------------------------------


def test_debit_takes_money_out_and_answers_the_new_balance(auth_client, retailer, fund):
    fund(retailer, "100.00")
    response = auth_client(retailer).post(url("debit"), {"amount": "40.00", "remarks": "Purchase"})
    assert response.status_code == 201
    assert response.json()["balance"] == "60.00" and response.json()["transfer"]["kind"] == "DEBIT"
    assert response.json()["transfer"]["to"]["system"] == "TREASURY"
    assert balance_of(retailer) == Decimal("60.00")


def test_debit_beyond_the_balance_is_400_insufficient_funds_and_writes_nothing(auth_client, client_user, fund):
    fund(client_user, "30.00")
    before = ledger_snapshot()
    response = auth_client(client_user).post(url("debit"), {"amount": "30.01"})
    assert response.status_code == 400 and response.json()["code"] == "insufficient_funds"
    assert ledger_snapshot() == before


def test_debit_cannot_spend_money_held_by_a_pending_purchase(auth_client, client_user, fund):
    from wallet import services

    fund(client_user, "30.00")
    services.hold_funds(user=client_user, amount="20.00")
    response = auth_client(client_user).post(url("debit"), {"amount": "10.01"})
    assert response.status_code == 400 and response.json()["code"] == "insufficient_funds"


# --- transfer -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["to_phone_number", "to_user_id", "to_email"])
def test_transfer_pays_the_receiver_named_by_phone_id_or_email(auth_client, distributor, retailer, fund, how):
    fund(distributor, "100.00")
    receiver = {"to_phone_number": retailer.phone_number, "to_user_id": retailer.pk, "to_email": retailer.email}
    response = auth_client(distributor).post(url("transfer"), {how: receiver[how], "amount": "25.00"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["balance"] == "75.00" and body["transfer"]["kind"] == "TRANSFER"
    assert body["transfer"]["to"]["username"] == retailer.username
    assert (balance_of(distributor), balance_of(retailer)) == (Decimal("75.00"), Decimal("25.00"))


def test_transfer_accepts_a_national_phone_number(auth_client, fund):
    sender, receiver = ClientFactory(phone_number="+919999999999"), ClientFactory(phone_number="+918888888888")
    fund(sender, "30.00")
    response = auth_client(sender).post(url("transfer"), {"to_phone_number": "8888888888", "amount": "25.00"})
    assert response.status_code == 201 and balance_of(receiver) == Decimal("25.00")


def test_a_transfer_does_not_show_the_sender_the_receivers_balance(auth_client, fund):
    sender, receiver = ClientFactory(), ClientFactory()
    fund(sender, "30.00")
    fund(receiver, "500.00")
    response = auth_client(sender).post(url("transfer"), {"to_user_id": receiver.pk, "amount": "5.00"})
    assert response.json()["transfer"]["from_balance_after"] == "25.00"
    assert response.json()["transfer"]["to_balance_after"] is None


def test_transfer_to_oneself_is_400_same_wallet(auth_client, client_user, fund):
    fund(client_user, "30.00")
    before = ledger_snapshot()
    response = auth_client(client_user).post(url("transfer"), {"to_user_id": client_user.pk, "amount": "5.00"})
    assert response.status_code == 400 and response.json()["code"] == "same_wallet"
    assert ledger_snapshot() == before


def test_a_self_transfer_refusal_names_the_to_field(auth_client, client_user, fund):
    fund(client_user, "30.00")
    response = auth_client(client_user).post(url("transfer"), {"to_user_id": client_user.pk, "amount": "5.00"})
    body = response.json()
    assert response.status_code == 400 and body["code"] == "same_wallet"
    assert body["errors"] == {"to": [body["detail"]]}


def test_transfer_to_an_unknown_phone_is_404_user_not_found(auth_client, client_user, fund):
    fund(client_user, "30.00")
    before = ledger_snapshot()
    response = auth_client(client_user).post(url("transfer"), {"to_phone_number": "+917777777777", "amount": "5.00"})
    assert response.status_code == 404 and response.json()["code"] == "user_not_found"
    assert "to_phone_number" in response.json()["errors"]
    assert ledger_snapshot() == before


def test_transfer_to_a_deactivated_user_is_refused(auth_client, client_user, fund):
    fund(client_user, "30.00")
    gone = ClientFactory(is_active=False)
    before = ledger_snapshot()
    response = auth_client(client_user).post(url("transfer"), {"to_user_id": gone.pk, "amount": "5.00"})
    assert response.status_code == 400 and response.json()["code"] == "wallet_inactive"
    assert ledger_snapshot() == before


def test_transfer_beyond_the_balance_is_400_insufficient_funds_and_writes_nothing(auth_client, client_user, fund):
    other = ClientFactory()
    fund(client_user, "5.00")
    before = ledger_snapshot()
    response = auth_client(client_user).post(url("transfer"), {"to_user_id": other.pk, "amount": "5.01"})
    assert response.status_code == 400 and response.json()["code"] == "insufficient_funds"
    assert ledger_snapshot() == before


@pytest.mark.parametrize(
    "body",
    [
        {"amount": "5.00"},
        {"to_user_id": 1, "to_email": "a@example.com", "amount": "5.00"},
        {"to_phone_number": "not a phone", "amount": "5.00"},
        {"to_user_id": "abc", "amount": "5.00"},
        {"to_user_id": 10**30, "amount": "5.00"},
        {"to_email": "x\x00@example.com", "amount": "5.00"},
    ],
    ids=["no receiver", "two receivers", "bad phone", "bad id", "huge id", "nul email"],
)
def test_transfer_with_a_malformed_receiver_is_400(auth_client, client_user, fund, body):
    fund(client_user, "30.00")
    before = ledger_snapshot()
    response = auth_client(client_user).post(url("transfer"), body, format="json")
    assert response.status_code == 400, response.json()
    assert ledger_snapshot() == before


@pytest.mark.parametrize("amount", BAD_AMOUNTS.values(), ids=BAD_AMOUNTS.keys())
def test_transfer_refuses_every_bad_amount_and_writes_nothing(auth_client, client_user, fund, amount):
    other = ClientFactory()
    fund(client_user, "50.00")
    before = ledger_snapshot()
    response = auth_client(client_user).post(url("transfer"), {"to_user_id": other.pk, "amount": amount}, format="json")
    assert response.status_code == 400 and "amount" in response.json()["errors"]
    assert ledger_snapshot() == before


# --- admin funding --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["user_email", "user_id", "phone_number"])
def test_admin_adds_money_to_a_wallet_named_by_email_id_or_phone(auth_client, admin_user, distributor, how):
    target = {"user_email": distributor.email, "user_id": distributor.pk, "phone_number": distributor.phone_number}
    response = auth_client(admin_user).post(
        url("add-to-wallet"), {how: target[how], "amount": "1000.00", "description": "Initial wallet funding"}
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["transfer"]["kind"] == "FUND" and body["transfer"]["remarks"] == "Initial wallet funding"
    expected = {"user": distributor.username, "balance": "1000.00", "held": "0.00", "available": "1000.00"}
    assert body["wallet"] == expected
    assert body["user"] == admin_user.username and body["balance"] == "0.00"
    assert Transfer.objects.get().initiated_by == admin_user


@pytest.mark.parametrize("role", ["distributor", "retailer", "client_user"])
def test_only_an_admin_may_add_to_or_debit_from_a_wallet(request, auth_client, role, client_user):
    caller = request.getfixturevalue(role)
    for name in ("add-to-wallet", "debit-from-wallet"):
        response = auth_client(caller).post(url(name), {"user_id": client_user.pk, "amount": "10.00"})
        assert response.status_code == 403 and response.json()["code"] == "permission_denied"
    assert Transfer.objects.count() == 0


def test_admin_debits_a_wallet(auth_client, admin_user, retailer, fund):
    fund(retailer, "100.00")
    response = auth_client(admin_user).post(
        url("debit-from-wallet"), {"user_email": retailer.email.upper(), "amount": "60.00", "description": "Fix"}
    )
    assert response.status_code == 201, response.json()
    assert response.json()["transfer"]["kind"] == "DEFUND" and response.json()["wallet"]["balance"] == "40.00"


def test_admin_debit_beyond_the_balance_is_400_and_writes_nothing(auth_client, admin_user, retailer, fund):
    fund(retailer, "10.00")
    before = ledger_snapshot()
    response = auth_client(admin_user).post(url("debit-from-wallet"), {"user_id": retailer.pk, "amount": "10.01"})
    assert response.status_code == 400 and response.json()["code"] == "insufficient_funds"
    assert ledger_snapshot() == before


def test_admin_funding_an_unknown_user_is_404(auth_client, admin_user):
    response = auth_client(admin_user).post(url("add-to-wallet"), {"user_email": "nobody@example.com", "amount": "1"})
    assert response.status_code == 404 and response.json()["code"] == "user_not_found"


@pytest.mark.parametrize("amount", BAD_AMOUNTS.values(), ids=BAD_AMOUNTS.keys())
def test_admin_funding_refuses_every_bad_amount(auth_client, admin_user, retailer, amount):
    before = ledger_snapshot()
    response = auth_client(admin_user).post(
        url("add-to-wallet"), {"user_id": retailer.pk, "amount": amount}, format="json"
    )
    assert response.status_code == 400 and "amount" in response.json()["errors"]
    assert ledger_snapshot() == before


# --- margins --------------------------------------------------------------------------------


def test_admin_sets_anyones_margin(auth_client, admin_user, distributor):
    response = auth_client(admin_user).post(
        url("set-margin"), {"user_email": distributor.email, "margin_percentage": "3.50"}
    )
    assert response.status_code == 200, response.json()
    assert response.json()["margin_percentage"] == "3.50" and response.json()["set_by"] == admin_user.username
    assert UserMargin.objects.get(user=distributor).margin_percentage == Decimal("3.50")


def test_a_distributor_sets_its_own_retailers_margin_up_to_its_own(auth_client, admin_user, distributor, retailer):
    UserMargin.objects.create(user=distributor, margin_percentage=Decimal("4.00"))
    client = auth_client(distributor)
    assert client.post(url("set-margin"), {"user_id": retailer.pk, "margin_percentage": "4.00"}).status_code == 200
    response = client.post(url("set-margin"), {"user_id": retailer.pk, "margin_percentage": "4.01"})
    assert response.status_code == 400 and response.json()["code"] == "margin_above_own"
    assert UserMargin.objects.get(user=retailer).margin_percentage == Decimal("4.00")


def test_a_distributor_cannot_set_another_distributors_retailers_margin(auth_client, distributor):
    stranger = RetailerFactory()
    response = auth_client(distributor).post(url("set-margin"), {"user_id": stranger.pk, "margin_percentage": "0"})
    assert response.status_code == 404 and not UserMargin.objects.filter(user=stranger).exists()


def test_a_distributor_cannot_set_its_own_margin(auth_client, distributor):
    response = auth_client(distributor).post(url("set-margin"), {"user_id": distributor.pk, "margin_percentage": "9"})
    assert response.status_code == 404


@pytest.mark.parametrize("role", ["retailer", "client_user"])
def test_retailers_and_clients_may_not_set_margins(request, auth_client, role, retailer):
    response = auth_client(request.getfixturevalue(role)).post(
        url("set-margin"), {"user_id": retailer.pk, "margin_percentage": "1"}
    )
    assert response.status_code == 403


@pytest.mark.parametrize("margin", ["-1", "100.01", "1.005", "abc", None, "NaN", "1e9999"])
def test_a_margin_outside_0_to_100_with_two_places_is_400(auth_client, admin_user, retailer, margin):
    response = auth_client(admin_user).post(
        url("set-margin"), {"user_id": retailer.pk, "margin_percentage": margin}, format="json"
    )
    assert response.status_code == 400 and "margin_percentage" in response.json()["errors"]


def test_money_moving_endpoints_leave_the_ledger_consistent(auth_client, admin_user, distributor, retailer):
    auth_client(admin_user).post(url("add-to-wallet"), {"user_id": distributor.pk, "amount": "500.00"})
    auth_client(distributor).post(url("transfer"), {"to_user_id": retailer.pk, "amount": "200.00"})
    auth_client(retailer).post(url("debit"), {"amount": "50.00"})
    auth_client(retailer).post(url("credit"), {"amount": "5.00"})
    auth_client(admin_user).post(url("debit-from-wallet"), {"user_id": distributor.pk, "amount": "100.00"})
    assert (balance_of(distributor), balance_of(retailer)) == (Decimal("200.00"), Decimal("155.00"))
    assert_ledger_clean()
