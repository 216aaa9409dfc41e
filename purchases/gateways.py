"""Operator gateways: how a recharge reaches the telecom operator (through an aggregator).

The gateway in use is chosen by `settings.RECHARGE_GATEWAY`, a dotted path, the way Django picks
an email backend; `get_gateway()` returns an instance. A gateway implements two calls:

- `recharge(request)` sends the recharge once and answers SUCCESS, FAILED or PENDING;
- `check_status(request)` asks what became of a recharge sent earlier (same request, same
  `reference`), for purchases left PENDING.

Errors a gateway raises say what is known about the money:
- `GatewayUnavailable`: the request was definitely not sent (connection refused, DNS failure).
  Nothing was recharged: the purchase is voided and the buyer gets the hold back.
- `GatewayTimeout` (or any other exception): the request may have reached the operator. The
  outcome is unknown, so the hold stays and the purchase stays PENDING for a status check.

A gateway gives up after `RECHARGE_GATEWAY_TIMEOUT_SECONDS` with GatewayTimeout, so a slow operator
never holds a web worker past the server's own timeout.
"""

import hashlib
import json
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


class GatewayError(Exception):
    """Base of the errors a gateway raises."""


class GatewayUnavailable(GatewayError):
    """The request was not sent: the operator certainly did not recharge."""


class GatewayTimeout(GatewayError):
    """No answer in time: the operator may or may not have recharged."""


@dataclass(frozen=True)
class RechargeRequest:
    reference: str  # our id for the recharge, unique and stable across retries and status checks
    mobile_number: str  # E.164
    amount: Decimal
    operator: str  # provider code
    plan_code: str
    circle: str


@dataclass(frozen=True)
class GatewayResult:
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    PENDING = "PENDING"

    status: str
    operator_reference: str = ""
    message: str = ""


class BaseGateway:
    # The <gateway> of POST /api/purchases/callbacks/<gateway>/ this gateway's aggregator calls back
    # on (empty: it sends no callbacks).
    callback_name = ""

    def recharge(self, request: RechargeRequest) -> GatewayResult:
        raise NotImplementedError

    def check_status(self, request: RechargeRequest) -> GatewayResult:
        raise NotImplementedError


