"""An account named by email is found through the unique index on LOWER(email), not by reading every
account: an admin's funding names its account by email (bench/README.md, admin funding)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import User
from accounts.selectors import find_user, user_by_login
from accounts.tests.factories import ClientFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.mark.parametrize(
    "lookup",
    [lambda email: find_user(email=email), lambda email: user_by_login(login=email)],
    ids=["find_user", "user_by_login"],
)
def test_an_account_by_email_is_read_through_the_case_insensitive_unique_index(lookup):
    User.objects.bulk_create(User(username=f"bulk{n}", email=f"bulk{n}@example.com", password="!") for n in range(5000))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE accounts_user")
    wanted = ClientFactory(email="wanted@example.com")
    with CaptureQueriesContext(connection) as queries:
        assert lookup("  WANTED@Example.com ") == wanted
    by_email = queries.captured_queries[-1]["sql"]  # a login looks for the username first
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + by_email)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "user_email_unique_ci" in plan, plan
    assert User.objects.count() > 5000
