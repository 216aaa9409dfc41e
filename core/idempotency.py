"""`Idempotency-Key` for money-moving POSTs (ledger.md, "Idempotency").

A request with a key runs once per (user, key): its answer (status and body) is stored with the key,
and a repeat with the same body gets that answer again with `Idempotent-Replayed: true`; a repeat with
another body is 422.

With `atomic=True` (every wallet POST, and a purchase's acceptance with a broker: the work is one
transaction) the answer is stored by the
request's own transaction, as its last statement, an INSERT that does nothing when the key is taken.
The unique (user, key) decides which copy of a request commits: a repeat runs inside a transaction
that is rolled back once its answer finds the key taken (a copy still running holds the key
uncommitted, and the INSERT waits for it), and then replays the answer stored. So a crash can never
leave money moved without its answer, and a keyed request costs one statement more than a keyless
one, with no commit of its own. A refusal is rolled back and its answer stored on its own, likewise.

A unique key of the work itself settles copies the same way: a purchase is unique on its buyer and
key, so a copy's INSERT of it waits for the first and fails once that commits; the service says so by
raising `TakenByCopy`, the copy's transaction is rolled back, and it replays the first's answer (or,
if that answer was purged, runs once more and finds the first's work by its key).

`atomic` may be a callable, asked per request: a purchase's acceptance is atomic when its fulfilment
is enqueued to a broker, and not when tasks run in the process (the SQLite demo), where the operator
is called after the commit and the answer must carry what it said.

Views whose service commits on its own (a purchase with no broker, a top-up)
use `atomic=False`: the first request claims the key (a committed IN_PROGRESS row) before it runs, a
repeat that arrives while it runs waits up to IDEMPOTENCY_WAIT_SECONDS for its answer and then replays
it, or answers 409. Such services are idempotent on the key itself: if their answer cannot be stored
after their commit, they still give it (never "nothing was changed") and release the key, and a retry
finds the work by its key.
"""

import contextlib
import functools
import hashlib
import json
import logging
import re
import time
from datetime import timedelta
from types import SimpleNamespace

from django.conf import settings
from django.db import Error, IntegrityError, connection, transaction
from django.utils import timezone
from drf_yasg import openapi
from rest_framework import status
from rest_framework.response import Response

from core.errors import DatabaseUnavailable, DomainError, OutcomeUnknown
from core.models import IdempotencyRecord
from core.precompiled import PrecompiledInsert, PrecompiledUpdate
from core.transactions import all_or_nothing, own_statement

logger = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY_PATTERN = re.compile(r"^[\x20-\x7e]{1,255}$")

IDEMPOTENCY_KEY_PARAMETER = openapi.Parameter(
    HEADER,
    openapi.IN_HEADER,
    type=openapi.TYPE_STRING,
    required=False,
    description="1-255 printable characters chosen by the client. A retry with the same key and "
    "body replays the first answer (header `Idempotent-Replayed: true`) and moves no money.",
)
REQUIRED_IDEMPOTENCY_KEY_PARAMETER = openapi.Parameter(
    HEADER,
    openapi.IN_HEADER,
    type=openapi.TYPE_STRING,
    required=True,
    description="Required here (400 `idempotency_key_required` without it). " + IDEMPOTENCY_KEY_PARAMETER.description,
)


class InvalidIdempotencyKey(DomainError):
    code = "invalid_idempotency_key"
    message = "Idempotency-Key must be 1 to 255 printable ASCII characters."


class IdempotencyKeyRequired(DomainError):
    code = "idempotency_key_required"
    message = "This request must carry an Idempotency-Key header."


class IdempotencyKeyReused(DomainError):
    code = "idempotency_key_reused"
    message = "This Idempotency-Key was already used with a different request."
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY


class IdempotencyRequestInProgress(DomainError):
    code = "idempotency_request_in_progress"
    message = "A request with this Idempotency-Key is still being processed; retry shortly."
    status_code = status.HTTP_409_CONFLICT


class TakenByCopy(Exception):  # noqa: N818 - what happened, not an error to report
    """Raised by a service, inside a keyed request's own transaction, when a unique row of its work
    under the key (a purchase's buyer and key) is already taken: a copy of the request committed
    first. Its cause is the database's refusal. The request is rolled back and answered as the copy was."""


