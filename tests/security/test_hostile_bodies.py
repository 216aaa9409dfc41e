"""Hostile request bodies (security issue 12, item 5): nested too deep, malformed, or too large. Each is
refused in the project's error shape (`detail`, `code`) on every endpoint that reads a body, the
anonymous ones included, and never reaches a 500.

Each test names the attack; the deep-nesting and size ones failed on the code before the fix."""

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.tests.factories import AdminFactory, DistributorFactory, RetailerFactory
from plans.tests.factories import RechargePlanFactory
from tests.helpers import client_for
from tests.security.test_authorisation import ALLOWED, MATRIX

pytestmark = pytest.mark.django_db

BODY_METHODS = ("POST", "PUT", "PATCH")
ENDPOINTS = sorted((method, route) for method, route in MATRIX if method in BODY_METHODS)

# Bodies a parser must refuse: (name, bytes). Deep nesting is far past the cap and past the depth at
# which the standard library's parser used to raise RecursionError (a 500).
HOSTILE = {
    "nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "objects nested 5,000 deep": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "nested past the cap inside a field": b'{"amount": ' + b"[" * 40 + b"]" * 40 + b"}",
    "truncated": b'{"email": "a@example.com", "password": ',
    "not JSON": b"email=a@example.com&password=x",
    "NaN": b'{"amount": NaN}',
    "invalid UTF-8": b'{"email": "\xff\xfe"}',
    "a lone surrogate": b'{"email": "\\ud800@example.com"}',
}


@pytest.fixture
def callers(db):
    """A caller allowed on each endpoint, and the ids its `{id}` routes need."""
    admin, distributor = AdminFactory(), DistributorFactory()
    retailer = RetailerFactory(parent=distributor)
    plan = RechargePlanFactory()
    ids = {"api/auth/admin/users/": retailer.pk, "api/auth/retailers/": retailer.pk, "api/plans/plans/": plan.pk}
    sessions = {"anonymous": APIClient(), "admin": client_for(admin), "distributor": client_for(distributor)}
    return sessions, ids


def request_as_allowed_caller(callers, method, route, body):
    sessions, ids = callers
    role = next(role for role in ("anonymous", "admin", "distributor") if MATRIX[(method, route)][role] == ALLOWED)
    prefix = next((prefix for prefix in ids if route.startswith(prefix)), None)
    path = "/" + route.replace("{id}", str(ids[prefix]) if prefix else "1")
    # With a key, so that endpoints which require one (bulk payouts) get as far as reading the body.
    return sessions[role].generic(
        method, path, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="hostile-body"
    )


def assert_refused_in_the_error_shape(answer, status, code):
    assert answer.status_code == status, (answer.status_code, answer.content[:300])
    assert answer["Content-Type"] == "application/json"
    body = answer.json()
    assert body["code"] == code, body
    assert body["detail"]


@pytest.mark.parametrize(("method", "route"), ENDPOINTS)
def test_a_body_nested_100000_deep_is_a_400_not_a_500(callers, method, route):
    answer = request_as_allowed_caller(callers, method, route, HOSTILE["nested 100,000 deep"])
    assert_refused_in_the_error_shape(answer, 400, "parse_error")


@pytest.mark.parametrize("body", list(HOSTILE), ids=list(HOSTILE))
@pytest.mark.parametrize(
    "route", ["api/auth/login/email/", "api/auth/signup/", "auth/send-otp/", "api/auth/otp/verify/"]
)
def test_an_anonymous_endpoint_answers_a_malformed_body_with_400(callers, route, body):
    answer = request_as_allowed_caller(callers, "POST", route, HOSTILE[body])
    assert_refused_in_the_error_shape(answer, 400, "parse_error")


@pytest.mark.parametrize("body", list(HOSTILE), ids=list(HOSTILE))
def test_a_money_endpoint_answers_a_malformed_body_with_400_and_moves_nothing(callers, body):
    from wallet.models import Transfer

    answer = request_as_allowed_caller(callers, "POST", "api/wallet/add-to-wallet/", HOSTILE[body])
    assert_refused_in_the_error_shape(answer, 400, "parse_error")
    assert not Transfer.objects.exists()


def test_a_body_nested_to_the_cap_is_still_read(settings):
    settings.JSON_MAX_DEPTH = 3
    body = b'{"email": "a@example.com", "password": "x", "extra": [[1]]}'
    answer = APIClient().generic("POST", "/api/auth/login/email/", body, content_type="application/json")
    assert (answer.status_code, answer.json()["code"]) == (401, "invalid_credentials")


@pytest.mark.parametrize(
    ("path", "session"), [("/api/auth/login/email/", "anonymous"), ("/api/wallet/add-to-wallet/", "admin")]
)
def test_a_body_over_the_size_cap_is_a_413_before_it_is_read(callers, settings, path, session):
    settings.MAX_REQUEST_BODY_BYTES = 1024
    body = b'{"email": "a@example.com", "password": "' + b"x" * 2048 + b'"}'
    answer = callers[0][session].generic("POST", path, body, content_type="application/json")
    assert_refused_in_the_error_shape(answer, 413, "request_too_large")


def test_the_size_cap_also_holds_for_the_django_admins_forms(settings):
    settings.MAX_REQUEST_BODY_BYTES = 1024
    answer = Client().post("/admin/login/", {"username": "x" * 2048, "password": "y"})
    assert_refused_in_the_error_shape(answer, 413, "request_too_large")


def test_the_size_cap_is_set_explicitly():
    from django.conf import settings

    assert settings.MAX_REQUEST_BODY_BYTES == settings.DATA_UPLOAD_MAX_MEMORY_SIZE == 1024 * 1024


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: form-data; name\r\n\r\n"),
        ("multipart/form-data", b"no boundary"),
        ("application/x-www-form-urlencoded", b"&".join(b"f%d=1" % n for n in range(2000))),
    ],
    ids=["broken multipart", "multipart without a boundary", "too many form fields"],
)
def test_a_malformed_form_body_is_a_400_in_the_error_shape(content_type, body):
    answer = APIClient().generic("POST", "/api/auth/login/email/", body, content_type=content_type)
    assert answer.status_code == 400, answer.content[:300]
    assert answer["Content-Type"] == "application/json"
    assert {"detail", "code"} <= set(answer.json())


def test_the_django_admin_answers_a_form_with_too_many_fields_with_400_in_the_error_shape():
    body = "&".join(f"f{n}=1" for n in range(2000))
    answer = Client().generic("POST", "/admin/login/", body, content_type="application/x-www-form-urlencoded")
    assert_refused_in_the_error_shape(answer, 400, "parse_error")
