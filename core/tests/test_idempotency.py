"""Idempotency-Key on money-moving POSTs (ledger.md, "Idempotency"), exercised through the wallet API."""

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from accounts.tests.factories import ClientFactory
from core.errors import TryAgain
from core.idempotency import IdempotencyKeyReused, idempotent, run_once
from core.models import IdempotencyRecord
from wallet import services
from wallet.models import Transfer, Wallet

CREDIT, TRANSFER = reverse("wallet:credit"), reverse("wallet:transfer")


def balance_of(user):
    return Wallet.objects.get(user=user).balance


def snapshot(response):
    return response.status_code, response.json()


@pytest.mark.django_db
def test_the_same_request_sent_twenty_times_moves_money_once_and_answers_the_same(auth_client, client_user):
    api = auth_client(client_user)
    responses = [api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="top-up-1") for _ in range(20)]
    assert {snapshot(r) == snapshot(responses[0]) for r in responses} == {True}
    assert responses[0].status_code == 201 and "Idempotent-Replayed" not in responses[0].headers
    assert all(r.headers["Idempotent-Replayed"] == "true" for r in responses[1:])
    assert balance_of(client_user) == Decimal("10.00") and Transfer.objects.count() == 1
    assert Transfer.objects.get().idempotency_key == "top-up-1"


