"""What a newcomer met on a fresh clone (issue 14, item 10): each answer as the rest of the API."""

import logging
import re

import pytest
from django.conf import settings as django_settings

from accounts.tests.factories import AdminFactory
from plans.models import Provider, RechargePlan
from tests.helpers import client_for
from wallet import services

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin():
    return AdminFactory()


@pytest.fixture
def catalogue():
    jio = Provider.objects.create(code="jio", name="Jio")
    data = RechargePlan.objects.create(provider=jio, code="d1", amount="19.00", validity_days=1, plan_type="DATA")
    RechargePlan.objects.create(provider=jio, code="p1", amount="199.00", validity_days=28, plan_type="PREPAID")
    return data


@pytest.mark.parametrize("typed", ["data", "Data", "DATA"])
def test_a_choice_filter_takes_the_case_users_type(admin, catalogue, typed):
    response = client_for(admin).get("/api/plans/plans/", {"plan_type": typed})
    assert response.status_code == 200, response.content
    assert [plan["id"] for plan in response.json()["results"]] == [catalogue.pk]


def test_transfer_kind_and_status_filters_take_any_case(admin):
    services.fund_wallet(user=AdminFactory(), amount="5.00", initiated_by=admin)
    api = client_for(admin)
    upper = api.get("/api/wallet/transactions/", {"kind": "FUND", "status": "POSTED"}).json()["results"]
    lower = api.get("/api/wallet/transactions/", {"kind": "fund", "status": "posted"}).json()["results"]
    assert len(upper) == 1 and lower == upper


@pytest.mark.parametrize(
    "path", ["/api/wallet/wallets/", "/api/wallet/transactions/", "/api/plans/plans/", "/api/purchases/history/"]
)
def test_an_unknown_ordering_is_a_400_naming_the_parameter(admin, path):
    response = client_for(admin).get(path, {"ordering": "bogus"})
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "invalid_ordering" and list(response.json()["errors"]) == ["ordering"]
    assert (
        client_for(admin).get(path, {"ordering": "-created_at" if "plans" not in path else "amount"}).status_code == 200
    )


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_api_path_answers_a_json_404_in_the_error_shape(admin, settings, debug):
    settings.DEBUG = debug  # DEBUG's own 404 page is HTML
    response = client_for(admin).get("/api/no-such-thing/")
    assert response.status_code == 404 and response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Not found.", "code": "not_found"}


def test_a_path_missing_its_slash_is_still_redirected(admin):
    response = client_for(admin).get("/api/wallet/balance")
    assert response.status_code == 301 and response.url == "/api/wallet/balance/"


def test_log_lines_say_their_time_zone():
    formatter = logging.Formatter(
        **{key.replace("format", "fmt"): value for key, value in django_settings.LOGGING["formatters"]["plain"].items()}
    )
    line = formatter.format(logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None))
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} INFO x hello$", line), line
