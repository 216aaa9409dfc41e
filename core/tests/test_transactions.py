"""core.transactions.own_statement: one write whose failure the caller catches and goes on from."""

import pytest
from django.db import IntegrityError, connection

from accounts.tests.factories import ClientFactory
from core.transactions import own_statement


@pytest.mark.django_db(transaction=True)
def test_outside_a_transaction_the_statement_commits_by_itself():
    # One round trip, not BEGIN, statement, COMMIT.
    with own_statement():
        autocommit = connection.get_autocommit()
        person = ClientFactory()
    assert autocommit is True
    assert type(person).objects.filter(pk=person.pk).exists()


@pytest.mark.django_db
def test_inside_a_transaction_a_failed_statement_leaves_the_callers_transaction_usable():
    # A savepoint: on PostgreSQL a failed statement would otherwise abort the whole transaction.
    person = ClientFactory()
    with pytest.raises(IntegrityError), own_statement():
        ClientFactory(username=person.username)
    assert not connection.needs_rollback
    assert type(person).objects.filter(pk=person.pk).exists()  # the caller goes on querying