class SandboxGateway(BaseGateway):
    """A stand-in for a recharge aggregator, for development, tests and benchmarks, with a memory:
    every recharge it receives is recorded (purchases.models.SandboxRecharge, keyed by reference),
    so `check_status` about a recharge it never got answers FAILED ("no such recharge") truthfully,
    and a reference received twice is counted (`times_received`: the proof that nothing was
    recharged twice). What happens depends only on the number recharged (+91 implied):

    =============  =========================================  ==================================
    number         recharge() answers                         check_status() answers
    =============  =========================================  ==================================
    9000000001     FAILED ("operator declined")               FAILED
    9000000002     PENDING                                    SUCCESS
    9000000003     PENDING                                    FAILED
    9000000004     raises GatewayUnavailable (not sent)       FAILED (never received)
    9000000005     raises GatewayTimeout (received)           SUCCESS
    9000000006     raises GatewayTimeout (never received)     FAILED (never received)
    9000000007     PENDING                                    PENDING (stays pending)
    anything else  SUCCESS                                    SUCCESS
    never sent     -                                          FAILED (never received)
    =============  =========================================  ==================================

    Every call first sleeps RECHARGE_GATEWAY_LATENCY_MS milliseconds (a recharge is recorded before,
    as a real operator has it once the request arrives). A successful recharge gets an operator
    reference derived from the request's reference ("SBX" + 12 hex digits).

    Callback mode (RECHARGE_SANDBOX_CALLBACK_URL set): a recharge received answers PENDING, and the
    final status is POSTed later, signed with RECHARGE_CALLBACK_SECRET, to that URL, as an
    aggregator's callback does: the record is its outbox (due RECHARGE_SANDBOX_CALLBACK_DELAY_MS after
    the recharge), sent by `deliver_due_sandbox_callbacks` (the periodic task
    purchases.deliver_sandbox_callbacks; with no broker, at once in the process). `reverse(reference)`
    plays an operator reversing a successful recharge (a REVERSED callback).
    """

    callback_name = "sandbox"

    FAILS = "+919000000001"
    PENDING_THEN_SUCCESS = "+919000000002"
    PENDING_THEN_FAILS = "+919000000003"
    UNAVAILABLE = "+919000000004"
    TIMEOUT_THEN_SUCCESS = "+919000000005"
    TIMEOUT_THEN_FAILS = "+919000000006"
    PENDING_FOREVER = "+919000000007"

    def recharge(self, request):
        number = request.mobile_number
        if number == self.UNAVAILABLE:
            self._wait()
            raise GatewayUnavailable("Connection refused by the aggregator (sandbox).")
        if number == self.TIMEOUT_THEN_FAILS:
            self._wait()  # lost on the way: the operator never had it
            raise GatewayTimeout("No answer from the aggregator in time (sandbox).")
        final = self._final_status(number)
        calls_back = bool(settings.RECHARGE_SANDBOX_CALLBACK_URL) and final != GatewayResult.PENDING
        record = _run_db(
            _receive,
            request=request,
            status=final,
            operator_reference=self.operator_reference(request),
            callback_due_at=_callback_due() if calls_back else None,
        )
        self._wait()
        if calls_back:
            _deliver_at_once_when_tasks_run_eagerly(record.reference)
        if number == self.TIMEOUT_THEN_SUCCESS:
            raise GatewayTimeout("No answer from the aggregator in time (sandbox).")
        if calls_back:
            return GatewayResult(GatewayResult.PENDING, message="Accepted; the result will be called back.")
        if number in (self.PENDING_THEN_SUCCESS, self.PENDING_THEN_FAILS, self.PENDING_FOREVER):
            return GatewayResult(GatewayResult.PENDING, message="Accepted by the operator, awaiting confirmation.")
        return self._result(record)

    def check_status(self, request):
        self._wait()
        record = _run_db(_received, reference=request.reference)
        if record is None:
            return GatewayResult(GatewayResult.FAILED, message="No such recharge was received (sandbox).")
        if record.status == GatewayResult.PENDING:
            return GatewayResult(GatewayResult.PENDING, message="Still awaiting the operator.")
        return self._result(record)

    def _final_status(self, number):
        if number in (self.FAILS, self.PENDING_THEN_FAILS):
            return GatewayResult.FAILED
        if number == self.PENDING_FOREVER:
            return GatewayResult.PENDING
        return GatewayResult.SUCCESS

    @staticmethod
    def _result(record):
        if record.status == GatewayResult.SUCCESS:
            return GatewayResult(GatewayResult.SUCCESS, operator_reference=record.operator_reference)
        if record.status == "REVERSED":
            return GatewayResult(GatewayResult.FAILED, message="The operator reversed the recharge (sandbox).")
        return GatewayResult(GatewayResult.FAILED, message="The operator reported the recharge failed (sandbox).")

    @staticmethod
    def reverse(reference) -> bool:
        """Reverse a successful recharge, as an operator refunding it would: recorded, and called back
        (REVERSED) in callback mode. False if there was no successful recharge with that reference."""
        from purchases.models import SandboxRecharge

        calls_back = bool(settings.RECHARGE_SANDBOX_CALLBACK_URL)
        reversed_now = SandboxRecharge.objects.filter(reference=reference, status="SUCCESS").update(
            status="REVERSED",
            callback_due_at=_callback_due() if calls_back else None,
            callback_attempts=0,
            callback_delivered_at=None,
        )
        if reversed_now and calls_back:
            _deliver_at_once_when_tasks_run_eagerly(reference)
        return bool(reversed_now)

    @staticmethod
    def operator_reference(request):
        return "SBX" + hashlib.sha256(request.reference.encode()).hexdigest()[:12].upper()

    @staticmethod
    def _wait():
        """Simulated network latency; past RECHARGE_GATEWAY_TIMEOUT_SECONDS the call gives up with
        GatewayTimeout, as a real HTTP client with that timeout would (outcome unknown)."""
        latency = settings.RECHARGE_GATEWAY_LATENCY_MS / 1000
        timeout = settings.RECHARGE_GATEWAY_TIMEOUT_SECONDS
        if latency > timeout:
            time.sleep(timeout)
            raise GatewayTimeout(f"No answer within {timeout} s (sandbox latency {latency:.0f} s).")
        if latency > 0:
            time.sleep(latency)


def _run_db(fn, **kwargs):
    # The sandbox runs inside a worker's pool threads, which hold no database connection of their own.
    from core import db_threads

    return db_threads.run(fn, **kwargs)


