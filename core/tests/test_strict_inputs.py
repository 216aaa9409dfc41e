"""Inputs are taken as the schema documents them: strings where it says string, nothing converted
behind the client's back (and, in the URL, no NUL bytes)."""

import pytest

from accounts.models import UserMargin

pytestmark = pytest.mark.django_db


def test_a_number_sent_for_a_text_field_is_refused_and_nothing_changes(auth_client, client_user):
    response = auth_client(client_user).patch("/api/auth/me/", {"last_name": 123}, format="json")
    assert response.status_code == 400
    assert "last_name" in response.json()["errors"]
    client_user.refresh_from_db()
    assert client_user.last_name == ""


def test_a_json_number_sent_for_a_decimal_field_is_refused(auth_client, admin_user, retailer):
    response = auth_client(admin_user).post(
        "/api/wallet/set-margin/", {"user_id": retailer.pk, "margin_percentage": 2.5}, format="json"
    )
    assert response.status_code == 400
    assert "margin_percentage" in response.json()["errors"]
    assert not UserMargin.objects.filter(user=retailer).exists()


def test_the_same_decimal_as_a_string_is_accepted(auth_client, admin_user, retailer):
    response = auth_client(admin_user).post(
        "/api/wallet/set-margin/", {"user_id": retailer.pk, "margin_percentage": "2.50"}, format="json"
    )
    assert response.status_code in (200, 201), response.json()
    assert str(UserMargin.objects.get(user=retailer).margin_percentage) == "2.50"


def test_a_nul_byte_in_the_query_string_is_a_400_not_a_database_error(auth_client, admin_user):
    response = auth_client(admin_user).get("/api/wallet/transactions/", {"search": "a\x00b"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


@pytest.mark.parametrize("value", ["0", "-1", "abc", "", "1.5"])
def test_a_malformed_page_parameter_is_a_400_naming_it(auth_client, client_user, value):
    response = auth_client(client_user).get("/api/wallet/transactions/", {"page_size": value})
    assert response.status_code == 400
    assert "page_size" in response.json()["errors"]


def test_an_empty_answer_still_says_it_is_json(auth_client, admin_user):
    from plans.models import Provider, RechargePlan

    plan = RechargePlan.objects.create(provider=Provider.objects.create(code="x", name="X"), code="x1", amount="9.00")
    response = auth_client(admin_user).delete(f"/api/plans/plans/{plan.pk}/")
    assert response.status_code == 204
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize("path", ["/api/wallet/wallets/", "/api/auth/admin/users/"])
def test_a_filter_number_too_large_for_the_database_is_a_400(auth_client, admin_user, path):
    response = auth_client(admin_user).get(path, {"parent": "9" * 26})
    assert response.status_code == 400
    assert "parent" in response.json()["errors"]
