"""An account named by email is found through the unique index on LOWER(email), not by reading every
account (an admin's funding names its account by email: bench/README.md, admin funding), and in any
case, whatever the script: the address is compared as User stores it, lower-cased by Python."""

import pytest
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from accounts.lockout import EmailBackend, account_key
from accounts.models import User
from accounts.selectors import find_user, find_users, user_by_login
from accounts.tests.factories import ClientFactory
from core.precompiled import statement_of

LOOKUPS = {
    "find_user": lambda email: find_user(email=email),
    "user_by_login": lambda email: user_by_login(login=email),
    "find_users": lambda email: next(iter(find_users(emails=[email.strip().lower()]).values()), None),
    "the API's email login": lambda email: EmailBackend().authenticate(None, email=email, password="pw-123456"),
    "the lockout's account": lambda email: User.objects.get(
        username=account_key(RequestFactory().post("/"), {"email": email})
    ),
}


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("lookup", list(LOOKUPS))
def test_an_account_by_email_is_read_through_the_case_insensitive_unique_index(lookup):
    User.objects.bulk_create(User(username=f"bulk{n}", email=f"bulk{n}@example.com", password="!") for n in range(5000))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE accounts_user")
    wanted = ClientFactory(email="wanted@example.com", password="pw-123456")
    with CaptureQueriesContext(connection) as queries:
        assert LOOKUPS[lookup]("  WANTED@Example.com ") == wanted
    [by_email] = [query["sql"] for query in queries.captured_queries if "LOWER" in statement_of(query["sql"])]
    with connection.cursor() as cursor:
        # A prepared statement (core.precompiled.execute) is explained as it is executed.
        cursor.execute("EXPLAIN " + by_email.rsplit("; ", 1)[-1])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "user_email_unique_ci" in plan, plan


@pytest.mark.django_db
@pytest.mark.parametrize("lookup", list(LOOKUPS))
def test_an_address_in_any_script_is_found_in_any_case(lookup):
    # Stored lower-cased by Python; SQLite's LOWER (and PostgreSQL's under the C locale) folds ASCII only.
    wanted = ClientFactory(email="Ann@Éxample.com", password="pw-123456")
    assert wanted.email == "ann@éxample.com"
    assert LOOKUPS[lookup](" ANN@ÉXAMPLE.COM") == wanted
