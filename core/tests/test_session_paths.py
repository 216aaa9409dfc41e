"""The session, user and message machinery runs on the browser's paths only (core/middleware.py)."""

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import Client, RequestFactory

from core import middleware

BROWSER_PATHS = ["/admin/", "/admin/login/", "/swagger/", "/swagger.json", "/redoc/"]
API_PATHS = ["/api/wallet/balance/", "/api/auth/login/email/", "/wallet/balance/", "/auth/login/", "/metrics"]
ATTRIBUTE_SET = {
    middleware.SessionMiddleware: "session",
    middleware.AuthenticationMiddleware: "user",
    middleware.MessageMiddleware: "_messages",
}


def _seen_by_the_view(middleware_class, path):
    seen = {}

    def view(request):
        seen.update(vars(request))
        return HttpResponse("ok")

    request = RequestFactory().get(path)
    if middleware_class is not middleware.SessionMiddleware:
        # What the session middleware before them leaves on a browser path.
        middleware.SessionMiddleware(lambda r: None).process_request(request)
    middleware_class(view)(request)
    return seen


@pytest.mark.parametrize("middleware_class", list(ATTRIBUTE_SET))
@pytest.mark.parametrize("path", BROWSER_PATHS)
def test_a_browser_path_gets_the_session_machinery(middleware_class, path):
    assert ATTRIBUTE_SET[middleware_class] in _seen_by_the_view(middleware_class, path)


@pytest.mark.parametrize("middleware_class", list(ATTRIBUTE_SET))
@pytest.mark.parametrize("path", API_PATHS)
def test_an_api_path_goes_straight_through(middleware_class, path):
    assert ATTRIBUTE_SET[middleware_class] not in _seen_by_the_view(middleware_class, path)


def test_the_project_runs_the_path_aware_middleware_and_djangos_own_csrf():
    assert "core.middleware.SessionMiddleware" in settings.MIDDLEWARE
    assert "core.middleware.AuthenticationMiddleware" in settings.MIDDLEWARE
    assert "core.middleware.MessageMiddleware" in settings.MIDDLEWARE
    assert "django.middleware.csrf.CsrfViewMiddleware" in settings.MIDDLEWARE


@pytest.mark.django_db
def test_an_api_answer_sets_no_session_or_csrf_cookie(client):
    answer = client.get("/api/health/")
    assert answer.status_code == 200
    assert not set(answer.cookies) & {settings.SESSION_COOKIE_NAME, settings.CSRF_COOKIE_NAME, "messages"}


@pytest.mark.django_db
def test_the_admin_login_page_still_sets_its_csrf_cookie_and_refuses_a_post_without_it(client):
    page = client.get("/admin/login/")
    assert page.status_code == 200 and settings.CSRF_COOKIE_NAME in page.cookies
    strict = Client(enforce_csrf_checks=True)
    refused = strict.post("/admin/login/", {"username": "x", "password": "y"})
    assert refused.status_code == 403
