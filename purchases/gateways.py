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
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.utils.module_loading import import_string


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
    def recharge(self, request: RechargeRequest) -> GatewayResult:
        raise NotImplementedError

    def check_status(self, request: RechargeRequest) -> GatewayResult:
        raise NotImplementedError


class SandboxGateway(BaseGateway):
    """A deterministic stand-in for a recharge aggregator, for development and tests.

    What happens depends only on the mobile number recharged (national form shown; +91 implied):

    =============  =========================================  ==================================
    number         recharge() answers                         check_status() answers
    =============  =========================================  ==================================
    9000000001     FAILED ("operator declined")               FAILED
    9000000002     PENDING                                    SUCCESS
    9000000003     PENDING                                    FAILED
    9000000004     raises GatewayUnavailable (not sent)       FAILED (never received)
    9000000005     raises GatewayTimeout (outcome unknown)    SUCCESS
    9000000006     raises GatewayTimeout (outcome unknown)    FAILED
    9000000007     PENDING                                    PENDING (stays pending)
    anything else  SUCCESS                                    SUCCESS
    =============  =========================================  ==================================

    Every call first sleeps RECHARGE_GATEWAY_LATENCY_MS milliseconds. A successful recharge gets
    an operator reference derived from the request's reference ("SBX" + 12 hex digits).
    """

    FAILS = "+919000000001"
    PENDING_THEN_SUCCESS = "+919000000002"
    PENDING_THEN_FAILS = "+919000000003"
    UNAVAILABLE = "+919000000004"
    TIMEOUT_THEN_SUCCESS = "+919000000005"
    TIMEOUT_THEN_FAILS = "+919000000006"
    PENDING_FOREVER = "+919000000007"

    def recharge(self, request):
        self._wait()
        number = request.mobile_number
        if number == self.FAILS:
            return GatewayResult(GatewayResult.FAILED, message="Operator declined the recharge (sandbox).")
        if number in (self.PENDING_THEN_SUCCESS, self.PENDING_THEN_FAILS, self.PENDING_FOREVER):
            return GatewayResult(GatewayResult.PENDING, message="Accepted by the operator, awaiting confirmation.")
        if number == self.UNAVAILABLE:
            raise GatewayUnavailable("Connection refused by the aggregator (sandbox).")
        if number in (self.TIMEOUT_THEN_SUCCESS, self.TIMEOUT_THEN_FAILS):
            raise GatewayTimeout("No answer from the aggregator in time (sandbox).")
        return GatewayResult(GatewayResult.SUCCESS, operator_reference=self.operator_reference(request))

    def check_status(self, request):
        self._wait()
        number = request.mobile_number
        if number == self.PENDING_FOREVER:
            return GatewayResult(GatewayResult.PENDING, message="Still awaiting the operator.")
        if number in (self.FAILS, self.PENDING_THEN_FAILS, self.TIMEOUT_THEN_FAILS):
            return GatewayResult(GatewayResult.FAILED, message="The operator reported the recharge failed (sandbox).")
        if number == self.UNAVAILABLE:
            return GatewayResult(GatewayResult.FAILED, message="No such recharge was received (sandbox).")
        return GatewayResult(GatewayResult.SUCCESS, operator_reference=self.operator_reference(request))

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


def get_gateway(path=None) -> BaseGateway:
    """The configured gateway (settings.RECHARGE_GATEWAY), or the one at `path`."""
    return import_string(path or settings.RECHARGE_GATEWAY)()
