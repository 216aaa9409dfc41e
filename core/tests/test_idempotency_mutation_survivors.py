"""Behaviours of core.idempotency that no test held until mutation testing showed it (issue 17).

Each test here kills one or more surviving mutants of `make mutate MUTATE=core.idempotency`
(docs/mutation.md lists them by name); each asserts what a client, an operator or an auditor
relies on (an answer, a stored claim, a balance, the key named in the operator's log), not how the
code is written."""

import logging
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, InterfaceError, connection, connections
from django.urls import reverse
from django.utils import timezone
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate
from rest_framework.views import APIView

from accounts.tests.factories import ClientFactory
from core import idempotency
from core.idempotency import IdempotencyRequestInProgress, claim_key, complete, idempotent, release, run_once
from core.models import IdempotencyRecord
from core.precompiled import statement_of
from wallet import services
from wallet.models import Transfer, Wallet

CREDIT = reverse("wallet:credit")
LOG = "core.idempotency"
COMPLETED, IN_PROGRESS = IdempotencyRecord.State.COMPLETED, IdempotencyRecord.State.IN_PROGRESS


def balance_of(user):
    return Wallet.objects.get(user=user).balance


def snapshot(response):
    return response.status_code, response.json()


def lease_of(settings):
    return timedelta(seconds=settings.IDEMPOTENCY_LEASE_SECONDS)


def claim(user, key="k"):
    """The claim the admin's fund page (run_once) or an API request makes before it runs."""
    record, replayed = claim_key(user=user, key=key, endpoint="fund page", fingerprint="f")
    assert replayed is None
    return record


def dead_claim(user, settings, *, key="k", beyond_lease=timedelta(seconds=1)):
    """A claim whose request died without answering: its transaction rolled back, the claim stayed."""
    record = claim(user, key)
    record.locked_at = timezone.now() - lease_of(settings) - beyond_lease
    IdempotencyRecord.objects.filter(pk=record.pk).update(locked_at=record.locked_at)
    return record


def logged(caplog):
    return [record for record in caplog.records if record.name == LOG]


class _Clock:
    """Stands in for the clock a duplicate waits by: each sleep passes at once (the test takes no
    time and sees exactly how long the duplicate would have waited), and `meanwhile()` runs what
    the first request does while the duplicate sleeps."""

    def __init__(self, meanwhile=None):
        self.now, self.waited, self.meanwhile = 1000.0, 0.0, meanwhile

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds
        self.waited += seconds
        if self.meanwhile is not None:
            self.meanwhile()


def before_statement(verb, action, *, times=1):
    """A database execute wrapper (saleor's way of forcing an interleaving): `action()` runs just
    before each of the first `times` statements on the idempotency table that start with `verb`."""
    seen = []

    def wrapper(execute, sql, params, many, context):
        statement = statement_of(sql)  # a prepared statement's own SQL (core.precompiled.execute)
        if statement.lstrip().upper().startswith(verb) and "core_idempotencyrecord" in statement and len(seen) < times:
            seen.append(sql)
            action()
        return execute(sql, params, many, context)

    wrapper.seen = seen
    return wrapper


def connection_dropped():
    raise InterfaceError("connection already closed")


# --- a duplicate that arrives while the first request runs --------------------------------------


@pytest.mark.django_db
def test_a_duplicate_arriving_while_the_first_runs_waits_for_its_answer_and_replays_it(
    auth_client, client_user, settings, monkeypatch
):
    settings.IDEMPOTENCY_WAIT_SECONDS = 2
    api = auth_client(client_user)
    first = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    answered = IdempotencyRecord.objects.filter(key="k")
    stored = answered.values("state", "response_status", "response_body", "completed_at").get()
    # As if the first request were still running: its claim is fresh and has no answer yet...
    answered.update(state=IN_PROGRESS, response_status=None, response_body=None, locked_at=timezone.now())
    # ...and it stores its answer while the duplicate waits for it.
    clock = _Clock(meanwhile=lambda: answered.update(**stored))
    monkeypatch.setattr(idempotency, "time", clock)

    duplicate = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")

    assert snapshot(duplicate) == snapshot(first) and duplicate.headers["Idempotent-Replayed"] == "true"
    assert 0 < clock.waited <= 0.1  # answered at its first look after the answer landed
    assert balance_of(client_user) == Decimal("10.00") and Transfer.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(("wait", "at_least", "at_most"), [(0, 0, 0), (0.3, 0.3, 0.4)], ids=["no wait", "0.3 s"])