def _receive(*, request, status, operator_reference, callback_due_at=None):
    """Record a recharge the sandbox received, with its callback due at `callback_due_at` (callback
    mode); a second receipt of the same reference is counted (a real operator that dedupes would
    ignore it: the count proves whether it ever happened), and called back again."""
    from django.db import IntegrityError
    from django.db.models import F

    from core.transactions import own_statement
    from purchases.models import SandboxRecharge

    fields = {
        "mobile_number": request.mobile_number,
        "amount": request.amount,
        "operator": request.operator[:50],
        "status": status,
        "operator_reference": operator_reference if status == GatewayResult.SUCCESS else "",
        "callback_due_at": callback_due_at,
    }
    try:
        with own_statement():  # on a worker's database thread: one INSERT that commits by itself
            return SandboxRecharge.objects.create(reference=request.reference, **fields)
    except IntegrityError:
        again = {"times_received": F("times_received") + 1}
        if callback_due_at is not None:
            again.update(callback_due_at=callback_due_at, callback_attempts=0, callback_delivered_at=None)
        SandboxRecharge.objects.filter(reference=request.reference).update(**again)
        return SandboxRecharge.objects.get(reference=request.reference)


def _received(*, reference):
    from purchases.models import SandboxRecharge

    return SandboxRecharge.objects.filter(reference=reference).first()


def _callback_due():
    """When a callback decided now is sent: after RECHARGE_SANDBOX_CALLBACK_DELAY_MS, or at once when
    tasks run eagerly (no broker: nothing runs later in the demo's process, so the sandbox calls back
    before it answers)."""
    from django.utils import timezone

    if settings.CELERY_TASK_ALWAYS_EAGER:
        return timezone.now()
    return timezone.now() + timedelta(milliseconds=settings.RECHARGE_SANDBOX_CALLBACK_DELAY_MS)


def _deliver_at_once_when_tasks_run_eagerly(reference):
    # With a broker the periodic task sends what is due; with none (make run, the tests) nothing would,
    # so this one is sent now, once: no retry (the purchase's status check still settles it). Whatever
    # happens here, the recharge was received and is answered as such.
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        return
    try:
        deliver_due_sandbox_callbacks(reference=reference)
    except Exception:  # noqa: BLE001 - the recharge happened; only its callback is lost
        logger.warning("sandbox: the callback of %s could not be sent", reference, exc_info=True)


def callback_body(*, reference, status, operator_reference="") -> bytes:
    """The JSON body the sandbox calls back with (a final status: only those are ever due)."""
    body = {
        "reference": reference,
        "status": status,
        "operator_reference": operator_reference,
        "message": "Sandbox callback.",
    }
    return json.dumps(body, separators=(",", ":")).encode()


# The sandbox's sender: how many due callbacks it claims at once, all POSTed at the same time (an
# aggregator's sender pool), each given CALLBACK_TIMEOUT_SECONDS per socket operation (connecting, then
# reading the answer); a claimed callback not marked delivered comes due again after the lease, longer
# than both, so that a live sender's callbacks are not claimed by another (and if one ever is, the POST
# is sent twice, never lost); after that many attempts it gives up, as aggregators do (the purchase's
# status check settles it).
CALLBACK_SENDERS = 16
CALLBACK_TIMEOUT_SECONDS = 10
CALLBACK_LEASE_SECONDS = 2 * CALLBACK_TIMEOUT_SECONDS + 5
CALLBACK_ATTEMPTS = 8
CALLBACK_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class DueCallback:
    pk: int
    reference: str
    status: str
    operator_reference: str
    attempt: int
    # The claim's own mark on the row (its callback_due_at): a re-arm (a reversal, a second receipt) or
    # another claim since then changes it, and this claim's outcome is no longer the row's.
    leased_until: datetime
    last_attempt: bool


def deliver_due_sandbox_callbacks(*, reference=None) -> int:
    """Send the sandbox's callbacks that are due (callback mode): claim up to CALLBACK_SENDERS (SKIP
    LOCKED, with a lease, so that several senders never take the same one), POST each signed to
    RECHARGE_SANDBOX_CALLBACK_URL, and mark those answered 2xx delivered. Returns how many were
    delivered. At least once: a callback claimed by a sender that dies comes due again. With
    `reference`, that recharge's alone, and once: with tasks run eagerly no sender would try again."""
    due = _run_db(_claim_due_callbacks, reference=reference)
    if not due:
        return 0
    with ThreadPoolExecutor(max_workers=len(due), thread_name_prefix="callback") as senders:
        answered = list(senders.map(_post_callback, due))
    delivered = [callback for callback, ok in zip(due, answered, strict=True) if ok]
    given_up = [callback for callback, ok in zip(due, answered, strict=True) if not ok and callback.last_attempt]
    if delivered or given_up:
        _run_db(_record_outcomes, delivered=delivered, given_up=given_up)
    return len(delivered)


