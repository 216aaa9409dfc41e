"""Signed inbound callbacks and webhooks (operator callbacks, payment webhooks), Stripe-style.

The sender puts one header on each POST:

    X-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

The receiver checks it over the raw bytes it received, before parsing anything: the timestamp must be
within `tolerance` seconds of now (300 by default: an old message replayed later is refused) and one
`v1` must match, compared in constant time. Several `v1` values may be sent, and several secrets may
be accepted, so that a shared secret can be rotated without a gap.

`SignedWebhookView` is the receiving end: verify the raw body, then parse it as a JSON object, then
hand it to `handle_event`. A bad or stale signature is 401 and nothing after the check runs.
"""

import hashlib
import hmac
import json
import logging
import time

from rest_framework import status
from rest_framework.permissions import AllowAny
from rest_framework.views import APIView

from core.errors import DomainError
from core.net import client_ip

logger = logging.getLogger(__name__)

HEADER = "X-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidSignature(DomainError):
    code = "invalid_signature"
    message = "The X-Signature header is missing, malformed or does not match the body."
    status_code = status.HTTP_401_UNAUTHORIZED


class StaleSignature(InvalidSignature):
    code = "stale_signature"
    message = "The signature's timestamp is more than {tolerance} seconds away from now."


class InvalidPayload(DomainError):
    code = "invalid_payload"
    message = "The body is not a JSON object of the expected form."


def compute(*, secret, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of "<timestamp>.<body>" under `secret`."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign(*, secret, body: bytes, timestamp: int | None = None) -> str:
    """The X-Signature header value for `body` (what a sender, or a test, puts on its POST)."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={timestamp},v1={compute(secret=secret, timestamp=timestamp, body=body)}"


def verify(*, secrets, body: bytes, header: str | None, tolerance=DEFAULT_TOLERANCE_SECONDS, now=None) -> int:
    """Check `header` against `body` under any of `secrets` (one string, or several while rotating).

    Returns the signed timestamp. Raises InvalidSignature (missing, malformed, wrong, or no secret
    configured: an empty secret never verifies anything) or StaleSignature."""
    secrets = [secrets] if isinstance(secrets, (str, bytes)) else list(secrets or [])
    secrets = [secret for secret in secrets if secret]
    if not secrets:
        logger.error("a signed callback arrived but no secret is configured to check it: refused")
        raise InvalidSignature()
    timestamp, candidates = _parse(header)
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise StaleSignature(tolerance=tolerance)
    for secret in secrets:
        expected = compute(secret=secret, timestamp=timestamp, body=body)
        matches = [hmac.compare_digest(expected, candidate) for candidate in candidates]
        if any(matches):  # every candidate compared: the time taken says nothing about which matched
            return timestamp
    raise InvalidSignature()


def _parse(header):
    if not header or len(header) > 1024:
        raise InvalidSignature()
    timestamp, candidates = None, []
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isascii() and value.isdigit() and len(value) <= 12:
            timestamp = int(value)
        elif name == "v1" and len(value) == 64:
            candidates.append(value.lower())
    if timestamp is None or not candidates:
        raise InvalidSignature()
    return timestamp, candidates


def parse_json_object(body: bytes) -> dict:
    """The body as a JSON object, or InvalidPayload (malformed, not an object, nested too deep)."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidPayload() from None
    if not isinstance(payload, dict):
        raise InvalidPayload()
    return payload


class SignedWebhookView(APIView):
    """The receiving end of a signed callback: verify the raw body, then parse, then dispatch.

    Subclasses give `get_secrets(**url_kwargs)` (the shared secret, or a list while rotating) and
    `handle_event(*, payload, **url_kwargs)` (returns the Response). `check_sender(**url_kwargs)` may
    refuse earlier (an unknown provider in the URL). Refusals are logged for operators, with the
    sender's address and the reason, never with the body."""

    authentication_classes = []
    permission_classes = [AllowAny]
    signature_tolerance = DEFAULT_TOLERANCE_SECONDS

    def check_sender(self, **url_kwargs):
        """Raise a DomainError (e.g. NotFound) to refuse before the signature is checked."""

    def get_secrets(self, **url_kwargs):
        raise NotImplementedError

    def handle_event(self, *, payload, **url_kwargs):
        raise NotImplementedError

    def post(self, request, **url_kwargs):
        self.check_sender(**url_kwargs)
        body = request.body  # the raw bytes, read before anything parses them
        try:
            verify(
                secrets=self.get_secrets(**url_kwargs),
                body=body,
                header=request.headers.get(HEADER),
                tolerance=self.signature_tolerance,
            )
        except InvalidSignature as refusal:
            logger.warning("%s refused from %s: %s", type(self).__name__, client_ip(request), refusal.code)
            raise
        try:
            payload = parse_json_object(body)
        except InvalidPayload:
            logger.warning("%s: signed but malformed body from %s", type(self).__name__, client_ip(request))
            raise
        return self.handle_event(payload=payload, **url_kwargs)