def test_a_duplicate_gives_up_with_409_once_the_configured_wait_is_over_and_not_later(
    auth_client, client_user, settings, monkeypatch, wait, at_least, at_most
):
    settings.IDEMPOTENCY_WAIT_SECONDS = wait
    api = auth_client(client_user)
    api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    IdempotencyRecord.objects.filter(key="k").update(state=IN_PROGRESS, locked_at=timezone.now())
    clock = _Clock()
    monkeypatch.setattr(idempotency, "time", clock)

    response = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")

    assert response.status_code == 409 and response.json()["code"] == "idempotency_request_in_progress"
    assert at_least <= clock.waited <= at_most
    assert balance_of(client_user) == Decimal("10.00")


@pytest.mark.django_db
@pytest.mark.parametrize(("wait", "at_least", "at_most"), [(0, 0, 0), (0.3, 0.3, 0.4)], ids=["no wait", "0.3 s"])
def test_a_claim_that_cannot_be_stored_surfaces_once_the_configured_wait_is_over_and_not_later(
    client_user, settings, monkeypatch, wait, at_least, at_most
):
    """The insert fails for another reason than the key (core/tests/test_idempotency.py's
    test_a_claim_that_fails_for_another_reason_than_the_key_surfaces_instead_of_looping)."""
    settings.IDEMPOTENCY_WAIT_SECONDS = wait
    clock = _Clock()
    monkeypatch.setattr(idempotency, "time", clock)

    def refused(**fields):
        raise IntegrityError("insert or update on table violates foreign key constraint")

    monkeypatch.setattr(idempotency, "_insert_claim", refused)
    with pytest.raises(IntegrityError, match="foreign key"):
        claim_key(user=client_user, key="k", endpoint="POST x", fingerprint="f")
    assert at_least <= clock.waited <= at_most


# --- whose key it is ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_retry_replays_its_own_users_answer_when_another_user_used_the_same_key(auth_client):
    first_user, second_user = ClientFactory(), ClientFactory()
    auth_client(first_user).post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    second = auth_client(second_user).post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")

    retried = auth_client(second_user).post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")

    assert snapshot(retried) == snapshot(second) and retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json()["transfer"]["id"] == Transfer.objects.get(to_wallet__user=second_user).pk


@pytest.mark.django_db
def test_a_retry_replays_the_answer_of_its_own_key_not_of_another_key_of_the_same_user(auth_client, client_user):
    api = auth_client(client_user)
    api.post(CREDIT, {"amount": "1.00"}, HTTP_IDEMPOTENCY_KEY="first")
    second = api.post(CREDIT, {"amount": "2.00"}, HTTP_IDEMPOTENCY_KEY="second")

    retried = api.post(CREDIT, {"amount": "2.00"}, HTTP_IDEMPOTENCY_KEY="second")

    assert snapshot(retried) == snapshot(second) and retried.headers["Idempotent-Replayed"] == "true"
    assert balance_of(client_user) == Decimal("3.00")


@pytest.mark.django_db
def test_a_claim_records_the_endpoint_it_was_made_for(client_user):
    claim_key(user=client_user, key="k", endpoint="POST the fund page", fingerprint="f")
    assert IdempotencyRecord.objects.get(key="k").endpoint == "POST the fund page"