def run_sandbox_operator(*, seconds) -> int:
    """The sandbox operator at work for `seconds`: every callback that comes due meanwhile is sent
    within CALLBACK_POLL_SECONDS of its time. Returns how many were delivered."""
    deadline = time.monotonic() + seconds
    delivered = 0
    while True:
        sent = deliver_due_sandbox_callbacks()
        delivered += sent
        if time.monotonic() >= deadline:
            return delivered
        if not sent:
            time.sleep(CALLBACK_POLL_SECONDS)


def _claim_due_callbacks(*, reference=None):
    from django.db import transaction
    from django.db.models import F
    from django.utils import timezone

    from purchases.models import SandboxRecharge

    due = SandboxRecharge.objects.filter(callback_due_at__lte=timezone.now())
    if reference is not None:
        due = due.filter(reference=reference)
    if not due.exists():  # an idle sender's poll: one plain read, no transaction
        return []
    with transaction.atomic():
        now = timezone.now()  # once the claim may write (SQLite's BEGIN IMMEDIATE can wait for that)
        rows = list(
            due.filter(callback_due_at__lte=now)
            .select_for_update(skip_locked=True)
            .order_by("callback_due_at")
            .values_list("pk", "reference", "status", "operator_reference", "callback_attempts")[:CALLBACK_SENDERS]
        )
        leased_until = now + timedelta(seconds=CALLBACK_LEASE_SECONDS)
        if rows:
            SandboxRecharge.objects.filter(pk__in=[row[0] for row in rows]).update(
                callback_due_at=leased_until, callback_attempts=F("callback_attempts") + 1
            )
    return [
        DueCallback(
            *row[:4],
            attempt=row[4] + 1,
            leased_until=leased_until,
            last_attempt=reference is not None or row[4] + 1 >= CALLBACK_ATTEMPTS,
        )
        for row in rows
    ]


def _record_outcomes(*, delivered, given_up):
    from django.utils import timezone

    from purchases.models import SandboxRecharge

    now = timezone.now()
    for callbacks, outcome in ((delivered, {"callback_delivered_at": now}), (given_up, {})):
        for leased_until in {callback.leased_until for callback in callbacks}:
            # Only rows still under this claim's lease: one re-armed since (a reversal, a second
            # receipt) or claimed again has a callback still to send.
            SandboxRecharge.objects.filter(
                pk__in=[callback.pk for callback in callbacks if callback.leased_until == leased_until],
                callback_due_at=leased_until,
            ).update(callback_due_at=None, **outcome)


def _post_callback(callback: DueCallback) -> bool:
    """POST one signed callback; True if the URL answered 2xx. Never raises: one callback's failure is
    its own, and logged."""
    from core import signatures

    url = settings.RECHARGE_SANDBOX_CALLBACK_URL
    body = callback_body(
        reference=callback.reference, status=callback.status, operator_reference=callback.operator_reference
    )
    secrets = callback_secrets()
    try:
        request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310 - a configured URL
        request.add_header("Content-Type", "application/json")
        request.add_header(signatures.HEADER, signatures.sign(secret=secrets[0] if secrets else "", body=body))
        with urllib.request.urlopen(request, timeout=CALLBACK_TIMEOUT_SECONDS) as response:  # noqa: S310
            outcome = response.status
    except urllib.error.HTTPError as error:
        outcome = error.code
        error.close()
    except Exception as error:  # noqa: BLE001 - a network error, a bad URL, a malformed answer
        outcome = repr(error)
    if isinstance(outcome, int) and 200 <= outcome < 300:
        return True
    logger.warning(
        "sandbox: the callback of %s was not delivered (attempt %d of %d%s): %s",
        callback.reference,
        callback.attempt,
        CALLBACK_ATTEMPTS,
        ", giving up" if callback.last_attempt else f", again in {CALLBACK_LEASE_SECONDS} s",
        outcome,
    )
    return False


def callback_secrets() -> list[str]:
    """RECHARGE_CALLBACK_SECRET: one secret, or several separated by commas while rotating (the first
    signs, any verifies)."""
    return [secret.strip() for secret in settings.RECHARGE_CALLBACK_SECRET.split(",") if secret.strip()]


def get_gateway(path=None) -> BaseGateway:
    """The configured gateway (settings.RECHARGE_GATEWAY), or the one at `path`."""
    return import_string(path or settings.RECHARGE_GATEWAY)()
