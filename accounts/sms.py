"""SMS delivery, chosen by `settings.SMS_BACKEND` the way Django chooses an email backend.

- `ConsoleSmsBackend` (default): logs the message; for development.
- `LocmemSmsBackend`: appends to `accounts.sms.outbox`; for tests.
- `HttpSmsBackend`: POSTs `{"to": ..., "message": ...}` as JSON to `SMS_HTTP_URL`, with
  `Authorization: Bearer SMS_HTTP_TOKEN` when a token is set, timing out after
  `SMS_HTTP_TIMEOUT_SECONDS`. Any non-2xx answer or network failure raises `SmsDeliveryFailed`.
"""

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass

from django.conf import settings
from django.utils.module_loading import import_string

from core.errors import DomainError

logger = logging.getLogger(__name__)

# LocmemSmsBackend's sent messages (like django.core.mail.outbox). Tests clear it.
outbox: list["SmsMessage"] = []


class SmsDeliveryFailed(DomainError):
    code = "sms_unavailable"
    message = "The code could not be sent right now; try again in a moment."
    status_code = 503


@dataclass(frozen=True)
class SmsMessage:
    to: str
    body: str


class BaseSmsBackend:
    def send(self, message: SmsMessage) -> None:
        raise NotImplementedError


class ConsoleSmsBackend(BaseSmsBackend):
    def send(self, message):
        logger.info("SMS to %s: %s", message.to, message.body)


class LocmemSmsBackend(BaseSmsBackend):
    def send(self, message):
        outbox.append(message)


class HttpSmsBackend(BaseSmsBackend):
    def send(self, message):
        url = settings.SMS_HTTP_URL
        if not url.startswith(("http://", "https://")):
            logger.error("SMS_HTTP_URL is not an http(s) URL: %r", url)
            raise SmsDeliveryFailed()
        headers = {"Content-Type": "application/json"}
        if settings.SMS_HTTP_TOKEN:
            headers["Authorization"] = f"Bearer {settings.SMS_HTTP_TOKEN}"
        payload = json.dumps({"to": message.to, "message": message.body}).encode()
        request = urllib.request.Request(url, data=payload, headers=headers, method="POST")  # noqa: S310 - scheme checked
        try:
            with urllib.request.urlopen(request, timeout=settings.SMS_HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
                response.read()
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            # HTTPError (a non-2xx answer) is a URLError too.
            logger.warning("SMS gateway refused or unreachable for %s: %s", message.to, exc)
            raise SmsDeliveryFailed() from None


def get_backend() -> BaseSmsBackend:
    return import_string(settings.SMS_BACKEND)()


def send_sms(*, to: str, body: str) -> None:
    get_backend().send(SmsMessage(to=to, body=body))