# --- what the fingerprint tells apart ------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("other_remarks", [["a", "c"], ["c", "b"]], ids=["the same first value", "the same last value"])
def test_a_form_field_sent_several_times_is_part_of_the_request_as_a_whole(auth_client, client_user, other_remarks):
    api = auth_client(client_user)
    first = api.post(CREDIT, {"amount": "1.00", "remarks": ["a", "b"]}, format="multipart", HTTP_IDEMPOTENCY_KEY="k")
    other = api.post(CREDIT, {"amount": "1.00", "remarks": other_remarks}, format="multipart", HTTP_IDEMPOTENCY_KEY="k")
    same = api.post(CREDIT, {"amount": "1.00", "remarks": ["a", "b"]}, format="multipart", HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 201
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    assert snapshot(same) == snapshot(first) and same.headers["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_a_keyed_request_carrying_a_file_is_answered_by_the_view_not_with_a_server_error(auth_client, client_user):
    api = auth_client(client_user)
    api.raise_request_exception = False
    body = {"amount": "1.00", "attachment": SimpleUploadedFile("receipt.txt", b"paid")}
    response = api.post(CREDIT, body, format="multipart", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code < 500, response.content


# --- a claim whose owner died ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_claim_whose_owner_died_is_taken_over_once_its_lease_has_run_out(settings):
    settings.IDEMPOTENCY_WAIT_SECONDS = 0
    user = ClientFactory()
    dead_claim(user, settings)

    with run_once(user=user, key="k", endpoint="fund page", fingerprint="f") as run:
        assert run.replayed is None  # the retry runs
        transfer = services.credit_wallet(user=user, amount="5.00")
        run.answer(status_code=201, data={"transfer_id": transfer.pk})

    with run_once(user=user, key="k", endpoint="fund page", fingerprint="f") as again:
        assert again.replayed is not None
    assert (again.replayed.status_code, again.replayed.data) == (201, {"transfer_id": transfer.pk})
    assert balance_of(user) == Decimal("5.00") and Transfer.objects.count() == 1


@pytest.mark.django_db
def test_a_claim_is_not_taken_over_at_the_very_moment_its_lease_ends(settings, monkeypatch):
    settings.IDEMPOTENCY_WAIT_SECONDS = 0
    user = ClientFactory()
    dead = dead_claim(user, settings, beyond_lease=timedelta(0))
    monkeypatch.setattr(timezone, "now", lambda: dead.locked_at + lease_of(settings))

    with pytest.raises(IdempotencyRequestInProgress):
        claim_key(user=user, key="k", endpoint="fund page", fingerprint="f")
    assert IdempotencyRecord.objects.get(key="k").locked_at == dead.locked_at


@pytest.mark.django_db
def test_of_two_retries_that_find_the_same_dead_claim_only_one_takes_it_over(settings):
    settings.IDEMPOTENCY_WAIT_SECONDS = 0
    user = ClientFactory()
    dead_claim(user, settings)
    claims = IdempotencyRecord.objects.filter(key="k")

    def the_other_retry_takes_it_first():
        claims.update(locked_at=timezone.now())

    race = before_statement("UPDATE", the_other_retry_takes_it_first)
    with connection.execute_wrapper(race), pytest.raises(IdempotencyRequestInProgress):
        claim_key(user=user, key="k", endpoint="fund page", fingerprint="f")
    assert len(race.seen) == 1


@pytest.mark.django_db
def test_a_late_claim_answered_just_before_it_is_taken_over_is_replayed_not_run_again(settings, monkeypatch):
    """The first request outlived its lease but was not dead: it stores its answer just as a retry
    tries to take its key over. The retry must replay that answer, not run a second time."""
    settings.IDEMPOTENCY_WAIT_SECONDS = 1
    user = ClientFactory()
    dead_claim(user, settings)
    monkeypatch.setattr(idempotency, "time", _Clock())

    def the_first_request_answers():
        IdempotencyRecord.objects.filter(key="k").update(state=COMPLETED, response_status=201, response_body={"n": 1})

    race = before_statement("UPDATE", the_first_request_answers)
    with connection.execute_wrapper(race), run_once(user=user, key="k", endpoint="fund page", fingerprint="f") as run:
        ran_again = run.replayed is None
    assert not ran_again
    assert (run.replayed.status_code, run.replayed.data) == (201, {"n": 1})


@pytest.mark.django_db
def test_claims_made_at_the_same_instant_are_taken_over_answered_and_freed_each_on_its_own(settings, monkeypatch):
    """Two claims can carry the same timestamp (another user's request in the same microsecond, or a
    coarse clock): each request acts on its own claim only."""
    settings.IDEMPOTENCY_WAIT_SECONDS = 0
    instant = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: instant)
    users = ClientFactory.create_batch(3)
    claims = [claim(user) for user in users]
    assert {record.locked_at for record in claims} == {instant}

    complete(claims[0], Response({"n": 0}, status=201))
    release(claims[1])

    states = dict(IdempotencyRecord.objects.values_list("user_id", "state"))
    assert states == {users[0].pk: COMPLETED, users[2].pk: IN_PROGRESS}  # the third is untouched

    # Later, two of them are dead claims with the same timestamp; one user's retry takes over only its own.
    IdempotencyRecord.objects.update(state=IN_PROGRESS, locked_at=instant - lease_of(settings) - timedelta(seconds=1))
    monkeypatch.setattr(timezone, "now", lambda: instant + timedelta(seconds=1))
    retried, _ = claim_key(user=users[0], key="k", endpoint="fund page", fingerprint="f")
    assert IdempotencyRecord.objects.get(user=users[2]).locked_at == instant - lease_of(settings) - timedelta(seconds=1)
    assert retried.locked_at == instant + timedelta(seconds=1)


@pytest.mark.django_db
def test_a_request_whose_claim_was_taken_over_cannot_free_the_key_of_the_one_that_took_it(settings):
    settings.IDEMPOTENCY_WAIT_SECONDS = 0
    user = ClientFactory()
    stalled = dead_claim(user, settings)
    retry, _ = claim_key(user=user, key="k", endpoint="fund page", fingerprint="f")

    release(stalled)  # the stalled request finally fails

    assert IdempotencyRecord.objects.get(key="k").locked_at == retry.locked_at
    with pytest.raises(IdempotencyRequestInProgress):  # still the retry's: no third run
        claim_key(user=user, key="k", endpoint="fund page", fingerprint="f")


# --- run_once (the admin's fund page) ---------------------------------------------------------------


@pytest.mark.django_db
def test_run_once_replays_the_status_and_body_the_block_answered():
    user = ClientFactory()
    with run_once(user=user, key="k", endpoint="fund page", fingerprint="f") as run:
        run.answer(status_code=202, data={"state": "queued"})
    with run_once(user=user, key="k", endpoint="fund page", fingerprint="f") as again:
        pass
    assert (again.replayed.status_code, again.replayed.data) == (202, {"state": "queued"})
    assert again.replayed.headers["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_a_stored_answer_records_when_it_was_given(client_user):
    before = timezone.now()
    complete(claim(client_user), Response({}, status=201))
    stored = IdempotencyRecord.objects.get(key="k")
    assert stored.state == COMPLETED
    assert before <= stored.completed_at <= timezone.now()


# --- the decorator, applied as a view module applies it ---------------------------------------------


class _EchoView(APIView):
    """Answers with the URL arguments it was given."""

    def post(self, request, *args, **kwargs):
        return Response({"args": list(args), "kwargs": kwargs}, status=201)


def _send(view, user, *args, key=None, **kwargs):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    request = APIRequestFactory().post("/echo/", {"amount": "1.00"}, format="json", **headers)
    force_authenticate(request, user=user)
    return view.as_view()(request, *args, **kwargs)


@pytest.mark.django_db
@pytest.mark.parametrize("key", [None, "k"], ids=["without a key", "with a key"])
def test_a_decorated_view_gets_its_url_arguments(client_user, key):
    view = type("View", (_EchoView,), {"post": idempotent(atomic=True)(_EchoView.post)})
    response = _send(view, client_user, "2026", key=key, pk=7)
    assert (response.status_code, response.data) == (201, {"args": ["2026"], "kwargs": {"pk": 7}})


class _CreditsThenFailsView(APIView):
    def post(self, request):
        services.credit_wallet(user=request.user, amount="10.00")
        return Response({"code": "try_again"}, status=503)


@pytest.mark.django_db
def test_idempotent_with_no_arguments_makes_a_view_atomic_and_the_key_optional(client_user):
    view = type("View", (_CreditsThenFailsView,), {"post": idempotent(_CreditsThenFailsView.post)})
    assert _send(view, client_user, key="k").status_code == 503
    assert balance_of(client_user) == Decimal("0.00")  # atomic: the 5xx rolled the credit back
    assert _send(view, client_user).status_code == 503  # no key needed: the view ran
    assert balance_of(client_user) == Decimal("10.00")


@pytest.mark.django_db
def test_the_same_key_and_body_sent_to_another_view_is_another_request(client_user):
    """Views are told apart by module and class name: the same key and body sent to another view is
    refused, never answered with the first view's answer."""

    def view(module, name):
        return type(name, (_EchoView,), {"post": idempotent(atomic=True)(_EchoView.post), "__module__": module})

    first = _send(view("shop.api", "View"), client_user, key="k")
    elsewhere = [
        _send(view(module, name), client_user, key="k")
        for module, name in [("bank.api", "View"), ("shop.api", "Other")]
    ]
    assert first.status_code == 201
    assert [(r.status_code, r.data["code"]) for r in elsewhere] == [(422, "idempotency_key_reused")] * 2


class _AnswersView(APIView):
    """Moves money when it succeeds, then answers `answer` (status, body); its service commits on
    its own (atomic=False), as a purchase's does."""

    answer = (201, {})

    def post(self, request):
        status, body = self.answer
        if status < 400:
            services.credit_wallet(user=request.user, amount="10.00")
        return Response(body, status=status)


def _not_atomic(status, body):
    return type(
        "View", (_AnswersView,), {"post": idempotent(atomic=False)(_AnswersView.post), "answer": (status, body)}
    )


@pytest.mark.django_db(transaction=True)
def test_a_refusal_whose_answer_cannot_be_stored_is_answered_as_retryable_never_as_a_refusal_no_retry_would_replay(
    client_user,
):
    """A refusal is the key's answer only once stored: given without being stored, a retry with the
    same key could run and succeed, answering the key twice, differently."""
    view = _not_atomic(400, {"code": "insufficient_funds"})
    with connection.execute_wrapper(before_statement("UPDATE", connection_dropped, times=1)):
        first = _send(view, client_user, key="k")
    assert (first.status_code, first.data["code"]) == (503, "database_unavailable")
    assert not IdempotencyRecord.objects.filter(key="k").exists()  # freed: the retry runs
    retried, again = _send(view, client_user, key="k"), _send(view, client_user, key="k")
    assert retried.status_code == again.status_code == 400 and again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.django_db(transaction=True)
def test_work_committed_whose_answer_cannot_be_stored_is_still_answered_and_its_key_named_in_the_log(
    client_user, caplog
):
    view = _not_atomic(201, {"done": True})
    unstored = before_statement("UPDATE", connection_dropped, times=1)
    with caplog.at_level(logging.WARNING, logger=LOG), connection.execute_wrapper(unstored):
        answered = _send(view, client_user, key="unstored-key")
    assert (answered.status_code, answered.data) == (201, {"done": True})
    assert balance_of(client_user) == Decimal("10.00")
    assert not IdempotencyRecord.objects.filter(key="unstored-key").exists()  # the retry finds the work by its key
    [line] = logged(caplog)
    assert "unstored-key" in line.getMessage() and line.exc_info[0] is InterfaceError


# --- freeing a key when the connection died ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_key_is_freed_on_a_fresh_connection_when_the_first_attempt_finds_the_connection_dead(client_user):
    record = claim(client_user)
    dead_once = before_statement("DELETE", connection_dropped, times=1)
    with connection.execute_wrapper(dead_once):
        assert release(record) is True
    assert len(dead_once.seen) == 1
    assert not IdempotencyRecord.objects.filter(key="k").exists()


@pytest.mark.django_db(transaction=True)
def test_a_key_is_freed_even_when_closing_the_dead_connection_fails(client_user, monkeypatch):
    record = claim(client_user)
    with monkeypatch.context() as patch:
        patch.setattr(connection, "close", connection_dropped)
        with connection.execute_wrapper(before_statement("DELETE", connection_dropped, times=1)):
            freed = release(record)
    assert freed is True and not IdempotencyRecord.objects.filter(key="k").exists()


@pytest.mark.django_db(transaction=True)
def test_a_key_that_cannot_be_freed_is_left_to_its_lease_and_named_in_the_log(client_user, caplog):
    record = claim(client_user, "key-of-the-stuck-request")
    dead = before_statement("DELETE", connection_dropped, times=2)
    with caplog.at_level(logging.WARNING, logger=LOG), connection.execute_wrapper(dead):
        assert release(record) is False
    assert IdempotencyRecord.objects.filter(key="key-of-the-stuck-request").exists()
    [line] = logged(caplog)
    # The key, and the database error behind it, for the operator.
    assert "key-of-the-stuck-request" in line.getMessage() and line.exc_info[0] is InterfaceError


# --- a connection lost at COMMIT -----------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_commit_that_failed_and_rolled_back_frees_the_key_and_the_retry_moves_the_money_once(
    auth_client, client_user, commit_fails
):
    api = auth_client(client_user)
    commit_fails.mode = "rolled_back"

    failed = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")

    assert commit_fails.fired
    # Known to have rolled back: "nothing was changed" (a retryable 503), not "outcome unknown", which
    # would tell an operator to look for a transfer that never happened.
    assert failed.status_code == 503 and failed.json()["code"] == "database_unavailable"
    assert failed.headers["Retry-After"] == "1"
    assert Transfer.objects.count() == 0 and not IdempotencyRecord.objects.filter(key="k").exists()
    retried = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert retried.status_code == 201 and "Idempotent-Replayed" not in retried.headers
    assert balance_of(client_user) == Decimal("10.00") and Transfer.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_commit_is_never_taken_for_another_users_answer_stored_at_the_same_instant(
    auth_client, client_user, commit_fails, monkeypatch
):
    instant = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: instant)
    someone_else = ClientFactory()
    IdempotencyRecord.objects.create(
        user=someone_else, key="theirs", endpoint="e", fingerprint="f", locked_at=instant,
        state=COMPLETED, response_status=201, response_body={"secret": "their transfer"},
    )  # fmt: skip
    commit_fails.mode = "rolled_back"

    failed = auth_client(client_user).post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")

    assert commit_fails.fired
    assert failed.status_code == 503 and "secret" not in failed.json()
    assert Transfer.objects.count() == 0


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("failing", "times"),
    [("INSERT", 1), ("SELECT", 1)],
    ids=["the key cannot be probed", "the stored answer cannot be read"],
)
def test_a_commit_whose_fate_cannot_be_learnt_is_answered_outcome_unknown_and_a_retry_learns_it(
    auth_client, client_user, commit_fails, caplog, failing, times
):
    api = auth_client(client_user)
    commit_fails.mode = "landed"
    # Only once the COMMIT has failed does the database become unreachable.
    dead = before_statement(failing, lambda: commit_fails.fired and connection_dropped(), times=times + 100)

    with caplog.at_level(logging.WARNING, logger=LOG), connection.execute_wrapper(dead):
        unknown = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="lost-at-commit")

    assert commit_fails.fired
    assert unknown.status_code == 503 and unknown.json()["code"] == "outcome_unknown"
    [line] = logged(caplog)
    assert "lost-at-commit" in line.getMessage() and line.exc_info[0] is InterfaceError
    retried = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="lost-at-commit")
    assert retried.status_code == 201 and retried.headers["Idempotent-Replayed"] == "true"
    assert balance_of(client_user) == Decimal("10.00") and Transfer.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_commit_that_rolled_back_while_a_copy_of_the_request_answered_replays_the_copys_answer(
    auth_client, client_user, commit_fails, monkeypatch
):
    """Ours rolled back at COMMIT, but a copy of the request (a client's retry, sent while ours ran)
    answered the key meanwhile: the key's answer is the copy's, never "nothing was changed"."""
    import threading

    real_rollback = type(connections["default"])._rollback
    copy = {}

    def rolled_back_then_a_copy_answers(self):
        if copy:  # only the rollback of the failed COMMIT
            return real_rollback(self)
        copy["fingerprint"] = fingerprint = IdempotencyRecord.objects.get(key="k").fingerprint  # ours, uncommitted
        real_rollback(self)

        def answer_as_the_copy():
            try:
                copy["record"] = IdempotencyRecord.objects.create(
                    user=client_user, key="k", endpoint="e", fingerprint=fingerprint, locked_at=timezone.now(),
                    state=COMPLETED, response_status=201, response_body={"answered by": "the copy"},
                )  # fmt: skip
            finally:
                connections["default"].close()

        thread = threading.Thread(target=answer_as_the_copy)
        thread.start()
        thread.join()

    monkeypatch.setattr(type(connections["default"]), "_rollback", rolled_back_then_a_copy_answers)
    commit_fails.mode = "rolled_back"

    answered = auth_client(client_user).post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")

    assert commit_fails.fired and "record" in copy
    assert (answered.status_code, answered.json()) == (201, {"answered by": "the copy"})
    assert answered.headers["Idempotent-Replayed"] == "true"
    assert Transfer.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_view_failure_whose_stored_answer_cannot_be_looked_for_is_answered_as_the_view_answered(client_user, caplog):
    view = type("View", (_CreditsThenFailsView,), {"post": idempotent(_CreditsThenFailsView.post)})
    lookup_dies = before_statement("SELECT", connection_dropped, times=1)
    with caplog.at_level(logging.WARNING, logger=LOG), connection.execute_wrapper(lookup_dies):
        failed = _send(view, client_user, key="k")
    assert lookup_dies.seen and (failed.status_code, failed.data) == (503, {"code": "try_again"})
    assert balance_of(client_user) == Decimal("0.00")
    assert any("could not look for its answer" in line.getMessage() for line in logged(caplog))


