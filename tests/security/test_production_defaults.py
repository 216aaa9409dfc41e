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