@pytest.mark.django_db
def test_the_same_key_at_the_seeds_path_and_under_api_is_one_request(auth_client, client_user):
    api = auth_client(client_user)
    first = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    second = api.post("/wallet/credit/", {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert snapshot(first) == snapshot(second) and second.headers["Idempotent-Replayed"] == "true"
    assert balance_of(client_user) == Decimal("10.00")


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_422_and_moves_nothing(auth_client, client_user):
    api = auth_client(client_user)
    api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    response = api.post(CREDIT, {"amount": "11.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 422 and response.json()["code"] == "idempotency_key_reused"
    assert balance_of(client_user) == Decimal("10.00")


@pytest.mark.django_db
def test_keys_belong_to_their_user(auth_client, client_user):
    other = ClientFactory()
    auth_client(client_user).post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    response = auth_client(other).post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
    assert balance_of(other) == Decimal("10.00")


@pytest.mark.django_db
def test_a_duplicate_arriving_while_the_first_is_in_flight_is_409(auth_client, client_user, settings):
    settings.IDEMPOTENCY_WAIT_SECONDS = 0
    api = auth_client(client_user)
    api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    # As if the key were claimed by a request still running (a wallet POST claimed its key first until
    # 2026-12-01, as a purchase still does): the claim is fresh and has no answer yet.
    IdempotencyRecord.objects.filter(key="k").update(state="IN_PROGRESS", locked_at=timezone.now())
    response = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 409 and response.json()["code"] == "idempotency_request_in_progress"
    assert balance_of(client_user) == Decimal("10.00")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_of_two_copies_running_at_once_the_one_answered_first_keeps_its_money_and_the_other_replays_it(
    auth_client, client_user, monkeypatch
):
    """The first copy stalls before it moves any money; the second runs whole and commits its
    answer. When the first goes on, its money movement is rolled back once its answer finds the key
    taken, and it answers what the second did: the client is credited once."""
    original = services.credit_wallet
    second_answered, stalls = threading.Event(), [True]

    def first_stalls(**kwargs):
        if stalls.pop() if stalls else False:
            assert second_answered.wait(timeout=30)
        return original(**kwargs)

    monkeypatch.setattr(services, "credit_wallet", first_stalls)
    answers = {}

    def send(name):
        try:
            answers[name] = auth_client(client_user).post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="both")
        finally:
            connection.close()

    first = threading.Thread(target=send, args=("first",))
    first.start()
    while stalls:  # the first copy is inside its transaction, before the credit
        time.sleep(0.01)
    send("second")
    second_answered.set()
    first.join(timeout=30)

    assert answers["second"].status_code == 201 and "Idempotent-Replayed" not in answers["second"].headers
    assert snapshot(answers["first"]) == snapshot(answers["second"])
    assert answers["first"].headers["Idempotent-Replayed"] == "true"
    assert balance_of(client_user) == Decimal("10.00") and Transfer.objects.count() == 1


@pytest.mark.django_db
def test_a_repeat_the_view_would_now_refuse_still_gets_the_first_answer_and_moves_nothing(auth_client, client_user):
    """A repeat runs again inside a transaction that is rolled back: here the first debit took the
    money, so the repeat's own run is refused, and the refusal is not the key's answer."""
    services.credit_wallet(user=client_user, amount="5.00")
    api = auth_client(client_user)
    first = api.post(reverse("wallet:debit"), {"amount": "5.00"}, HTTP_IDEMPOTENCY_KEY="k")
    again = api.post(reverse("wallet:debit"), {"amount": "5.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 201 and snapshot(again) == snapshot(first)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert balance_of(client_user) == Decimal("0.00") and Transfer.objects.filter(kind="DEBIT").count() == 1


@pytest.mark.django_db
def test_a_repeat_whose_own_run_fails_still_gets_the_first_answer(auth_client, client_user, monkeypatch):
    api = auth_client(client_user)
    first = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")

    def busy(**kwargs):
        raise TryAgain()

    monkeypatch.setattr(services, "credit_wallet", busy)
    again = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 201 and snapshot(again) == snapshot(first)
    assert again.headers["Idempotent-Replayed"] == "true"
    other = api.post(CREDIT, {"amount": "11.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert balance_of(client_user) == Decimal("10.00")


@pytest.mark.django_db
def test_a_claim_whose_request_died_is_freed_and_the_request_runs(auth_client, client_user, settings):
    """A wallet POST's key claimed by a request that died without answering (wallet POSTs claimed
    their key first until 2026-12-01: a rolling deploy leaves such claims behind): once its lease has
    run out, a retry frees it and runs, instead of answering 409 until the claim is purged."""
    api = auth_client(client_user)
    refused = api.post(reverse("wallet:debit"), {"amount": "5.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert refused.status_code == 400  # nothing moved; its record stands for the dead request's claim
    dead_since = timezone.now() - timezone.timedelta(seconds=settings.IDEMPOTENCY_LEASE_SECONDS + 1)
    IdempotencyRecord.objects.filter(key="k").update(
        state="IN_PROGRESS", response_status=None, response_body=None, locked_at=dead_since
    )
    services.credit_wallet(user=client_user, amount="5.00")

    retried = api.post(reverse("wallet:debit"), {"amount": "5.00"}, HTTP_IDEMPOTENCY_KEY="k")

    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert balance_of(client_user) == Decimal("0.00") and Transfer.objects.filter(kind="DEBIT").count() == 1
    assert IdempotencyRecord.objects.get(key="k").response_status == 201


@pytest.mark.django_db
def test_a_refusal_is_replayed_too_and_still_writes_nothing(auth_client, client_user):
    api = auth_client(client_user)
    first = api.post(reverse("wallet:debit"), {"amount": "5.00"}, HTTP_IDEMPOTENCY_KEY="k")
    again = api.post(reverse("wallet:debit"), {"amount": "5.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 400 and snapshot(first) == snapshot(again)
    assert Transfer.objects.count() == 0


@pytest.mark.parametrize(
    "transactional",
    [
        pytest.param(False, marks=pytest.mark.django_db, id="inside a caller's transaction"),
        # As production runs it: a real ROLLBACK, then the answer stored on its own.
        pytest.param(True, marks=pytest.mark.django_db(transaction=True), id="as production runs it"),
    ],
)
def test_a_refusal_after_a_write_rolls_the_write_back_and_is_still_replayed(
    auth_client, client_user, monkeypatch, transactional
):
    assert connection.in_atomic_block is not transactional
    original = services.credit_wallet

    def credits_then_refuses(**kwargs):
        original(**kwargs)
        raise services.InsufficientFunds(available="0.00", amount="10.00")

    monkeypatch.setattr(services, "credit_wallet", credits_then_refuses)
    api = auth_client(client_user)
    first = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    again = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 400 and first.json()["code"] == "insufficient_funds"
    assert snapshot(first) == snapshot(again) and again.headers["Idempotent-Replayed"] == "true"
    assert Transfer.objects.count() == 0 and balance_of(client_user) == Decimal("0.00")
    assert IdempotencyRecord.objects.get(key="k").state == IdempotencyRecord.State.COMPLETED


@pytest.mark.django_db
def test_a_server_error_releases_the_key_so_the_retry_runs(auth_client, client_user, monkeypatch):
    original = services.credit_wallet

    def broken(**kwargs):
        raise RuntimeError("database exploded")

    monkeypatch.setattr(services, "credit_wallet", broken)
    api = auth_client(client_user)
    api.raise_request_exception = False
    failed = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert failed.status_code == 500 and not IdempotencyRecord.objects.filter(key="k").exists()
    monkeypatch.setattr(services, "credit_wallet", original)
    retried = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert balance_of(client_user) == Decimal("10.00")


@pytest.mark.django_db
def test_a_503_the_view_answers_frees_the_key_so_the_retry_runs_at_once(
    auth_client, client_user, monkeypatch, settings
):
    """A wallet lock that times out answers 503 try_again (an answer, not an exception): the key
    must be free at once, not held until its lease ends (the retry would get 409 meanwhile)."""
    settings.IDEMPOTENCY_WAIT_SECONDS = 0  # a key still held answers 409 at once instead of waiting
    original = services.credit_wallet

    def busy(**kwargs):
        raise TryAgain()

    monkeypatch.setattr(services, "credit_wallet", busy)
    api = auth_client(client_user)
    failed = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert failed.status_code == 503 and failed.json()["code"] == "try_again"
    assert not IdempotencyRecord.objects.filter(key="k").exists()
    monkeypatch.setattr(services, "credit_wallet", original)
    retried = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert balance_of(client_user) == Decimal("10.00") and Transfer.objects.count() == 1


class _FlakyView(APIView):
    """Moves money, then answers `answers[0]` (a 5xx the first time), like a view that catches an
    error and renders it itself."""

    answers: list = []

    def post(self, request):
        services.credit_wallet(user=request.user, amount="10.00")
        return Response({"code": "try_again"} if self.answers[0] >= 500 else {}, status=self.answers.pop(0))


@pytest.mark.django_db
@pytest.mark.parametrize("status", [500, 503])
@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "not atomic"])
def test_a_5xx_returned_by_a_view_frees_the_key_for_an_immediate_retry(client_user, settings, atomic, status):
    settings.IDEMPOTENCY_WAIT_SECONDS = 0
    view = type("View", (_FlakyView,), {"post": idempotent(_FlakyView.post, atomic=atomic), "answers": [status, 201]})

    def send():
        request = APIRequestFactory().post("/flaky/", {"amount": "10.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
        force_authenticate(request, user=client_user)
        return view.as_view()(request)

    assert send().status_code == status
    assert not IdempotencyRecord.objects.filter(key="k").exists()
    # An atomic view's 5xx rolls back what it wrote; a non-atomic one keeps it (its service is
    # idempotent on the key itself, as a purchase is).
    assert balance_of(client_user) == (Decimal("0.00") if atomic else Decimal("10.00"))
    retried = send()
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert IdempotencyRecord.objects.get(key="k").response_status == 201


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", " ", "x" * 256, "caf\u00e9"], ids=["empty", "blank", "too long", "non-ascii"])
def test_a_malformed_key_is_400_and_moves_nothing(auth_client, client_user, key):
    response = auth_client(client_user).post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code == 400 and response.json()["code"] == "invalid_idempotency_key"
    assert Transfer.objects.count() == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_copies_of_a_transfer_move_money_once_and_answer_the_same(auth_client):
    from wallet.tests.helpers import assert_ledger_clean

    sender, receiver = ClientFactory(), ClientFactory()
    services.credit_wallet(user=sender, amount="100.00")
    barrier, responses, errors = threading.Barrier(20), [], []

    def send():
        try:
            api = auth_client(sender)
            barrier.wait()
            responses.append(
                api.post(TRANSFER, {"to_user_id": receiver.pk, "amount": "30.00"}, HTTP_IDEMPOTENCY_KEY="pay-1")
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and len(responses) == 20
    assert {snapshot(r) == snapshot(responses[0]) for r in responses} == {True}
    assert responses[0].status_code == 201
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 19
    assert (balance_of(sender), balance_of(receiver)) == (Decimal("70.00"), Decimal("30.00"))
    assert Transfer.objects.filter(kind="TRANSFER").count() == 1
    assert_ledger_clean()


@pytest.mark.django_db
def test_a_claim_that_fails_for_another_reason_than_the_key_surfaces_instead_of_looping(
    client_user, monkeypatch, settings
):
    from django.db import IntegrityError

    from core import idempotency

    settings.IDEMPOTENCY_WAIT_SECONDS = 0.2
    attempts = []

    def refused(**fields):
        attempts.append(1)
        if len(attempts) > 100:
            raise AssertionError("claim_key kept retrying an insert that can never succeed")
        raise IntegrityError("insert or update on table violates foreign key constraint")

    monkeypatch.setattr(idempotency, "_insert_claim", refused)
    with pytest.raises(IntegrityError, match="foreign key"):
        idempotency.claim_key(user=client_user, key="k", endpoint="POST x", fingerprint="f")
    assert IdempotencyRecord.objects.count() == 0


# --- run_once: the same guarantee for code that is not a DRF view (the admin's fund page) ---------


@pytest.mark.django_db
def test_run_once_runs_a_block_once_per_key_and_gives_a_repeat_the_stored_answer():
    user, ran = ClientFactory(), []
    for _ in range(2):
        with run_once(user=user, key="form-1", endpoint="test", fingerprint="f") as run:
            if run.replayed is None:
                ran.append(services.credit_wallet(user=user, amount="5.00").pk)
                run.answer(status_code=201, data={"transfer_id": ran[-1]})
    assert len(ran) == 1 and run.replayed.data == {"transfer_id": ran[0]}
    assert Transfer.objects.count() == 1
    with pytest.raises(IdempotencyKeyReused), run_once(user=user, key="form-1", endpoint="test", fingerprint="g"):
        pass


@pytest.mark.django_db
def test_run_once_releases_the_key_of_a_block_that_failed_and_keeps_nothing_it_wrote():
    user = ClientFactory()
    with pytest.raises(TryAgain), run_once(user=user, key="form-2", endpoint="test", fingerprint="f") as run:
        services.credit_wallet(user=user, amount="5.00")
        raise TryAgain()
    assert not IdempotencyRecord.objects.filter(key="form-2").exists() and Transfer.objects.count() == 0
    with run_once(user=user, key="form-2", endpoint="test", fingerprint="f") as run:
        assert run.replayed is None  # the retry runs


@pytest.mark.django_db
def test_a_retry_matches_on_the_body_whatever_its_key_order_or_encoding(auth_client, client_user):
    """The fingerprint is of the request's content (mutation testing, docs/mutation.md): the same
    fields in another order, or sent as a form instead of JSON, are the same request; another
    value in a form is another request."""
    api = auth_client(client_user)
    first = api.post(CREDIT, {"amount": "10.00", "remarks": "top-up"}, HTTP_IDEMPOTENCY_KEY="k")
    reordered = api.generic(
        "POST", CREDIT, '{"remarks": "top-up", "amount": "10.00"}', "application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    as_form = api.post(CREDIT, {"amount": "10.00", "remarks": "top-up"}, format="multipart", HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 201
    assert [r.headers.get("Idempotent-Replayed") for r in (reordered, as_form)] == ["true", "true"]
    form_first = api.post(CREDIT, {"amount": "1.00"}, format="multipart", HTTP_IDEMPOTENCY_KEY="form")
    form_other = api.post(CREDIT, {"amount": "2.00"}, format="multipart", HTTP_IDEMPOTENCY_KEY="form")
    assert (form_first.status_code, form_other.status_code) == (201, 422)
    assert balance_of(client_user) == Decimal("11.00")


class _RefusedByTheDatabase(APIView):
    """Credits, then meets a unique row taken: as a copy that lost the race (TakenByCopy), or as any
    other refusal (a CHECK, a foreign key)."""

    runs: list = []
    taken_by_copy = False

    def post(self, request):
        from django.db import IntegrityError

        from core.idempotency import TakenByCopy

        self.runs.append(request.data["amount"])
        services.credit_wallet(user=request.user, amount="10.00")
        refusal = IntegrityError("the database refused a row")
        if self.taken_by_copy:
            raise TakenByCopy() from refusal
        raise refusal


@pytest.mark.django_db
@pytest.mark.parametrize("taken_by_copy", [False, True], ids=["any refusal", "taken by a copy"])
def test_a_database_refusal_in_an_atomic_view_surfaces_and_only_a_copys_race_runs_it_again(
    client_user, settings, taken_by_copy
):
    from django.db import IntegrityError

    settings.IDEMPOTENCY_WAIT_SECONDS = 0
    runs = []
    view = type(
        "View",
        (_RefusedByTheDatabase,),
        {"post": idempotent(_RefusedByTheDatabase.post, atomic=True), "runs": runs, "taken_by_copy": taken_by_copy},
    )
    request = APIRequestFactory().post("/refused/", {"amount": "10.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    force_authenticate(request, user=client_user)

    with pytest.raises(IntegrityError):
        view.as_view()(request)

    # A copy's race is run once more (the copy's work is then found by its key); anything else is not
    # hidden behind a second run.
    assert len(runs) == (2 if taken_by_copy else 1)
    assert balance_of(client_user) == Decimal("0.00")
    assert not IdempotencyRecord.objects.exists()