@pytest.mark.django_db(transaction=True)
def test_a_commit_that_landed_unacknowledged_is_answered_and_logged_with_its_key(
    auth_client, client_user, commit_fails, caplog
):
    api = auth_client(client_user)
    commit_fails.mode = "landed"

    with caplog.at_level(logging.WARNING, logger=LOG):
        answered = api.post(CREDIT, {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="landed-key")

    assert commit_fails.fired and answered.status_code == 201
    assert any("landed-key" in line.getMessage() for line in logged(caplog))
    assert balance_of(client_user) == Decimal("10.00")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", ["credit", "debit"], ids=["a success", "a refusal"])
def test_a_database_lost_before_the_commit_is_answered_nothing_was_changed(auth_client, client_user, path):
    """The database goes away after the view ran, before anything was committed (storing the answer
    fails): the answer says so, never "may or may not have taken effect"."""
    gone = before_statement("INSERT", connection_dropped, times=10)
    with connection.execute_wrapper(gone):
        failed = auth_client(client_user).post(reverse(f"wallet:{path}"), {"amount": "10.00"}, HTTP_IDEMPOTENCY_KEY="k")
    assert gone.seen, "the answer was never stored: the test proved nothing"
    assert (failed.status_code, failed.json()["code"]) == (503, "database_unavailable")
    assert "nothing was changed" in failed.json()["detail"]
    assert Transfer.objects.count() == 0 and balance_of(client_user) == Decimal("0.00")


class _LocatedView(APIView):
    def post(self, request):
        transfer = services.credit_wallet(user=request.user, amount="10.00")
        return Response({"id": transfer.pk}, status=201, headers={"Location": f"/transfers/{transfer.pk}/"})


@pytest.mark.django_db(transaction=True)
def test_an_answer_given_after_a_commit_that_landed_unacknowledged_carries_the_replay_headers(
    client_user, commit_fails
):
    post = idempotent(atomic=True, replay_headers=lambda body: {"Location": f"/transfers/{body['id']}/"})
    view = type("View", (_LocatedView,), {"post": post(_LocatedView.post)})
    commit_fails.mode = "landed"

    answered = _send(view, client_user, key="k")

    assert commit_fails.fired and answered.status_code == 201
    assert answered["Location"] == f"/transfers/{Transfer.objects.get().pk}/"
