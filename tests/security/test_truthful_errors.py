"""Truthful errors (security issue 12.2): an error answer never says "nothing was changed" unless the
change really rolled back, and a client that retries never buys twice unknowingly.

The attack run killed database backends during purchases: answers said 503 "nothing was changed"
while the price was held or charged, and `release()` let InterfaceError escape as a 500, leaving keys
IN_PROGRESS. Each test below failed on that code.

The purchase path's own tests of the rule live beside the purchase flow: an unkeyed repeat refused
with 409 `duplicate_purchase` and an answer lost after the commit that still names the purchase
(purchases/tests/test_fulfilment.py, the sections marked 12.2), and backends killed under 400
purchases, where no error answer says "nothing was changed" for a purchase that exists and every
keyed retry returns it (tests/test_faults.py, test_killed_backends_fail_cleanly_...)."""

import uuid

import pytest
from django.db import InterfaceError, connection, connections

from core.idempotency import claim_key, release
from core.models import IdempotencyRecord
from purchases.tests.helpers import fund
from wallet.models import Transfer

TRANSFER = "/api/wallet/transfer/"


@pytest.fixture
def commit_ack_lost(monkeypatch):
    """The next COMMIT reaches the server and lands, but the connection dies before the answer comes
    back: the client side sees InterfaceError, as when a backend is killed at that instant."""
    wrapper = type(connections["default"])
    real_commit = wrapper._commit

    class Trap:
        armed = fired = False

        def arm(self):
            self.armed = True

    trap = Trap()

    def commit_then_lose_the_answer(self):
        real_commit(self)
        if trap.armed and not trap.fired:
            trap.fired = True
            raise InterfaceError("connection already closed")

    monkeypatch.setattr(wrapper, "_commit", commit_then_lose_the_answer)
    return trap


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_releasing_a_key_survives_a_dead_connection_and_frees_the_key(client_user):
    record, _ = claim_key(user=client_user, key="dead-connection", endpoint="e", fingerprint="f")
    connection.connection.close()  # the server side is gone: Django's next query raises InterfaceError
    try:
        release(record)
    finally:
        connection.close()  # whatever happened, the next test gets a working connection

    assert not IdempotencyRecord.objects.filter(key="dead-connection").exists()


@pytest.mark.django_db(transaction=True)
def test_a_keyed_request_whose_commit_landed_unacknowledged_answers_what_it_did(
    auth_client, distributor, retailer, commit_ack_lost
):
    fund(distributor, "100.00")
    key = uuid.uuid4().hex
    body = {"to_user_id": retailer.pk, "amount": "10.00"}
    commit_ack_lost.arm()

    response = auth_client(distributor).post(TRANSFER, body, HTTP_IDEMPOTENCY_KEY=key)

    assert commit_ack_lost.fired, "the COMMIT was never reached: the test proved nothing"
    assert response.status_code == 201, response.data
    moved = Transfer.objects.get(kind=Transfer.Kind.TRANSFER)
    assert response.data["transfer"]["id"] == moved.pk
    retry = auth_client(distributor).post(TRANSFER, body, HTTP_IDEMPOTENCY_KEY=key)
    assert (retry.status_code, retry.data["transfer"]["id"]) == (201, moved.pk)
    assert Transfer.objects.filter(kind=Transfer.Kind.TRANSFER).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_keyless_request_whose_commit_may_have_landed_never_says_nothing_changed(
    auth_client, distributor, retailer, commit_ack_lost
):
    fund(distributor, "100.00")
    commit_ack_lost.arm()

    response = auth_client(distributor).post(TRANSFER, {"to_user_id": retailer.pk, "amount": "10.00"})

    assert commit_ack_lost.fired
    assert Transfer.objects.filter(kind=Transfer.Kind.TRANSFER).count() == 1  # it did land
    assert (response.status_code, response.data["code"]) == (503, "outcome_unknown")
    assert "nothing was changed" not in response.data["detail"]
