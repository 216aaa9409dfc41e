"""Production defaults that an attacker would otherwise find open (security issue 12: items 4, 8, 12).

Each test names the attack; each failed on the code before the fix."""

from io import StringIO

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.models import User
from demo.services import PEOPLE
from tests.test_settings import production_env, run_python

DEPLOY_CHECK = ["manage.py", "check", "--deploy", "--fail-level", "WARNING"]


class OneRoundPBKDF2Hasher(PBKDF2PasswordHasher):
    """Production's algorithm at one round: its hashes verify under the default hashers of the
    deploy check's own process, without costing a second per demo account here."""

    iterations = 1


def deploy_check_against_this_database():
    """`check --deploy` as CI runs it (.ci/production.env), but reading the test database."""
    db = connection.settings_dict
    credentials = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    url = f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    result = run_python(DEPLOY_CHECK, **{**production_env(), "DATABASE_URL": url})
    return result.returncode, result.stdout + result.stderr


# --- 8. demo data does not run in production ------------------------------------------------------


@pytest.mark.django_db
def test_setup_demo_data_refuses_to_run_with_debug_off(settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="--force"):
        call_command("setup_demo_data")
    assert not User.objects.exists()


@pytest.mark.django_db
def test_setup_demo_data_runs_with_debug_off_only_when_forced(settings):
    settings.DEBUG = False
    call_command("setup_demo_data", "--force", stdout=StringIO())
    assert User.objects.filter(username__in=[person[0] for person in PEOPLE]).count() == len(PEOPLE)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_deploy_check_fails_while_a_demo_account_keeps_its_published_password(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.OneRoundPBKDF2Hasher"]
    call_command("setup_demo_data", "--force", stdout=StringIO())
    status, output = deploy_check_against_this_database()
    assert status != 0, output
    assert "demo.E001" in output
    assert "admin" in output


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_deploy_check_is_clean_once_every_demo_password_is_changed_or_its_account_deactivated(settings):
    settings.PASSWORD_HASHERS = [f"{__name__}.OneRoundPBKDF2Hasher"]
    call_command("setup_demo_data", "--force", stdout=StringIO())
    demo_accounts = list(User.objects.filter(username__in=[person[0] for person in PEOPLE]).order_by("pk"))
    for user in demo_accounts[:-1]:
        user.set_password("Not-The-Demo-Password-1")
        user.save()
    User.objects.filter(pk=demo_accounts[-1].pk).update(is_active=False)
    status, output = deploy_check_against_this_database()
    assert status == 0, output
    assert "no issues" in output


@pytest.mark.parametrize(
    "database_url",
    [
        "postgres://postgres@db.invalid:5432/recharge",  # a host that does not resolve
        "postgres://postgres@127.0.0.1:5432/recharge_database_that_does_not_exist",
    ],
)
def test_the_deploy_check_neither_crashes_nor_warns_when_it_cannot_read_the_database(database_url):
    result = run_python(DEPLOY_CHECK, **{**production_env(), "DATABASE_URL": database_url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


# --- 4. nobody mints money in production -----------------------------------------------------------

_SELF_TOP_UP_DEFAULT = "from config import settings; print(settings.WALLET_SELF_TOPUP_ENABLED)"


def test_a_production_deployment_does_not_let_an_account_credit_itself():
    result = run_python(["-c", _SELF_TOP_UP_DEFAULT], **production_env())
    assert result.stdout.strip() == "False", result.stderr


def test_the_demo_keeps_its_self_top_up():
    result = run_python(["-c", _SELF_TOP_UP_DEFAULT], DEBUG="true")
    assert result.stdout.strip() == "True", result.stderr


@pytest.mark.django_db
def test_a_fresh_signup_cannot_credit_itself_with_self_top_up_off(settings):
    from rest_framework.test import APIClient

    settings.WALLET_SELF_TOPUP_ENABLED = False
    signup = APIClient().post(
        "/api/auth/signup/",
        {
            "username": "minter",
            "email": "minter@example.com",
            "password": "Sturdy-Pass-2024!",
            "password_confirm": "Sturdy-Pass-2024!",
        },
        format="json",
    )
    assert signup.status_code == 201, signup.json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {signup.json()['access']}")
    answer = client.post("/api/wallet/credit/", {"amount": "100000.00"}, format="json")
    assert (answer.status_code, answer.json()["code"]) == (403, "self_topup_disabled")
    assert client.get("/api/wallet/balance/").json()["balance"] == "0.00"


def test_the_deploy_check_warns_when_self_top_up_is_switched_on_in_production():
    result = run_python(DEPLOY_CHECK, **{**production_env(), "WALLET_SELF_TOPUP_ENABLED": "true"})
    assert result.returncode != 0, result.stdout + result.stderr
    assert "wallet.W001" in result.stdout + result.stderr


# --- 12. the API documentation is not public in production; a Content-Security-Policy is sent -----

DOCS = ["/swagger/", "/redoc/", "/swagger.json"]


def _docs_public_with(**env):
    result = run_python(["-c", "from config import settings as s; print(s.API_DOCS_PUBLIC)"], **env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_the_documentation_is_published_by_default_only_with_debug():
    assert _docs_public_with(**production_env()) == "False"
    assert _docs_public_with(**production_env(), API_DOCS_PUBLIC="true") == "True"
    assert _docs_public_with(DEBUG="true") == "True"
    assert _docs_public_with(DEBUG="true", API_DOCS_PUBLIC="false") == "False"


@pytest.mark.django_db
@pytest.mark.parametrize("url", DOCS)
def test_an_anonymous_visitor_cannot_read_the_documentation_in_production(client, settings, url):
    settings.API_DOCS_PUBLIC = False
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/?next=")
    assert b"swagger" not in response.content.lower()


@pytest.mark.django_db
@pytest.mark.parametrize("url", DOCS)
def test_a_signed_in_user_who_is_not_staff_cannot_read_it_either(client, auth_client, settings, url):
    from accounts.tests.factories import DistributorFactory

    settings.API_DOCS_PUBLIC = False
    distributor = DistributorFactory()
    client.force_login(distributor)  # a session, as if it had signed in to the admin
    assert client.get(url).status_code == 302
    assert auth_client(distributor).get(url).status_code == 302  # nor with its API token


@pytest.mark.django_db
@pytest.mark.parametrize("url", DOCS)
def test_staff_signed_in_to_the_admin_read_the_documentation(client, admin_user, settings, url):
    settings.API_DOCS_PUBLIC = False
    client.force_login(admin_user)
    assert client.get(url, HTTP_ACCEPT="text/html" if url.endswith("/") else "application/json").status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("url", DOCS)
def test_api_docs_public_publishes_it(client, settings, url):
    settings.API_DOCS_PUBLIC = True
    assert client.get(url).status_code == 200


def _policy(response):
    header = response.headers.get("Content-Security-Policy")
    assert header, f"no Content-Security-Policy on {response.request['PATH_INFO']}"
    return {
        name: values.split()
        for name, _, values in (part.strip().partition(" ") for part in header.split(";") if part.strip())
    }


@pytest.mark.django_db
def test_every_answer_carries_a_content_security_policy_that_runs_no_foreign_or_inline_script(
    client, admin_user, auth_client, settings
):
    """An injected <script> or a script from elsewhere never runs, in the admin or the API's answers,
    and no other site may frame a page (clickjacking)."""
    settings.API_DOCS_PUBLIC = True
    client.force_login(admin_user)
    answers = [
        client.get("/admin/"),
        client.get("/admin/login/"),
        client.get("/swagger/"),
        client.get("/redoc/"),
        auth_client(admin_user).get("/api/wallet/balance/"),
        client.get("/api/no-such-endpoint/"),
    ]
    for response in answers:
        policy = _policy(response)
        assert policy["script-src"] == ["'self'"], policy
        assert policy["default-src"] == ["'self'"], policy
        assert policy["object-src"] == ["'none'"] and policy["frame-ancestors"] == ["'none'"], policy
        assert policy["base-uri"] == ["'self'"] and policy["form-action"] == ["'self'"], policy


@pytest.mark.django_db
def test_only_the_documentation_pages_allow_inline_styles_and_only_redoc_a_blob_worker(client, settings):
    settings.API_DOCS_PUBLIC = True
    admin, swagger, redoc = (_policy(client.get(url)) for url in ("/admin/login/", "/swagger/", "/redoc/"))
    assert "'unsafe-inline'" not in admin["style-src"] and "worker-src" not in admin
    assert "'unsafe-inline'" in swagger["style-src"] and "worker-src" not in swagger
    assert "'unsafe-inline'" in redoc["style-src"] and "blob:" in redoc["worker-src"]
    assert redoc["img-src"] == ["'self'", "data:", "https://cdn.redoc.ly/redoc/logo-mini.svg"]