class _ServerFailure(Exception):
    """Raised to roll back the whole idempotent transaction when the view answered 5xx."""

    def __init__(self, response):
        self.response = response


def request_fingerprint(request, endpoint):
    data = request.data
    if hasattr(data, "lists"):
        data = {key: values if len(values) > 1 else values[0] for key, values in data.lists()}
    canonical = json.dumps({"endpoint": endpoint, "body": data}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _answer_of(existing, fingerprint):
    """The replay of the answer stored in `existing`, or None while it has none; 422 if `existing` is
    another request's (another body under the same key)."""
    if existing.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    return replay(existing) if existing.state == IdempotencyRecord.State.COMPLETED else None


def _stored_answer(*, user, key, fingerprint):
    """The key's stored answer as a replay, or None while it has none (422 if another request owns it)."""
    existing = IdempotencyRecord.objects.filter(user=user, key=key).first()
    return None if existing is None else _answer_of(existing, fingerprint)


def _await_stored_answer(*, user, key, fingerprint):
    """After our transaction found the key taken and rolled back: the answer stored under it, or None
    if this request must run again. A key claimed by a request still running (a top-up's, a purchase's
    with no broker, or one from before 2026-12-01, when every keyed request claimed its key first) is waited for up to
    IDEMPOTENCY_WAIT_SECONDS, then 409; a claim whose request died (its lease ran out) is freed, and
    so may be the key in between (its owner failed): then this request runs again."""
    deadline = time.monotonic() + settings.IDEMPOTENCY_WAIT_SECONDS
    lease = timedelta(seconds=settings.IDEMPOTENCY_LEASE_SECONDS)
    while True:
        existing = IdempotencyRecord.objects.filter(user=user, key=key).first()
        if existing is None:
            return None
        answer = _answer_of(existing, fingerprint)
        if answer is not None:
            return answer
        if existing.locked_at < _now() - lease:
            IdempotencyRecord.objects.filter(
                pk=existing.pk, state=IdempotencyRecord.State.IN_PROGRESS, locked_at=existing.locked_at
            ).delete()
            return None
        if time.monotonic() >= deadline:
            raise IdempotencyRequestInProgress()
        time.sleep(0.05)


def claim_key(*, user, key, endpoint, fingerprint):
    """Claim `key` for this request, or return the stored answer of the request that owns it.

    Returns (record, None) when this request must run, or (None, replayed_response).
    """
    deadline = time.monotonic() + settings.IDEMPOTENCY_WAIT_SECONDS
    lease = timedelta(seconds=settings.IDEMPOTENCY_LEASE_SECONDS)
    while True:
        now = _now()
        try:
            record = _insert_claim(user=user, key=key, endpoint=endpoint, fingerprint=fingerprint, locked_at=now)
            return record, None
        except IntegrityError as error:
            refused = error
        existing = IdempotencyRecord.objects.filter(user=user, key=key).first()
        if existing is None:
            # Either the owner failed and released the key between our insert and our read (try
            # again), or the insert failed for another reason than the key (its user is gone): that
            # must surface, not spin.
            if time.monotonic() >= deadline:
                raise refused
            time.sleep(0.05)
            continue
        answer = _answer_of(existing, fingerprint)
        if answer is not None:
            return None, answer
        if existing.locked_at < now - lease:
            # The owner died without answering (its transaction rolled back). Take the key over.
            taken = IdempotencyRecord.objects.filter(
                pk=existing.pk, state=IdempotencyRecord.State.IN_PROGRESS, locked_at=existing.locked_at
            ).update(locked_at=now)
            if taken:
                existing.locked_at = now
                return existing, None
        if time.monotonic() >= deadline:
            raise IdempotencyRequestInProgress()
        time.sleep(0.05)


# The claim's INSERT and the answer's UPDATE run on every keyed request: compiled to SQL once
# (core.precompiled), since building them through the ORM cost more CPU than the database spends on
# them (bench/profile_request.py transfers: a keyed transfer cost 1.3-1.4x an unkeyed one).
_CLAIM = PrecompiledInsert(
    IdempotencyRecord, "user", "key", "endpoint", "fingerprint", "state", "created_at", "locked_at"
)
_STORE_ANSWER = PrecompiledUpdate(
    IdempotencyRecord,
    set_names=("state", "response_status", "response_body", "completed_at"),
    where_names=("id", "state", "locked_at"),
)


# An atomic request's answer, inserted by its own transaction (see the module's docstring).
_ANSWER = PrecompiledInsert(
    IdempotencyRecord,
    "user",
    "key",
    "endpoint",
    "fingerprint",
    "state",
    "response_status",
    "response_body",
    "created_at",
    "locked_at",
    "completed_at",
    unless_taken=("user", "key"),
)


def _store_answer(response, *, user, key, endpoint, fingerprint, started_at):
    """Store `response` as the key's answer to the request started at `started_at`; False if the key
    is taken (by a copy of this request that committed first, or by another request)."""
    state, completed_at = IdempotencyRecord.State.COMPLETED, _now()
    values = (state, response.status_code, response.data, started_at, started_at, completed_at)
    return _ANSWER.insert(user.pk, key, endpoint, fingerprint, *values) is not None


def _insert_claim(*, user, key, endpoint, fingerprint, locked_at):
    """The claim must be committed before the request runs, so that a concurrent duplicate sees it:
    in production the INSERT commits by itself (`own_statement`); a duplicate key is IntegrityError."""
    state = IdempotencyRecord.State.IN_PROGRESS
    with own_statement():
        pk = _CLAIM.insert(user.pk, key, endpoint, fingerprint, state, locked_at, locked_at)
    record = IdempotencyRecord(
        pk=pk,
        user=user,
        key=key,
        endpoint=endpoint,
        fingerprint=fingerprint,
        state=state,
        created_at=locked_at,
        locked_at=locked_at,
    )
    record._state.adding, record._state.db = False, "default"
    return record


def replay(record):
    return Response(record.response_body, status=record.response_status, headers={REPLAYED_HEADER: "true"})


def _with_headers(response, replay_headers):
    for name, value in (replay_headers(response.data) if replay_headers else {}).items():
        response[name] = value
    return response


def complete(record, response):
    """Store the answer, if this request still owns the key. A request that outlived its lease
    (another took the key over) must not answer for it: in an atomic view the raise rolls its money
    movement back, so only one of the two ever moves money."""
    owned = _STORE_ANSWER.update(
        IdempotencyRecord.State.COMPLETED,
        response.status_code,
        response.data,
        _now(),
        record.pk,
        IdempotencyRecord.State.IN_PROGRESS,
        record.locked_at,
    )
    if not owned:
        raise IdempotencyRequestInProgress()


def release(record) -> bool:
    """Forget a claim whose request failed, so the client may retry (only if this request still owns
    it: a claim taken over, or completed by a commit that did land, is left alone).

    The request usually failed because the connection died, so the first try may fail with any
    django.db.Error (InterfaceError "connection already closed" is not a DatabaseError): it is tried
    once more on a fresh connection. Only if that fails too does the lease expire the claim instead.
    True if the claim is gone."""
    for attempt in (1, 2):
        try:
            IdempotencyRecord.objects.filter(
                pk=record.pk, state=IdempotencyRecord.State.IN_PROGRESS, locked_at=record.locked_at
            ).delete()
            return True
        except Error:
            if attempt == 2 or connection.in_atomic_block:
                logger.warning("could not release idempotency key %s", record.key, exc_info=True)
                return False
            _reconnect()
    return False


class KeyedRun:
    """What `run_once` yields: `replayed` is the stored answer when the key already ran (then do
    nothing); otherwise do the work and `answer(...)` what it did."""

    def __init__(self, replayed):
        self.replayed = replayed
        self.response = None

    def answer(self, *, status_code, data):
        self.response = SimpleNamespace(status_code=status_code, data=data)


@contextlib.contextmanager
def run_once(*, user, key, endpoint, fingerprint):
    """Run a block at most once per (user, key), like an API request with an Idempotency-Key, for
    callers that are not DRF views (the Django admin's fund page).

    The key is claimed first (IdempotencyKeyReused / IdempotencyRequestInProgress as for the API).
    The block runs in one transaction with the stored answer, so the answer is stored exactly when
    the block's writes commit; if the block raises or gives no answer, the key is released and a
    retry may run."""
    record, replayed = claim_key(user=user, key=key, endpoint=endpoint, fingerprint=fingerprint)
    run = KeyedRun(replayed)
    if replayed is not None:
        yield run
        return
    try:
        with transaction.atomic():
            yield run
            if run.response is not None:
                complete(record, run.response)
    except BaseException:
        release(record)
        raise
    if run.response is None:
        release(record)


def _reconnect():
    """Drop the current connection (dead or not) so that the next query opens a fresh one."""
    try:
        connection.close()
    except Error:
        logger.debug("closing a dead connection failed", exc_info=True)


def _after_lost_commit(*, user, key, fingerprint, started_at):
    """The request's transaction ended with an error at COMMIT: did it land? Its answer was in the
    same transaction, so the key says: answered by this request (created at `started_at`: it landed),
    by a copy of it (ours rolled back, the copy's answer stands), or not at all (it rolled back).
    Asked on a fresh connection by an INSERT of the key, rolled back at once, which waits for the
    lost transaction if the server is still committing it. The key's answer (ours or a copy's),
    False if it has none, None if the database cannot tell."""
    _reconnect()
    try:
        with transaction.atomic():
            probe = SimpleNamespace(data=None, status_code=None)
            free = _store_answer(probe, user=user, key=key, endpoint="", fingerprint="", started_at=started_at)
            transaction.set_rollback(True)
        if free:
            return False
        landed = IdempotencyRecord.objects.filter(
            user=user, key=key, fingerprint=fingerprint, state=IdempotencyRecord.State.COMPLETED
        ).first()
    except Error:
        logger.warning("could not learn whether key %s committed", key, exc_info=True)
        return None
    return landed if landed is not None else False


def _now():
    return timezone.now()


def idempotent(method=None, *, atomic=True, replay_headers=None, required=False):
    """Decorate an APIView's `post` so that it honours `Idempotency-Key` (with `required=True`, a
    request without one is refused with 400 `idempotency_key_required`).

    `replay_headers(stored body) -> dict` adds headers to a replayed answer (a Location, say), since
    only the status and body are stored. `atomic`: True, False, or a callable asked per request."""

    def decorator(view_method):
        @functools.wraps(view_method)
        def wrapper(view, request, *args, **kwargs):
            if required and request.headers.get(HEADER) is None:
                raise IdempotencyKeyRequired()
            return _answer_once(view, view_method, request, args, kwargs, atomic=atomic, replay_headers=replay_headers)

        return wrapper

    return decorator(method) if method is not None else decorator


# A module-level function rather than the decorator's closure: decorators run at import, so
# mutation testing (make mutate, which swaps module-level functions at call time) only reaches
# the request-time logic here.
def _answer_once(view, view_method, request, args, kwargs, *, atomic, replay_headers=None):
    key = request.headers.get(HEADER)
    if key is None:
        return view_method(view, request, *args, **kwargs)
    if not _KEY_PATTERN.match(key) or not key.strip():
        raise InvalidIdempotencyKey()
    endpoint = f"{request.method} {type(view).__module__}.{type(view).__qualname__}"
    fingerprint = request_fingerprint(request, endpoint)
    if atomic() if callable(atomic) else atomic:
        return _answer_in_its_transaction(
            view, view_method, request, args, kwargs, key=key, endpoint=endpoint, fingerprint=fingerprint,
            replay_headers=replay_headers,
        )  # fmt: skip
    record, replayed = claim_key(user=request.user, key=key, endpoint=endpoint, fingerprint=fingerprint)
    if replayed is not None:
        return _with_headers(replayed, replay_headers)
    try:
        response = _run(view, view_method, request, args, kwargs)
        if response.status_code >= 500:
            raise _ServerFailure(response)
        try:
            complete(record, response)
        except Error:
            if response.status_code >= 400:
                raise  # a refusal changed nothing: the usual answer is true
            # The view committed its own work before this: its answer is the truth even though it
            # could not be stored. The key is released, so a retry runs the view again, which
            # finds that work by the key (such views are idempotent on it) instead of repeating it.
            logger.warning("key %s: answered, but its answer could not be stored", key, exc_info=True)
            release(record)
            return response
    except _ServerFailure as failure:
        release(record)
        return failure.response
    except BaseException:
        release(record)
        raise
    return response


def _answer_in_its_transaction(view, view_method, request, args, kwargs, *, key, endpoint, fingerprint, replay_headers):
    """An atomic view's run: its work and its answer commit together, or neither (module docstring).
    Run again (once) if the key was held by a claim that turned out to be dead or gone, or if a unique
    row of the work was taken (TakenByCopy) by a copy whose answer is gone."""
    user = request.user
    for attempt in (1, 2):
        response = _run_in_its_transaction(
            view, view_method, request, args, kwargs, key=key, endpoint=endpoint, fingerprint=fingerprint,
            replay_headers=replay_headers, last_attempt=attempt == 2,
        )  # fmt: skip
        if response is not None:
            return response
        answer = _await_stored_answer(user=user, key=key, fingerprint=fingerprint)
        if answer is not None:
            return _with_headers(answer, replay_headers)
    raise IdempotencyRequestInProgress()


def _run_in_its_transaction(
    view, view_method, request, args, kwargs, *, key, endpoint, fingerprint, replay_headers, last_attempt=True
):
    """The answer to give, or None if the key, or a unique row of the work (TakenByCopy), was taken
    (our work rolled back)."""
    user, started_at = request.user, _now()
    store = functools.partial(
        _store_answer, user=user, key=key, endpoint=endpoint, fingerprint=fingerprint, started_at=started_at
    )
    committing = False
    try:
        # Rolled back whole on a refusal or a failure (no query between the error and the rollback).
        with all_or_nothing():
            response = _run(view, view_method, request, args, kwargs)
            if response.status_code >= 500:
                raise _ServerFailure(response)
            # A refusal moves no money: whatever the view wrote before refusing is rolled back, and
            # its answer is stored below, on its own. One transaction with no savepoint keeps the
            # successful path short.
            stored = response.status_code < 400 and store(response)
            if stored:
                committing = True  # an error from here on comes from the COMMIT
            else:
                transaction.set_rollback(True)  # a refusal, or a copy of this request answered first
        committing = False
        if response.status_code >= 400:
            with own_statement():
                stored = store(response)
    except _ServerFailure as failure:
        # A repeat of a request that was answered replays that answer, whatever this run met.
        try:
            answered = _stored_answer(user=user, key=key, fingerprint=fingerprint)
        except Error:
            logger.warning("key %s: could not look for its answer after a %s", key, failure.response.status_code)
            answered = None
        return failure.response if answered is None else _with_headers(answered, replay_headers)
    except TakenByCopy as taken:
        # Rolled back: the key's answer, or one more run that finds the copy's work, answers it.
        if last_attempt:
            raise taken.__cause__ or taken  # the copy's work is there yet not found: not to be hidden
        return None
    except Error as error:
        if not committing:
            raise
        return _answer_after_lost_commit(
            error, user=user, key=key, fingerprint=fingerprint, started_at=started_at, replay_headers=replay_headers
        )
    return response if stored else None


def _answer_after_lost_commit(error, *, user, key, fingerprint, started_at, replay_headers):
    """The connection died at COMMIT: "nothing was changed" may be a lie. Find out."""
    landed = _after_lost_commit(user=user, key=key, fingerprint=fingerprint, started_at=started_at)
    if landed is None:
        raise OutcomeUnknown() from error
    if landed is False:
        # It rolled back: "nothing was changed" is true, and must be said, since the error itself came
        # out of a COMMIT (which alone would be answered "outcome unknown").
        logger.warning("key %s: the connection died at COMMIT, which rolled back: %s", key, error)
        raise DatabaseUnavailable() from error
    if landed.created_at != started_at:
        # Ours rolled back, but a copy of this request answered the key: that is the key's answer.
        logger.warning("key %s: the connection died at COMMIT; a copy of the request answered; replaying", key)
        return _with_headers(replay(landed), replay_headers)
    logger.warning("key %s: the connection died at COMMIT, which landed; answering", key)
    return _with_headers(Response(landed.response_body, status=landed.response_status), replay_headers)


def _run(view, view_method, request, args, kwargs):
    try:
        return view_method(view, request, *args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - handle_exception maps it, or re-raises what it can't
        return view.handle_exception(exc)
